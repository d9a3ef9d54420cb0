#include "gateway/backend/nats/manager.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>

#include "absl/random/random.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/clock.h"
#include "nlohmann/json.hpp"
#include "protocol/frame.h"

namespace longlink::gateway::nats {
namespace {

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

PartitionManager::PartitionManager(NatsFactory* f)
    : f_(f),
      link_(f->link()),
      owners_(f->subjects().Bucket("owners")),
      gateways_(f->subjects().Bucket("gateways")),
      lease_value_(absl::StrCat(f->options().gateway_id, "/", absl::Hex(absl::Uniform<uint64_t>(absl::BitGen())))) {}

PartitionManager::~PartitionManager() { Stop(false); }

void PartitionManager::Start() {
  started_ms_ = core::MonoMillis();
  thread_ = std::thread([this] { Loop(); });
}

void PartitionManager::Stop(bool release) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  if (!release) return;
  std::map<uint32_t, Lease> leases;
  {
    std::lock_guard<std::mutex> lock(mu_);
    leases.swap(leases_);
  }
  for (const auto& [p, l] : leases) {
    f_->SetLeaseUntil(p, 0);
    bool conflict = false;
    KvPut(link_, owners_, Cat("p.", p), "", l.revision, /*del=*/true, &conflict, 2000);
  }
  if (!leases.empty()) {
    std::fprintf(stderr, "longlink-gateway: nats: released %zu partitions\n", leases.size());
  }
}

void PartitionManager::Drain() {
  std::lock_guard<std::mutex> lock(mu_);
  draining_ = true;
  wake_ = true;
  cv_.notify_all();
}

void PartitionManager::Wake() {
  std::lock_guard<std::mutex> lock(mu_);
  wake_ = true;
  cv_.notify_all();
}

size_t PartitionManager::owned() const {
  std::lock_guard<std::mutex> lock(mu_);
  return leases_.size();
}

// ---- bucket entries ----

std::optional<PartitionManager::KvEntry> PartitionManager::KvGet(NatsLink& link, const std::string& bucket,
                                                                 const std::string& key, uint64_t timeout_ms) {
  nlohmann::json req;
  req["last_by_subj"] = Cat("$KV.", bucket, ".", key);
  std::string body = req.dump();
  Reply r = link.RequestSync(Cat("$JS.API.STREAM.MSG.GET.KV_", bucket), Bytes(body), nullptr, timeout_ms);
  if (!r.ok()) return std::nullopt;
  bool not_found = false;
  std::string error;
  std::optional<StoredMsg> m = ParseMsgGet(r.text(), &not_found, &error);
  KvEntry e;
  if (!m) {
    if (not_found) return e;
    return std::nullopt;
  }
  e.found = true;
  e.revision = m->seq;
  std::string_view op = HeaderValue(m->headers, "KV-Operation");
  e.deleted = op == "DEL" || op == "PURGE";
  e.value = m->data;
  return e;
}

uint64_t PartitionManager::KvPut(NatsLink& link, const std::string& bucket, const std::string& key,
                                 const std::string& value, std::optional<uint64_t> expected, bool del,
                                 bool* conflict, uint64_t timeout_ms) {
  *conflict = false;
  Headers h;
  if (expected) h.emplace_back("Nats-Expected-Last-Subject-Sequence", Cat(*expected));
  if (del) h.emplace_back("KV-Operation", "DEL");
  Reply r = link.RequestSync(Cat("$KV.", bucket, ".", key), Bytes(value), &h, timeout_ms);
  if (!r.ok()) return 0;
  PubAck a = ParsePubAck(r.text());
  if (!a.ok) {
    *conflict = a.err_code == kErrWrongLastSequence;
    return 0;
  }
  return a.seq;
}

// ---- the loop ----

void PartitionManager::Loop() {
  uint64_t period = std::max<uint64_t>(500, f_->options().lease_ms / 3);
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (stop_) return;
    }
    Step();
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(period), [this] { return stop_ || wake_; });
    wake_ = false;
    if (stop_) return;
  }
}

