// Shard: the thread, its io_uring loop, completion dispatch, timers and the drain on SIGTERM.
#include "gateway/shard.h"

#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cstdio>

#ifdef LONGLINK_WITH_MIMALLOC
#include <mimalloc.h>
#endif

#include "core/clock.h"
#include "core/hash.h"
#include "core/status.h"
#include "core/user_data.h"

namespace longlink::gateway {

using core::PackUserData;
using core::UnpackUserData;
namespace proto = longlink::protocol;

namespace {

// Receive buffers a shard starts with (it grows them when receives find the ring empty).
constexpr uint32_t kInitialRecvBuffers = 64;

}  // namespace

Shard::Shard(uint32_t id, Shared* shared, int listen_fd, int ws_listen_fd)
    : id_(id),
      shared_(shared),
      cfg_(*shared->config),
      shards_(shared->config->shards),
      outbox_(shared->grid, id),
      registry_(&conns_),
      login_guard_(LoginGuard::Options{shared->config->max_login_failures, 60000, shared->config->login_block_ms}),
      rng_state_(core::Mix64(id + 1)),
      tick_ms_(shared->config->tick_ms),
      scratch_(1024) {
  acceptors_[0].fd = listen_fd;
  acceptors_[1].fd = ws_listen_fd;
  acceptors_[1].op = kOpAcceptWs;
  acceptors_[1].transport = Transport::kWs;
  // Before the thread starts: a backend may post to the mailbox while it opens (it runs once the loop does).
  mailbox_init_ = mailbox_.Init();
}

Shard::~Shard() {
  Join();
  for (Acceptor& a : acceptors_) {
    if (a.fd >= 0) close(a.fd);
  }
}

void Shard::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Shard::Join() {
  if (thread_.joinable()) thread_.join();
}

uint32_t Shard::OwnerShard(uint64_t user_id) const { return core::OwnerShardOf(user_id, shards_); }

uint64_t Shard::NowTick() const { return core::MonoMillis() / tick_ms_; }

void Shard::Run() {
  owner_ = std::this_thread::get_id();
  setup_status_ = Setup();
  if (!setup_status_.ok()) {
    std::fprintf(stderr, "longlink-gateway: shard %u: %s\n", id_, setup_status_.ToString().c_str());
    mailbox_.Close();
    shared_->failed.fetch_add(1);
    return;
  }
  shared_->started.fetch_add(1);
  Loop();
}

absl::Status Shard::Setup() {
  RETURN_IF_ERROR(mailbox_init_);
  core::RingOptions ro;
  ro.sq_entries = cfg_.ring_entries;
  ro.cq_entries = cfg_.ring_entries * 4;
  ro.fixed_files = cfg_.max_conns_per_shard;
  ro.force_plain = cfg_.force_plain_ring;
  RETURN_IF_ERROR(ring_.Init(ro));
  stats_.ring_mode[static_cast<size_t>(ring_.mode())].Set(1);
  RETURN_IF_ERROR(bufs_.Init(ring_.raw(), 0, cfg_.recv_buffers, cfg_.recv_buffer_size,
                             std::min<uint32_t>(cfg_.recv_buffers, kInitialRecvBuffers)));
  stats_.recv_buffers.Set(bufs_.active());
  // Room for connections still finishing their close while new ones arrive.
  RETURN_IF_ERROR(conns_.Init(cfg_.max_conns_per_shard + 4096));
  if (cfg_.auth == AuthMode::kToken) RETURN_IF_ERROR(conns_.EnableExpiry());
  wheel_ = core::TimerWheel(4096, NowTick());
  wheel_.Reserve(conns_.capacity() * 2);
  backend_ = shared_->backend_factory->ForShard(this);
  RETURN_IF_ERROR(backend_->Start());
  shared_->grid->PublishRingFd(id_, ring_.fd());
  ArmMailbox();
  ArmAccept();
  return absl::OkStatus();
}

void Shard::Loop() {
  const uint64_t tick_ns = static_cast<uint64_t>(tick_ms_) * 1000000ull;
  for (;;) {
    if (!draining_ && shared_->draining.load(std::memory_order_relaxed)) StartDrain();
    if (draining_ && DrainRound()) break;

    ring_.SubmitAndWait(std::min(tick_ns, backend_->MaxWaitNs(core::MonoNanos())));
    const uint64_t round_start_ns = core::MonoNanos();
    unsigned head;
    unsigned seen = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(ring_.raw(), head, cqe) {
      HandleCqe(cqe);
      ++seen;
    }
    io_uring_cq_advance(ring_.raw(), seen);

    DrainInbound(shared_->grid, id_, [this](const core::ShardMessage& m) { OnShardMessage(m); });
    wheel_.Advance(NowTick(), [this](uint32_t t) { OnTimer(t); });
    backend_->OnTick(core::MonoMillis());
    Housekeeping();

    bufs_.Commit();
    if (!starved_.empty()) {
      std::vector<uint32_t> again;
      again.swap(starved_);
      for (uint32_t id : again) {
        Conn& c = conns_[id];
        if (c.state == ConnState::kActive || c.state == ConnState::kAwaitLogin) {
          c.flags &= static_cast<uint8_t>(~kRecvStarved);
          ArmRecv(id);
        }
      }
    }
    FlushSends();
    outbox_.Flush(&ring_, PackUserData(kOpWake, 0, 0));
    stats_.loop_round_seconds.Observe(static_cast<double>(core::MonoNanos() - round_start_ns) * 1e-9);
  }
  mailbox_.Close();
  backend_->OnStop();
  ring_.Submit();
}

void Shard::SubmitFsync(int fd, uint32_t token) {
  AssertOwner();
  io_uring_sqe* sqe = ring_.Sqe();
  io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
  io_uring_sqe_set_data64(sqe, PackUserData(kOpFsync, 0, token));
}

void Shard::HandleCqe(const io_uring_cqe* cqe) {
  core::UserData ud = UnpackUserData(cqe->user_data);
  switch (ud.op) {
    case kOpIgnore:
    case kOpWake:
      return;
    case kOpAccept:
      OnAccept(cqe, acceptors_[0]);
      return;
    case kOpAcceptWs:
      OnAccept(cqe, acceptors_[1]);
      return;
    case kOpMigrateIn:
      OnMigrateIn(cqe);
      return;
    case kOpFsync:
      backend_->OnFsyncDone(ud.slot, cqe->res);
      return;
    case kOpMailbox:
      OnMailbox(cqe);
      return;
    case kOpPeerAddrCheck:
    case kOpPeerAddrFailed:
      // Before the stale guard: the installed descriptor is closed, and a failure counted, whatever became
      // of the connection meanwhile.
      OnPeerAddress(cqe, static_cast<Op>(ud.op));
      return;
    default:
      break;
  }
  // The stale-completion guard: a completion for a connection that was closed and whose id was reused.
  // Receive buffers go back to the ring whatever became of the connection.
  if (core::IsStale(ud, conns_.high_water(), ud.slot < conns_.high_water() ? conns_[ud.slot].gen : 0) ||
      conns_[ud.slot].state == ConnState::kFree) {
    if (ud.op == kOpRecv) bufs_.RecycleFrom(cqe);
    stats_.stale_completions_total.Inc();
    return;
  }
  switch (ud.op) {
    case kOpRecv:
      OnRecv(ud.slot, cqe);
      break;
    case kOpSend:
      OnSend(ud.slot, cqe);
      break;
    case kOpClose:
      OnClose(ud.slot);
      break;
    case kOpMigrateOut:
      OnMigrateOut(ud.slot, cqe);
      break;
    default:
      break;
  }
}

void Shard::Housekeeping() {
  uint64_t now = NowTick();
  if (now < next_housekeeping_tick_) return;
  next_housekeeping_tick_ = now + 2000 / tick_ms_;
  backend_->RefreshStats();
  stats_.login_blocked_addresses.Set(static_cast<int64_t>(login_guard_.blocked(core::MonoMillis())));
#ifdef LONGLINK_WITH_MIMALLOC
  // Bursts (a login storm queues a LOGIN_ACK per connection at once) leave freed pages in this thread's
  // heap; hand them back so resident memory follows the connections actually held.
  mi_collect(true);
#endif
}

// ---- timers ----

void Shard::OnTimer(uint32_t timer_id) {
  uint32_t id = timer_id / 2;
  TimerKind kind = static_cast<TimerKind>(timer_id % 2);
  Conn& c = conns_[id];
  if (c.state == ConnState::kFree || c.state == ConnState::kClosing) return;
  if (kind == kTimerWrite) {
    if (c.flags & kSendInflight || (c.out != nullptr && c.out->bytes() > 0)) {
      stats_.write_timeouts_total.Inc();
      Close(id, CloseReason::k_write_timeout);
    }
    return;
  }
  if (c.state == ConnState::kAwaitLogin) {
    Close(id, CloseReason::k_login_timeout);
    return;
  }
  if (c.state != ConnState::kActive) return;
  // Activity only stamps last_rx_tick; the deadline is checked lazily here instead of re-arming the timer
  // on every frame.
  uint32_t idle = static_cast<uint32_t>(NowTick()) - c.last_rx_tick;
  if (idle >= (cfg_.heartbeat_timeout_ms + tick_ms_ - 1) / tick_ms_) {
    stats_.heartbeat_timeouts_total.Inc();
    Close(id, CloseReason::k_heartbeat_timeout);
    return;
  }
  if (conns_.has_expiry() && (c.flags & kInRegistry) &&
      core::UnixMillis() >= uint64_t{conns_.expiry(id)} * 1000 + cfg_.token_grace_ms) {
    // The token (and the grace for refreshing it) ran out: the client must log in with a new one.
    stats_.sessions_expired_total.Inc();
    proto::KickBody k;
    k.reason = static_cast<uint16_t>(proto::KickReason::kAuthExpired);
    k.message = "the login token expired";
    EnqueueFrame(id, 0, k);
    CloseAfterFlush(id, CloseReason::k_auth_expired);
    return;
  }
  wheel_.Arm(TimerId(id, kTimerSession), SessionDeadlineTick(id));
}

uint64_t Shard::SessionDeadlineTick(uint32_t id) {
  const Conn& c = conns_[id];
  uint64_t now = NowTick();
  uint32_t idle = static_cast<uint32_t>(now) - c.last_rx_tick;
  uint64_t deadline = now - idle + (cfg_.heartbeat_timeout_ms + tick_ms_ - 1) / tick_ms_;
  if (conns_.has_expiry() && (c.flags & kInRegistry)) {
    uint64_t end_ms = uint64_t{conns_.expiry(id)} * 1000 + cfg_.token_grace_ms;
    uint64_t now_ms = core::UnixMillis();
    uint64_t left_ms = end_ms > now_ms ? end_ms - now_ms : 0;
    deadline = std::min(deadline, now + (left_ms + tick_ms_ - 1) / tick_ms_);
  }
  return deadline;
}

// ---- drain ----
//
// SIGTERM: stop accepting, stop reading from clients, send every client GOAWAY (each with its own
// reconnect delay), let the backends finish what they accepted so its answers still reach the clients,
// then close every connection after its output is flushed. The write timeout bounds the whole drain.

void Shard::SendGoaway(uint32_t id) {
  proto::GoawayBody g;
  // Spread over [0, drain_seconds) so the clients do not all reconnect at once.
  uint64_t spread_ms = cfg_.drain_seconds * 1000ull;
  g.reconnect_delay_ms = static_cast<uint32_t>(spread_ms == 0 ? 0 : core::Mix64(++rng_state_) % spread_ms);
  g.reason = "draining";
  EnqueueFrame(id, 0, g);
}

void Shard::StartDrain() {
  draining_ = true;
  drain_close_pending_ = true;
  stats_.draining.Set(1);
  backend_->OnDrain();
  for (Acceptor& a : acceptors_) {
    if (a.armed) {
      io_uring_sqe* sqe = ring_.Sqe();
      io_uring_prep_cancel64(sqe, PackUserData(a.op, 0, 0), 0);
      io_uring_sqe_set_data64(sqe, PackUserData(kOpIgnore, 0, 0));
    }
    if (a.fd >= 0) {
      close(a.fd);
      a.fd = -1;
    }
  }
  // This one pass over the table happens once per process lifetime.
  for (uint32_t id = 0; id < conns_.high_water(); ++id) {
    Conn& c = conns_[id];
    if (c.state == ConnState::kAwaitLogin || c.state == ConnState::kCheckingAddress) {
      Close(id, CloseReason::k_draining);
    } else if (c.state == ConnState::kActive && (c.ws & kWsEcho)) {
      CloseAfterFlush(id, CloseReason::k_draining);  // no session: just the close frame (1001)
    } else if (c.state == ConnState::kActive && !(c.flags & kCloseAfterFlush)) {
      SendGoaway(id);
    }
  }
  drain_deadline_tick_ = NowTick() + (cfg_.write_timeout_ms + tick_ms_ - 1) / tick_ms_;
}

bool Shard::AllShardsIdle() const {
  for (uint32_t s = 0; s < shards_; ++s) {
    // acquire: pairs with each shard's release store below, so a shard seen idle has finished the work
    // (and posted the messages) that preceded its flag.
    if (!shared_->idle[s].load(std::memory_order_acquire)) return false;
  }
  return true;
}

bool Shard::DrainRound() {
  bool idle = backend_->Idle() && outbox_.overflow_size() == 0;
  shared_->idle[id_].store(idle, std::memory_order_release);
  bool past_deadline = NowTick() >= drain_deadline_tick_;
  bool all_idle = AllShardsIdle();
  if (drain_close_pending_ && (all_idle || past_deadline)) {
    // Every answer the backends owed is queued: close each connection after its output (GOAWAY, the last
    // SEND_ACKs and PUSHes) is flushed.
    drain_close_pending_ = false;
    for (uint32_t id = 0; id < conns_.high_water(); ++id) {
      if (conns_[id].state == ConnState::kActive) CloseAfterFlush(id, CloseReason::k_draining);
    }
  }
  if (past_deadline && !drain_forced_) {
    drain_forced_ = true;
    for (uint32_t id = 0; id < conns_.high_water(); ++id) {
      ConnState s = conns_[id].state;
      if (s != ConnState::kFree && s != ConnState::kClosing) Close(id, CloseReason::k_draining);
    }
  }
  // Another shard may still need this one (a DELIVER to store, a DONE to send) until all are idle.
  return !drain_close_pending_ && conns_.live() == 0 && migrations_in_.empty() && (all_idle || past_deadline);
}

}  // namespace longlink::gateway
