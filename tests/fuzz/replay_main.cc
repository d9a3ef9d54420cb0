// Replays stored inputs through a libFuzzer target without libFuzzer.
//
// gcc has no -fsanitize=fuzzer, yet every fuzz corpus must run as a regression test in every build. Linked
// with any source that defines LLVMFuzzerTestOneInput, this main runs each file named on the command line,
// or found under a directory named there, through the target once, in sorted order so failures repeat.
//
//   usage: <target>_replay PATH...
//
// A path that does not exist, or a directory without a single input, fails the run: a corpus that moved or
// was never generated must not turn its regression test into a silent pass. A target that crashes or traps
// fails it too; a signal handler names the input that was running first.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
// Optional in libFuzzer targets, so it is weak here: null when the target does not define it.
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);

namespace {

namespace fs = std::filesystem;

// The input being run, kept in a fixed buffer so the crash handler can print it without allocating.
char g_current[4096];

void OnCrash(int sig) {
  static constexpr char kPrefix[] = "replay: crashed on input ";
  (void)!write(STDERR_FILENO, kPrefix, sizeof(kPrefix) - 1);
  (void)!write(STDERR_FILENO, g_current, strnlen(g_current, sizeof(g_current)));
  (void)!write(STDERR_FILENO, "\n", 1);
  signal(sig, SIG_DFL);
  raise(sig);
}

// Appends the inputs named by one command-line path. False (with a message) if it names none.
bool Collect(const fs::path& path, std::vector<fs::path>* inputs) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) {
    inputs->push_back(path);
    return true;
  }
  if (!fs::is_directory(path, ec)) {
    std::fprintf(stderr, "replay: %s: not a file or directory\n", path.c_str());
    return false;
  }
  const size_t before = inputs->size();
  for (fs::recursive_directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec)) {
      inputs->push_back(it->path());
    }
  }
  if (ec) {
    std::fprintf(stderr, "replay: %s: %s\n", path.c_str(), ec.message().c_str());
    return false;
  }
  if (inputs->size() == before) {
    std::fprintf(stderr, "replay: %s: no inputs\n", path.c_str());
    return false;
  }
  return true;
}

// Reads a whole file into a buffer of exactly its size, so a sanitizer sees any read past the end of the
// input (spare vector capacity would hide it).
bool ReadFile(const fs::path& path, std::vector<uint8_t>* out) {
  std::error_code ec;
  const uintmax_t size = fs::file_size(path, ec);
  std::ifstream f(path, std::ios::binary);
  if (ec || !f) {
    return false;
  }
  std::vector<uint8_t> data(static_cast<size_t>(size));
  f.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(data.size()));
  if (static_cast<uintmax_t>(f.gcount()) != size) {
    return false;
  }
  *out = std::move(data);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s PATH...  (files, or directories of inputs)\n", argv[0]);
    return 2;
  }
  std::vector<fs::path> inputs;
  bool ok = true;
  for (int i = 1; i < argc; ++i) {
    ok = Collect(argv[i], &inputs) && ok;
  }
  if (!ok) {
    return 1;
  }
  std::sort(inputs.begin(), inputs.end());

  if (LLVMFuzzerInitialize != nullptr) {
    LLVMFuzzerInitialize(&argc, &argv);
  }
  for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT}) {
    signal(sig, OnCrash);
  }

  for (const fs::path& input : inputs) {
    std::vector<uint8_t> data;
    if (!ReadFile(input, &data)) {
      std::fprintf(stderr, "replay: %s: cannot read\n", input.c_str());
      return 1;
    }
    std::snprintf(g_current, sizeof(g_current), "%s", input.c_str());
    // libFuzzer never passes a null pointer, even for an empty input; neither do we.
    static const uint8_t kEmpty = 0;
    LLVMFuzzerTestOneInput(data.empty() ? &kEmpty : data.data(), data.size());
  }
  std::printf("replay: ran %zu inputs\n", inputs.size());
  return 0;
}
