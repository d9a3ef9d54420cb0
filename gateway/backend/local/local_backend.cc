// The local backend: the factory, and one shard's sessions, SYNC, cursors, tick, drain and statistics.
// The SEND path is in send_pipeline.cc, durability in group_commit.cc.
#include "gateway/backend/local/local_backend.h"

#include <algorithm>
#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "core/clock.h"
#include "core/status.h"
#include "gateway/backend/local/admin_ops.h"

namespace longlink::gateway::local {
namespace {

namespace proto = longlink::protocol;

constexpr uint32_t kSyncMax = 256;  // PUSH frames per SYNC answer
constexpr size_t kCursorFlushPerTick = 4096;
constexpr uint64_t kIdCounterMask = (uint64_t{1} << 40) - 1;
constexpr uint64_t kProbeIntervalMs = 1000;  // how often a failed log is written again

uint32_t Cores() { return std::max(1u, std::thread::hardware_concurrency()); }

}  // namespace

// ---- factory ----

LocalFactory::LocalFactory(LocalOptions options)
    : options_(std::move(options)),
      sync_pacer_(static_cast<uint64_t>(options_.fsync_interval_us) * 1000 / Cores(), Cores()) {}

LocalFactory::~LocalFactory() = default;

absl::Status LocalFactory::Open(ShardRunner* runner) {
  absl::StatusOr<std::unique_ptr<DataDir>> dir = DataDir::Open(options_.data_dir, options_.shards);
  if (!dir.ok()) return dir.status();
  dir_ = std::move(*dir);
  if (runner != nullptr) admin_ = std::make_unique<LocalAdminOps>(runner);
  return absl::OkStatus();
}

std::string LocalFactory::Describe() const {
  return absl::StrCat("data-dir=", options_.data_dir, " fsync=", FsyncPolicyName(options_.fsync), " epoch=",
                      dir_ != nullptr ? dir_->epoch() : 0);
}

AdminOps* LocalFactory::admin_ops() { return admin_.get(); }

std::unique_ptr<Backend> LocalFactory::ForShard(GatewayPort* port) {
  return std::make_unique<LocalBackend>(this, port);
}

// ---- the per-shard backend ----

LocalBackend::LocalBackend(LocalFactory* factory, GatewayPort* port)
    : factory_(factory), port_(port), opts_(factory->options()) {}
LocalBackend::~LocalBackend() = default;

uint64_t LocalBackend::NewId() {
  return (static_cast<uint64_t>(factory_->epoch()) << 48) | (static_cast<uint64_t>(self_) << 40) |
         (++counter_ & kIdCounterMask);
}

void LocalBackend::SendAck(const ConnRef& conn, uint32_t request_id, uint64_t cmid, uint16_t status, uint64_t id,
                           uint64_t time_ms) {
  proto::SendAckBody ack;
  ack.status = status;
  ack.client_msg_id = cmid;
  ack.server_msg_id = id;
  ack.server_time_ms = time_ms;
  port_->SendTo(conn, Encode(request_id, ack));
}

void LocalBackend::Fail(const absl::Status& st) {
  stats_.storage_errors_total.Inc();
  if (failed_) return;
  failed_ = true;
  ready_.store(false, std::memory_order_relaxed);
  stats_.storage_failed.Set(1);
  failed_since_ms_ = last_failure_log_ms_ = core::MonoMillis();
  next_probe_ms_ = failed_since_ms_ + kProbeIntervalMs;
  std::fprintf(stderr,
               "longlink-gateway: shard %u: STORAGE FAILED: %s; new messages are refused with UNAVAILABLE (clients "
               "retry) and the shard is not ready; writing again every %lu ms\n",
               self_, std::string(st.message()).c_str(), static_cast<unsigned long>(kProbeIntervalMs));
  // Everything still waiting on this log is answered now: UNAVAILABLE, never an acknowledgement of what may
  // not be stored. What was appended stays in memory and is written when the log works again, so a retry
  // with the same client_msg_id then finds it (and is answered, not stored twice).
  for (auto& [id, f] : inflight_) {
    if (f.durable) continue;
    for (const Waiter& w : f.waiters) {
      SendAck(w.conn, w.request_id, f.key.client_msg_id, static_cast<uint16_t>(proto::SendStatus::kUnavailable), 0,
              f.time_ms);
    }
    f.waiters.clear();
    if (f.admin_done) std::move(f.admin_done)({AdminCode::kUnavailable, "storage unavailable"}, 0);
    f.admin_done = nullptr;
  }
  // Origins waiting for this shard to store their DELIVERs answer their senders now too.
  for (const Action& a : actions_) {
    if (a.kind == kActForeign) port_->Call(a.origin, DeliverDeferredCall{a.id});
  }
  for (uint32_t s = 0; s < shards_; ++s) {
    if (s != self_) port_->Call(s, StorageFailedCall{});
  }
  for (GroupReply& r : group_replies_) {
    if (r.answered) continue;
    r.answered = true;
    uint16_t unavailable = static_cast<uint16_t>(proto::GroupStatus::kUnavailable);
    if (r.admin_done) {
      std::move(r.admin_done)(unavailable);
      r.admin_done = nullptr;
    } else {
      ReplyGroup(r.user, r.device, r.request_id, r.group, unavailable, {}, false);
    }
  }
}

void LocalBackend::Probe(uint64_t now_ms) {
  absl::Status st = store_.log().Recover();
  if (!st.ok()) {
    stats_.storage_errors_total.Inc();
    next_probe_ms_ = now_ms + kProbeIntervalMs;
    if (now_ms - last_failure_log_ms_ >= 30000) {
      last_failure_log_ms_ = now_ms;
      std::fprintf(stderr, "longlink-gateway: shard %u: storage still failing after %lu s: %s\n", self_,
                   static_cast<unsigned long>((now_ms - failed_since_ms_) / 1000), std::string(st.message()).c_str());
    }
    return;
  }
  failed_ = false;
  ready_.store(true, std::memory_order_relaxed);
  stats_.storage_failed.Set(0);
  stats_.storage_recoveries_total.Inc();
  std::fprintf(stderr, "longlink-gateway: shard %u: storage recovered after %.1f s; taking new messages again\n",
               self_, static_cast<double>(now_ms - failed_since_ms_) / 1000.0);
  for (uint32_t s = 0; s < shards_; ++s) {
    if (s != self_) port_->Call(s, StorageRecoveredCall{});
  }
  std::vector<DeferredDeliver> held;
  held.swap(deferred_);
  for (DeferredDeliver& d : held) StoreDeliver(d.from, d.id, d.h, d.payload, d.users);
  stats_.deferred_delivers.Set(0);
}

absl::Status LocalBackend::Start() {
  self_ = port_->shard_id();
  shards_ = port_->shard_count();
  peer_failed_.assign(shards_, false);
  StoreOptions so;
  so.dir = absl::StrCat(opts_.data_dir, "/shard-", self_);
  so.segment_bytes = opts_.segment_bytes;
  so.retention_ms = opts_.retention_ms;
  so.idempotency_window_ms = opts_.idempotency_window_ms;
  so.max_inbox = opts_.max_inbox;
  absl::Status st = store_.Open(so);
  if (!st.ok()) {
    if (st.code() == absl::StatusCode::kFailedPrecondition || st.code() == absl::StatusCode::kPermissionDenied) {
      return absl::InvalidArgumentError(absl::StrCat("--data-dir: ", st.message()));
    }
    return st;
  }
  // The snapshot Open wrote must be on disk before anything is acknowledged on top of it.
  st = store_.log().Write();
  if (st.ok()) st = store_.log().SyncNow();
  RefreshStats();
  return st;
}

LoginVerdict LocalBackend::OnLogin(const Session& s) {
  auto& devs = sessions_[s.user_id];
  devs.push_back(DeviceSession{s.device_id, s.platform, s.conn, core::UnixMillis()});
  if (devs.size() == 1) PresenceChanged(s.user_id, true);
  return LoginVerdict::kAllow;
}

LocalBackend::DeviceSession* LocalBackend::FindDevice(const Session& s) {
  auto it = sessions_.find(s.user_id);
  if (it == sessions_.end()) return nullptr;
  for (DeviceSession& d : it->second) {
    if (d.conn.id == s.conn.id && d.conn.gen == s.conn.gen) return &d;
  }
  return nullptr;
}

bool LocalBackend::Allow(DeviceSession* d, uint32_t DeviceRate::*counter, uint32_t limit) {
  if (d == nullptr || d->rate.Allow(counter, limit, core::MonoMillis())) return true;
  stats_.limited_total.Inc();
  return false;
}

void LocalBackend::OnDisconnect(const Session& s) {
  auto it = sessions_.find(s.user_id);
  if (it == sessions_.end()) return;
  auto& devs = it->second;
  for (size_t i = 0; i < devs.size(); ++i) {
    if (devs[i].conn.id == s.conn.id && devs[i].conn.gen == s.conn.gen) {
      DropSubscriptions(s.user_id, devs[i]);
      devs.erase(devs.begin() + static_cast<ptrdiff_t>(i));
      break;
    }
  }
  if (devs.empty()) {
    sessions_.erase(it);
    // Decided at the end of the round: a device replacing itself (same device logs in again) is not a
    // presence change.
    maybe_offline_.push_back(s.user_id);
  }
}

void LocalBackend::OnSync(const Session& s, uint32_t request_id, const protocol::SyncBody& body) {
  stats_.syncs_total.Inc();
  const Inbox* in = store_.FindInbox(s.user_id);
  uint32_t limit = body.limit == 0 ? kSyncMax : std::min(body.limit, kSyncMax);
  size_t byte_budget = std::max<size_t>(opts_.max_pending_bytes / 2, 64 * 1024);
  proto::SyncDoneBody done;
  if (in != nullptr) {
    size_t i = in->UpperBound(body.after_seq);
    uint32_t sent = 0;
    size_t bytes = 0;
    uint64_t last = 0;
    proto::PushBody push;
    while (i < in->size() && sent < limit && bytes < byte_budget) {
      const InboxEntry& e = in->at(i);
      MsgView mv;
      if (!store_.ReadMessage(e, &read_buf_, &mv)) break;
      push.seq = e.seq;
      push.server_msg_id = mv.h.server_msg_id;
      push.from_user = mv.h.from_user;
      push.from_device = mv.h.from_device;
      push.conv_kind = mv.h.conv_kind;
      push.conv_id = ConvId(mv.h, s.user_id);
      push.client_msg_id = mv.h.client_msg_id;
      push.server_time_ms = mv.h.server_time_ms;
      push.payload = mv.payload;
      std::span<const uint8_t> f = Encode(0, push);
      if (!port_->SendTo(s.conn, f)) break;
      bytes += f.size();
      last = e.seq;
      ++sent;
      ++i;
    }
    stats_.sync_pushes_total.Inc(sent);
    done.max_seq = sent != 0 ? last : in->durable_seq();
    done.has_more = i < in->size() ? 1 : 0;
  }
  port_->SendTo(s.conn, Encode(request_id, done));
}

void LocalBackend::OnPushAck(const Session& s, const protocol::PushAckBody& body) {
  const Inbox* in = store_.FindInbox(s.user_id);
  if (in == nullptr) return;
  // Written to the log in the background (a few thousand cursors per tick), never on the ack path.
  store_.SetCursor(s.user_id, s.device_id, std::min(body.seq, in->durable_seq()));
}

Backend::FrameVerdict LocalBackend::OnFrame(const Session& s, const protocol::Header& h,
                                            std::span<const uint8_t> body) {
  switch (static_cast<proto::Opcode>(h.opcode)) {
    case proto::Opcode::kGroupCreate:
    case proto::Opcode::kGroupJoin:
    case proto::Opcode::kGroupLeave:
    case proto::Opcode::kGroupMembers:
      return OnGroupFrame(s, h, body);
    case proto::Opcode::kPresenceSubscribe:
      return OnPresenceSubscribe(s, h, body);
    default:
      return FrameVerdict::kNotMine;
  }
}

void LocalBackend::OnShardCall(const ShardCall& call) {
  bool known = DispatchCall<DeliverCall, DoneCall, GroupLookupCall, GroupMembersCall, GroupOpCall,
                            GroupMembersPageCall, PresenceCall, RedriveDoneCall, DeliverDeferredCall,
                            StorageRecoveredCall, StorageFailedCall>(call, [&](const auto& m) {
    using M = std::decay_t<decltype(m)>;
    if constexpr (std::is_same_v<M, DeliverCall>) {
      OnDeliver(call, m);
    } else if constexpr (std::is_same_v<M, DoneCall>) {
      auto it = inflight_.find(m.server_msg_id);
      if (it != inflight_.end() && it->second.remaining > 0 && --it->second.remaining == 0) Finish(m.server_msg_id);
    } else if constexpr (std::is_same_v<M, GroupLookupCall>) {
      OnLookup(call.from(), m);
    } else if constexpr (std::is_same_v<M, GroupMembersCall>) {
      OnMembers(m, m.status == 0 ? &call.payload<MembersPayload>() : nullptr);
    } else if constexpr (std::is_same_v<M, GroupOpCall>) {
      OnGroupOp(m);
    } else if constexpr (std::is_same_v<M, GroupMembersPageCall>) {
      OnMembersPage(m);
    } else if constexpr (std::is_same_v<M, PresenceCall>) {
      OnPresence(m);
    } else if constexpr (std::is_same_v<M, RedriveDoneCall>) {
      if (++redrive_done_seen_ == shards_) store_.ForgetForeign();
    } else if constexpr (std::is_same_v<M, DeliverDeferredCall>) {
      OnDeliverDeferred(call.from(), m);
    } else if constexpr (std::is_same_v<M, StorageRecoveredCall>) {
      peer_failed_[call.from()] = false;
    } else if constexpr (std::is_same_v<M, StorageFailedCall>) {
      peer_failed_[call.from()] = true;
    }
  });
  (void)known;
}

void LocalBackend::OnTick(uint64_t now_ms) {
  if (!started_) {
    started_ = true;
    Redrive();
  }
  if (!maybe_offline_.empty()) {
    for (uint64_t u : maybe_offline_) {
      if (!sessions_.contains(u)) PresenceChanged(u, false);
    }
    maybe_offline_.clear();
  }
  if (failed_ && now_ms >= next_probe_ms_) Probe(now_ms);
  // Cursor records wait while the log is failed (they are kept in memory and written later).
  if (!failed_) store_.FlushCursors(kCursorFlushPerTick);
  if (now_ms >= next_housekeeping_ms_) {
    next_housekeeping_ms_ = now_ms + 1000;
    store_.Sweep(core::UnixMillis(), 4096);
    if (failed_ || AnyPeerFailed()) idem_hold_until_ms_ = now_ms + opts_.idempotency_window_ms;
    if (now_ms >= idem_hold_until_ms_) store_.RetireIdem(core::UnixMillis());
    store_.Compact();
  }
  Flush();
  ProcessDurable();
}

void LocalBackend::OnDrain() { draining_ = true; }

bool LocalBackend::Idle() const {
  // Nothing accepted is still on its way: every message stored everywhere and acknowledged (or stuck
  // behind a failed log, where waiting cannot help: its senders were answered UNAVAILABLE), every group
  // change answered, and a healthy log durable.
  for (const auto& [id, f] : inflight_) {
    if (!Stuck(f)) return false;
  }
  if (failed_) return true;
  return actions_.empty() && group_replies_.empty() && !fsync_inflight_ && store_.log().pending_bytes() == 0 &&
         store_.log().durable_lsn() >= store_.log().appended_lsn();
}

void LocalBackend::OnStop() {
  store_.FlushCursors(~size_t{0});
  if (failed_) return;
  absl::Status st = store_.log().Write();
  if (st.ok()) st = store_.log().SyncNow();
  if (!st.ok()) Fail(st);
}

void LocalBackend::RefreshStats() {
  stats_.online_users.Set(static_cast<int64_t>(sessions_.size()));
  stats_.presence_subscriptions.Set(presence_subscriptions_);
  stats_.users.Set(static_cast<int64_t>(store_.user_count()));
  stats_.groups.Set(static_cast<int64_t>(store_.group_count()));
  stats_.segments.Set(static_cast<int64_t>(store_.log().Segments().size()));
  stats_.inflight_messages.Set(static_cast<int64_t>(inflight_.size()));
  stats_.idempotency_entries.Set(static_cast<int64_t>(store_.idem_size()));
  stats_.log_unsynced_bytes.Set(
      static_cast<int64_t>(store_.log().appended_lsn() - std::min(store_.log().appended_lsn(), store_.log().durable_lsn())));
  // The store counts these itself (it is shared with tools that have no metrics); mirror them.
  const StoreStats& ss = store_.stats();
  stats_.segments_deleted_total.Mirror(ss.segments_deleted);
  stats_.entries_expired_total.Mirror(ss.entries_expired);
  stats_.entries_evicted_total.Mirror(ss.entries_evicted);
  stats_.snapshots_total.Mirror(ss.snapshots);
}

}  // namespace longlink::gateway::local
