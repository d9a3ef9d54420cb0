// The append-only, segmented record log of one shard (<data-dir>/shard-<k>/seg-<n>.log).
//
// A segment starts with a 16-byte header (magic "LLOG", u32 format version, u64 segment number) and holds
// records {u32 body length, u32 CRC-32C of type + body, u8 type, body}, all little-endian. Appends go to an
// in-memory batch; Write() puts the batch into the active segment with one pwrite. Durability is the
// caller's business (fsync policy): the log says which descriptor holds unsynced bytes up to which point
// (NextSync) and is told when they are synced (Synced), so the fsync itself can run on the shard's
// io_uring. Written batches stay in memory until they are durable, so the caller can act on a record's
// bytes (push it, answer a request) once it is durable without reading it back.
//
// Positions: an LSN is a byte count over everything appended since Open (not persisted, only for ordering
// durability); a LogPos {segment, offset} names a record on disk for reads after restart.
//
// Open() replays every record in order. A record that does not fit its segment or fails its checksum is a
// torn tail: the segment is cut there and everything before it is kept.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace longlink::gateway::local {

inline constexpr uint32_t kLogFormatVersion = 1;
inline constexpr uint32_t kSegmentHeaderSize = 16;
inline constexpr uint32_t kRecordHeaderSize = 9;
inline constexpr uint32_t kMaxRecordBody = 64u << 20;

struct LogPos {
  uint32_t segment = 0;
  uint32_t offset = 0;  // of the record header within the segment file
};

struct RecordView {
  uint8_t type = 0;
  std::span<const uint8_t> body;
  LogPos pos;
};

struct Appended {
  LogPos pos;
  uint64_t lsn = 0;   // where the record starts
  uint64_t end = 0;   // LSN just past it: durable once durable_lsn() >= end
};

class SegmentLog {
 public:
  struct Options {
    std::string dir;
    uint64_t segment_bytes = 64ull << 20;
  };
  struct Stats {
    uint64_t torn_tails = 0;        // segments cut at a bad record during Open
    uint64_t records_recovered = 0;
    uint64_t bytes_recovered = 0;
  };

  SegmentLog() = default;
  ~SegmentLog();
  SegmentLog(const SegmentLog&) = delete;
  SegmentLog& operator=(const SegmentLog&) = delete;

  // Creates the directory if needed, replays every record through `fn` (views are valid only during the
  // call), and opens the last segment for appending (a new one if there is none).
  absl::Status Open(const Options& opts, const std::function<void(const RecordView&)>& fn);

  // Appends a record whose body is the concatenation of `a` and `b` to the batch. Starts a new segment
  // first when the active one is full, which writes the batch so far.
  Appended Append(uint8_t type, std::span<const uint8_t> a, std::span<const uint8_t> b = {});
  // Writes the batch to the active segment (one pwrite). Errors are I/O errors: the caller should stop.
  absl::Status Write();

  // The oldest descriptor holding written but unsynced bytes, and the LSN a sync of it makes durable.
  // False if everything written is durable.
  bool NextSync(int* fd, uint64_t* lsn) const;
  // A sync of `fd` covering up to `lsn` finished.
  void Synced(uint64_t lsn);
  // fdatasync of everything written, on this thread (fsync policy `always`).
  absl::Status SyncNow();
  // After a failed write or sync: writes again, from the batches kept in memory and at their places, every
  // byte not known to be durable (a failed fsync may have dropped written pages), writes the pending batch,
  // syncs every segment involved, and clears the error, so everything appended is durable. On an error the
  // log stays failed and Recover may be tried again later; nothing is appended meanwhile except what the
  // caller chooses to (it all goes out with the next successful Recover or Write).
  absl::Status Recover();
  // The sticky error of a failed write (ok while healthy).
  const absl::Status& io_status() const { return io_status_; }
  // For fsync policy `none`: written counts as durable.
  void TreatWrittenAsDurable() { Synced(written_); }

  // Bytes of a record appended in this process that is not yet released (see ReleaseDurable).
  std::span<const uint8_t> Bytes(uint64_t lsn, uint32_t size) const;
  // Frees the memory of batches that are entirely durable and end at or before `keep_from` (the first
  // record the caller still has to act on). Call after acting on durable records.
  void ReleaseDurable(uint64_t keep_from = ~uint64_t{0});

  // Reads `len` bytes at a position (records of earlier runs, or released ones). False on a short read.
  bool ReadAt(LogPos pos, uint32_t len, uint8_t* out) const;

  // Deletes a whole segment file (never the active one).
  absl::Status DeleteSegment(uint32_t segment);
  // Segment numbers on disk, oldest first, the active one last.
  std::vector<uint32_t> Segments() const;
  uint32_t active_segment() const { return active_; }
  // A hook run right after a new segment is started (before the record that caused it): the owner
  // re-states its small state there so older segments can be deleted (see LocalStore::WriteSnapshot).
  void SetRollHook(std::function<void()> hook) { roll_hook_ = std::move(hook); }

  uint64_t appended_lsn() const { return appended_; }
  uint64_t written_lsn() const { return written_; }
  uint64_t durable_lsn() const { return durable_; }
  uint64_t pending_bytes() const { return batch_.bytes.size(); }
  const Stats& stats() const { return stats_; }
  uint64_t write_calls() const { return write_calls_; }

 private:
  struct Batch {
    std::vector<uint8_t> bytes;
    uint64_t lsn = 0;  // of bytes[0]
    int fd = -1;           // where it was written (Recover writes it there again)
    uint64_t offset = 0;
  };
  struct Unsynced {
    int fd;
    uint64_t lsn;  // written end in that segment
  };

  absl::Status OpenSegmentForAppend(uint32_t segment, bool create);
  absl::Status Roll();
  absl::Status WriteHeader(int fd, uint32_t segment);
  absl::Status SyncDirectory();

  Options opts_;
  std::map<uint32_t, int> fds_;  // every segment on disk, open for reads (the active one for writes too)
  uint32_t active_ = 0;
  int active_fd_ = -1;
  uint64_t active_size_ = 0;     // bytes in the active segment file, batch excluded
  Batch batch_;
  std::deque<Batch> written_batches_;  // written, not yet released
  std::vector<std::vector<uint8_t>> spare_;  // recycled batch buffers
  std::deque<Unsynced> unsynced_;      // rolled segments whose tail is not yet synced
  uint64_t appended_ = 0;
  uint64_t written_ = 0;
  uint64_t durable_ = 0;
  uint64_t write_calls_ = 0;
  bool rolling_ = false;
  absl::Status io_status_;  // sticky: the first write error, returned by Write()
  std::function<void()> roll_hook_;
  Stats stats_;
};

}  // namespace longlink::gateway::local
