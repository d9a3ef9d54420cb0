#include "gateway/backend/local/log.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/failpoint.h"
#include "core/status.h"
#include "gateway/backend/local/crc32c.h"

namespace longlink::gateway::local {
namespace {

constexpr char kMagic[4] = {'L', 'L', 'O', 'G'};

void PutU32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }  // little-endian hosts only (x86, arm64)
void PutU64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint32_t GetU32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t GetU64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

std::string SegmentPath(const std::string& dir, uint32_t segment) {
  char name[32];
  std::snprintf(name, sizeof(name), "/seg-%08u.log", segment);
  return dir + name;
}

absl::Status MakeDirs(const std::string& dir) {
  std::string path;
  for (size_t i = 0; i <= dir.size(); ++i) {
    if (i == dir.size() || (dir[i] == '/' && i > 0)) {
      path = dir.substr(0, i);
      if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return ErrnoStatus(errno, absl::StrCat("mkdir ", path));
    }
  }
  return absl::OkStatus();
}

bool PWriteAll(int fd, const uint8_t* p, size_t n, uint64_t off) {
  while (n > 0) {
    ssize_t w = pwrite(fd, p, n, static_cast<off_t>(off));
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
    off += static_cast<uint64_t>(w);
  }
  return true;
}

}  // namespace

SegmentLog::~SegmentLog() {
  for (auto& [seg, fd] : fds_) close(fd);
}

absl::Status SegmentLog::WriteHeader(int fd, uint32_t segment) {
  uint8_t h[kSegmentHeaderSize];
  std::memcpy(h, kMagic, 4);
  PutU32(h + 4, kLogFormatVersion);
  PutU64(h + 8, segment);
  if (!PWriteAll(fd, h, sizeof(h), 0)) return ErrnoStatus(errno, "write segment header");
  return absl::OkStatus();
}