void PartitionManager::Step() {
  const NatsOptions& o = f_->options();
  uint64_t now = core::MonoMillis();
  if (!link_.connected()) {
    // Leases run out on their own; a partition is given up when its time is over.
    std::vector<uint32_t> over;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [p, l] : leases_) {
        if (now >= l.valid_until_ms) over.push_back(p);
      }
    }
    for (uint32_t p : over) Lose(p, "its lease ran out while NATS was unreachable");
    return;
  }
  RenewIfDue(/*force=*/true);
  std::optional<std::set<std::string>> live = LiveGateways();
  if (!live) return;
  live->insert(o.gateway_id);
  for (const std::string& g : live_) {
    if (live->count(g) == 0) missing_since_.try_emplace(g, now);
  }
  auto gone = std::make_shared<absl::flat_hash_set<std::string>>();
  for (auto it = missing_since_.begin(); it != missing_since_.end();) {
    if (live->count(it->first) != 0) {
      it = missing_since_.erase(it);
    } else if (now - it->second >= o.lease_ms) {
      gone->insert(it->first);
      it = missing_since_.erase(it);
    } else {
      ++it;
    }
  }
  if (!gone->empty()) {
    for (uint32_t s = 0; s < f_->shards(); ++s) {
      f_->OnShard(s, [gone](NatsBackend& b) { b.PruneGateways(*gone); });
    }
  }
  live_ = *live;
  bool draining;
  size_t mine;
  {
    std::lock_guard<std::mutex> lock(mu_);
    draining = draining_;
    mine = leases_.size();
  }
  if (draining) {
    std::vector<uint32_t> ps;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [p, l] : leases_) ps.push_back(p);
    }
    for (uint32_t p : ps) Release(p);
    return;
  }
  // Give peers that start at the same moment one round to show up before taking a share.
  if (now - started_ms_ < std::min<uint64_t>(1500, o.lease_ms / 3)) return;
  size_t share = (o.partitions + live_.size() - 1) / live_.size();
  if (mine < share) {
    // Start at a place that depends on the gateway, so that gateways starting together want different ones.
    uint32_t first = static_cast<uint32_t>(core::Mix64(std::hash<std::string>()(o.gateway_id)) % o.partitions);
    std::vector<uint32_t> order;
    for (uint32_t i = 0; i < o.partitions; ++i) order.push_back((first + i) % o.partitions);
    Acquire(order, share - mine);
  } else if (mine > share) {
    // Someone joined: hand over the extra partitions.
    std::vector<uint32_t> ps;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [p, l] : leases_) ps.push_back(p);
    }
    for (size_t i = share; i < ps.size(); ++i) Release(ps[i]);
  }
}

std::optional<std::set<std::string>> PartitionManager::LiveGateways() {
  nlohmann::json req;
  req["subjects_filter"] = Cat("$KV.", gateways_, ".>");
  std::string body = req.dump();
  Reply r = link_.RequestSync(Cat("$JS.API.STREAM.INFO.KV_", gateways_), Bytes(body), nullptr,
                              f_->options().request_timeout_ms);
  if (!r.ok()) return std::nullopt;
  nlohmann::json j = nlohmann::json::parse(r.text(), nullptr, false);
  if (!j.is_object() || j.contains("error")) return std::nullopt;
  std::set<std::string> out;
  auto state = j.find("state");
  if (state != j.end() && state->is_object()) {
    auto subjects = state->find("subjects");
    if (subjects != state->end() && subjects->is_object()) {
      std::string prefix = Cat("$KV.", gateways_, ".");
      for (auto it = subjects->begin(); it != subjects->end(); ++it) {
        if (absl::StartsWith(it.key(), prefix)) out.insert(it.key().substr(prefix.size()));
      }
    }
  }
  return out;
}

uint64_t PartitionManager::Claim(uint32_t p) {
  const NatsOptions& o = f_->options();
  std::string key = Cat("p.", p);
  std::optional<KvEntry> e = KvGet(link_, owners_, key, o.request_timeout_ms);
  if (!e) return 0;
  if (e->found && !e->deleted) return 0;  // held (by another process, or by this one's earlier claim)
  bool conflict = false;
  return KvPut(link_, owners_, key, lease_value_, e->found ? e->revision : 0, false, &conflict,
               o.request_timeout_ms);
}

