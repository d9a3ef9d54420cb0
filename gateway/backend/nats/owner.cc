// The NATS backend, owner side: the partitions this gateway owns that fall on this shard. The owner is the
// only writer of its partition's inboxes (one publish in flight per user, each with the inbox's expected
// last stream sequence and a message id), coordinates the SENDs of its users, keeps the routing directory
// and the presence watchers of its users, and the groups whose id falls in the partition.
#include <algorithm>
#include <cstdio>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/clock.h"
#include "gateway/backend/nats/nats_backend.h"
#include "nlohmann/json.hpp"

namespace longlink::gateway::nats {

// The store request of a SEND's copies (the users and payload are filled in by the caller).
StoreRequest NatsBackend::StoreRequestOf(const SendJob& j) {
  StoreRequest r;
  r.server_msg_id = j.server_msg_id;
  r.server_time_ms = j.time_ms;
  r.from_user = std::get<0>(j.key);
  r.from_device = std::get<1>(j.key);
  r.conv_kind = j.conv_kind;
  r.target = j.target;
  r.client_msg_id = std::get<2>(j.key);
  return r;
}

namespace {

namespace proto = longlink::protocol;

constexpr size_t kMembersPage = 4096;
constexpr uint64_t kRetryMs = 200;
constexpr size_t kUndeliveredMaxBytes = 16 << 20;  // per shard
constexpr uint64_t kUserIdleMaxMs = 150000;

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

uint64_t ConvId(uint8_t kind, uint64_t target, uint64_t from_user, uint64_t inbox_owner) {
  if (kind == static_cast<uint8_t>(proto::TargetKind::kGroup)) return target;
  return inbox_owner == from_user ? target : from_user;
}

std::vector<uint8_t> MemberBytes(const absl::btree_set<uint64_t>& members) {
  Writer w;
  for (uint64_t m : members) w.U64(m);
  return w.Take();
}

}  // namespace

NatsBackend::Owned* NatsBackend::FindOwned(uint32_t p) {
  auto it = owned_.find(p);
  return it == owned_.end() ? nullptr : it->second.get();
}

NatsBackend::OwnerUser& NatsBackend::UserAt(Owned& o, uint64_t user) {
  OwnerUser& u = o.users[user];
  uint64_t now = core::MonoMillis();
  if (now - u.touched_ms >= 1000 || u.touched_ms == 0) {
    u.touched_ms = now;
    o.touched.emplace_back(now, user);
  }
  return u;
}

uint64_t NatsBackend::UserIdleMs() const {
  // The floor must be written before the user's newest message can expire (a fraction of the retention),
  // and while a new owner's replay would still find that message if this owner died first (half the
  // idempotency window it replays); users quiet for that long also leave memory.
  uint64_t r = opts_.messaging.retention_ms == 0 ? kUserIdleMaxMs : opts_.messaging.retention_ms / 8;
  uint64_t w = opts_.messaging.idempotency_window_ms == 0 ? kUserIdleMaxMs : opts_.messaging.idempotency_window_ms / 2;
  return std::clamp<uint64_t>(std::min(r, w), 200, kUserIdleMaxMs);
}

void NatsBackend::FloorDue(Owned& o, uint64_t user, OwnerUser& u) {
  if (u.floor_due) return;
  u.floor_due = true;
  u.floor_due_ms = core::MonoMillis();
  Requeue(o, user, u);
}

void NatsBackend::Requeue(Owned& o, uint64_t user, OwnerUser& u) {
  u.touched_ms = core::MonoMillis();
  o.touched.emplace_back(u.touched_ms, user);
}

void NatsBackend::SweepUsers(Owned& o, uint64_t now_ms) {
  const uint64_t idle = UserIdleMs();
  while (!o.touched.empty() && o.touched.front().first + idle <= now_ms) {
    auto [t, user] = o.touched.front();
    o.touched.pop_front();
    auto it = o.users.find(user);
    if (it == o.users.end()) continue;
    OwnerUser& u = it->second;
    if (u.floor_due && now_ms - u.floor_due_ms >= idle) {
      // Due for a whole idle time: written now, however busy the user is (a user touched all the time,
      // by reconnecting devices say, would otherwise never get it).
      if (u.queue.empty() && !u.writing && !u.loading && !u.floor_writing) {
        WriteSeqFloor(o, user, u);  // puts it back on the list
      } else if (u.touched_ms <= t) {
        Requeue(o, user, u);
      }
      continue;
    }
    // Touched again since: a later entry stands for it.
    if (u.touched_ms > t) continue;
    if (u.floor_due) {
      Requeue(o, user, u);  // its floor becomes due later
      continue;
    }
    // In use (online devices, watchers): any change puts it back on the list.
    if (u.Idle()) o.users.erase(it);
  }
}

void NatsBackend::WriteSeqFloor(Owned& o, uint64_t user, OwnerUser& u) {
  uint32_t p = o.p;
  uint64_t epoch = o.epoch;
  uint64_t seq = u.last_seq;
  if (core::MonoMillis() >= factory_->LeaseUntil(p)) {
    // Not writing now (a renewal may still keep the partition): try again at a later sweep.
    Requeue(o, user, u);
    return;
  }
  u.floor_writing = true;
  std::string value = Cat(seq);
  Ask(Cat("$KV.", subj_.Bucket("seqs"), ".u.", user), Bytes(value), nullptr, [this, p, user, epoch, seq](Reply r) {
    Owned* o = FindOwned(p);
    if (o == nullptr || o->epoch != epoch) return;
    auto it = o->users.find(user);
    if (it == o->users.end()) return;
    OwnerUser& u = it->second;
    u.floor_writing = false;
    PubAck a = r.ok() ? ParsePubAck(r.text()) : PubAck{};
    if (a.ok) {
      stats_.seq_floors_written_total.Inc();
      if (u.last_seq == seq) u.floor_due = false;
    }
    // Back on the list: dropped at the next sweep if still idle (or written again if it failed or moved).
    Requeue(*o, user, u);
  });
}

uint32_t NatsBackend::GatewayIndex(const std::string& id) {
  auto it = gateway_index_.find(id);
  if (it != gateway_index_.end()) return it->second;
  uint32_t i = static_cast<uint32_t>(gateways_.size());
  gateways_.push_back(id);
  gateway_index_.emplace(id, i);
  return i;
}

// The PUSH frame of one inbox copy.
std::vector<uint8_t> NatsBackend::CopyFrame(const StoreOp& op, uint64_t user, uint64_t seq, uint64_t time_ms) {
  proto::PushBody push;
  push.seq = seq;
  push.server_msg_id = op.server_msg_id;
  push.from_user = op.from_user;
  push.from_device = op.from_device;
  push.conv_kind = op.conv_kind;
  push.conv_id = ConvId(op.conv_kind, op.target, op.from_user, user);
  push.client_msg_id = op.client_msg_id;
  push.server_time_ms = time_ms;
  push.payload = *op.payload;
  return Frame(0, push);
}

void NatsBackend::Respond(std::string_view reply_to, std::span<const uint8_t> body) {
  if (!reply_to.empty()) factory_->link().Publish(reply_to, body);
}

// ---- taking partitions over and giving them up ----

void NatsBackend::TakeOver(std::unique_ptr<PartitionSnapshot> snap) {
  uint32_t p = snap->partition;
  if (owned_.contains(p)) DropPartition(p, "taken over again");
  auto o = std::make_unique<Owned>();
  o->p = p;
  o->epoch = snap->epoch;
  uint64_t now = core::UnixMillis();
  for (const auto& [user, t] : snap->users) {
    OwnerUser& u = UserAt(*o, user);
    u.last_seq = t.seq;
    u.last_sseq = t.stream_seq;
    u.loaded = true;
    FloorDue(*o, user, u);  // the previous owner may not have recorded it
  }
  for (const auto& [key, c] : snap->sends) {
    o->sends.emplace(key, c);
    o->sends_age.emplace_back(std::min(now, c.time_ms), key);
  }
  for (const auto& [key, v] : snap->stored) {
    o->stored.emplace(key, v);
    o->stored_age.emplace_back(std::min(now, v.second), key);
  }
  std::sort(o->sends_age.begin(), o->sends_age.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::sort(o->stored_age.begin(), o->stored_age.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  NatsFactory* f = factory_;
  uint32_t shard = self_;
  o->sub = factory_->link().Subscribe(subj_.PartitionWildcard(p), [f, shard, p](Reply r) {
    std::string_view subject = r.subject();
    std::string op(subject.substr(subject.rfind('.') + 1));
    auto msg = std::make_shared<Reply>(std::move(r));
    f->OnShard(shard, [p, op, msg](NatsBackend& b) mutable { b.OnPartitionRequest(p, op, std::move(*msg)); });
  });
  owned_[p] = std::move(o);
  stats_.takeovers_total.Inc();
  // Every gateway sends its users of p (full lists) and catches them up.
  OwnerAnnounce a{p, snap->epoch, opts_.gateway_id};
  factory_->link().Publish(subj_.Control("owner"), Encode(a));
}

void NatsBackend::DropPartition(uint32_t p, const char* why) {
  auto it = owned_.find(p);
  if (it == owned_.end()) return;
  std::unique_ptr<Owned> o = std::move(it->second);
  owned_.erase(it);
  if (o->sub != nullptr) factory_->link().Unsubscribe(o->sub);
  // Everything waiting here is answered UNAVAILABLE: the clients retry, and find the next owner.
  for (auto& [user, u] : o->users) {
    for (std::shared_ptr<StoreOp>& op : u.queue) {
      StoreOp::Batch& b = *op->batch;
      b.failed = true;
      if (--b.remaining == 0 && b.done) {
        StoreDone d = std::move(b.done);
        b.done = nullptr;
        std::move(d)(static_cast<uint16_t>(proto::SendStatus::kUnavailable), 0);
      }
    }
    u.queue.clear();
  }
  std::vector<uint64_t> jobs;
  for (const auto& [id, j] : jobs_) {
    if (j->partition == p) jobs.push_back(id);
  }
  for (uint64_t id : jobs) FinishJob(id, static_cast<uint16_t>(proto::SendStatus::kUnavailable));
  for (auto& [gid, g] : o->groups) {
    for (auto& fn : g.queue) std::move(fn)();  // each op sees the partition gone and answers UNAVAILABLE
  }
  stats_.releases_total.Inc();
  std::fprintf(stderr, "longlink-gateway: nats: shard %u gave up partition %u (%s)\n", self_, p, why);
}

size_t NatsBackend::ForgetEntriesOf(Owned& o, uint32_t gateway) {
  std::vector<std::pair<uint64_t, uint32_t>> drop;
  for (auto& [user, u] : o.users) {
    for (const OwnerUser::At& a : u.at) {
      if (a.gateway == gateway) drop.emplace_back(user, a.shard);
    }
  }
  for (const auto& [user, shard] : drop) SetDevices(o, user, gateway, shard, 0);
  return drop.size() + DropWatchesFrom(o, gateway, std::nullopt);
}

void NatsBackend::PruneGateways(const absl::flat_hash_set<std::string>& gone) {
  for (auto& [p, o] : owned_) {
    size_t forgotten = 0;
    for (const std::string& g : gone) {
      if (auto gi = gateway_index_.find(g); gi != gateway_index_.end()) forgotten += ForgetEntriesOf(*o, gi->second);
    }
    if (forgotten == 0) continue;
    std::fprintf(stderr,
                 "longlink-gateway: nats: partition %u forgot %zu directory entries and presence watches of "
                 "gateways no longer live\n",
                 p, forgotten);
    OwnerAnnounce a{p, o->epoch, opts_.gateway_id};
    factory_->link().Publish(subj_.Control("owner"), Encode(a));
  }
}

void NatsBackend::ForgetGateway(const std::string& gateway) {
  auto gi = gateway_index_.find(gateway);
  if (gi == gateway_index_.end()) return;
  for (auto& [p, o] : owned_) ForgetEntriesOf(*o, gi->second);
}

bool NatsBackend::OwnerIdle() const {
  if (outstanding_asks_ != 0) return false;
  for (const auto& [p, o] : owned_) {
    for (const auto& [user, u] : o->users) {
      if (!u.queue.empty() || u.writing || u.loading) return false;
    }
  }
  return true;
}

// ---- requests to owned partitions ----

void NatsBackend::OnPartitionRequest(uint32_t p, std::string op, Reply msg) {
  std::string reply_to(msg.reply_to());
  Owned* o = FindOwned(p);
  if (o == nullptr || core::MonoMillis() >= factory_->LeaseUntil(p)) {
    // Not (or no longer) the owner: the asker fails this one and its client retries.
    Respond(reply_to, Bytes("NO"));
    return;
  }
  std::span<const uint8_t> data = msg.data();
  if (op == "send") {
    SendRequest r;
    if (!Decode(data, &r)) return Respond(reply_to, Bytes("NO"));
    OnSendRequest(*o, r, reply_to, nullptr);
  } else if (op == "store") {
    StoreRequest r;
    if (!Decode(data, &r)) return Respond(reply_to, Bytes("NO"));
    OnStoreRequest(*o, std::move(r), reply_to);
  } else if (op == "reg") {
    RegRequest r;
    if (!Decode(data, &r)) return Respond(reply_to, Bytes("NO"));
    OnReg(*o, r, r.shard);
    Respond(reply_to, Bytes("OK"));
  } else if (op == "fwd") {
    Forward f;
    if (Decode(data, &f)) OnForward(f);
  } else if (op == "group") {
    GroupRequest r;
    if (!Decode(data, &r)) return Respond(reply_to, Bytes("NO"));
    OnGroupRequest(*o, std::move(r), reply_to, nullptr);
  } else if (op == "presence") {
    PresenceRequest r;
    if (!Decode(data, &r)) return Respond(reply_to, Bytes("NO"));
    OnPresenceRequest(*o, r, reply_to);
  } else if (op == "info" || op == "kick") {
    Reader rd(data);
    uint64_t user = 0;
    uint32_t device = 0;
    if (!rd.U64(&user) || !rd.U32(&device)) return Respond(reply_to, Bytes("NO"));
    OwnerUser& u = UserAt(*o, user);
    if (op == "kick") {
      // Every gateway holding the user kicks its matching devices and answers how many: the sum is the
      // answer (a gateway that does not answer in time counts 0).
      proto::KickBody k;
      k.reason = static_cast<uint16_t>(proto::KickReason::kAdmin);
      k.message = "kicked by an administrator";
      std::vector<uint8_t> frame = Frame(0, k);
      std::vector<uint8_t> body = Encode(Delivery{user, device, 0, 0, 0, frame});
      absl::flat_hash_set<uint32_t> gws;
      for (const OwnerUser::At& a : u.at) gws.insert(a.gateway);
      if (gws.empty()) {
        Writer w;
        w.U64(0);
        Respond(reply_to, w.data());
        return;
      }
      struct Tally {
        size_t waiting;
        uint64_t kicked = 0;
        std::string reply_to;
      };
      auto tally = std::make_shared<Tally>(Tally{gws.size(), 0, std::string(reply_to)});
      for (uint32_t g : gws) {
        Ask(subj_.Gateway(gateways_[g]), body, nullptr, [this, tally](Reply r) {
          if (r.ok() && r.data().size() == 8) {
            Reader rd(r.data());
            uint64_t n = 0;
            if (rd.U64(&n)) tally->kicked += n;
          }
          if (--tally->waiting != 0) return;
          Writer w;
          w.U64(tally->kicked);
          Respond(tally->reply_to, w.data());
        });
      }
      return;
    }
    InfoReply info;
    info.devices = u.devices();
    info.online = info.devices > 0 ? 1 : 0;
    absl::flat_hash_set<uint32_t> gws;
    for (const OwnerUser::At& a : u.at) gws.insert(a.gateway);
    for (uint32_t g : gws) info.gateways.push_back(gateways_[g]);
    if (u.loaded) {
      info.last_seq = u.last_seq;
      Respond(reply_to, Encode(info));
      return;
    }
    nlohmann::json req;
    req["last_by_subj"] = subj_.Inbox(p, user);
    Ask(Cat("$JS.API.STREAM.MSG.GET.", subj_.InboxStream(p)), Bytes(req.dump()), nullptr,
        [this, info, reply_to](Reply r) mutable {
          bool not_found = false;
          std::string error;
          std::optional<StoredMsg> m = r.ok() ? ParseMsgGet(r.text(), &not_found, &error) : std::nullopt;
          if (m) absl::SimpleAtoi(AV(HeaderValue(m->headers, "Ll-Seq")), &info.last_seq);
          Respond(reply_to, Encode(info));
        });
  } else {
    Respond(reply_to, Bytes("NO"));
  }
}

// ---- SEND coordination ----

void NatsBackend::OnSendRequest(Owned& o, const SendRequest& r, std::string reply_to, AdminDone<uint64_t> admin_done) {
  auto key = std::make_tuple(r.sender, r.device, r.client_msg_id);
  if (r.sender == 0) {
    SendReply sr{static_cast<uint16_t>(proto::SendStatus::kRejected), 0, core::UnixMillis()};
    Respond(reply_to, Encode(sr));
    return;
  }
  {
    if (auto done = o.sends.find(key); done != o.sends.end()) {
      stats_.duplicate_sends_total.Inc();
      SendReply sr{0, done->second.server_msg_id, done->second.time_ms};
      Respond(reply_to, Encode(sr));
      return;
    }
    if (auto inflight = o.inflight.find(key); inflight != o.inflight.end()) {
      auto j = jobs_.find(inflight->second);
      if (j != jobs_.end()) {
        stats_.duplicate_sends_total.Inc();
        j->second->waiters.push_back(std::move(reply_to));
        return;
      }
    }
  }
  auto job = std::make_unique<SendJob>();
  job->id = next_id_++;
  job->partition = o.p;
  job->key = key;
  job->server_msg_id = SendMessageId(r.sender, r.device, r.client_msg_id);
  job->time_ms = core::UnixMillis();
  job->conv_kind = r.target_kind;
  job->target = r.target;
  job->payload.assign(r.payload.begin(), r.payload.end());
  if (!reply_to.empty()) job->waiters.push_back(std::move(reply_to));
  if (admin_done) job->admin_waiters.push_back(std::move(admin_done));
  job->deadline_ms = core::MonoMillis() + opts_.send_timeout_ms;
  uint64_t id = job->id;
  o.inflight[key] = id;
  jobs_[id] = std::move(job);
  stats_.sends_total.Inc();
  if (r.target_kind == static_cast<uint8_t>(proto::TargetKind::kGroup)) {
    GroupRequest g;
    g.op = GroupOp::kLookup;
    g.group = r.target;
    g.user = r.sender;
    Ask(subj_.Partition(factory_->Partition(r.target), "group"), Encode(g), nullptr, [this, id](Reply reply) {
      auto j = jobs_.find(id);
      if (j == jobs_.end()) return;
      GroupReply gr;
      if (!reply.ok() || !Decode(reply.data(), &gr)) {
        if (!reply.ok()) stats_.requests_failed_total.Inc();
        FinishJob(id, static_cast<uint16_t>(proto::SendStatus::kUnavailable));
        return;
      }
      if (gr.status != 0) {
        FinishJob(id, gr.status);
        return;
      }
      uint64_t sender = std::get<0>(j->second->key);
      std::vector<uint64_t> recipients;
      recipients.reserve(gr.members.size());
      for (uint64_t m : gr.members) {
        if (m != sender) recipients.push_back(m);
      }
      Fanout(id, std::move(recipients));
    });
    return;
  }
  std::vector<uint64_t> recipients;
  if (r.target != r.sender) recipients.push_back(r.target);
  Fanout(id, std::move(recipients));
}

void NatsBackend::Fanout(uint64_t job_id, std::vector<uint64_t> recipients) {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return;
  SendJob& j = *it->second;
  absl::flat_hash_map<uint32_t, std::vector<uint64_t>> by_partition;
  for (uint64_t u : recipients) by_partition[factory_->Partition(u)].push_back(u);
  if (by_partition.empty()) {
    StoreSenderCopy(job_id);
    return;
  }
  j.outstanding = static_cast<uint32_t>(by_partition.size());
  for (auto& [q, users] : by_partition) {
    StoreRequest r = StoreRequestOf(j);
    r.users = std::move(users);
    r.payload = j.payload;
    auto on_stored = [this, job_id](uint16_t status, uint64_t first_time) {
      auto it = jobs_.find(job_id);
      if (it == jobs_.end() || it->second->done) return;
      SendJob& j = *it->second;
      if (status != 0) {
        j.failed = true;
        j.fail_status = status;
      }
      if (first_time != 0) j.time_ms = std::min(j.time_ms, first_time);
      if (--j.outstanding != 0) return;
      if (j.failed) {
        FinishJob(job_id, j.fail_status);
        return;
      }
      StoreSenderCopy(job_id);
    };
    Owned* local = q == j.partition ? FindOwned(q) : nullptr;
    if (local != nullptr) {
      StoreCopies(*local, r, r.payload, /*sender_copy=*/false, on_stored);
      continue;
    }
    Ask(subj_.Partition(q, "store"), Encode(r), nullptr, [this, on_stored](Reply reply) mutable {
      StoreReply sr;
      if (!reply.ok() || !Decode(reply.data(), &sr)) {
        if (!reply.ok()) stats_.requests_failed_total.Inc();
        on_stored(static_cast<uint16_t>(proto::SendStatus::kUnavailable), 0);
        return;
      }
      on_stored(sr.status, sr.first_time_ms);
    });
  }
}

void NatsBackend::StoreSenderCopy(uint64_t job_id) {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return;
  SendJob& j = *it->second;
  uint64_t sender = std::get<0>(j.key);
  Owned* o = FindOwned(j.partition);
  if (sender == 0) {
    FinishJob(job_id, 0);
    return;
  }
  if (o == nullptr) {
    FinishJob(job_id, static_cast<uint16_t>(proto::SendStatus::kUnavailable));
    return;
  }
  StoreRequest r = StoreRequestOf(j);
  r.users = {sender};
  StoreCopies(*o, r, j.payload, /*sender_copy=*/true, [this, job_id](uint16_t status, uint64_t first_time) {
    auto it = jobs_.find(job_id);
    if (it == jobs_.end()) return;
    if (first_time != 0) it->second->time_ms = std::min(it->second->time_ms, first_time);
    FinishJob(job_id, status);
  });
}

void NatsBackend::FinishJob(uint64_t job_id, uint16_t status) {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return;
  std::unique_ptr<SendJob> j = std::move(it->second);
  jobs_.erase(it);
  j->done = true;
  bool ok = status == 0;
  if (!ok && status == static_cast<uint16_t>(proto::SendStatus::kUnavailable)) stats_.send_failures_total.Inc();
  SendReply sr{status, ok ? j->server_msg_id : 0, j->time_ms};
  std::vector<uint8_t> body = Encode(sr);
  for (const std::string& w : j->waiters) Respond(w, body);
  for (AdminDone<uint64_t>& d : j->admin_waiters) {
    if (ok) {
      std::move(d)(AdminResult::Ok(), j->server_msg_id);
    } else {
      AdminResult r;
      r.code = status == static_cast<uint16_t>(proto::SendStatus::kNoSuchTarget) ? AdminCode::kNotFound
                                                                                 : AdminCode::kUnavailable;
      r.message = "the message could not be stored";
      std::move(d)(r, 0);
    }
  }
  Owned* o = FindOwned(j->partition);
  if (o != nullptr) {
    o->inflight.erase(j->key);
    if (ok && std::get<0>(j->key) != 0) {
      o->sends[j->key] = SenderCopy{j->server_msg_id, j->time_ms};
      o->sends_age.emplace_back(core::UnixMillis(), j->key);
    }
  }
  if (ok) {
    // The contract's event: the message as a PUSH body with seq 0 and conv_id the SEND's target.
    proto::PushBody ev;
    ev.server_msg_id = j->server_msg_id;
    ev.from_user = std::get<0>(j->key);
    ev.from_device = std::get<1>(j->key);
    ev.conv_kind = j->conv_kind;
    ev.conv_id = j->target;
    ev.client_msg_id = std::get<2>(j->key);
    ev.server_time_ms = j->time_ms;
    ev.payload = j->payload;
    std::vector<uint8_t> frame = Frame(0, ev);
    factory_->link().Publish(subj_.EventMessages(),
                             std::span<const uint8_t>(frame).subspan(proto::kHeaderSize));
  }
}

// ---- storing inbox copies ----

void NatsBackend::OnStoreRequest(Owned& o, StoreRequest r, std::string reply_to) {
  StoreCopies(o, r, r.payload, /*sender_copy=*/false, [this, reply_to](uint16_t status, uint64_t first_time) {
    StoreReply sr{status, first_time};
    Respond(reply_to, Encode(sr));
  });
}

void NatsBackend::StoreCopies(Owned& o, const StoreRequest& r, std::span<const uint8_t> payload, bool sender_copy,
                              StoreDone done) {
  if (r.users.empty()) {
    std::move(done)(0, 0);
    return;
  }
  auto batch = std::make_shared<StoreOp::Batch>();
  batch->remaining = static_cast<uint32_t>(r.users.size());
  batch->done = std::move(done);
  auto shared_payload = std::make_shared<const std::vector<uint8_t>>(payload.begin(), payload.end());
  uint64_t deadline = core::MonoMillis() + opts_.send_timeout_ms;
  for (uint64_t user : r.users) {
    auto op = std::make_shared<StoreOp>();
    op->batch = batch;
    op->payload = shared_payload;
    op->server_msg_id = r.server_msg_id;
    op->time_ms = r.server_time_ms;
    op->from_user = r.from_user;
    op->from_device = r.from_device;
    op->conv_kind = r.conv_kind;
    op->target = r.target;
    op->client_msg_id = r.client_msg_id;
    op->sender_copy = sender_copy;
    op->deadline_ms = deadline;
    UserAt(o, user).queue.push_back(std::move(op));
  }
  for (uint64_t user : r.users) RunUser(o.p, user);
}

void NatsBackend::RunUser(uint32_t p, uint64_t user) {
  while (true) {
    Owned* o = FindOwned(p);
    if (o == nullptr) return;
    auto uit = o->users.find(user);
    if (uit == o->users.end()) return;
    OwnerUser& u = uit->second;
    if (u.writing || u.loading || u.queue.empty()) return;
    std::shared_ptr<StoreOp> op = u.queue.front();
    uint64_t now = core::MonoMillis();
    auto finish = [&](uint16_t status, uint64_t first_time) {
      u.queue.pop_front();
      StoreOp::Batch& b = *op->batch;
      if (status != 0) b.failed = true;
      if (first_time != 0) b.first_time_ms = b.first_time_ms == 0 ? first_time : std::min(b.first_time_ms, first_time);
      if (--b.remaining == 0 && b.done) {
        StoreDone d = std::move(b.done);
        b.done = nullptr;
        std::move(d)(b.failed ? static_cast<uint16_t>(proto::SendStatus::kUnavailable) : 0, b.first_time_ms);
      }
    };
    if (auto s = o->stored.find({user, op->server_msg_id}); s != o->stored.end()) {
      // Stored before (a retry): the first copy stands. If it is this op's own publish, whose
      // acknowledgement was lost (the reload found it), its PUSH has not gone out yet.
      if (op->seq != 0) {
        uint64_t seq = s->second.first;
        DeliverToUser(*o, user, 0, seq, seq == u.last_seq ? u.last_sseq : 0, s->second.second,
                      CopyFrame(*op, user, seq, s->second.second));
      }
      finish(0, s->second.second);
      continue;
    }
    if (now >= op->deadline_ms || now >= factory_->LeaseUntil(p)) {
      finish(static_cast<uint16_t>(proto::SendStatus::kUnavailable), 0);
      continue;
    }
    if (op->retry_at_ms > now) return;  // OnTick comes back
    if (!u.loaded) {
      LoadUser(p, user);
      return;
    }
    u.writing = true;
    op->seq = u.last_seq + 1;
    PublishCopy(p, user, op);
    return;
  }
}

void NatsBackend::LoadUser(uint32_t p, uint64_t user) {
  Owned* o = FindOwned(p);
  if (o == nullptr) return;
  OwnerUser& u = UserAt(*o, user);
  u.loading = true;
  uint64_t epoch = o->epoch;
  uint64_t start = core::MonoNanos();
  stats_.fetches_total.Inc();
  // The inbox's newest copy and the user's recorded seq floor, read at once: the floor counts only when the
  // inbox is empty (a new user, or one whose messages all expired), and reading it only then would add a
  // round trip to every user's first message.
  struct Load {
    int waiting = 2;
    bool inbox_ok = false;  // answered: found, or not found
    std::optional<StoredMsg> inbox;
    bool floor_ok = false;
    uint64_t floor = 0;
  };
  auto load = std::make_shared<Load>();
  auto done = [this, p, user, epoch, load]() {
    if (--load->waiting != 0) return;
    Owned* o = FindOwned(p);
    if (o == nullptr || o->epoch != epoch) return;
    OwnerUser& u = UserAt(*o, user);
    u.loading = false;
    if (!load->inbox_ok || (!load->inbox && !load->floor_ok)) {
      // Try again a little later (OnTick), while the ops' deadlines allow.
      if (!u.queue.empty()) u.queue.front()->retry_at_ms = core::MonoMillis() + kRetryMs;
      retry_.push_back({p, user});
      return;
    }
    u.loaded = true;
    if (!load->inbox) {
      // Seqs are never reused: carry on from the floor recorded when the user last went quiet (none: 0),
      // or from what this owner last stored, if that is higher (the floor may not be written yet when the
      // copies expire under a loaded user).
      u.last_seq = std::max(u.last_seq, load->floor);
      u.last_sseq = 0;  // the inbox subject is empty: the next publish expects no copy before it
      RunUser(p, user);
      return;
    }
    const StoredMsg& m = *load->inbox;
    uint64_t tail = 0;
    absl::SimpleAtoi(AV(HeaderValue(m.headers, "Ll-Seq")), &tail);
    u.last_seq = std::max(u.last_seq, tail);
    FloorDue(*o, user, u);
    u.last_sseq = m.seq;
    // The newest copy may be one this partition's previous owner (or an attempt of ours that timed out)
    // stored: remember it, so that its retry is recognised.
    std::string_view id = HeaderValue(m.headers, "Nats-Msg-Id");
    std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(AV(id), absl::MaxSplits('.', 1));
    uint64_t smid = 0;
    proto::PushBody body;
    if (absl::SimpleAtoi(parts.first, &smid) &&
        proto::Decode(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(m.data.data()), m.data.size()),
                      &body)) {
      if (o->stored.emplace(std::make_pair(user, smid), std::make_pair(tail, body.server_time_ms)).second) {
        o->stored_age.emplace_back(core::UnixMillis(), std::make_pair(user, smid));
      }
    }
    RunUser(p, user);
  };
  nlohmann::json req;
  req["last_by_subj"] = subj_.Inbox(p, user);
  Ask(Cat("$JS.API.STREAM.MSG.GET.", subj_.InboxStream(p)), Bytes(req.dump()), nullptr,
      [this, load, done, start](Reply reply) {
        stats_.fetch_seconds.Observe(static_cast<double>(core::MonoNanos() - start) * 1e-9);
        bool not_found = false;
        std::string error;
        load->inbox = reply.ok() ? ParseMsgGet(reply.text(), &not_found, &error) : std::nullopt;
        load->inbox_ok = load->inbox.has_value() || not_found;
        done();
      });
  nlohmann::json freq;
  freq["last_by_subj"] = Cat("$KV.", subj_.Bucket("seqs"), ".u.", user);
  Ask(Cat("$JS.API.STREAM.MSG.GET.KV_", subj_.Bucket("seqs")), Bytes(freq.dump()), nullptr,
      [load, done](Reply reply) {
        bool not_found = false;
        std::string error;
        std::optional<StoredMsg> m = reply.ok() ? ParseMsgGet(reply.text(), &not_found, &error) : std::nullopt;
        load->floor_ok = not_found || (m && absl::SimpleAtoi(AV(m->data), &load->floor));
        done();
      });
}

void NatsBackend::PublishCopy(uint32_t p, uint64_t user, std::shared_ptr<StoreOp> op) {
  Owned* o = FindOwned(p);
  OwnerUser& u = UserAt(*o, user);
  auto frame = std::make_shared<std::vector<uint8_t>>(CopyFrame(*op, user, op->seq, op->time_ms));
  Headers h;
  h.emplace_back("Nats-Msg-Id", Cat(op->server_msg_id, ".", user));
  h.emplace_back("Nats-Expected-Last-Subject-Sequence", Cat(u.last_sseq));
  h.emplace_back("Ll-Seq", Cat(op->seq));
  h.emplace_back("Ll-Epoch", Cat(o->epoch));
  if (op->sender_copy) h.emplace_back("Ll-Src", Cat(op->from_device, ".", op->client_msg_id));
  ++pending_publishes_;
  uint64_t start = core::MonoNanos();
  uint64_t epoch = o->epoch;
  Ask(subj_.Inbox(p, user), std::span<const uint8_t>(*frame).subspan(proto::kHeaderSize), &h,
      [this, p, user, op, frame, start, epoch](Reply reply) {
        --pending_publishes_;
        Owned* o = FindOwned(p);
        if (o == nullptr || o->epoch != epoch) return;  // the partition went; DropPartition answered the op
        stats_.publish_seconds.Observe(static_cast<double>(core::MonoNanos() - start) * 1e-9);
        OwnerUser& u = UserAt(*o, user);
        u.writing = false;
        PubAck a = reply.ok() ? ParsePubAck(reply.text()) : PubAck{};
        if (a.ok && !a.duplicate) {
          stats_.publishes_total.Inc();
          u.last_seq = op->seq;
          u.last_sseq = a.seq;
          FloorDue(*o, user, u);
          o->stored[{user, op->server_msg_id}] = {op->seq, op->time_ms};
          o->stored_age.emplace_back(core::UnixMillis(), std::make_pair(user, op->server_msg_id));
          DeliverToUser(*o, user, 0, op->seq, a.seq, op->time_ms, *frame);
          u.queue.pop_front();
          StoreOp::Batch& b = *op->batch;
          if (--b.remaining == 0 && b.done) {
            StoreDone d = std::move(b.done);
            b.done = nullptr;
            std::move(d)(b.failed ? static_cast<uint16_t>(proto::SendStatus::kUnavailable) : 0, b.first_time_ms);
          }
          RunUser(p, user);
          return;
        }
        // Not stored now: a timeout (it may have landed), a duplicate of an earlier attempt, or the inbox
        // moved under us. Either way reload the inbox's newest copy, which tells whether this one is in, and
        // go again (with the same message id, so JetStream recognises a copy that did land).
        u.loaded = false;
        if (a.ok && a.duplicate) {
          // An earlier attempt stored it at a.seq: learn its seq and time from there, then carry on.
          nlohmann::json req;
          req["seq"] = a.seq;
          u.loading = true;
          Ask(Cat("$JS.API.STREAM.MSG.GET.", subj_.InboxStream(p)), Bytes(req.dump()), nullptr,
              [this, p, user, op, epoch](Reply r) {
                Owned* o = FindOwned(p);
                if (o == nullptr || o->epoch != epoch) return;
                OwnerUser& u = UserAt(*o, user);
                u.loading = false;
                bool not_found = false;
                std::string error;
                std::optional<StoredMsg> m = r.ok() ? ParseMsgGet(r.text(), &not_found, &error) : std::nullopt;
                proto::PushBody body;
                if (m && proto::Decode(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(m->data.data()),
                                                                m->data.size()),
                                       &body)) {
                  o->stored[{user, op->server_msg_id}] = {body.seq, body.server_time_ms};
                  o->stored_age.emplace_back(core::UnixMillis(), std::make_pair(user, op->server_msg_id));
                  std::vector<uint8_t> frame = Frame(0, body);
                  DeliverToUser(*o, user, 0, body.seq, m->seq, body.server_time_ms, frame);
                }
                RunUser(p, user);
              });
          return;
        }
        if (a.err_code == kErrWrongLastSequence) {
          stats_.fence_conflicts_total.Inc();
        } else {
          stats_.publish_errors_total.Inc();
          op->retry_at_ms = core::MonoMillis() + kRetryMs;
          retry_.push_back({p, user});
          return;
        }
        RunUser(p, user);
      });
}

void NatsBackend::DeliverToUser(Owned& o, uint64_t user, uint32_t device, uint64_t seq, uint64_t sseq,
                                uint64_t time_ms, std::span<const uint8_t> frame) {
  auto it = o.users.find(user);
  if (it == o.users.end() || it->second.at.empty()) return;
  Delivery d{user, device, seq, sseq, time_ms, frame};
  std::vector<uint8_t> body = Encode(d);
  absl::InlinedVector<uint32_t, 2> sent;
  for (const OwnerUser::At& a : it->second.at) {
    if (std::find(sent.begin(), sent.end(), a.gateway) != sent.end()) continue;
    sent.push_back(a.gateway);
    std::string subject = subj_.Gateway(gateways_[a.gateway]);
    if (factory_->link().Publish(subject, body)) {
      stats_.deliveries_sent_total.Inc();
    } else if (undelivered_bytes_ + body.size() <= kUndeliveredMaxBytes) {
      undelivered_bytes_ += body.size();
      undelivered_.emplace_back(std::move(subject), body);
    }
  }
}

void NatsBackend::OnForward(const Forward& f) {
  Owned* o = FindOwned(factory_->Partition(f.user));
  if (o == nullptr) return;
  DeliverToUser(*o, f.user, f.device, 0, 0, 0, f.frame);
}

// ---- directory and presence ----

void NatsBackend::OnReg(Owned& o, const RegRequest& r, uint32_t shard) {
  uint32_t g = GatewayIndex(r.gateway);
  if (r.full != 0) {
    absl::flat_hash_set<uint64_t> listed;
    for (const RegEntry& e : r.entries) listed.insert(e.user);
    std::vector<uint64_t> gone;
    for (const auto& [user, u] : o.users) {
      for (const OwnerUser::At& a : u.at) {
        if (a.gateway == g && a.shard == shard && !listed.contains(user)) gone.push_back(user);
      }
    }
    for (uint64_t user : gone) SetDevices(o, user, g, shard, 0);
  }
  for (const RegEntry& e : r.entries) SetDevices(o, e.user, g, shard, e.devices);
}

void NatsBackend::SetDevices(Owned& o, uint64_t user, uint32_t gateway, uint32_t shard, uint32_t devices) {
  OwnerUser& u = UserAt(o, user);
  uint32_t before = u.devices();
  bool had = !u.at.empty();
  auto it = std::find_if(u.at.begin(), u.at.end(),
                         [&](const OwnerUser::At& a) { return a.gateway == gateway && a.shard == shard; });
  if (devices == 0) {
    if (it != u.at.end()) u.at.erase(it);
  } else if (it != u.at.end()) {
    it->devices = devices;
  } else {
    u.at.push_back(OwnerUser::At{gateway, shard, devices});
  }
  bool has = !u.at.empty();
  if (had != has) o.directory_entries += has ? 1 : -1;
  uint32_t after = u.devices();
  if ((before == 0) != (after == 0)) PresenceChanged(o, user, after != 0);
}

void NatsBackend::PresenceChanged(Owned& o, uint64_t user, bool online) {
  OwnerUser& u = UserAt(o, user);
  if (u.watchers == nullptr || u.watchers->empty()) return;
  proto::PresenceBody b;
  b.user_id = user;
  b.online = online ? 1 : 0;
  b.devices = online ? 1 : 0;
  b.time_ms = core::UnixMillis();
  std::vector<uint8_t> frame = Frame(0, b);
  for (const auto& [subscriber, from] : *u.watchers) {
    Forward f{subscriber, 0, frame};
    factory_->link().Publish(subj_.Partition(factory_->Partition(subscriber), "fwd"), Encode(f));
    stats_.presence_events_total.Inc();
  }
}

void NatsBackend::Watch(Owned& o, uint64_t user, uint64_t subscriber, uint32_t gateway, uint32_t shard, int delta) {
  OwnerUser& u = UserAt(o, user);
  if (delta > 0 && u.watchers == nullptr) {
    u.watchers = std::make_unique<absl::flat_hash_map<uint64_t, absl::InlinedVector<OwnerUser::WatchFrom, 1>>>();
  }
  if (u.watchers == nullptr) return;
  auto w = u.watchers->find(subscriber);
  if (w == u.watchers->end()) {
    if (delta < 0) return;
    w = u.watchers->emplace(subscriber, absl::InlinedVector<OwnerUser::WatchFrom, 1>{}).first;
  }
  auto& from = w->second;
  auto f = std::find_if(from.begin(), from.end(),
                        [&](const OwnerUser::WatchFrom& x) { return x.gateway == gateway && x.shard == shard; });
  if (delta > 0) {
    if (f == from.end()) {
      from.push_back(OwnerUser::WatchFrom{gateway, shard, 1});
    } else {
      ++f->devices;
    }
  } else if (f != from.end() && --f->devices == 0) {
    from.erase(f);
  }
  if (from.empty()) u.watchers->erase(w);
  if (u.watchers->empty()) u.watchers.reset();
}

size_t NatsBackend::DropWatchesFrom(Owned& o, uint32_t gateway, std::optional<uint32_t> shard) {
  size_t dropped = 0;
  std::vector<uint64_t> touched;
  for (auto& [user, u] : o.users) {
    if (u.watchers == nullptr) continue;
    for (auto w = u.watchers->begin(); w != u.watchers->end();) {
      auto& from = w->second;
      auto gone = std::remove_if(from.begin(), from.end(), [&](const OwnerUser::WatchFrom& x) {
        return x.gateway == gateway && (!shard || x.shard == *shard);
      });
      dropped += static_cast<size_t>(from.end() - gone);
      from.erase(gone, from.end());
      if (from.empty()) {
        u.watchers->erase(w++);
      } else {
        ++w;
      }
    }
    if (u.watchers->empty()) {
      u.watchers.reset();
      touched.push_back(user);
    }
  }
  for (uint64_t user : touched) UserAt(o, user);  // back on the idle list
  return dropped;
}

void NatsBackend::OnPresenceRequest(Owned& o, const PresenceRequest& r, std::string reply_to) {
  uint32_t g = GatewayIndex(r.gateway);
  PresenceReply out;
  if (r.subscribe == kPresenceFull) {
    DropWatchesFrom(o, g, r.shard);
    for (size_t i = 0; i < r.users.size(); ++i) Watch(o, r.users[i], r.subscribers[i], g, r.shard, 1);
    Respond(reply_to, Encode(out));
    return;
  }
  for (uint64_t user : r.users) {
    if (r.subscribe == 1) {
      Watch(o, user, r.subscriber, g, r.shard, 1);
    } else if (r.subscribe == 0) {
      Watch(o, user, r.subscriber, g, r.shard, -1);
    }
    uint32_t n = UserAt(o, user).devices();
    out.states.push_back(PresenceState{user, static_cast<uint8_t>(n > 0 ? 1 : 0), n});
  }
  Respond(reply_to, Encode(out));
}

// ---- groups ----

void NatsBackend::OnGroupRequest(Owned& o, GroupRequest r, std::string reply_to,
                                 absl::AnyInvocable<void(GroupReply) &&> local_done) {
  uint32_t p = o.p;
  uint64_t gid = r.group;
  auto answer = std::make_shared<absl::AnyInvocable<void(GroupReply) &&>>(
      [this, reply_to, local_done = std::move(local_done)](GroupReply gr) mutable {
        if (local_done) {
          std::move(local_done)(std::move(gr));
        } else {
          Respond(reply_to, Encode(gr));
        }
      });
  Group& g = o.groups[gid];
  g.queue.push_back([this, p, gid, r = std::move(r), answer]() mutable {
    auto reply = [&](uint16_t status) {
      GroupReply gr;
      gr.status = status;
      std::move (*answer)(std::move(gr));
    };
    Owned* o = FindOwned(p);
    if (o == nullptr) {
      reply(r.op == GroupOp::kLookup ? static_cast<uint16_t>(proto::SendStatus::kUnavailable)
                                     : static_cast<uint16_t>(proto::GroupStatus::kUnavailable));
      return;
    }
    Group& g = o->groups[gid];
    if (!g.loaded) {  // its entry could not be read
      reply(r.op == GroupOp::kLookup ? static_cast<uint16_t>(proto::SendStatus::kUnavailable)
                                     : static_cast<uint16_t>(proto::GroupStatus::kUnavailable));
      return;
    }
    using GS = proto::GroupStatus;
    auto status = [](GS s) { return static_cast<uint16_t>(s); };
    switch (r.op) {
      case GroupOp::kLookup: {
        GroupReply gr;
        if (!g.exists) {
          gr.status = static_cast<uint16_t>(proto::SendStatus::kNoSuchTarget);
        } else if (r.user != 0 && !g.members.contains(r.user)) {
          gr.status = static_cast<uint16_t>(proto::SendStatus::kRejected);
        } else {
          gr.members.assign(g.members.begin(), g.members.end());
        }
        std::move (*answer)(std::move(gr));
        return;
      }
      case GroupOp::kMembers: {
        GroupReply gr;
        if (!g.exists) {
          gr.status = status(GS::kNoSuchGroup);
        } else {
          for (auto it = g.members.upper_bound(r.after); it != g.members.end(); ++it) {
            if (gr.members.size() == kMembersPage) {
              gr.has_more = 1;
              break;
            }
            gr.members.push_back(*it);
          }
        }
        std::move (*answer)(std::move(gr));
        return;
      }
      default:
        break;
    }
    // A change: compute the new member set, write it with the bucket entry's revision as a condition.
    absl::btree_set<uint64_t> next = g.members;
    uint16_t st = 0;
    std::vector<uint64_t> users = r.users.empty() ? std::vector<uint64_t>{r.user} : r.users;
    if (r.op == GroupOp::kCreate || r.op == GroupOp::kCreateWith) {
      if (gid == 0) {
        st = status(GS::kBadRequest);
      } else if (g.exists) {
        st = status(GS::kAlreadyExists);
      } else {
        next.clear();
        if (r.op == GroupOp::kCreate) {
          next.insert(r.user);
        } else {
          next.insert(r.users.begin(), r.users.end());
        }
      }
    } else if (!g.exists) {
      st = status(GS::kNoSuchGroup);
    } else if (r.op == GroupOp::kJoin) {
      for (uint64_t u : users) {
        if (next.contains(u)) continue;
        if (next.size() >= opts_.messaging.max_group_members) {
          st = status(GS::kFull);
          break;
        }
        next.insert(u);
      }
    } else {
      for (uint64_t u : users) {
        if (next.erase(u) == 0 && st == 0) st = status(GS::kNotMember);
      }
    }
    bool changed = st == 0 ? (!g.exists || next != g.members) : (r.op == GroupOp::kJoin && next != g.members);
    if (!changed) {
      reply(st);
      return;
    }
    g.busy = true;
    std::vector<uint8_t> value = MemberBytes(next);
    Headers h;
    h.emplace_back("Nats-Expected-Last-Subject-Sequence", Cat(g.revision));
    uint64_t epoch = o->epoch;
    Ask(Cat("$KV.", subj_.Bucket("groups"), ".g.", gid), value, &h,
        [this, p, gid, epoch, next = std::move(next), st, answer](Reply rep) mutable {
          Owned* o = FindOwned(p);
          GroupReply gr;
          if (o == nullptr || o->epoch != epoch) {
            gr.status = static_cast<uint16_t>(proto::GroupStatus::kUnavailable);
            std::move (*answer)(std::move(gr));
            return;
          }
          Group& g = o->groups[gid];
          g.busy = false;
          PubAck a = rep.ok() ? ParsePubAck(rep.text()) : PubAck{};
          if (a.ok) {
            g.revision = a.seq;
            g.exists = true;
            g.members = std::move(next);
            gr.status = st;
          } else {
            // Unknown state (or someone else wrote it): read it again before the next change.
            g.loaded = false;
            gr.status = static_cast<uint16_t>(proto::GroupStatus::kUnavailable);
          }
          std::move (*answer)(std::move(gr));
          RunGroup(p, gid);
        });
  });
  RunGroup(p, gid);
}

void NatsBackend::RunGroup(uint32_t p, uint64_t gid) {
  while (true) {
    Owned* o = FindOwned(p);
    if (o == nullptr) return;
    Group& g = o->groups[gid];
    if (g.busy || g.queue.empty()) return;
    if (!g.loaded) {
      g.busy = true;
      nlohmann::json req;
      req["last_by_subj"] = Cat("$KV.", subj_.Bucket("groups"), ".g.", gid);
      uint64_t epoch = o->epoch;
      Ask(Cat("$JS.API.STREAM.MSG.GET.KV_", subj_.Bucket("groups")), Bytes(req.dump()), nullptr,
          [this, p, gid, epoch](Reply reply) {
            Owned* o = FindOwned(p);
            if (o == nullptr || o->epoch != epoch) return;
            Group& g = o->groups[gid];
            g.busy = false;
            bool not_found = false;
            std::string error;
            std::optional<StoredMsg> m = reply.ok() ? ParseMsgGet(reply.text(), &not_found, &error) : std::nullopt;
            if (!m && !not_found) {
              // Cannot read it: every waiting op is answered UNAVAILABLE (they see it unloaded).
              std::deque<absl::AnyInvocable<void() &&>> q;
              q.swap(g.queue);
              for (auto& fn : q) std::move(fn)();
              return;
            }
            g.loaded = true;
            g.exists = false;
            g.members.clear();
            g.revision = 0;
            if (m) {
              g.revision = m->seq;
              std::string_view op = HeaderValue(m->headers, "KV-Operation");
              if (op != "DEL" && op != "PURGE") {
                g.exists = true;
                Reader rd(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(m->data.data()), m->data.size()));
                uint64_t id;
                while (rd.U64(&id)) g.members.insert(id);
              }
            }
            RunGroup(p, gid);
          });
      return;
    }
    absl::AnyInvocable<void() &&> fn = std::move(g.queue.front());
    g.queue.pop_front();
    std::move(fn)();
  }
}

// ---- housekeeping ----

void NatsBackend::ExpireIdempotency(Owned& o, uint64_t now_ms) {
  uint64_t window = opts_.messaging.idempotency_window_ms;
  uint64_t cutoff = now_ms > window ? now_ms - window : 0;
  while (!o.sends_age.empty() && o.sends_age.front().first < cutoff) {
    o.sends.erase(o.sends_age.front().second);
    o.sends_age.pop_front();
  }
  while (!o.stored_age.empty() && o.stored_age.front().first < cutoff) {
    o.stored.erase(o.stored_age.front().second);
    o.stored_age.pop_front();
  }
}

}  // namespace longlink::gateway::nats