absl::Status SegmentLog::Open(const Options& opts, const std::function<void(const RecordView&)>& fn) {
  opts_ = opts;
  RETURN_IF_ERROR(MakeDirs(opts_.dir));
  if (access(opts_.dir.c_str(), W_OK) != 0) {
    return absl::PermissionDeniedError(absl::StrCat(opts_.dir, " is not writable"));
  }
  std::vector<uint32_t> segments;
  DIR* d = opendir(opts_.dir.c_str());
  if (d == nullptr) return ErrnoStatus(errno, absl::StrCat("opendir ", opts_.dir));
  while (dirent* e = readdir(d)) {
    unsigned n;
    char tail;
    if (std::sscanf(e->d_name, "seg-%8u.lo%c", &n, &tail) == 2 && tail == 'g') segments.push_back(n);
  }
  closedir(d);
  std::sort(segments.begin(), segments.end());

  std::vector<uint8_t> buf;
  for (size_t si = 0; si < segments.size(); ++si) {
    uint32_t seg = segments[si];
    std::string path = SegmentPath(opts_.dir, seg);
    int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus(errno, absl::StrCat("open ", path));
    fds_[seg] = fd;
    struct stat st {};
    fstat(fd, &st);
    uint64_t size = static_cast<uint64_t>(st.st_size);
    if (size < kSegmentHeaderSize) {
      // Created but the header never made it: an empty segment.
      if (ftruncate(fd, 0) != 0) return ErrnoStatus(errno, absl::StrCat("truncate ", path));
      RETURN_IF_ERROR(WriteHeader(fd, seg));
      if (si + 1 != segments.size()) continue;
      active_ = seg;
      active_fd_ = fd;
      active_size_ = kSegmentHeaderSize;
      break;
    }
    buf.resize(size);
    size_t got = 0;
    while (got < size) {
      ssize_t r = pread(fd, buf.data() + got, size - got, static_cast<off_t>(got));
      if (r <= 0) return ErrnoStatus(r < 0 ? errno : EIO, absl::StrCat("read ", path));
      got += static_cast<size_t>(r);
    }
    if (std::memcmp(buf.data(), kMagic, 4) != 0) {
      return absl::FailedPreconditionError(absl::StrCat(path, " is not a longlink log segment (bad magic)"));
    }
    uint32_t version = GetU32(buf.data() + 4);
    if (version != kLogFormatVersion) {
      return absl::FailedPreconditionError(absl::StrCat(path, " holds data of log format version ", version,
                                                        "; this build reads version ", kLogFormatVersion));
    }
    uint64_t off = kSegmentHeaderSize;
    while (off < size) {
      if (size - off < kRecordHeaderSize) break;
      uint32_t len = GetU32(&buf[off]);
      uint32_t crc = GetU32(&buf[off + 4]);
      if (len > kMaxRecordBody || size - off - kRecordHeaderSize < len) break;
      if (Crc32c(0, &buf[off + 8], len + 1u) != crc) break;
      RecordView v;
      v.type = buf[off + 8];
      v.body = std::span<const uint8_t>(&buf[off + kRecordHeaderSize], len);
      v.pos = LogPos{seg, static_cast<uint32_t>(off)};
      fn(v);
      ++stats_.records_recovered;
      off += kRecordHeaderSize + len;
    }
    stats_.bytes_recovered += off;
    if (off < size) {
      // A torn (or corrupt) tail: cut it so appends continue from the last good record.
      ++stats_.torn_tails;
      if (ftruncate(fd, static_cast<off_t>(off)) != 0) return ErrnoStatus(errno, absl::StrCat("truncate ", path));
      std::fprintf(stderr, "longlink-gateway: %s: cut a torn tail of %lu bytes at offset %lu\n", path.c_str(),
                   static_cast<unsigned long>(size - off), static_cast<unsigned long>(off));
    }
    active_ = seg;
    active_fd_ = fd;
    active_size_ = off;
  }
  if (active_fd_ < 0) {
    uint32_t seg = segments.empty() ? 1 : segments.back() + 1;
    RETURN_IF_ERROR(OpenSegmentForAppend(seg, true));
  }
  // Make the cut (and a fresh header) durable before acknowledging anything on top of it.
  if (fdatasync(active_fd_) != 0) return ErrnoStatus(errno, "fdatasync");
  return absl::OkStatus();
}

absl::Status SegmentLog::OpenSegmentForAppend(uint32_t segment, bool create) {
  std::string path = SegmentPath(opts_.dir, segment);
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0), 0644);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("open ", path));
  int injected = create ? core::FailpointCheck("local.write") : 0;
  absl::Status header = injected != 0 ? ErrnoStatus(injected, "write segment header") : WriteHeader(fd, segment);
  if (!header.ok()) {
    // Leave no half-made segment behind: the next roll creates it again (with O_EXCL).
    close(fd);
    if (create) unlink(path.c_str());
    return header;
  }
  // The new file's directory entry must survive a crash too.
  absl::Status dir = SyncDirectory();
  if (!dir.ok()) {
    close(fd);
    if (create) unlink(path.c_str());
    return dir;
  }
  fds_[segment] = fd;
  active_ = segment;
  active_fd_ = fd;
  active_size_ = kSegmentHeaderSize;
  return absl::OkStatus();
}