bool PartitionManager::Confirm(uint32_t p, uint64_t rev) {
  const NatsOptions& o = f_->options();
  bool conflict = false;
  uint64_t sent = core::MonoMillis();
  uint64_t epoch = KvPut(link_, owners_, Cat("p.", p), lease_value_, rev, false, &conflict, o.request_timeout_ms);
  if (epoch == 0) {
    if (!conflict) {
      // Unknown whether the renewal landed: leave the entry to expire rather than hold it half-known.
      std::fprintf(stderr, "longlink-gateway: nats: could not confirm the lease of partition %u\n", p);
    }
    return false;
  }
  uint64_t margin = o.lease_ms / 5;
  {
    std::lock_guard<std::mutex> lock(mu_);
    leases_[p] = Lease{epoch, sent + o.lease_ms - margin};
  }
  absl::StatusOr<std::unique_ptr<PartitionSnapshot>> snap = Replay(p, epoch);
  if (!snap.ok()) {
    std::fprintf(stderr, "longlink-gateway: nats: replay of partition %u failed: %s; giving it up\n", p,
                 std::string(snap.status().message()).c_str());
    Release(p);
    return false;
  }
  uint64_t until;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = leases_.find(p);
    if (it == leases_.end()) return false;  // lost while replaying
    until = it->second.valid_until_ms;
  }
  f_->SetLeaseUntil(p, until);
  std::fprintf(stderr, "longlink-gateway: nats: owning partition %u (epoch %lu, %lu messages replayed)\n", p,
               static_cast<unsigned long>(epoch), static_cast<unsigned long>((*snap)->replayed));
  std::shared_ptr<PartitionSnapshot> shared(std::move(*snap));
  f_->OnShard(f_->ShardOfPartition(p), [shared](NatsBackend& b) mutable {
    b.TakeOver(std::make_unique<PartitionSnapshot>(std::move(*shared)));
  });
  return true;
}

size_t PartitionManager::Acquire(const std::vector<uint32_t>& wanted, size_t count) {
  const NatsOptions& o = f_->options();
  // Claim first, all together: each claim is a compare-and-set on the partition's bucket entry.
  std::vector<std::pair<uint32_t, uint64_t>> claimed;
  for (uint32_t p : wanted) {
    if (claimed.size() >= count) break;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (leases_.count(p) != 0 || stop_) continue;
    }
    uint64_t rev = Claim(p);
    if (rev != 0) claimed.emplace_back(p, rev);
  }
  if (claimed.empty()) return 0;
  // A previous owner stopped writing before its lease could expire in the bucket; what it published just
  // before may still be in flight for up to one request timeout. Wait that out once for the whole batch,
  // then confirm (which also extends) each lease and replay its partition.
  // Leases already held are renewed meanwhile, as between the confirmations and replays that follow.
  uint64_t fence_end = core::MonoMillis() + o.request_timeout_ms + 500;
  while (core::MonoMillis() < fence_end) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      uint64_t slice = std::min<uint64_t>(250, fence_end - std::min(fence_end, core::MonoMillis()));
      if (cv_.wait_for(lock, std::chrono::milliseconds(slice), [this] { return stop_; })) return 0;
    }
    RenewIfDue(false);
  }
  size_t got = 0;
  for (const auto& [p, rev] : claimed) {
    RenewIfDue(false);
    if (Confirm(p, rev)) ++got;
  }
  return got;
}

void PartitionManager::RenewIfDue(bool force) {
  const NatsOptions& o = f_->options();
  uint64_t period = std::max<uint64_t>(500, o.lease_ms / 3);
  if (!force && core::MonoMillis() - last_renew_ms_ < period) return;
  last_renew_ms_ = core::MonoMillis();
  // This gateway's lease of life, then the partitions'.
  bool conflict = false;
  KvPut(link_, gateways_, o.gateway_id, Cat(core::UnixMillis()), std::nullopt, false, &conflict,
        o.request_timeout_ms);
  RenewAll();
}

