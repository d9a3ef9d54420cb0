// The shard's run (load_shard.h): setup of its ring, buffers, timers and clients, the event loop with its
// end-of-run sequence, completion dispatch with the stale-completion guard, the per-client timer, the
// join/leave schedule each client follows, and storms.
#include "loadgen/load_shard.h"

#include <sys/resource.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/clock.h"
#include "core/ring.h"
#include "core/status.h"
#include "core/user_data.h"

namespace longlink::loadgen {
namespace {

// How long closing every connection may take at the end: 5 s, plus 20 us per client of the run (closing a
// million loopback connections on two cores took about 10 s).
constexpr uint64_t kCloseBoundBaseNs = 5000000000ull;
constexpr uint64_t kCloseBoundPerClientNs = 20000;

// The next [join, leave) interval of client `index` that starts at or after after_ns: false if none.
bool NextInterval(const EngineConfig& cfg, uint32_t index, uint64_t start_ns, uint64_t after_ns, uint64_t* join_ns,
                  uint64_t* leave_ns, Leave* how) {
  auto at = [&](const Wave& w) {
    double offset = w.rate > 0 ? static_cast<double>(index - w.first) / w.rate : 0;
    return start_ns + w.start_ms * 1000000ull + static_cast<uint64_t>(offset * 1e9);
  };
  uint64_t best = kNever;
  for (const Wave& w : cfg.joins) {
    if (index < w.first || index - w.first >= w.count) continue;
    uint64_t t = at(w);
    if (t >= after_ns && t < best) best = t;
  }
  if (best == kNever) return false;
  *join_ns = best;
  *leave_ns = kNever;
  for (const Wave& w : cfg.leaves) {
    if (index < w.first || index - w.first >= w.count) continue;
    uint64_t t = at(w);
    if (t > best && t < *leave_ns) {
      *leave_ns = t;
      *how = w.leave;
    }
  }
  return true;
}

}  // namespace

absl::Status LoadShard::Impl::Setup() {
  uint32_t mine = 0;
  for (uint32_t i = s_->id_; i < cfg_.clients; i += cfg_.shards) ++mine;
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  uint64_t table = mine + 64;
  if (rl.rlim_cur != RLIM_INFINITY && table > rl.rlim_cur) {
    return absl::InvalidArgumentError(
        absl::StrCat(mine, " clients on one shard exceed the open-files limit (", rl.rlim_cur,
                     "), which bounds each ring's fixed-file table: use more shards (--shards)"));
  }
  core::RingOptions ro;
  ro.sq_entries = 4096;
  ro.cq_entries = 16384;
  ro.fixed_files = static_cast<uint32_t>(table);
  RETURN_IF_ERROR(ring_.Init(ro));
  RETURN_IF_ERROR(bufs_.Init(ring_.raw(), 0, 4096, 2048, kInitialBuffers));
  wheel_ = core::TimerWheel(8192, core::MonoNanos() / kTickNs);
  // One timer per client, and a second one for clients on a simulated network (the link's releases).
  wheel_.Reserve(cfg_.network.empty() ? mine : 2 * mine);
  rng_.seed(cfg_.seed * 0x9e3779b97f4a7c15ull + s_->id_);
  clients_.resize(mine);
  if (UsesWs()) ws_.resize(mine);
  payload_.assign(std::max<uint32_t>(kPayloadHeader, cfg_.payload_max), 'x');
  // Bytes 8..15 of every payload name this run, so messages an earlier run left in the server's inboxes
  // (delivered by SYNC) are told apart from this run's, whose ids they would otherwise collide with.
  std::memcpy(payload_.data() + 8, &e_->run_id(), 8);
  uint32_t local = 0;
  const uint64_t now = core::MonoNanos();
  for (uint32_t i = s_->id_; i < cfg_.clients; i += cfg_.shards, ++local) {
    Client& c = clients_[local];
    std::memset(&c, 0, sizeof(c));
    c.index = i;
    c.slot = -1;
    c.state = State::kWaiting;
    c.link = kNoLink;
    c.next_bg = kNever;
    c.leave_at = kNever;
    // The network: a hash of the index and the seed picks the profile, so the same clients get the same
    // networks whatever the shard count.
    if (!cfg_.network.empty()) {
      uint64_t h = (static_cast<uint64_t>(i) + 1) * 0x9e3779b97f4a7c15ull ^ (cfg_.seed * 0xbf58476d1ce4e5b9ull);
      h ^= h >> 29;
      h *= 0x94d049bb133111ebull;
      double u = static_cast<double>(h >> 11) * 0x1.0p-53 * 100.0;
      double acc = 0;
      for (const NetShare& share : cfg_.network) {
        acc += share.percent;
        if (u < acc) {
          if (share.params.Any()) {
            c.link = static_cast<uint32_t>(links_.size());
            links_.emplace_back(&share.params, now, h ^ cfg_.seed);
          }
          break;
        }
      }
    }
    if (cfg_.bg_fraction > 0) {
      c.background = std::uniform_real_distribution<double>(0, 1)(rng_) < cfg_.bg_fraction ? 1 : 0;
    }
    c.hb_ms = cfg_.hb_initial_ms;
    NextJoin(local, 0);
  }
  return absl::OkStatus();
}

void LoadShard::Impl::NextJoin(uint32_t local, uint64_t after) {
  Client& c = clients_[local];
  uint64_t join = 0, leave = kNever;
  Leave how = Leave::kLogout;
  if (finishing_ || !NextInterval(cfg_, c.index, e_->start_ns(), after, &join, &leave, &how) || join >= e_->end_ns()) {
    SetDone(c);
    return;
  }
  c.state = State::kWaiting;
  c.t_connect = join;
  c.leave_at = leave;
  c.leave = static_cast<uint8_t>(how);
  c.attempts = 0;
  ArmTimer(local, join);
}

void LoadShard::Impl::Loop() {
  const uint64_t grace_end = e_->end_ns() + cfg_.grace_ms * 1000000ull;
  for (;;) {
    uint64_t now = core::MonoNanos();
    if (!finishing_ && (now >= grace_end || e_->stop().load(std::memory_order_relaxed))) {
      finishing_ = true;
      for (uint32_t i = 0; i < clients_.size(); ++i) {
        Client& c = clients_[i];
        if (c.state == State::kOnline) s_->counters_.online_at_end.Inc();
        Link* link = LinkOf(c);

        if (c.state == State::kWaiting) SetDone(c);
        wheel_.Cancel(i);
        if (link != nullptr) wheel_.Cancel(LinkTimerId(i));
        if (UsesWs() && c.state == State::kOnline && (link == nullptr || !link->dead())) {
          SendWsClose(i);
          if (CloseAfterFlush(i, false)) continue;
        }
        Close(i, false);
      }
    }
    if (!ended_ && now >= e_->end_ns()) {
      // The run's duration is over: phones on dead links regain coverage. Half-open (zombie) and
      // black-holed connections are closed and reconnect in the grace period, SYNCing what they missed.
      ended_ = true;
      for (uint32_t i = 0; i < clients_.size(); ++i) {
        Client& c = clients_[i];
        Link* link = LinkOf(c);
        if (link == nullptr || !link->dead() || !Live(c.state)) continue;
        if (link->zombie()) s_->counters_.zombies_unreaped.Inc();
        c.attempts = 0;
        Close(i, true);
      }
    }
    if (finishing_ && done_ == clients_.size()) break;
    if (finishing_ && now >= grace_end + kCloseBoundBaseNs + kCloseBoundPerClientNs * cfg_.clients) {
      // Connections whose close did not complete within the bound (the peer never answered): count them
      // and stop, so the run always ends by itself.
      for (Client& c : clients_) {
        if (c.state != State::kDone) {
          s_->counters_.unclean_closes.Inc();
          SetDone(c);
        }
      }
      break;
    }
    // Sleep until the next timer is due (up to 50 ms), not a fixed tick: a run with more shards than
    // cores would otherwise wake every thread every millisecond for nothing.
    ring_.SubmitAndWait(kTickNs * (dirty_.empty() ? wheel_.IdleTicks(finishing_ ? 1 : 50) : 1));
    unsigned head;
    unsigned seen = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(ring_.raw(), head, cqe) {
      HandleCqe(cqe);
      ++seen;
    }
    io_uring_cq_advance(ring_.raw(), seen);
    wheel_.Advance(core::MonoNanos() / kTickNs, [this](uint32_t id) { OnTimer(id); });
    RunStorms(core::MonoNanos());
    bufs_.Commit();
    Flush();
    now = core::MonoNanos();
    if (now >= next_live_) {
      PublishLive();
      next_live_ = now + 500000000ull;
    }
  }
  ring_.Submit();
  PublishLive();
  uint64_t stalls = 0;
  for (const Link& l : links_) stalls += l.stalls();
  s_->counters_.stalls.Inc(stalls);
}

void LoadShard::Impl::PublishLive() {
  std::lock_guard<std::mutex> lock(live_mu_);
  live_e2e_.Reset();
  live_e2e_.Merge(s_->lat_.end_to_end);
  live_heartbeat_.Reset();
  live_heartbeat_.Merge(s_->lat_.heartbeat_rtt);
  live_lag_.Reset();
  live_lag_.Merge(s_->lat_.lag);
}

void LoadShard::Impl::HandleCqe(const io_uring_cqe* cqe) {
  core::UserData ud = core::UnpackUserData(cqe->user_data);
  if (ud.op == kOpIgnore) return;
  const uint32_t slots = static_cast<uint32_t>(clients_.size());
  if (core::IsStale(ud, slots, ud.slot < slots ? clients_[ud.slot].gen : 0)) {
    // A completion for an earlier connection of this client: a receive still hands its buffer back, and a
    // socket that arrived late is closed; nothing else matters.
    if (ud.op == kOpRecv) {
      bufs_.RecycleFrom(cqe);
    } else if (ud.op == kOpSocket && cqe->res >= 0) {
      core::PrepCloseDirect(ring_, static_cast<uint32_t>(cqe->res), 0);
    }
    return;
  }
  switch (ud.op) {
    case kOpSocket:
      OnSocket(ud.slot, cqe);
      break;
    case kOpConnect:
      OnConnect(ud.slot, cqe);
      break;
    case kOpRecv:
      OnRecv(ud.slot, cqe);
      break;
    case kOpSend:
      OnSend(ud.slot, cqe);
      break;
    case kOpClose:
      clients_[ud.slot].flags &= static_cast<uint8_t>(~kCloseInflight);
      MaybeFinishClose(ud.slot);
      break;
    default:
      break;
  }
}

void LoadShard::Impl::OnTimer(uint32_t id) {
  uint64_t now = core::MonoNanos();
  if (id >= clients_.size()) {
    PumpLink(id - static_cast<uint32_t>(clients_.size()), now);
    return;
  }
  uint32_t local = id;
  Client& c = clients_[local];
  switch (c.state) {
    case State::kWaiting:
      if (now >= c.leave_at) {
        NextJoin(local, c.leave_at);
      } else if (Running(now) || (c.t_down != 0 && !finishing_)) {
        // New clients join only while the run lasts; one coming back from a lost connection also in the
        // grace period.
        StartConnect(local);
      } else {
        SetDone(c);
      }
      break;
    case State::kConnecting:
    case State::kUpgrading:
    case State::kLoggingIn:
      // No connection, 101 or LOGIN_ACK within the login timeout.
      s_->counters_.login_failures.Inc();
      Close(local, true);
      break;
    case State::kOnline:
      Drive(local, now);
      break;
    case State::kLeaving:
      Close(local, (c.flags & kReconnect) != 0);
      break;
    default:
      break;
  }
}

void LoadShard::Impl::RunStorms(uint64_t now) {
  while (next_storm_ < cfg_.storms.size() && now >= e_->start_ns() + cfg_.storms[next_storm_].at_ms * 1000000ull) {
    const StormEvent& storm = cfg_.storms[next_storm_++];
    if (!Running(now)) continue;
    // A storm's cohort is chosen by a hash of the client index, so it is the same clients whatever the
    // shard count; churn draws a fresh random cohort every second.
    uint64_t bound = static_cast<uint64_t>(storm.fraction * 10000.0);
    for (uint32_t local = 0; local < clients_.size(); ++local) {
      Client& c = clients_[local];
      if (c.state != State::kOnline) continue;
      uint64_t h = storm.random ? rng_() : (c.index + 1) * 0x9e3779b97f4a7c15ull;
      if ((h >> 32) % 10000 >= bound) continue;
      s_->counters_.storm_drops.Inc();
      Drop(local, storm.leave, true);
    }
  }
}

}  // namespace longlink::loadgen