absl::Status SegmentLog::SyncDirectory() {
  int dfd = open(opts_.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return ErrnoStatus(errno, absl::StrCat("open ", opts_.dir));
  int injected = core::FailpointCheck("local.fsync");
  int r = injected != 0 ? -1 : fsync(dfd);
  int e = injected != 0 ? injected : errno;
  close(dfd);
  if (r != 0) return ErrnoStatus(e, absl::StrCat("fsync ", opts_.dir));
  return absl::OkStatus();
}

absl::Status SegmentLog::Roll() {
  RETURN_IF_ERROR(Write());
  if (written_ > durable_) unsynced_.push_back(Unsynced{active_fd_, written_});
  RETURN_IF_ERROR(OpenSegmentForAppend(active_ + 1, true));
  if (roll_hook_) {
    rolling_ = true;
    roll_hook_();
    rolling_ = false;
  }
  return absl::OkStatus();
}

Appended SegmentLog::Append(uint8_t type, std::span<const uint8_t> a, std::span<const uint8_t> b) {
  uint32_t len = static_cast<uint32_t>(a.size() + b.size());
  uint64_t rec = kRecordHeaderSize + static_cast<uint64_t>(len);
  if (!rolling_ && active_size_ + batch_.bytes.size() + rec > opts_.segment_bytes &&
      active_size_ + batch_.bytes.size() > kSegmentHeaderSize) {
    absl::Status st = Roll();
    if (!st.ok() && io_status_.ok()) io_status_ = st;
  }
  if (batch_.bytes.empty()) {
    batch_.lsn = appended_;
    if (batch_.bytes.capacity() == 0 && !spare_.empty()) {
      batch_.bytes.swap(spare_.back());
      spare_.pop_back();
    }
  }
  Appended out;
  out.pos = LogPos{active_, static_cast<uint32_t>(active_size_ + batch_.bytes.size())};
  out.lsn = appended_;
  size_t at = batch_.bytes.size();
  batch_.bytes.resize(at + rec);
  uint8_t* p = batch_.bytes.data() + at;
  PutU32(p, len);
  p[8] = type;
  if (!a.empty()) std::memcpy(p + kRecordHeaderSize, a.data(), a.size());
  if (!b.empty()) std::memcpy(p + kRecordHeaderSize + a.size(), b.data(), b.size());
  PutU32(p + 4, Crc32c(0, p + 8, len + 1u));
  appended_ += rec;
  out.end = appended_;
  return out;
}

absl::Status SegmentLog::Write() {
  if (!io_status_.ok()) return io_status_;
  if (batch_.bytes.empty()) return absl::OkStatus();
  int injected = core::FailpointCheck("local.write");
  if (injected != 0 || !PWriteAll(active_fd_, batch_.bytes.data(), batch_.bytes.size(), active_size_)) {
    io_status_ = ErrnoStatus(injected != 0 ? injected : errno, absl::StrCat("write ", SegmentPath(opts_.dir, active_)));
    return io_status_;
  }
  ++write_calls_;
  batch_.fd = active_fd_;
  batch_.offset = active_size_;
  active_size_ += batch_.bytes.size();
  written_ = appended_;
  written_batches_.push_back(std::move(batch_));
  batch_ = Batch{};
  return absl::OkStatus();
}

bool SegmentLog::NextSync(int* fd, uint64_t* lsn) const {
  if (!unsynced_.empty()) {
    *fd = unsynced_.front().fd;
    *lsn = unsynced_.front().lsn;
    return true;
  }
  if (written_ > durable_) {
    *fd = active_fd_;
    *lsn = written_;
    return true;
  }
  return false;
}

void SegmentLog::Synced(uint64_t lsn) {
  durable_ = std::max(durable_, lsn);
  while (!unsynced_.empty() && unsynced_.front().lsn <= durable_) unsynced_.pop_front();
}

absl::Status SegmentLog::SyncNow() {
  int fd;
  uint64_t lsn;
  while (NextSync(&fd, &lsn)) {
    int injected = core::FailpointCheck("local.fsync");
    if (injected != 0 || fdatasync(fd) != 0) return ErrnoStatus(injected != 0 ? injected : errno, "fdatasync");
    Synced(lsn);
  }
  return absl::OkStatus();
}

absl::Status SegmentLog::Recover() {
  std::vector<int> touched;
  auto touch = [&touched](int fd) {
    if (std::find(touched.begin(), touched.end(), fd) == touched.end()) touched.push_back(fd);
  };
  for (const Batch& b : written_batches_) {
    uint64_t end = b.lsn + b.bytes.size();
    if (end <= durable_) continue;
    uint64_t skip = durable_ > b.lsn ? durable_ - b.lsn : 0;
    int injected = core::FailpointCheck("local.write");
    if (injected != 0 || !PWriteAll(b.fd, b.bytes.data() + skip, b.bytes.size() - skip, b.offset + skip)) {
      return ErrnoStatus(injected != 0 ? injected : errno, absl::StrCat("write ", opts_.dir, " (recovery)"));
    }
    touch(b.fd);
  }
  for (const Unsynced& u : unsynced_) touch(u.fd);
  io_status_ = absl::OkStatus();
  RETURN_IF_ERROR(Write());
  if (written_ > durable_) touch(active_fd_);
  // A failed sync may have lost any page written since the last good one, a new segment's header included
  // (written when the segment was made, outside the batches): write those again too, then the directory.
  for (int fd : touched) {
    for (const auto& [seg, sfd] : fds_) {
      if (sfd != fd) continue;
      absl::Status header = WriteHeader(fd, seg);
      if (!header.ok()) {
        io_status_ = header;
        return header;
      }
    }
  }
  absl::Status dir = SyncDirectory();
  if (!dir.ok()) {
    io_status_ = dir;
    return dir;
  }
  for (int fd : touched) {
    int injected = core::FailpointCheck("local.fsync");
    if (injected != 0 || fdatasync(fd) != 0) {
      io_status_ = ErrnoStatus(injected != 0 ? injected : errno, "fdatasync (recovery)");
      return io_status_;
    }
  }
  Synced(written_);
  unsynced_.clear();
  return absl::OkStatus();
}

std::span<const uint8_t> SegmentLog::Bytes(uint64_t lsn, uint32_t size) const {
  for (const Batch& b : written_batches_) {
    if (lsn >= b.lsn && lsn + size <= b.lsn + b.bytes.size()) return {b.bytes.data() + (lsn - b.lsn), size};
  }
  if (lsn >= batch_.lsn && lsn + size <= batch_.lsn + batch_.bytes.size()) {
    return {batch_.bytes.data() + (lsn - batch_.lsn), size};
  }
  return {};
}

void SegmentLog::ReleaseDurable(uint64_t keep_from) {
  uint64_t limit = std::min(durable_, keep_from);
  while (!written_batches_.empty()) {
    Batch& b = written_batches_.front();
    if (b.lsn + b.bytes.size() > limit) break;
    b.bytes.clear();
    // Keep a couple of buffers for reuse; one big burst should not pin its memory forever.
    if (spare_.size() < 4 && b.bytes.capacity() <= (8u << 20)) spare_.push_back(std::move(b.bytes));
    written_batches_.pop_front();
  }
}

bool SegmentLog::ReadAt(LogPos pos, uint32_t len, uint8_t* out) const {
  auto it = fds_.find(pos.segment);
  if (it == fds_.end()) return false;
  size_t got = 0;
  while (got < len) {
    ssize_t r = pread(it->second, out + got, len - got, static_cast<off_t>(pos.offset + got));
    if (r <= 0) {
      if (r < 0 && errno == EINTR) continue;
      return false;
    }
    got += static_cast<size_t>(r);
  }
  return true;
}

absl::Status SegmentLog::DeleteSegment(uint32_t segment) {
  if (segment == active_) return absl::FailedPreconditionError("cannot delete the active segment");
  auto it = fds_.find(segment);
  if (it == fds_.end()) return absl::NotFoundError(absl::StrCat("no segment ", segment));
  for (const Unsynced& u : unsynced_) {
    if (u.fd == it->second) return absl::FailedPreconditionError("segment not yet synced");
  }
  close(it->second);
  fds_.erase(it);
  std::string path = SegmentPath(opts_.dir, segment);
  if (unlink(path.c_str()) != 0) return ErrnoStatus(errno, absl::StrCat("unlink ", path));
  return absl::OkStatus();
}

std::vector<uint32_t> SegmentLog::Segments() const {
  std::vector<uint32_t> out;
  out.reserve(fds_.size());
  for (const auto& [seg, fd] : fds_) out.push_back(seg);
  return out;
}

}  // namespace longlink::gateway::local