void PartitionManager::RenewAll() {
  const NatsOptions& o = f_->options();
  std::map<uint32_t, Lease> leases;
  {
    std::lock_guard<std::mutex> lock(mu_);
    leases = leases_;
  }
  for (const auto& [p, l] : leases) {
    bool conflict = false;
    uint64_t sent = core::MonoMillis();
    uint64_t rev = KvPut(link_, owners_, Cat("p.", p), lease_value_, l.revision, false, &conflict,
                         o.request_timeout_ms);
    if (rev == 0 && Reconcile(p, sent)) continue;
    uint64_t now = core::MonoMillis();
    if (rev != 0) {
      uint64_t until = sent + o.lease_ms - o.lease_ms / 5;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = leases_.find(p);
        if (it == leases_.end()) continue;
        it->second = Lease{rev, until};
      }
      if (f_->LeaseUntil(p) != 0) f_->SetLeaseUntil(p, until);
    } else if (conflict) {
      Lose(p, "another gateway holds its lease");
    } else if (now >= l.valid_until_ms) {
      Lose(p, "its lease could not be renewed in time");
    }
  }
}

bool PartitionManager::Reconcile(uint32_t p, uint64_t sent) {
  const NatsOptions& o = f_->options();
  std::optional<KvEntry> e = KvGet(link_, owners_, Cat("p.", p), o.request_timeout_ms);
  if (!e || !e->found || e->deleted || e->value != lease_value_) return false;
  // Only this process writes this value, so the entry is still this lease, at a revision it did not see.
  bool conflict = false;
  uint64_t rev = KvPut(link_, owners_, Cat("p.", p), lease_value_, e->revision, false, &conflict,
                       o.request_timeout_ms);
  if (rev == 0) return false;
  // The lease runs from the first renewal sent after the last one known to have landed.
  uint64_t until = sent + o.lease_ms - o.lease_ms / 5;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = leases_.find(p);
    if (it == leases_.end()) return true;
    it->second = Lease{rev, until};
  }
  if (f_->LeaseUntil(p) != 0) f_->SetLeaseUntil(p, until);
  std::fprintf(stderr, "longlink-gateway: nats: kept partition %u: a renewal whose answer was lost had landed\n", p);
  return true;
}

void PartitionManager::Lose(uint32_t p, const char* why) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (leases_.erase(p) == 0) return;
  }
  f_->SetLeaseUntil(p, 0);
  std::fprintf(stderr, "longlink-gateway: nats: lost partition %u: %s\n", p, why);
  f_->OnShard(f_->ShardOfPartition(p), [p, why](NatsBackend& b) { b.DropPartition(p, why); });
}

void PartitionManager::Release(uint32_t p) {
  Lease l;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = leases_.find(p);
    if (it == leases_.end()) return;
    l = it->second;
    leases_.erase(it);
  }
  // The shard stops writing first; then the entry goes, so the next owner need not wait for it to expire.
  f_->SetLeaseUntil(p, 0);
  f_->OnShard(f_->ShardOfPartition(p), [p](NatsBackend& b) { b.DropPartition(p, "released"); });
  bool conflict = false;
  KvPut(link_, owners_, Cat("p.", p), "", l.revision, /*del=*/true, &conflict,
        f_->options().request_timeout_ms);
}

// ---- replay ----

