// JetStream's own publish rate on this machine: the bound under the NATS backend's SEND rate (every SEND
// stores one copy per recipient inbox and one for the sender). Asynchronous publishes of fixed-size
// messages over `--subjects` subjects (like per-user inbox subjects) into one file-backed stream with
// `--replicas` replicas, at most `--max-pending` unacknowledged; prints the rate of acknowledged messages.
//   nats_publish_bench --url=nats://127.0.0.1:4222 --replicas=3 --count=200000 --size=64 --subjects=1000
#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

std::atomic<uint64_t> g_errors{0};

void OnPublishError(jsCtx*, jsPubAckErr*, void*) { g_errors.fetch_add(1, std::memory_order_relaxed); }

bool Flag(const char* arg, const char* name, std::string* out) {
  size_t n = std::strlen(name);
  if (std::strncmp(arg, name, n) != 0 || arg[n] != '=') return false;
  *out = arg + n + 1;
  return true;
}

int Fail(const char* what, natsStatus s) {
  std::fprintf(stderr, "nats_publish_bench: %s: %s (%s)\n", what, natsStatus_GetText(s), nats_GetLastError(nullptr));
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string url = "nats://127.0.0.1:4222", v;
  long replicas = 1, count = 200000, size = 64, subjects = 1000, max_pending = 4096;
  for (int i = 1; i < argc; ++i) {
    if (Flag(argv[i], "--url", &v)) url = v;
    else if (Flag(argv[i], "--replicas", &v)) replicas = std::atol(v.c_str());
    else if (Flag(argv[i], "--count", &v)) count = std::atol(v.c_str());
    else if (Flag(argv[i], "--size", &v)) size = std::atol(v.c_str());
    else if (Flag(argv[i], "--subjects", &v)) subjects = std::atol(v.c_str());
    else if (Flag(argv[i], "--max-pending", &v)) max_pending = std::atol(v.c_str());
    else {
      std::fprintf(stderr, "nats_publish_bench: unknown argument '%s'\n"
                           "  --url=URL --replicas=N --count=N --size=BYTES --subjects=N --max-pending=N\n", argv[i]);
      return 2;
    }
  }
  if (replicas < 1 || replicas > 5 || count < 1 || size < 0 || subjects < 1 || max_pending < 1) {
    std::fprintf(stderr, "nats_publish_bench: replicas 1..5, count, subjects and max-pending >= 1, size >= 0\n");
    return 2;
  }
  natsConnection* nc = nullptr;
  natsStatus s = natsConnection_ConnectTo(&nc, url.c_str());
  if (s != NATS_OK) return Fail("connect", s);
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.PublishAsync.MaxPending = max_pending;
  jo.PublishAsync.ErrHandler = OnPublishError;
  jsCtx* js = nullptr;
  if ((s = natsConnection_JetStream(&js, nc, &jo)) != NATS_OK) return Fail("jetstream", s);

  std::string name = "BENCH_R" + std::to_string(replicas);
  std::string filter = "bench.r" + std::to_string(replicas) + ".>";
  const char* subjects_list[] = {filter.c_str()};
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = name.c_str();
  cfg.Subjects = subjects_list;
  cfg.SubjectsLen = 1;
  cfg.Storage = js_FileStorage;
  cfg.Replicas = static_cast<int>(replicas);
  jsErrCode jerr = static_cast<jsErrCode>(0);
  js_DeleteStream(js, name.c_str(), nullptr, &jerr);
  jsStreamInfo* si = nullptr;
  if ((s = js_AddStream(&si, js, &cfg, nullptr, &jerr)) != NATS_OK) return Fail("add stream", s);
  jsStreamInfo_Destroy(si);

  std::vector<std::string> subj(static_cast<size_t>(subjects));
  for (long i = 0; i < subjects; ++i) subj[i] = "bench.r" + std::to_string(replicas) + "." + std::to_string(i);
  std::string payload(static_cast<size_t>(size), 'x');
  auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < count; ++i) {
    s = js_PublishAsync(js, subj[i % subjects].c_str(), payload.data(), static_cast<int>(payload.size()), nullptr);
    if (s != NATS_OK) return Fail("publish", s);
  }
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = 60000;
  if ((s = js_PublishAsyncComplete(js, &po)) != NATS_OK) return Fail("waiting for the acknowledgements", s);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  uint64_t errors = g_errors.load();
  std::printf("replicas=%ld size=%ld subjects=%ld max_pending=%ld: %ld messages in %.2f s = %.0f msg/s acknowledged "
              "(%lu errors)\n",
              replicas, size, subjects, max_pending, count, secs, static_cast<double>(count - errors) / secs,
              static_cast<unsigned long>(errors));
  js_DeleteStream(js, name.c_str(), nullptr, &jerr);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  nats_Close();
  return errors == 0 ? 0 : 1;
}
