// The NATS backend, gateway side: this gateway's users. Logins and logouts registered with the owners of
// the users' partitions, SENDs handed to the sender's coordinator, SYNC and catch-ups read from the inbox
// streams, PUSH_ACK cursors kept in a bucket, frames from owners delivered, group and presence requests.
#include <algorithm>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/clock.h"
#include "gateway/backend/nats/manager.h"
#include "gateway/backend/nats/nats_backend.h"
#include "nlohmann/json.hpp"

namespace longlink::gateway::nats {
namespace {

namespace proto = longlink::protocol;

constexpr uint32_t kSyncMax = 256;           // PUSH frames per SYNC answer
constexpr uint32_t kCatchupsAtOnce = 32;     // per shard
// PUSH_ACK cursors reach the bucket this often (and at disconnect): a KV write is a replicated JetStream
// publish, so writing every device's cursor each second would cost more than the messages themselves. A
// crash loses at most this much cursor progress; SYNC is driven by the client's own after_seq.
constexpr uint64_t kCursorFlushMs = 15000;
constexpr uint64_t kRegBackoffMs = 500;  // after a registration found no owner
constexpr size_t kMembersPage = 4096;

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

NatsBackend::NatsBackend(NatsFactory* factory, GatewayPort* port)
    : factory_(factory), port_(port), opts_(factory->options()), subj_(factory->subjects()) {}

NatsBackend::~NatsBackend() = default;

void NatsBackend::OnStop() {
  // The shard's last turn: its partitions' subscriptions end while the link is still there.
  for (auto& [p, o] : owned_) {
    if (o->sub != nullptr) factory_->link().Unsubscribe(o->sub);
    o->sub = nullptr;
  }
}

absl::Status NatsBackend::Start() {
  self_ = port_->shard_id();
  shards_ = port_->shard_count();
  return absl::OkStatus();
}

void NatsBackend::Ask(std::string_view subject, std::span<const uint8_t> data, const Headers* headers,
                      absl::AnyInvocable<void(Reply) &&> fn, uint64_t timeout_ms) {
  ++outstanding_asks_;
  auto cont = std::make_shared<absl::AnyInvocable<void(Reply) &&>>(std::move(fn));
  NatsFactory* f = factory_;
  uint32_t shard = self_;
  factory_->link().Request(subject, data, headers, timeout_ms == 0 ? opts_.request_timeout_ms : timeout_ms,
                           [f, shard, cont](Reply r) mutable {
                             auto reply = std::make_shared<Reply>(std::move(r));
                             f->OnShard(shard, [cont, reply](NatsBackend& b) mutable {
                               --b.outstanding_asks_;
                               std::move (*cont)(std::move(*reply));
                             });
                           });
}

// ---- sessions ----

NatsBackend::Device* NatsBackend::FindDevice(const Session& s) {
  auto it = sessions_.find(s.user_id);
  if (it == sessions_.end()) return nullptr;
  for (Device& d : it->second.devices) {
    if (d.conn.id == s.conn.id && d.conn.gen == s.conn.gen) return &d;
  }
  return nullptr;
}

bool NatsBackend::Allow(Device* d, uint32_t DeviceRate::*counter, uint32_t limit) {
  if (d == nullptr || d->rate.Allow(counter, limit, core::MonoMillis())) return true;
  stats_.limited_total.Inc();
  return false;
}

LoginVerdict NatsBackend::OnLogin(const Session& s) {
  UserSessions& u = sessions_[s.user_id];
  Device d;
  d.device = s.device_id;
  d.platform = s.platform;
  d.conn = s.conn;
  d.since_ms = core::UnixMillis();
  u.devices.push_back(std::move(d));
  QueueReg(s.user_id);
  return LoginVerdict::kAllow;
}

void NatsBackend::OnDisconnect(const Session& s) {
  auto it = sessions_.find(s.user_id);
  if (it == sessions_.end()) return;
  auto& devs = it->second.devices;
  for (size_t i = 0; i < devs.size(); ++i) {
    if (devs[i].conn.id == s.conn.id && devs[i].conn.gen == s.conn.gen) {
      DropWatches(s.user_id, devs[i]);
      if (devs[i].cursor_dirty) {
        std::string v = Cat(devs[i].cursor);
        factory_->link().Publish(Cat("$KV.", subj_.Bucket("cursors"), ".c.", s.user_id, ".", devs[i].device),
                                 Bytes(v));
      }
      devs.erase(devs.begin() + static_cast<ptrdiff_t>(i));
      break;
    }
  }
  if (devs.empty() && !it->second.catching_up) sessions_.erase(it);
  QueueReg(s.user_id);
}

void NatsBackend::QueueReg(uint64_t user) { reg_dirty_.insert(user); }

void NatsBackend::FlushRegs() {
  if (reg_dirty_.empty() || !factory_->link().connected()) return;
  if (core::MonoMillis() < reg_backoff_until_ms_) return;
  absl::flat_hash_map<uint32_t, RegRequest> by_partition;
  for (uint64_t user : reg_dirty_) {
    uint32_t p = factory_->Partition(user);
    RegRequest& r = by_partition[p];
    auto it = sessions_.find(user);
    uint32_t n = it == sessions_.end() ? 0 : static_cast<uint32_t>(it->second.devices.size());
    r.entries.push_back(RegEntry{user, n});
  }
  reg_dirty_.clear();
  for (auto& [p, r] : by_partition) {
    r.gateway = opts_.gateway_id;
    r.shard = self_;
    std::vector<uint64_t> users;
    for (const RegEntry& e : r.entries) users.push_back(e.user);
    Ask(subj_.Partition(p, "reg"), Encode(r), nullptr, [this, users = std::move(users)](Reply reply) {
      if (reply.ok() && reply.text() == "OK") {
        for (uint64_t u : users) {
          if (catchup_after_reg_.erase(u) != 0) StartCatchup(u);
        }
        return;
      }
      // No owner yet, or it failed: try again in a while (the next owner also asks every gateway for a full
      // list when it takes the partition over).
      for (uint64_t u : users) reg_dirty_.insert(u);
      reg_backoff_until_ms_ = core::MonoMillis() + kRegBackoffMs;
    });
  }
}

void NatsBackend::SendFullReg(uint32_t p) {
  RegRequest r;
  r.gateway = opts_.gateway_id;
  r.shard = self_;
  r.full = 1;
  std::vector<uint64_t> users;
  for (const auto& [user, u] : sessions_) {
    if (factory_->Partition(user) != p || u.devices.empty()) continue;
    r.entries.push_back(RegEntry{user, static_cast<uint32_t>(u.devices.size())});
    users.push_back(user);
  }
  if (users.empty()) return;
  Ask(subj_.Partition(p, "reg"), Encode(r), nullptr, [this, p, users = std::move(users)](Reply reply) {
    if (!reply.ok() || reply.text() != "OK") {
      // The owner is not there (yet): its announcement, the next reconnect or the next registration of
      // these users brings this back, and they are caught up then.
      for (uint64_t u : users) {
        reg_dirty_.insert(u);
        catchup_after_reg_.insert(u);
      }
      return;
    }
    // Live PUSHes to these users may have gone to nobody while the partition had no (or another) owner.
    for (uint64_t u : users) StartCatchup(u);
  });
}

void NatsBackend::SendFullWatches(std::optional<uint32_t> only) {
  absl::flat_hash_map<uint32_t, PresenceRequest> lists;
  auto list = [&](uint32_t p) -> PresenceRequest& {
    auto [it, fresh] = lists.try_emplace(p);
    if (fresh) {
      it->second.subscribe = kPresenceFull;
      it->second.gateway = opts_.gateway_id;
      it->second.shard = self_;
    }
    return it->second;
  };
  // Sent even when empty: a list clears what the owner may still hold from this shard. Lost on the way, the
  // next announcement or reconnect sends it again.
  if (only) {
    list(*only);
  } else {
    for (uint32_t p = 0; p < opts_.partitions; ++p) list(p);
  }
  for (const auto& [user, u] : sessions_) {
    for (const Device& d : u.devices) {
      if (d.watching == nullptr) continue;
      for (uint64_t target : *d.watching) {
        uint32_t p = factory_->Partition(target);
        if (only && p != *only) continue;
        PresenceRequest& r = list(p);
        r.users.push_back(target);
        r.subscribers.push_back(user);
      }
    }
  }
  for (const auto& [p, r] : lists) factory_->link().Publish(subj_.Partition(p, "presence"), Encode(r));
}

void NatsBackend::OnOwnerAnnounce(const OwnerAnnounce& a) {
  // A new owner starts with no directory and no watchers (the same owner announcing again forgot this
  // gateway for a while): it gets both again.
  SendFullReg(a.partition);
  SendFullWatches(a.partition);
}

void NatsBackend::RetryUndelivered() {
  while (!undelivered_.empty() && factory_->link().connected()) {
    auto& [subject, body] = undelivered_.front();
    if (!factory_->link().Publish(subject, body)) break;
    stats_.deliveries_sent_total.Inc();
    undelivered_bytes_ -= body.size();
    undelivered_.pop_front();
  }
}

void NatsBackend::OnConnectionRestored() {
  // What this shard's partitions could not deliver while the connection was down.
  RetryUndelivered();
  absl::flat_hash_set<uint32_t> ps;
  for (const auto& [user, u] : sessions_) ps.insert(factory_->Partition(user));
  for (uint32_t p : ps) SendFullReg(p);
  // Watches changed while the connection was down never reached their owners.
  SendFullWatches(std::nullopt);
}

// ---- SEND ----

void NatsBackend::OnSend(const Session& s, uint32_t request_id, const proto::SendBody& body) {
  auto ack = [this, conn = s.conn, request_id, cmid = body.client_msg_id](uint16_t status, uint64_t id, uint64_t t) {
    proto::SendAckBody a;
    a.status = status;
    a.client_msg_id = cmid;
    a.server_msg_id = id;
    a.server_time_ms = t;
    port_->SendTo(conn, Frame(request_id, a));
  };
  bool group = body.target_kind == static_cast<uint8_t>(proto::TargetKind::kGroup);
  if (body.target_id == 0 || (!group && body.target_kind != static_cast<uint8_t>(proto::TargetKind::kUser))) {
    ack(static_cast<uint16_t>(proto::SendStatus::kNoSuchTarget), 0, core::UnixMillis());
    return;
  }
  if (!Allow(FindDevice(s), &DeviceRate::sends, opts_.messaging.max_sends_per_second)) {
    ack(static_cast<uint16_t>(proto::SendStatus::kRateLimited), 0, core::UnixMillis());
    return;
  }
  if (!Ready() || draining_) {
    ack(static_cast<uint16_t>(proto::SendStatus::kUnavailable), 0, core::UnixMillis());
    return;
  }
  SendRequest r;
  r.sender = s.user_id;
  r.device = s.device_id;
  r.target_kind = body.target_kind;
  r.target = body.target_id;
  r.client_msg_id = body.client_msg_id;
  r.payload = body.payload;
  uint64_t start = core::MonoNanos();
  Ask(subj_.Partition(factory_->Partition(s.user_id), "send"), Encode(r), nullptr,
      [this, ack, start](Reply reply) {
        SendReply sr;
        if (!reply.ok() || !Decode(reply.data(), &sr)) {
          if (!reply.ok()) stats_.requests_failed_total.Inc();
          ack(static_cast<uint16_t>(proto::SendStatus::kUnavailable), 0, core::UnixMillis());
          return;
        }
        double secs = static_cast<double>(core::MonoNanos() - start) * 1e-9;
        stats_.send_seconds.Observe(secs);
        port_->ObserveBackendLatency(secs);
        ack(sr.status, sr.server_msg_id, sr.server_time_ms);
      },
      opts_.send_timeout_ms);
}

// ---- PUSH_ACK cursors ----

void NatsBackend::OnPushAck(const Session& s, const proto::PushAckBody& body) {
  Device* d = FindDevice(s);
  if (d == nullptr || body.seq <= d->cursor) return;
  d->cursor = body.seq;
  d->cursor_dirty = true;
}

void NatsBackend::FlushCursors(uint64_t now_ms) {
  if (now_ms < next_flush_ms_) return;
  next_flush_ms_ = now_ms + kCursorFlushMs;
  if (!factory_->link().connected()) return;
  std::string bucket = subj_.Bucket("cursors");
  for (auto& [user, u] : sessions_) {
    for (Device& d : u.devices) {
      if (!d.cursor_dirty) continue;
      std::string v = Cat(d.cursor);
      if (factory_->link().Publish(Cat("$KV.", bucket, ".c.", user, ".", d.device), Bytes(v))) {
        d.cursor_dirty = false;
      }
    }
  }
}

// ---- deliveries from owners ----

void NatsBackend::OnDelivery(Reply msg) {
  Delivery d;
  if (!Decode(msg.data(), &d)) return;
  stats_.deliveries_total.Inc();
  auto it = sessions_.find(d.user);
  proto::Header h;
  if (proto::PeekFrame(d.frame, static_cast<uint32_t>(d.frame.size()), &h) == proto::FrameStatus::kOk &&
      h.opcode == static_cast<uint8_t>(proto::Opcode::kKick)) {
    // An administrator's kick, asked by the user's owner: answer how many devices it closed here.
    uint64_t kicked = 0;
    proto::KickBody k;
    if (it != sessions_.end() && proto::Decode(d.frame.subspan(proto::kHeaderSize), &k)) {
      for (const Device& dev : it->second.devices) kicked += d.device == 0 || dev.device == d.device ? 1 : 0;
      if (kicked != 0) port_->Kick(d.user, d.device, static_cast<proto::KickReason>(k.reason), k.message);
    }
    Writer w;
    w.U64(kicked);
    Respond(msg.reply_to(), w.data());
    return;
  }
  if (it == sessions_.end() || it->second.devices.empty()) return;
  UserSessions& u = it->second;
  // pushed_seq moves only over contiguous seqs (the first live PUSH after a login sets it): a PUSH past a
  // hole means one went missing on the way (a connection dropped while it travelled), and this gateway
  // fills the hole from the stream itself instead of leaving it to the client's next SYNC.
  bool hole = false;
  if (d.seq != 0) {
    if (u.pushed_seq == 0 || d.seq == u.pushed_seq + 1) {
      u.pushed_seq = d.seq;
      u.pushed_sseq = d.stream_seq;
    } else if (d.seq > u.pushed_seq + 1) {
      hole = true;
    }
  }
  port_->PushToUser(d.user, d.device, d.frame);
  if (hole) StartCatchup(d.user);
  if (d.server_time_ms != 0) port_->ObservePushDelay(d.server_time_ms);
}

// ---- SYNC and catch-ups ----

void NatsBackend::OnSync(const Session& s, uint32_t request_id, const proto::SyncBody& body) {
  if (!Ready()) {
    proto::ErrorBody e;
    e.code = static_cast<uint16_t>(proto::ErrorCode::kBackendUnavailable);
    e.message = "messaging system unavailable; retry";
    port_->SendTo(s.conn, Frame(request_id, e));
    return;
  }
  auto job = std::make_unique<SyncJob>();
  job->user = s.user_id;
  job->device = s.device_id;
  job->conn = s.conn;
  job->request_id = request_id;
  job->after_seq = body.after_seq;
  job->limit = body.limit == 0 ? kSyncMax : std::min(body.limit, kSyncMax);
  StartSync(std::move(job));
}

void NatsBackend::StartCatchup(uint64_t user) {
  auto it = sessions_.find(user);
  if (it == sessions_.end() || it->second.devices.empty()) return;
  if (it->second.catching_up) {
    it->second.catchup_again = true;
    return;
  }
  if (catchups_running_ >= kCatchupsAtOnce) {
    catchup_queue_.push_back(user);
    it->second.catching_up = true;  // queued counts as running for this user
    return;
  }
  it->second.catching_up = true;
  ++catchups_running_;
  stats_.catchups_total.Inc();
  auto job = std::make_unique<SyncJob>();
  job->user = user;
  job->catchup = true;
  job->after_seq = it->second.pushed_seq;
  job->limit = kSyncMax;
  StartSync(std::move(job));
}

void NatsBackend::StartSync(std::unique_ptr<SyncJob> job) {
  job->id = next_id_++;
  uint64_t id = job->id;
  syncs_[id] = std::move(job);
  SyncStep(id);
}

// One message get; the reply continues the job.
void NatsBackend::SyncRead(uint64_t job_id, std::string request) {
  auto it = syncs_.find(job_id);
  if (it == syncs_.end()) return;
  SyncJob& j = *it->second;
  uint64_t start = core::MonoNanos();
  stats_.fetches_total.Inc();
  Ask(Cat("$JS.API.STREAM.MSG.GET.", subj_.InboxStream(factory_->Partition(j.user))), Bytes(request),
      nullptr, [this, job_id, start](Reply reply) {
        auto it = syncs_.find(job_id);
        if (it == syncs_.end()) return;
        SyncJob& j = *it->second;
        stats_.fetch_seconds.Observe(static_cast<double>(core::MonoNanos() - start) * 1e-9);
        if (!reply.ok()) {
          FinishSync(j, /*failed=*/true);
          return;
        }
        bool not_found = false;
        std::string error;
        std::optional<StoredMsg> m = ParseMsgGet(reply.text(), &not_found, &error);
        if (!m && !not_found) {
          FinishSync(j, true);
          return;
        }
        uint64_t seq = 0;
        if (m) absl::SimpleAtoi(AV(HeaderValue(m->headers, "Ll-Seq")), &seq);
        if (j.last_sseq == 0) {
          // The inbox's newest.
          if (!m) {
            FinishSync(j, false);
            return;
          }
          j.last_seq = seq;
          j.last_sseq = m->seq;
          auto s = sessions_.find(j.user);
          if (j.after_seq >= j.last_seq) {
            // The device holds the whole inbox. Until a live PUSH arrives, this is where a catch-up of the
            // user here starts (not from the start of the inbox). Only then: once set, pushed_seq follows
            // what this gateway pushed, which another device of the user may still lack.
            if (s != sessions_.end() && s->second.pushed_seq == 0) {
              s->second.pushed_seq = j.last_seq;
              s->second.pushed_sseq = j.last_sseq;
            }
            FinishSync(j, false);
            return;
          }
          if (j.after_seq == 0) {
            j.next_sseq = 1;
          } else if (s != sessions_.end() && s->second.pushed_seq == j.after_seq && s->second.pushed_sseq != 0) {
            j.next_sseq = s->second.pushed_sseq + 1;
          } else {
            j.lo = 1;
            j.hi = j.last_sseq;
          }
          SyncStep(job_id);
          return;
        }
        if (j.next_sseq == 0) {
          // Binary search for the first stream sequence whose next message in this inbox is past after_seq.
          uint64_t mid = j.lo + (j.hi - j.lo) / 2;
          if (!m || seq > j.after_seq) {
            j.hi = mid;
          } else {
            j.lo = m->seq + 1;
          }
          SyncStep(job_id);
          return;
        }
        if (!m) {
          FinishSync(j, false);
          return;
        }
        j.next_sseq = m->seq + 1;
        // A copy stored twice (a retried publish the stream did not recognise) has the seq of the one before.
        if (seq > j.after_seq && seq != j.prev_seq) {
          proto::PushBody push;
          if (proto::Decode(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(m->data.data()), m->data.size()),
                            &push)) {
            std::vector<uint8_t> frame = Frame(0, push);
            if (j.catchup) {
              port_->PushToUser(j.user, 0, frame);
            } else {
              port_->SendTo(j.conn, frame);
            }
            stats_.sync_pushes_total.Inc();
            ++j.sent;
            j.max_seq = seq;
            j.prev_seq = seq;
            auto s = sessions_.find(j.user);
            if (s != sessions_.end() && seq > s->second.pushed_seq) {
              s->second.pushed_seq = seq;
              s->second.pushed_sseq = m->seq;
            }
          }
        }
        if (j.sent >= j.limit || seq >= j.last_seq) {
          FinishSync(j, false);
          return;
        }
        SyncStep(job_id);
      });
}

void NatsBackend::SyncStep(uint64_t job_id) {
  auto it = syncs_.find(job_id);
  if (it == syncs_.end()) return;
  SyncJob& j = *it->second;
  std::string inbox = subj_.Inbox(factory_->Partition(j.user), j.user);
  nlohmann::json req;
  if (j.last_sseq == 0) {
    req["last_by_subj"] = inbox;
  } else if (j.next_sseq == 0) {
    if (j.lo >= j.hi) {
      j.next_sseq = j.lo;
      SyncStep(job_id);
      return;
    }
    req["seq"] = j.lo + (j.hi - j.lo) / 2;
    req["next_by_subj"] = inbox;
  } else {
    req["seq"] = j.next_sseq;
    req["next_by_subj"] = inbox;
  }
  SyncRead(job_id, req.dump());
}

void NatsBackend::FinishSync(SyncJob& j, bool failed) {
  uint64_t id = j.id;
  if (!j.catchup) {
    if (failed) {
      proto::ErrorBody e;
      e.code = static_cast<uint16_t>(proto::ErrorCode::kBackendUnavailable);
      e.message = "messaging system unavailable; retry the SYNC";
      port_->SendTo(j.conn, Frame(j.request_id, e));
    } else {
      proto::SyncDoneBody done;
      done.max_seq = j.sent != 0 ? j.max_seq : j.last_seq;
      done.has_more = j.sent != 0 && j.max_seq < j.last_seq ? 1 : 0;
      port_->SendTo(j.conn, Frame(j.request_id, done));
      stats_.syncs_total.Inc();
    }
    syncs_.erase(id);
    return;
  }
  uint64_t user = j.user;
  bool more = !failed && j.sent != 0 && j.max_seq < j.last_seq;
  syncs_.erase(id);
  auto s = sessions_.find(user);
  if (more && s != sessions_.end() && !s->second.devices.empty()) {
    auto job = std::make_unique<SyncJob>();
    job->user = user;
    job->catchup = true;
    job->after_seq = s->second.pushed_seq;
    job->limit = kSyncMax;
    StartSync(std::move(job));
    return;
  }
  --catchups_running_;
  if (s != sessions_.end()) {
    s->second.catching_up = false;
    if (s->second.devices.empty()) {
      sessions_.erase(s);
    } else if (s->second.catchup_again || failed) {
      s->second.catchup_again = false;
      if (failed) {
        catchup_queue_.push_back(user);
        s->second.catching_up = true;
      } else {
        StartCatchup(user);
      }
    }
  }
  while (catchups_running_ < kCatchupsAtOnce && !catchup_queue_.empty() && factory_->link().connected()) {
    uint64_t next = catchup_queue_.front();
    catchup_queue_.pop_front();
    auto q = sessions_.find(next);
    if (q == sessions_.end()) continue;
    q->second.catching_up = false;
    if (q->second.devices.empty()) {
      sessions_.erase(q);
      continue;
    }
    StartCatchup(next);
  }
}

// ---- groups ----

Backend::FrameVerdict NatsBackend::OnFrame(const Session& s, const proto::Header& h, std::span<const uint8_t> body) {
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

void NatsBackend::ReplyGroup(const ConnRef& conn, uint32_t request_id, uint64_t group, uint16_t status,
                             const std::vector<uint64_t>& members, bool has_more) {
  std::vector<uint8_t> ids(members.size() * proto::kIdSize);
  for (size_t i = 0; i < members.size(); ++i) proto::PutId(ids.data() + i * proto::kIdSize, members[i]);
  proto::GroupReplyBody r;
  r.status = status;
  r.group_id = group;
  r.has_more = has_more ? 1 : 0;
  r.members = ids;
  port_->SendTo(conn, Frame(request_id, r));
}

Backend::FrameVerdict NatsBackend::OnGroupFrame(const Session& s, const proto::Header& h,
                                                std::span<const uint8_t> body) {
  GroupRequest g;
  g.user = s.user_id;
  switch (static_cast<proto::Opcode>(h.opcode)) {
    case proto::Opcode::kGroupCreate: {
      proto::GroupCreateBody b;
      if (!proto::Decode(body, &b)) return FrameVerdict::kMalformed;
      g.op = GroupOp::kCreate;
      g.group = b.group_id;
      break;
    }
    case proto::Opcode::kGroupJoin: {
      proto::GroupJoinBody b;
      if (!proto::Decode(body, &b)) return FrameVerdict::kMalformed;
      g.op = GroupOp::kJoin;
      g.group = b.group_id;
      break;
    }
    case proto::Opcode::kGroupLeave: {
      proto::GroupLeaveBody b;
      if (!proto::Decode(body, &b)) return FrameVerdict::kMalformed;
      g.op = GroupOp::kLeave;
      g.group = b.group_id;
      break;
    }
    default: {
      proto::GroupMembersBody b;
      if (!proto::Decode(body, &b)) return FrameVerdict::kMalformed;
      g.op = GroupOp::kMembers;
      g.group = b.group_id;
      g.after = b.after_user;
      break;
    }
  }
  ConnRef conn = s.conn;
  uint32_t rid = h.request_id;
  uint64_t group = g.group;
  if (g.op == GroupOp::kCreate && group == 0) {
    ReplyGroup(conn, rid, group, static_cast<uint16_t>(proto::GroupStatus::kBadRequest), {}, false);
    return FrameVerdict::kHandled;
  }
  if (g.op != GroupOp::kMembers && !Allow(FindDevice(s), &DeviceRate::group_ops, opts_.messaging.max_group_ops_per_second)) {
    ReplyGroup(conn, rid, group, static_cast<uint16_t>(proto::GroupStatus::kRateLimited), {}, false);
    return FrameVerdict::kHandled;
  }
  if (!Ready() || draining_) {
    ReplyGroup(conn, rid, group, static_cast<uint16_t>(proto::GroupStatus::kUnavailable), {}, false);
    return FrameVerdict::kHandled;
  }
  Ask(subj_.Partition(factory_->Partition(group), "group"), Encode(g), nullptr,
      [this, conn, rid, group](Reply reply) {
        GroupReply gr;
        if (!reply.ok() || !Decode(reply.data(), &gr)) {
          ReplyGroup(conn, rid, group, static_cast<uint16_t>(proto::GroupStatus::kUnavailable), {}, false);
          return;
        }
        ReplyGroup(conn, rid, group, gr.status, gr.members, gr.has_more != 0);
      });
  return FrameVerdict::kHandled;
}

// ---- presence ----

Backend::FrameVerdict NatsBackend::OnPresenceSubscribe(const Session& s, const proto::Header& h,
                                                       std::span<const uint8_t> body) {
  proto::PresenceSubscribeBody b;
  if (!proto::Decode(body, &b)) return FrameVerdict::kMalformed;
  Device* d = FindDevice(s);
  if (d == nullptr) return FrameVerdict::kHandled;
  if (d->watching == nullptr) d->watching = std::make_unique<absl::flat_hash_set<uint64_t>>();
  // Per partition and kind of change: 1 a device more watches, 0 one less, 2 no change (state only).
  absl::flat_hash_map<std::pair<uint32_t, uint8_t>, PresenceRequest> requests;
  std::string refusal;
  size_t n = b.user_ids.size() / proto::kIdSize;
  for (size_t i = 0; i < n; ++i) {
    uint64_t target = proto::IdAt(b.user_ids, i);
    uint8_t kind = 2;
    if (b.subscribe != 0) {
      if (!d->watching->contains(target)) {
        if (d->watching->size() >= opts_.messaging.max_presence_subscriptions) {
          stats_.limited_total.Inc();
          refusal = Cat("presence subscriptions: at most ", opts_.messaging.max_presence_subscriptions,
                                 " per device; ", n - i, " of this request refused");
          break;
        }
        d->watching->insert(target);
        stats_.presence_subscriptions.Add(1);
        kind = 1;
      }
    } else if (d->watching->erase(target) != 0) {
      stats_.presence_subscriptions.Add(-1);
      kind = 0;
    }
    PresenceRequest& r = requests[{factory_->Partition(target), kind}];
    r.subscriber = s.user_id;
    r.subscribe = kind;
    r.gateway = opts_.gateway_id;
    r.shard = self_;
    r.users.push_back(target);
  }
  if (d->watching->empty()) d->watching.reset();
  ConnRef conn = s.conn;
  uint32_t rid = h.request_id;
  for (auto& [key, r] : requests) {
    Ask(subj_.Partition(key.first, "presence"), Encode(r), nullptr, [this, conn, rid](Reply reply) {
      PresenceReply pr;
      if (!reply.ok() || !Decode(reply.data(), &pr)) {
        proto::ErrorBody e;
        e.code = static_cast<uint16_t>(proto::ErrorCode::kBackendUnavailable);
        e.message = "presence unavailable; retry";
        port_->SendTo(conn, Frame(rid, e));
        return;
      }
      for (const PresenceState& st : pr.states) {
        proto::PresenceBody pb;
        pb.user_id = st.user;
        pb.online = st.online;
        pb.devices = st.devices;
        pb.time_ms = core::UnixMillis();
        port_->SendTo(conn, Frame(rid, pb));
      }
    });
  }
  if (!refusal.empty()) {
    proto::ErrorBody e;
    e.code = static_cast<uint16_t>(proto::ErrorCode::kLimitExceeded);
    e.message = refusal;
    port_->SendTo(s.conn, Frame(h.request_id, e));
  }
  return FrameVerdict::kHandled;
}

void NatsBackend::DropWatches(uint64_t user, Device& d) {
  if (d.watching == nullptr) return;
  absl::flat_hash_map<uint32_t, PresenceRequest> by_partition;
  for (uint64_t target : *d.watching) {
    PresenceRequest& r = by_partition[factory_->Partition(target)];
    r.subscriber = user;
    r.subscribe = 0;
    r.gateway = opts_.gateway_id;
    r.shard = self_;
    r.users.push_back(target);
  }
  stats_.presence_subscriptions.Add(-static_cast<int64_t>(d.watching->size()));
  d.watching.reset();
  for (auto& [p, r] : by_partition) factory_->link().Publish(subj_.Partition(p, "presence"), Encode(r));
}

// ---- tick, drain, statistics ----

void NatsBackend::OnTick(uint64_t now_ms) {
  FlushRegs();
  if (!retry_.empty()) {
    std::vector<std::pair<uint32_t, uint64_t>> due;
    due.swap(retry_);
    for (const auto& [p, user] : due) {
      Owned* o = FindOwned(p);
      if (o == nullptr) continue;
      auto u = o->users.find(user);
      if (u == o->users.end() || u->second.queue.empty()) continue;
      if (u->second.queue.front()->retry_at_ms > now_ms) {
        retry_.push_back({p, user});
        continue;
      }
      RunUser(p, user);
    }
  }
  FlushCursors(now_ms);
  if (now_ms >= next_housekeeping_ms_) {
    next_housekeeping_ms_ = now_ms + 1000;
    // A publish refused while connected (the client library's buffer full) is not waiting for a reconnect.
    RetryUndelivered();
    for (auto& [p, o] : owned_) {
      ExpireIdempotency(*o, core::UnixMillis());
      SweepUsers(*o, now_ms);
    }
    // Coordinated SENDs past their deadline are answered UNAVAILABLE (the client retries).
    std::vector<uint64_t> late;
    for (const auto& [id, j] : jobs_) {
      if (!j->done && now_ms >= j->deadline_ms) late.push_back(id);
    }
    for (uint64_t id : late) FinishJob(id, static_cast<uint16_t>(proto::SendStatus::kUnavailable));
    if (catchups_running_ < kCatchupsAtOnce && !catchup_queue_.empty() && factory_->link().connected()) {
      uint64_t next = catchup_queue_.front();
      catchup_queue_.pop_front();
      auto q = sessions_.find(next);
      if (q != sessions_.end()) {
        q->second.catching_up = false;
        if (q->second.devices.empty()) {
          sessions_.erase(q);
        } else {
          StartCatchup(next);
        }
      }
    }
  }
}

uint64_t NatsBackend::MaxWaitNs(uint64_t) {
  // Registrations are batched per loop round; a round with some pending comes back soon.
  return reg_dirty_.empty() || core::MonoMillis() < reg_backoff_until_ms_ ? 50000000ull : 2000000ull;
}

void NatsBackend::OnDrain() {
  draining_ = true;
  if (self_ == 0) factory_->manager().Drain();
}

bool NatsBackend::Idle() const { return jobs_.empty() && OwnerIdle(); }

void NatsBackend::RefreshStats() {
  // Gauges sum over shards: the connection is the gateway's, so shard 0 alone reports it.
  stats_.connected.Set(self_ == 0 && factory_->link().connected() ? 1 : 0);
  stats_.pending_publishes.Set(pending_publishes_);
  stats_.online_users.Set(static_cast<int64_t>(sessions_.size()));
  stats_.owned_partitions.Set(static_cast<int64_t>(owned_.size()));
  stats_.inflight_sends.Set(static_cast<int64_t>(jobs_.size()));
  int64_t dir = 0, idem = 0, users = 0;
  for (const auto& [p, o] : owned_) {
    dir += static_cast<int64_t>(o->directory_entries);
    idem += static_cast<int64_t>(o->sends.size());
    users += static_cast<int64_t>(o->users.size());
  }
  stats_.directory_entries.Set(dir);
  stats_.owner_users.Set(users);
  stats_.idempotency_entries.Set(idem);
  if (self_ == 0) {
    stats_.pending_requests.Set(static_cast<int64_t>(factory_->link().requests_pending()));
    uint64_t r = factory_->link().reconnects();
    if (r > stats_.reconnects_total.Get()) stats_.reconnects_total.Inc(r - stats_.reconnects_total.Get());
  }
}

// ---- admin (shard thread) ----

AdminUser NatsBackend::LocalUserInfo(uint64_t user) const {
  AdminUser u;
  u.user = user;
  u.shard = self_;
  auto it = sessions_.find(user);
  if (it == sessions_.end()) return u;
  u.online = !it->second.devices.empty();
  for (const Device& d : it->second.devices) {
    u.devices.push_back(AdminDevice{d.device, d.platform, d.since_ms, d.cursor});
  }
  return u;
}

uint64_t NatsBackend::KickLocal(uint64_t user, uint32_t device) {
  auto it = sessions_.find(user);
  if (it == sessions_.end()) return 0;
  uint64_t n = 0;
  for (const Device& d : it->second.devices) n += device == 0 || d.device == device ? 1 : 0;
  if (n != 0) port_->Kick(user, device, proto::KickReason::kAdmin, "kicked by an administrator");
  return n;
}

}  // namespace longlink::gateway::nats