absl::StatusOr<std::unique_ptr<PartitionSnapshot>> PartitionManager::Replay(uint32_t p, uint64_t epoch) {
  const NatsOptions& o = f_->options();
  const Subjects& s = f_->subjects();
  auto snap = std::make_unique<PartitionSnapshot>();
  snap->partition = p;
  snap->epoch = epoch;
  std::string stream = s.InboxStream(p);
  std::string deliver = link_.NewInbox();
  // Shared with the subscription's callback, which may still run after this returns.
  struct Inbox {
    std::mutex m;
    std::condition_variable cv;
    std::deque<Reply> got;
  };
  auto box = std::make_shared<Inbox>();
  natsSubscription* sub = link_.Subscribe(deliver, [box](Reply r) {
    std::lock_guard<std::mutex> lock(box->m);
    box->got.push_back(std::move(r));
    box->cv.notify_all();
  });
  if (sub == nullptr) return absl::UnavailableError("cannot subscribe for the replay");
  // Everything stored within one idempotency window (plus the fence and some slack) before now.
  uint64_t back_ms = o.messaging.idempotency_window_ms + o.request_timeout_ms + 5000;
  absl::Time start = absl::Now() - absl::Milliseconds(static_cast<int64_t>(back_ms));
  nlohmann::json cfg;
  cfg["deliver_subject"] = deliver;
  cfg["deliver_policy"] = "by_start_time";
  cfg["opt_start_time"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E9SZ", start, absl::UTCTimeZone());
  cfg["ack_policy"] = "none";
  cfg["replay_policy"] = "instant";
  cfg["filter_subject"] = s.InboxWildcard(p);
  cfg["mem_storage"] = true;
  cfg["num_replicas"] = 1;
  cfg["inactive_threshold"] = uint64_t{30} * 1000000000ull;
  nlohmann::json req;
  req["stream_name"] = stream;
  req["config"] = cfg;
  std::string body = req.dump();
  Reply created =
      link_.RequestSync(Cat("$JS.API.CONSUMER.CREATE.", stream), Bytes(body), nullptr, o.request_timeout_ms);
  auto cleanup = [&](const std::string& name) {
    link_.Unsubscribe(sub);
    if (!name.empty()) {
      link_.RequestSync(Cat("$JS.API.CONSUMER.DELETE.", stream, ".", name), {}, nullptr, o.request_timeout_ms);
    }
  };
  if (!created.ok()) {
    cleanup("");
    return absl::UnavailableError("creating the replay consumer timed out");
  }
  nlohmann::json info = nlohmann::json::parse(created.text(), nullptr, false);
  if (!info.is_object() || info.contains("error")) {
    cleanup("");
    return absl::UnavailableError(Cat("creating the replay consumer: ", std::string(created.text())));
  }
  std::string name = info.value("name", std::string());
  uint64_t expect = info.value("num_pending", uint64_t{0});
  uint64_t seen = 0;
  uint64_t last_progress = core::MonoMillis();
  while (seen < expect) {
    // A long replay keeps its lease (and every other) alive.
    RenewIfDue(false);
    std::deque<Reply> batch;
    {
      std::unique_lock<std::mutex> lock(box->m);
      box->cv.wait_for(lock, std::chrono::milliseconds(200), [&] { return !box->got.empty(); });
      batch.swap(box->got);
    }
    if (batch.empty()) {
      if (core::MonoMillis() - last_progress > 10000) {
        cleanup(name);
        return absl::UnavailableError(Cat("replay stalled after ", seen, " of ", expect, " messages"));
      }
      continue;
    }
    last_progress = core::MonoMillis();
    for (Reply& r : batch) {
      // "$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>"
      std::vector<absl::string_view> meta = absl::StrSplit(AV(r.reply_to()), '.');
      if (meta.size() < 9 || meta[0] != "$JS") continue;  // idle heartbeats and the like
      ++seen;
      uint64_t sseq = 0;
      if (!absl::SimpleAtoi(meta[5], &sseq)) continue;
      std::string_view subject = r.subject();
      uint64_t user = 0;
      if (!absl::SimpleAtoi(AV(subject.substr(subject.rfind('.') + 1)), &user)) continue;
      uint64_t seq = 0;
      if (!absl::SimpleAtoi(r.header("Ll-Seq"), &seq)) continue;
      UserTail& t = snap->users[user];
      if (seq > t.seq) t = UserTail{seq, sseq};
      protocol::PushBody push;
      if (!protocol::Decode(r.data(), &push)) continue;
      snap->stored[{user, push.server_msg_id}] = {seq, push.server_time_ms};
      std::string src = r.header("Ll-Src");
      if (!src.empty()) {
        std::pair<absl::string_view, absl::string_view> dc = absl::StrSplit(src, absl::MaxSplits('.', 1));
        uint32_t device = 0;
        uint64_t cmid = 0;
        if (absl::SimpleAtoi(dc.first, &device) && absl::SimpleAtoi(dc.second, &cmid)) {
          snap->sends[{user, device, cmid}] = SenderCopy{push.server_msg_id, push.server_time_ms};
        }
      }
    }
  }
  snap->replayed = seen;
  cleanup(name);
  return snap;
}

}  // namespace longlink::gateway::nats
