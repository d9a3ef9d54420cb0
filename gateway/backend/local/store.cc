#include "gateway/backend/local/store.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "core/status.h"
#include "protocol/frame.h"

namespace longlink::gateway::local {

using protocol::GroupStatus;

size_t Inbox::UpperBound(uint64_t after) const {
  auto first = entries_.begin() + static_cast<ptrdiff_t>(head_);
  auto it = std::upper_bound(first, entries_.end(), after,
                             [](uint64_t v, const InboxEntry& e) { return v < e.seq; });
  return static_cast<size_t>(it - first);
}

void Inbox::PopFront() {
  ++head_;
  if (head_ == entries_.size()) {
    entries_.clear();
    head_ = 0;
    if (entries_.capacity() > 64) entries_.shrink_to_fit();
  } else if (head_ >= 64 && head_ * 2 >= entries_.size()) {
    entries_.erase(entries_.begin(), entries_.begin() + static_cast<ptrdiff_t>(head_));
    head_ = 0;
  }
}

absl::Status LocalStore::Open(const StoreOptions& opts) {
  opts_ = opts;
  recovering_ = true;
  SegmentLog::Options lo;
  lo.dir = opts.dir;
  lo.segment_bytes = opts.segment_bytes;
  absl::Status st = log_.Open(lo, [this](const RecordView& r) { Replay(r); });
  recovering_ = false;
  RETURN_IF_ERROR(st);
  staged_ = Staged{};
  // Entries below the last snapshot's floor were evicted or expired before that snapshot.
  for (const auto& [user, floor] : seq_floor_) {
    auto it = inboxes_.find(user);
    if (it == inboxes_.end()) continue;
    Inbox& in = it->second;
    while (!in.empty() && in.front().seq < floor) Evict(in, false);
  }
  absl::flat_hash_map<uint64_t, uint64_t>().swap(seq_floor_);
  absl::flat_hash_map<uint64_t, uint64_t>().swap(pending_order_);
  log_.SetRollHook([this] { WriteSnapshot(); });
  // A snapshot right away lets the segments before this run go as soon as their messages expire.
  WriteSnapshot();
  return absl::OkStatus();
}

void LocalStore::Ref(uint32_t segment, int64_t d) {
  int64_t& v = live_[segment];
  v += d;
}

uint64_t LocalStore::LiveRefs(uint32_t segment) const {
  auto it = live_.find(segment);
  return it == live_.end() ? 0 : static_cast<uint64_t>(std::max<int64_t>(0, it->second));
}

void LocalStore::Evict(Inbox& in, bool expired) {
  Ref(in.front().pos.segment, -1);
  in.PopFront();
  if (expired) {
    ++stats_.entries_expired;
  } else {
    ++stats_.entries_evicted;
  }
}

void LocalStore::Replay(const RecordView& r) {
  ++replay_count_;
  switch (r.type) {
    case kRecMsg: {
      MsgView m;
      if (DecodeMsg(r.body, &m)) ApplyMsg(m, r);
      return;
    }
    case kRecComplete: {
      uint64_t id;
      if (!Get(r.body, &id)) return;
      auto it = pending_.find(id);
      if (it != pending_.end()) {
        Ref(it->second.pos.segment, -1);
        pending_.erase(it);
      }
      return;
    }
    case kRecCursor: {
      CursorRec c;
      if (!Get(r.body, &c)) return;
      (staged_.active ? staged_.cursors : cursors_)[CursorKey{c.user, c.device}] = c.seq;
      return;
    }
    case kRecGroup: {
      GroupRec g;
      if (!Get(r.body, &g)) return;
      auto& groups = staged_.active ? staged_.groups : groups_;
      if (g.op == kGroupCreate) {
        auto& set = groups[g.group];
        if (g.user != 0) set.insert(g.user);
      } else if (g.op == kGroupAdd) {
        groups[g.group].insert(g.user);
      } else if (g.op == kGroupRemove) {
        auto it = groups.find(g.group);
        if (it != groups.end()) it->second.erase(g.user);
      }
      return;
    }
    case kRecSnapBegin:
      staged_ = Staged{};
      staged_.active = true;
      staged_.pending_mark = replay_count_;
      return;
    case kRecSnapSeq: {
      SeqRec s;
      if (staged_.active && Get(r.body, &s)) staged_.seqs[s.user] = s;
      return;
    }
    case kRecSnapPending: {
      uint64_t id;
      if (staged_.active && Get(r.body, &id)) staged_.pending.insert(id);
      return;
    }
    case kRecSnapEnd: {
      if (!staged_.active) return;
      cursors_ = std::move(staged_.cursors);
      groups_ = std::move(staged_.groups);
      for (const auto& [user, s] : staged_.seqs) {
        auto [it, inserted] = inboxes_.try_emplace(user);
        if (inserted) sweep_order_.push_back(user);
        it->second.next_seq_ = std::max(it->second.next_seq_, s.next_seq);
        seq_floor_[user] = s.first_seq;
      }
      // Unfinished messages written before the snapshot and not listed in it were finished then.
      std::vector<uint64_t> done;
      for (const auto& [id, p] : pending_) {
        auto o = pending_order_.find(id);
        if (o != pending_order_.end() && o->second < staged_.pending_mark && !staged_.pending.contains(id)) {
          done.push_back(id);
        }
      }
      for (uint64_t id : done) {
        Ref(pending_[id].pos.segment, -1);
        pending_.erase(id);
      }
      snapshot_segment_ = r.pos.segment;
      staged_ = Staged{};
      return;
    }
    default:
      return;
  }
}

void LocalStore::ApplyMsg(const MsgView& m, const RecordView& r) {
  uint32_t prefix = MsgPrefixSize(static_cast<uint32_t>(m.payload.size()));
  uint32_t time_s = static_cast<uint32_t>(m.h.server_time_ms / 1000);
  for (uint32_t i = 0; i < m.slot_count; ++i) {
    InboxSlot s = m.slot(i);
    if (s.seq == 0) continue;  // a recipient on another shard
    auto [it, inserted] = inboxes_.try_emplace(s.user);
    if (inserted) sweep_order_.push_back(s.user);
    Inbox& in = it->second;
    in.next_seq_ = std::max(in.next_seq_, s.seq + 1);
    if (s.seq > in.durable_seq_) {
      in.Push(InboxEntry{s.seq, r.pos, prefix, time_s});
      in.durable_seq_ = s.seq;
      Ref(r.pos.segment, 1);
      while (in.size() > opts_.max_inbox) Evict(in, false);
    }
  }
  if (m.h.flags & kMsgOrigin) {
    if (m.h.from_user != 0) {
      PutIdem(IdemKey{m.h.from_user, m.h.from_device, m.h.client_msg_id},
              IdemValue{m.h.server_msg_id, m.h.server_time_ms, r.pos.segment});
    }
    pending_[m.h.server_msg_id] = PendingOrigin{r.pos, static_cast<uint32_t>(kRecordHeaderSize + r.body.size())};
    pending_order_[m.h.server_msg_id] = replay_count_;
    Ref(r.pos.segment, 1);
  } else {
    foreign_.insert(m.h.server_msg_id);
  }
}

uint64_t LocalStore::AssignSeq(uint64_t user) {
  auto [it, inserted] = inboxes_.try_emplace(user);
  if (inserted) sweep_order_.push_back(user);
  return it->second.next_seq_++;
}

Appended LocalStore::AppendMsg(const MsgHeader& h, std::span<const uint8_t> payload,
                               std::span<const InboxSlot> slots) {
  EncodeMsg(h, payload, slots, &scratch_);
  return log_.Append(kRecMsg, scratch_);
}

void LocalStore::IndexDurable(uint64_t user, uint64_t seq, LogPos pos, uint32_t prefix_size, uint64_t time_ms) {
  auto [it, inserted] = inboxes_.try_emplace(user);
  if (inserted) sweep_order_.push_back(user);
  Inbox& in = it->second;
  if (seq <= in.durable_seq_) return;
  in.Push(InboxEntry{seq, pos, prefix_size, static_cast<uint32_t>(time_ms / 1000)});
  in.durable_seq_ = seq;
  Ref(pos.segment, 1);
  while (in.size() > opts_.max_inbox) Evict(in, false);
}

const Inbox* LocalStore::FindInbox(uint64_t user) const {
  auto it = inboxes_.find(user);
  return it == inboxes_.end() ? nullptr : &it->second;
}

bool LocalStore::ReadMessage(const InboxEntry& e, std::vector<uint8_t>* buf, MsgView* out) const {
  if (e.size < kRecordHeaderSize) return false;
  buf->resize(e.size);
  if (!log_.ReadAt(e.pos, e.size, buf->data())) return false;
  return DecodeMsg(std::span<const uint8_t>(buf->data() + kRecordHeaderSize, e.size - kRecordHeaderSize), out, true);
}

bool LocalStore::ReadRecord(LogPos pos, uint32_t size, std::vector<uint8_t>* buf) const {
  buf->resize(size);
  return log_.ReadAt(pos, size, buf->data());
}

namespace {
// Generation tables, by slot count: a swiss table of 2^k - 1 slots takes 7/8 of them before it would grow,
// so a generation is sized to exactly that and filled to it (no rehash, no half-empty table). They double
// up to 2^20 - 1 slots (917,504 entries, about 50 MB): a SEND looks in every live generation, so at a
// sustained 50,000 SENDs/s a 5-minute window is about 24 generations rather than the 120 that 131,072-entry
// ones would make. A new table costs one allocation and a 1 MB fill of its control bytes.
constexpr size_t kIdemFirstSlots = (size_t{1} << 12) - 1;
constexpr size_t kIdemMaxSlots = (size_t{1} << 20) - 1;
constexpr size_t FillLimit(size_t slots) { return slots - slots / 8; }
}  // namespace

const IdemValue* LocalStore::FindIdem(const IdemKey& k) const {
  for (auto g = idem_.rbegin(); g != idem_.rend(); ++g) {
    auto it = g->map.find(k);
    if (it != g->map.end()) return &it->second;
  }
  return nullptr;
}

void LocalStore::PutIdem(const IdemKey& k, const IdemValue& v) {
  if (idem_.empty() || idem_.back().map.size() >= FillLimit(idem_.back().slots)) {
    size_t slots = idem_.empty() ? kIdemFirstSlots : std::min(kIdemMaxSlots, idem_.back().slots * 2 + 1);
    idem_.emplace_back();
    idem_.back().slots = slots;
    idem_.back().map.reserve(FillLimit(slots));
  }
  IdemGeneration& g = idem_.back();
  g.map[k] = v;
  g.newest_ms = std::max(g.newest_ms, v.server_time_ms);
}

void LocalStore::EraseIdem(const IdemKey& k) {
  for (IdemGeneration& g : idem_) g.map.erase(k);
}

size_t LocalStore::idem_size() const {
  size_t n = 0;
  for (const IdemGeneration& g : idem_) n += g.map.size();
  return n;
}

size_t LocalStore::RetireIdem(uint64_t now_ms) {
  size_t n = 0;
  // The newest generation stays while it takes entries, however old they are.
  while (idem_.size() > 1 && idem_.front().newest_ms + opts_.idempotency_window_ms < now_ms) {
    idem_.pop_front();
    ++n;
  }
  return n;
}

void LocalStore::AddPending(uint64_t server_msg_id, LogPos pos, uint32_t size) {
  pending_[server_msg_id] = PendingOrigin{pos, size};
  Ref(pos.segment, 1);
}

void LocalStore::Complete(uint64_t server_msg_id) {
  auto it = pending_.find(server_msg_id);
  if (it == pending_.end()) return;
  Ref(it->second.pos.segment, -1);
  pending_.erase(it);
  uint8_t b[8];
  Put(server_msg_id, b);
  log_.Append(kRecComplete, b);
}

void LocalStore::SetCursor(uint64_t user, uint32_t device, uint64_t seq) {
  CursorKey k{user, device};
  uint64_t& c = cursors_[k];
  if (seq <= c) return;
  c = seq;
  if (dirty_set_.insert(k).second) dirty_cursors_.push_back(k);
}

uint64_t LocalStore::Cursor(uint64_t user, uint32_t device) const {
  auto it = cursors_.find(CursorKey{user, device});
  return it == cursors_.end() ? 0 : it->second;
}

size_t LocalStore::FlushCursors(size_t max) {
  size_t n = 0;
  uint8_t b[32];
  while (n < max && !dirty_cursors_.empty()) {
    CursorKey k = dirty_cursors_.back();
    dirty_cursors_.pop_back();
    dirty_set_.erase(k);
    size_t len = Put(CursorRec{k.user, k.device, Cursor(k.user, k.device)}, b);
    log_.Append(kRecCursor, std::span<const uint8_t>(b, len));
    ++n;
  }
  return n;
}

void LocalStore::AppendGroup(uint64_t group, uint8_t op, uint64_t user) {
  uint8_t b[32];
  size_t len = Put(GroupRec{group, op, user}, b);
  log_.Append(kRecGroup, std::span<const uint8_t>(b, len));
}

uint16_t LocalStore::CreateGroup(uint64_t group, uint64_t creator) {
  if (group == 0) return static_cast<uint16_t>(GroupStatus::kBadRequest);
  auto [it, inserted] = groups_.try_emplace(group);
  if (!inserted) return static_cast<uint16_t>(GroupStatus::kAlreadyExists);
  if (creator != 0) it->second.insert(creator);
  AppendGroup(group, kGroupCreate, creator);
  return static_cast<uint16_t>(GroupStatus::kOk);
}

uint16_t LocalStore::AddMember(uint64_t group, uint64_t user) {
  auto it = groups_.find(group);
  if (it == groups_.end()) return static_cast<uint16_t>(GroupStatus::kNoSuchGroup);
  if (user == 0) return static_cast<uint16_t>(GroupStatus::kBadRequest);
  if (it->second.insert(user).second) AppendGroup(group, kGroupAdd, user);
  return static_cast<uint16_t>(GroupStatus::kOk);
}

uint16_t LocalStore::RemoveMember(uint64_t group, uint64_t user) {
  auto it = groups_.find(group);
  if (it == groups_.end()) return static_cast<uint16_t>(GroupStatus::kNoSuchGroup);
  if (it->second.erase(user) == 0) return static_cast<uint16_t>(GroupStatus::kNotMember);
  AppendGroup(group, kGroupRemove, user);
  return static_cast<uint16_t>(GroupStatus::kOk);
}

const absl::btree_set<uint64_t>* LocalStore::Members(uint64_t group) const {
  auto it = groups_.find(group);
  return it == groups_.end() ? nullptr : &it->second;
}

void LocalStore::Sweep(uint64_t now_ms, size_t budget) {
  if (sweep_order_.empty() || now_ms <= opts_.retention_ms) return;
  uint64_t cutoff_s = (now_ms - opts_.retention_ms) / 1000;
  for (size_t i = 0; i < budget && i < sweep_order_.size(); ++i) {
    if (sweep_pos_ >= sweep_order_.size()) sweep_pos_ = 0;
    auto it = inboxes_.find(sweep_order_[sweep_pos_++]);
    if (it == inboxes_.end()) continue;
    Inbox& in = it->second;
    while (!in.empty() && in.front().time_s < cutoff_s) Evict(in, true);
  }
}

size_t LocalStore::Compact() {
  if (log_.durable_lsn() < snapshot_end_lsn_) return 0;
  absl::flat_hash_set<uint32_t> deleted;
  for (uint32_t seg : log_.Segments()) {
    if (seg >= snapshot_segment_ || seg == log_.active_segment()) break;
    if (LiveRefs(seg) != 0) continue;
    if (!log_.DeleteSegment(seg).ok()) continue;
    live_.erase(seg);
    deleted.insert(seg);
    ++stats_.segments_deleted;
  }
  if (!deleted.empty()) {
    // The idempotency window ends with the origin record's segment.
    for (IdemGeneration& g : idem_) {
      absl::erase_if(g.map, [&](const auto& kv) { return deleted.contains(kv.second.segment); });
    }
  }
  return deleted.size();
}

void LocalStore::WriteSnapshot() {
  uint8_t b[32];
  size_t n = Put(static_cast<uint64_t>(0), b);
  log_.Append(kRecSnapBegin, std::span<const uint8_t>(b, n));
  for (const auto& [user, in] : inboxes_) {
    uint64_t first = in.empty() ? in.durable_seq_ + 1 : in.front().seq;
    n = Put(SeqRec{user, in.next_seq_, first}, b);
    log_.Append(kRecSnapSeq, std::span<const uint8_t>(b, n));
  }
  for (const auto& [id, p] : pending_) {
    n = Put(id, b);
    log_.Append(kRecSnapPending, std::span<const uint8_t>(b, n));
  }
  for (const auto& [k, seq] : cursors_) {
    n = Put(CursorRec{k.user, k.device, seq}, b);
    log_.Append(kRecCursor, std::span<const uint8_t>(b, n));
  }
  for (const auto& [g, members] : groups_) {
    n = Put(GroupRec{g, kGroupCreate, 0}, b);
    log_.Append(kRecGroup, std::span<const uint8_t>(b, n));
    for (uint64_t m : members) {
      n = Put(GroupRec{g, kGroupAdd, m}, b);
      log_.Append(kRecGroup, std::span<const uint8_t>(b, n));
    }
  }
  log_.Append(kRecSnapEnd, {});
  snapshot_segment_ = log_.active_segment();
  snapshot_end_lsn_ = log_.appended_lsn();
  ++stats_.snapshots;
}

}  // namespace longlink::gateway::local
