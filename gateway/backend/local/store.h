// The durable state of one shard of the local backend, on top of its SegmentLog: users' inboxes (seq ->
// where the message is on disk), the idempotency map of SENDs that originated here, messages whose fan-out
// is not finished (re-driven after a crash), device cursors, and the groups this shard owns.
//
// Everything is in memory and rebuilt by replaying the log at Open. The store never blocks on durability:
// the caller appends, makes the log durable (per its fsync policy), and then calls IndexDurable for the
// inbox entries, so SYNC only ever returns durable messages.
//
// Retention: an inbox keeps at most max_inbox entries and none older than the retention; Sweep expires old
// entries a bounded number of users at a time. Every segment counts the live references into it (inbox
// entries, unfinished messages). Each new segment starts with a snapshot of the small state, so once that
// snapshot is durable, every older segment without live references is deleted by Compact.
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "gateway/backend/local/log.h"
#include "gateway/backend/local/records.h"

namespace longlink::gateway::local {

struct StoreOptions {
  std::string dir;
  uint64_t segment_bytes = 64ull << 20;
  uint64_t retention_ms = 14ull * 24 * 3600 * 1000;
  uint32_t max_inbox = 10000;
  // A retried SEND within this long of the original is answered from the idempotency map and never stored
  // twice. Older entries are dropped (a generation at a time, see RetireIdem).
  uint64_t idempotency_window_ms = 5ull * 60 * 1000;
};

struct InboxEntry {
  uint64_t seq;
  LogPos pos;
  uint32_t size;    // record bytes up to the end of the payload
  uint32_t time_s;  // unix seconds of the message, for retention
};

// One user's inbox: entries in seq order, contiguous while nothing is evicted in the middle.
class Inbox {
 public:
  uint64_t next_seq() const { return next_seq_; }
  uint64_t last_seq() const { return next_seq_ - 1; }
  uint64_t durable_seq() const { return durable_seq_; }
  size_t size() const { return entries_.size() - head_; }
  bool empty() const { return size() == 0; }
  const InboxEntry& front() const { return entries_[head_]; }
  const InboxEntry& at(size_t i) const { return entries_[head_ + i]; }
  // Index of the first entry with seq > after (size() if none).
  size_t UpperBound(uint64_t after) const;

 private:
  friend class LocalStore;
  void Push(const InboxEntry& e) { entries_.push_back(e); }
  void PopFront();

  uint64_t next_seq_ = 1;     // the seq the next message gets
  uint64_t durable_seq_ = 0;  // highest seq indexed
  std::vector<InboxEntry> entries_;
  size_t head_ = 0;
};

struct IdemKey {
  uint64_t user;
  uint32_t device;
  uint64_t client_msg_id;
  bool operator==(const IdemKey& o) const {
    return user == o.user && device == o.device && client_msg_id == o.client_msg_id;
  }
  template <typename H>
  friend H AbslHashValue(H h, const IdemKey& k) {
    return H::combine(std::move(h), k.user, k.device, k.client_msg_id);
  }
};
struct IdemValue {
  uint64_t server_msg_id;
  uint64_t server_time_ms;
  uint32_t segment;
};

struct PendingOrigin {
  LogPos pos;
  uint32_t size;  // whole record
};

struct StoreStats {
  uint64_t segments_deleted = 0;
  uint64_t entries_expired = 0;
  uint64_t entries_evicted = 0;  // over max_inbox
  uint64_t snapshots = 0;
};

class LocalStore {
 public:
  absl::Status Open(const StoreOptions& opts);
  SegmentLog& log() { return log_; }
  const SegmentLog& log() const { return log_; }
  const StoreOptions& options() const { return opts_; }

  // ---- messages ----
  // Reserves the next seq of a user's inbox (the entry becomes visible with IndexDurable).
  uint64_t AssignSeq(uint64_t user);
  Appended AppendMsg(const MsgHeader& h, std::span<const uint8_t> payload, std::span<const InboxSlot> slots);
  // A message in a user's inbox is durable: SYNC may return it. Applies --max-inbox.
  void IndexDurable(uint64_t user, uint64_t seq, LogPos pos, uint32_t prefix_size, uint64_t time_ms);
  const Inbox* FindInbox(uint64_t user) const;
  // Reads a message back for SYNC into `buf`; false if the read or the parse failed.
  bool ReadMessage(const InboxEntry& e, std::vector<uint8_t>* buf, MsgView* out) const;

  // ---- idempotency (SENDs that originated on this shard) ----
  // The map is a queue of generations, each a hash map reserved up front at its final size (4,096 entries,
  // doubling to at most 131,072) and never grown: a full generation is followed by a new one. So a SEND
  // never waits for a whole map to rehash (at a few hundred thousand entries that stopped the shard for
  // 100-200 ms here), memory grows with the traffic of one window, and expiry drops whole generations.
  const IdemValue* FindIdem(const IdemKey& k) const;
  void PutIdem(const IdemKey& k, const IdemValue& v);
  void EraseIdem(const IdemKey& k);
  size_t idem_size() const;
  size_t idem_generations() const { return idem_.size(); }
  size_t idem_bucket_count(size_t generation) const { return idem_[generation].map.bucket_count(); }
  // Drops the generations whose newest entry (by server time) is older than the window. Returns how many.
  size_t RetireIdem(uint64_t now_ms);

