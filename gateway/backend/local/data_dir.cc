#include "gateway/backend/local/data_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace longlink::gateway::local {
namespace {

constexpr char kFormatLine[] = "longlink-local-format 1";

std::string ReadSmallFile(const std::string& path, bool* exists) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  *exists = fd >= 0;
  if (fd < 0) return {};
  char buf[256];
  ssize_t n = read(fd, buf, sizeof(buf));
  close(fd);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

absl::Status WriteFileDurably(const std::string& dir, const std::string& name, const std::string& text) {
  std::string tmp = dir + "/" + name + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("create ", tmp));
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && fsync(fd) == 0;
  int e = errno;
  close(fd);
  if (!ok) return ErrnoStatus(e, absl::StrCat("write ", tmp));
  std::string path = dir + "/" + name;
  if (rename(tmp.c_str(), path.c_str()) != 0) return ErrnoStatus(errno, absl::StrCat("rename ", path));
  int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return absl::OkStatus();
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

}  // namespace

DataDir::~DataDir() {
  if (lock_fd_ >= 0) close(lock_fd_);
}

absl::StatusOr<std::unique_ptr<DataDir>> DataDir::Open(const std::string& dir, uint32_t shards) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("--data-dir: ", dir, ": ", why));
  };
  // mkdir -p
  for (size_t i = 1; i <= dir.size(); ++i) {
    if (i == dir.size() || dir[i] == '/') {
      std::string p = dir.substr(0, i);
      if (mkdir(p.c_str(), 0755) != 0 && errno != EEXIST) return bad(absl::StrCat("cannot create: ", std::strerror(errno)));
    }
  }
  struct stat st {};
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return bad("not a directory");
  if (access(dir.c_str(), W_OK | X_OK) != 0) return bad("not writable");
  // One gateway per data directory: two would interleave their logs.
  std::string lock_path = dir + "/LOCK";
  int lock_fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd < 0) return bad(absl::StrCat("cannot create LOCK: ", std::strerror(errno)));
  if (flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    close(lock_fd);
    return bad("in use by another longlink-gateway (LOCK is held)");
  }
  // The descriptor stays open (and the lock held) for the life of the DataDir.
  struct LockGuard {
    int fd;
    ~LockGuard() {
      if (fd >= 0) close(fd);
    }
  } guard{lock_fd};

  bool exists = false;
  std::string format = Trim(ReadSmallFile(dir + "/FORMAT", &exists));
  if (exists && format != kFormatLine) {
    return bad(absl::StrCat("holds data of another format ('", format, "'); this build writes '", kFormatLine,
                            "'"));
  }
  std::string shards_text = Trim(ReadSmallFile(dir + "/SHARDS", &exists));
  if (exists) {
    uint32_t n = 0;
    if (!absl::SimpleAtoi(shards_text, &n) || n != shards) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--shards: ", dir, " was written by a gateway with ", shards_text,
          " shards (users live on shard hash(user) % shards); start with --shards=", shards_text));
    }
  }
  if (!exists) {
    absl::Status s = WriteFileDurably(dir, "FORMAT", absl::StrCat(kFormatLine, "\n"));
    if (!s.ok()) return bad(s.message());
    s = WriteFileDurably(dir, "SHARDS", absl::StrCat(shards, "\n"));
    if (!s.ok()) return bad(s.message());
  }
  // The boot epoch is the top 16 bits of every server_msg_id: ids never repeat across restarts, even for
  // messages a crash lost after their ids went out.
  std::string epoch_text = Trim(ReadSmallFile(dir + "/EPOCH", &exists));
  uint32_t epoch = 0;
  if (exists && !absl::SimpleAtoi(epoch_text, &epoch)) return bad("EPOCH is not a number");
  epoch = (epoch + 1) & 0xffff;
  if (epoch == 0) epoch = 1;
  absl::Status s = WriteFileDurably(dir, "EPOCH", absl::StrCat(epoch, "\n"));
  if (!s.ok()) return bad(s.message());
  guard.fd = -1;
  return std::unique_ptr<DataDir>(new DataDir(dir, static_cast<uint16_t>(epoch), lock_fd));
}

}  // namespace longlink::gateway::local
