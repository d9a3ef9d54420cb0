// The local backend's SEND path, on the sender's shard (the origin) and on recipient shards:
//
//   OnSend: idempotency check -> id -> [group: GroupLookupCall to the group's owner -> OnMembers]
//   StoreOrigin: one record for the recipients on this shard (+ names of the others)
//   -- durable (group_commit.cc) --> PostDelivers: one DeliverCall per other shard with recipients
//   OnDeliver (recipient shard): one record for its users -- durable --> index, push, DoneCall
//   every DoneCall in --> Finish: SEND_ACK, COMPLETE record, push to the sender's devices
//
// and the re-drive at start of origin records that a crash left unfinished.
#include <algorithm>

#include "core/clock.h"
#include "gateway/backend/local/local_backend.h"

namespace longlink::gateway::local {
namespace {

namespace proto = longlink::protocol;

constexpr uint32_t kDeliverChunk = 1024;  // users per DELIVER (and per recipient record)

}  // namespace

void LocalBackend::OnSend(const Session& s, uint32_t request_id, const proto::SendBody& body) {
  IdemKey key{s.user_id, s.device_id, body.client_msg_id};
  if (const IdemValue* v = store_.FindIdem(key)) {
    stats_.duplicate_sends_total.Inc();
    auto it = inflight_.find(v->server_msg_id);
    if (it != inflight_.end()) {
      const Inflight& f = it->second;
      // Stuck behind a failed log (this shard's, or a recipient shard's holding its DELIVER): answer the
      // retry now instead of holding it; it is answered for real once it is stored everywhere.
      if (Stuck(f)) {
        SendAck(s.conn, request_id, body.client_msg_id, static_cast<uint16_t>(proto::SendStatus::kUnavailable), 0,
                core::UnixMillis());
        return;
      }
      it->second.waiters.push_back(Waiter{s.conn, request_id});
    } else {
      SendAck(s.conn, request_id, body.client_msg_id, 0, v->server_msg_id, v->server_time_ms);
    }
    return;
  }
  if (failed_ || draining_) {
    SendAck(s.conn, request_id, body.client_msg_id, static_cast<uint16_t>(proto::SendStatus::kUnavailable), 0,
            core::UnixMillis());
    return;
  }
  // New messages only: a retry answered above costs nothing to store.
  if (!Allow(FindDevice(s), &DeviceRate::sends, opts_.max_sends_per_second)) {
    SendAck(s.conn, request_id, body.client_msg_id, static_cast<uint16_t>(proto::SendStatus::kRateLimited), 0,
            core::UnixMillis());
    return;
  }
  bool group = body.target_kind == static_cast<uint8_t>(proto::TargetKind::kGroup);
  if (body.target_id == 0 || (!group && body.target_kind != static_cast<uint8_t>(proto::TargetKind::kUser))) {
    SendAck(s.conn, request_id, body.client_msg_id, static_cast<uint16_t>(proto::SendStatus::kNoSuchTarget), 0,
            core::UnixMillis());
    return;
  }
  if (!group && Unavailable(body.target_id)) {
    SendAck(s.conn, request_id, body.client_msg_id, static_cast<uint16_t>(proto::SendStatus::kUnavailable), 0,
            core::UnixMillis());
    return;
  }
  stats_.sends_total.Inc();
  uint64_t id = NewId();
  Inflight& f = inflight_[id];
  f.key = key;
  f.time_ms = core::UnixMillis();
  f.start_ns = core::MonoNanos();
  f.conv_kind = body.target_kind;
  f.target = body.target_id;
  f.waiters.push_back(Waiter{s.conn, request_id});
  if (group) {
    f.pending.assign(body.payload.begin(), body.payload.end());
    store_.PutIdem(key, IdemValue{id, f.time_ms, store_.log().active_segment()});
    port_->Call(Owner(body.target_id), GroupLookupCall{body.target_id, s.user_id, id});
    return;
  }
  MsgHeader h = Header(f, id);
  uint64_t local[2];
  size_t nlocal = 0;
  std::vector<uint64_t> remote;
  local[nlocal++] = s.user_id;
  if (body.target_id != s.user_id) {
    if (Owner(body.target_id) == self_) {
      local[nlocal++] = body.target_id;
    } else {
      remote.push_back(body.target_id);
    }
  }
  StoreOrigin(id, f, h, body.payload, std::span<const uint64_t>(local, nlocal), std::move(remote), true);
}

MsgHeader LocalBackend::Header(const Inflight& f, uint64_t id) const {
  MsgHeader h;
  h.server_msg_id = id;
  h.from_user = f.key.user;
  h.from_device = f.key.device;
  h.conv_kind = f.conv_kind;
  h.target_id = f.target;
  h.client_msg_id = f.key.client_msg_id;
  h.server_time_ms = f.time_ms;
  return h;
}

// Appends the origin record: inbox slots for `local` users, seq-0 slots naming `remote` users (not for
// groups, whose members are looked up again on a re-drive).
void LocalBackend::StoreOrigin(uint64_t id, Inflight& f, const MsgHeader& hdr, std::span<const uint8_t> payload,
                               std::span<const uint64_t> local, std::vector<uint64_t> remote, bool record_remote) {
  slots_.clear();
  for (uint64_t u : local) slots_.push_back(InboxSlot{u, store_.AssignSeq(u)});
  if (record_remote) {
    for (uint64_t u : remote) slots_.push_back(InboxSlot{u, 0});
  }
  MsgHeader h = hdr;
  h.flags = kMsgOrigin;
  h.origin_shard = static_cast<uint16_t>(self_);
  Appended a = store_.AppendMsg(h, payload, slots_);
  uint32_t size = static_cast<uint32_t>(a.end - a.lsn);
  if (f.key.user != 0) store_.PutIdem(f.key, IdemValue{id, f.time_ms, a.pos.segment});
  store_.AddPending(id, a.pos, size);
  f.remote = std::move(remote);
  f.stored = true;
  actions_.push_back(Action{a.end, a.lsn, size, a.pos, kActOrigin, 0, id});
  stats_.records_total.Inc();
  stats_.inbox_entries_total.Inc(local.size());
}

// Indexes a durable record's inbox entries (in log order, so every inbox stays contiguous) and pushes
// them to online devices, now or (index only) later with Push.
size_t LocalBackend::IndexAndPush(const MsgView& m, LogPos pos, bool push_now) {
  uint32_t prefix = MsgPrefixSize(static_cast<uint32_t>(m.payload.size()));
  for (uint32_t i = 0; i < m.slot_count; ++i) {
    InboxSlot s = m.slot(i);
    if (s.seq != 0) store_.IndexDurable(s.user, s.seq, pos, prefix, m.h.server_time_ms);
  }
  return push_now ? Push(m) : m.slot_count;
}

size_t LocalBackend::Push(const MsgView& m) {
  proto::PushBody push;
  push.server_msg_id = m.h.server_msg_id;
  push.from_user = m.h.from_user;
  push.from_device = m.h.from_device;
  push.conv_kind = m.h.conv_kind;
  push.client_msg_id = m.h.client_msg_id;
  push.server_time_ms = m.h.server_time_ms;
  push.payload = m.payload;
  size_t n = 0;
  bool pushed = false;
  for (uint32_t i = 0; i < m.slot_count; ++i) {
    InboxSlot s = m.slot(i);
    if (s.seq == 0) continue;
    ++n;
    if (!sessions_.contains(s.user)) continue;
    push.seq = s.seq;
    push.conv_id = ConvId(m.h, s.user);
    port_->PushToUser(s.user, 0, Encode(0, push));
    stats_.pushes_total.Inc();
    pushed = true;
  }
  if (pushed) port_->ObservePushDelay(m.h.server_time_ms);
  return n;
}

uint64_t LocalBackend::ConvId(const MsgHeader& h, uint64_t inbox_owner) {
  if (h.conv_kind == static_cast<uint8_t>(proto::TargetKind::kGroup)) return h.target_id;
  return inbox_owner == h.from_user ? h.target_id : h.from_user;
}

// Calls DELIVER for a message whose origin record is durable: per shard, in chunks.
void LocalBackend::PostDelivers(uint64_t id, Inflight& f, const MsgView& m) {
  if (f.remote.empty()) return;
  std::vector<uint64_t>& r = f.remote;
  std::sort(r.begin(), r.end(), [this](uint64_t a, uint64_t b) {
    uint32_t sa = Owner(a), sb = Owner(b);
    return sa != sb ? sa < sb : a < b;
  });
  r.erase(std::unique(r.begin(), r.end()), r.end());
  size_t i = 0;
  while (i < r.size()) {
    uint32_t shard = Owner(r[i]);
    auto* p = new DeliverPayload();
    p->h = m.h;
    p->payload.assign(m.payload.begin(), m.payload.end());
    while (i < r.size() && Owner(r[i]) == shard && p->users.size() < kDeliverChunk) p->users.push_back(r[i++]);
    ++f.remaining;
    port_->Call(shard, DeliverCall{id}, p);
  }
  std::vector<uint64_t>().swap(f.remote);
}

void LocalBackend::Finish(uint64_t id) {
  auto it = inflight_.find(id);
  if (it == inflight_.end()) return;
  Inflight& f = it->second;
  store_.Complete(id);
  for (const Waiter& w : f.waiters) {
    SendAck(w.conn, w.request_id, f.key.client_msg_id, static_cast<uint16_t>(proto::SendStatus::kOk), id,
            f.time_ms);
  }
  if (f.start_ns != 0) port_->ObserveBackendLatency(static_cast<double>(core::MonoNanos() - f.start_ns) * 1e-9);
  if (f.admin_done) std::move(f.admin_done)(AdminResult::Ok(), id);
  MsgView m;
  if (!f.redrive && !f.pending.empty() &&
      DecodeMsg(std::span<const uint8_t>(f.pending).subspan(kRecordHeaderSize), &m)) {
    Push(m);
  }
  bool redrive = f.redrive;
  inflight_.erase(it);
  if (redrive) stats_.redriven_total.Inc();
}

void LocalBackend::FailSend(uint64_t id, uint16_t status) {
  auto it = inflight_.find(id);
  if (it == inflight_.end()) return;
  Inflight& f = it->second;
  for (const Waiter& w : f.waiters) SendAck(w.conn, w.request_id, f.key.client_msg_id, status, 0, f.time_ms);
  if (f.key.user != 0) store_.EraseIdem(f.key);
  if (f.admin_done) {
    AdminResult r;
    switch (static_cast<proto::SendStatus>(status)) {
      case proto::SendStatus::kNoSuchTarget:
        r = {AdminCode::kNotFound, "no such group"};
        break;
      case proto::SendStatus::kRejected:
        r = {AdminCode::kRejected, "rejected"};
        break;
      default:
        r = {AdminCode::kUnavailable, "storage unavailable"};
        break;
    }
    std::move(f.admin_done)(std::move(r), 0);
  }
  inflight_.erase(it);
}

void LocalBackend::OnMembers(const GroupMembersCall& c, MembersPayload* p) {
  auto it = inflight_.find(c.server_msg_id);
  if (it == inflight_.end()) return;
  Inflight& f = it->second;
  if (f.redrive) {
    --redrive_outstanding_;
    MsgView m;
    if (p != nullptr && DecodeMsg(std::span<const uint8_t>(f.pending).subspan(kRecordHeaderSize), &m)) {
      for (uint64_t u : p->members) {
        if (Owner(u) != self_) f.remote.push_back(u);
      }
      PostDelivers(c.server_msg_id, f, m);
    }
    std::vector<uint8_t>().swap(f.pending);
    if (f.remaining == 0) Finish(c.server_msg_id);
    if (redrive_outstanding_ == 0) BroadcastRedriveDone();
    return;
  }
  if (c.status != 0) {
    FailSend(c.server_msg_id, c.status);
    return;
  }
  std::vector<uint64_t> local;
  std::vector<uint64_t> remote;
  bool unavailable = failed_;
  for (uint64_t u : p->members) {
    (Owner(u) == self_ ? local : remote).push_back(u);
    unavailable = unavailable || peer_failed_[Owner(u)];
  }
  if (unavailable) {
    FailSend(c.server_msg_id, static_cast<uint16_t>(proto::SendStatus::kUnavailable));
    return;
  }
  std::vector<uint8_t> payload = std::move(f.pending);
  f.pending.clear();
  StoreOrigin(c.server_msg_id, f, Header(f, c.server_msg_id), payload, local, std::move(remote), false);
}

void LocalBackend::OnDeliver(const ShardCall& call, const DeliverCall& d) {
  auto& p = call.payload<DeliverPayload>();
  uint64_t id = d.server_msg_id;
  if (store_.SeenForeign(id)) {
    stats_.redrive_duplicates_total.Inc();
    port_->Call(call.from(), DoneCall{id});
    return;
  }
  if (failed_) {
    // Held until the log works again (the origin has the message durably and waits for this shard); the
    // origin answers its sender UNAVAILABLE meanwhile and takes no new messages for this shard's users.
    deferred_.push_back(DeferredDeliver{call.from(), id, p.h, std::move(p.payload), std::move(p.users)});
    stats_.deferred_delivers.Set(static_cast<int64_t>(deferred_.size()));
    port_->Call(call.from(), DeliverDeferredCall{id});
    return;
  }
  StoreDeliver(call.from(), id, p.h, p.payload, p.users);
}

void LocalBackend::StoreDeliver(uint32_t from, uint64_t id, const MsgHeader& hdr, std::span<const uint8_t> payload,
                                std::span<const uint64_t> users) {
  slots_.clear();
  for (uint64_t u : users) slots_.push_back(InboxSlot{u, store_.AssignSeq(u)});
  MsgHeader h = hdr;
  h.flags = 0;
  Appended a = store_.AppendMsg(h, payload, slots_);
  actions_.push_back(Action{a.end, a.lsn, static_cast<uint32_t>(a.end - a.lsn), a.pos, kActForeign, from, id});
  stats_.records_total.Inc();
  stats_.inbox_entries_total.Inc(users.size());
}

bool LocalBackend::AnyPeerFailed() const {
  return std::find(peer_failed_.begin(), peer_failed_.end(), true) != peer_failed_.end();
}

bool LocalBackend::Stuck(const Inflight& f) const {
  if (failed_ && !f.durable) return true;
  for (uint16_t s : f.blocked_on) {
    if (peer_failed_[s]) return true;
  }
  return false;
}

void LocalBackend::OnDeliverDeferred(uint32_t from, const DeliverDeferredCall& c) {
  peer_failed_[from] = true;
  auto it = inflight_.find(c.server_msg_id);
  if (it == inflight_.end()) return;
  Inflight& f = it->second;
  if (std::find(f.blocked_on.begin(), f.blocked_on.end(), from) == f.blocked_on.end()) {
    f.blocked_on.push_back(static_cast<uint16_t>(from));
  }
  for (const Waiter& w : f.waiters) {
    SendAck(w.conn, w.request_id, f.key.client_msg_id, static_cast<uint16_t>(proto::SendStatus::kUnavailable), 0,
            f.time_ms);
  }
  f.waiters.clear();
  if (f.admin_done) std::move(f.admin_done)({AdminCode::kUnavailable, "a recipient's storage is unavailable"}, 0);
  f.admin_done = nullptr;
}

// ---- start: re-drive what a crash left unfinished ----

void LocalBackend::Redrive() {
  std::vector<std::pair<uint64_t, PendingOrigin>> todo(store_.pending().begin(), store_.pending().end());
  std::sort(todo.begin(), todo.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [id, po] : todo) {
    std::vector<uint8_t> rec;
    MsgView m;
    if (!store_.ReadRecord(po.pos, po.size, &rec) ||
        !DecodeMsg(std::span<const uint8_t>(rec).subspan(kRecordHeaderSize), &m)) {
      store_.Complete(id);  // unreadable: nothing to re-drive
      continue;
    }
    Inflight& f = inflight_[id];
    f.key = IdemKey{m.h.from_user, m.h.from_device, m.h.client_msg_id};
    f.time_ms = m.h.server_time_ms;
    f.conv_kind = m.h.conv_kind;
    f.target = m.h.target_id;
    f.redrive = true;
    f.stored = true;
    f.durable = true;  // read back from the log
    if (m.h.conv_kind == static_cast<uint8_t>(proto::TargetKind::kGroup)) {
      f.pending = std::move(rec);
      ++redrive_outstanding_;
      port_->Call(Owner(m.h.target_id), GroupLookupCall{m.h.target_id, 0, id});
      continue;
    }
    for (uint32_t i = 0; i < m.slot_count; ++i) {
      InboxSlot s = m.slot(i);
      if (s.seq == 0) f.remote.push_back(s.user);
    }
    PostDelivers(id, f, m);
    if (f.remaining == 0) Finish(id);
  }
  if (redrive_outstanding_ == 0) BroadcastRedriveDone();
}

void LocalBackend::BroadcastRedriveDone() {
  for (uint32_t s = 0; s < shards_; ++s) port_->Call(s, RedriveDoneCall{});
}

}  // namespace longlink::gateway::local