  // ---- unfinished fan-outs ----
  void AddPending(uint64_t server_msg_id, LogPos pos, uint32_t size);
  // Every recipient shard stored the message: appends kComplete and unpins the record.
  void Complete(uint64_t server_msg_id);
  // After Open: origin records whose fan-out must be re-driven.
  const absl::flat_hash_map<uint64_t, PendingOrigin>& pending() const { return pending_; }
  bool ReadRecord(LogPos pos, uint32_t size, std::vector<uint8_t>* buf) const;
  // Non-origin messages recovered from the log: a re-driven DELIVER for one of these is a duplicate.
  bool SeenForeign(uint64_t server_msg_id) const { return foreign_.contains(server_msg_id); }
  void ForgetForeign() { absl::flat_hash_set<uint64_t>().swap(foreign_); }

  // ---- device cursors (cumulative PUSH_ACK) ----
  void SetCursor(uint64_t user, uint32_t device, uint64_t seq);
  uint64_t Cursor(uint64_t user, uint32_t device) const;
  // Appends records for up to `max` changed cursors; returns how many.
  size_t FlushCursors(size_t max);

  // ---- groups owned by this shard ----
  // Each appends its record on success.
  uint16_t CreateGroup(uint64_t group, uint64_t creator);  // protocol::GroupStatus
  uint16_t AddMember(uint64_t group, uint64_t user);
  uint16_t RemoveMember(uint64_t group, uint64_t user);
  const absl::btree_set<uint64_t>* Members(uint64_t group) const;
  size_t group_count() const { return groups_.size(); }

  // ---- retention ----
  // Expires entries older than the retention, visiting at most `budget` users; resumes where it stopped.
  void Sweep(uint64_t now_ms, size_t budget);
  // Deletes every segment that holds nothing live and precedes a durable snapshot. Returns how many.
  size_t Compact();
  // Re-states the small state at the current position (the log's roll hook calls it).
  void WriteSnapshot();

  size_t user_count() const { return inboxes_.size(); }
  uint64_t LiveRefs(uint32_t segment) const;
  const StoreStats& stats() const { return stats_; }

 private:
  struct CursorKey {
    uint64_t user;
    uint32_t device;
    bool operator==(const CursorKey& o) const { return user == o.user && device == o.device; }
    template <typename H>
    friend H AbslHashValue(H h, const CursorKey& k) {
      return H::combine(std::move(h), k.user, k.device);
    }
  };
  struct Staged {
    bool active = false;
    uint64_t pending_mark = 0;
    absl::flat_hash_map<CursorKey, uint64_t> cursors;
    absl::flat_hash_map<uint64_t, absl::btree_set<uint64_t>> groups;
    absl::flat_hash_map<uint64_t, SeqRec> seqs;
    absl::flat_hash_set<uint64_t> pending;
  };

  void Replay(const RecordView& r);
  void ApplyMsg(const MsgView& m, const RecordView& r);
  void Ref(uint32_t segment, int64_t d);
  void Evict(Inbox& in, bool expired);
  void AppendGroup(uint64_t group, uint8_t op, uint64_t user);

  StoreOptions opts_;
  SegmentLog log_;
  absl::flat_hash_map<uint64_t, Inbox> inboxes_;
  std::vector<uint64_t> sweep_order_;  // users in creation order; Sweep walks it round robin
  size_t sweep_pos_ = 0;
  struct IdemGeneration {
    absl::flat_hash_map<IdemKey, IdemValue> map;
    size_t slots = 0;  // the table's size; it takes FillLimit(slots) entries
    uint64_t newest_ms = 0;
  };
  std::deque<IdemGeneration> idem_;  // oldest first
  absl::flat_hash_map<uint64_t, PendingOrigin> pending_;
  absl::flat_hash_map<uint64_t, uint64_t> pending_order_;  // id -> replay order (recovery only)
  absl::flat_hash_set<uint64_t> foreign_;
  absl::flat_hash_map<CursorKey, uint64_t> cursors_;
  std::vector<CursorKey> dirty_cursors_;
  absl::flat_hash_set<CursorKey> dirty_set_;
  absl::flat_hash_map<uint64_t, absl::btree_set<uint64_t>> groups_;
  absl::flat_hash_map<uint32_t, int64_t> live_;  // segment -> live references
  absl::flat_hash_map<uint64_t, uint64_t> seq_floor_;  // recovery: first_seq from the last snapshot
  uint32_t snapshot_segment_ = 0;
  uint64_t snapshot_end_lsn_ = 0;
  bool recovering_ = false;
  uint64_t replay_count_ = 0;
  Staged staged_;
  StoreStats stats_;
  std::vector<uint8_t> scratch_;
};

}  // namespace longlink::gateway::local
