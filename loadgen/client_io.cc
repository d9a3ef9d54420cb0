// A client's socket (load_shard.h): a direct descriptor made, optionally bound to a source address, and
// connected; a multishot receive into the shard's buffer ring; output queued per client and sent once per
// loop round; the simulated weak-network link between the client and its socket; and the close, plain,
// after a flush, or abortive (RST), followed by a reconnect with backoff or the client's next join.
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>

#include "core/clock.h"
#include "core/frame_stream.h"
#include "core/ring.h"
#include "core/user_data.h"
#include "loadgen/load_shard.h"

namespace longlink::loadgen {
namespace {

// IORING_OP_BIND (kernel 6.11): liburing 2.3 predates it, so its number is spelled out here.
constexpr uint8_t kOpBindOpcode = 56;

}  // namespace

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

using core::PackUserData;

void LoadShard::Impl::StartConnect(uint32_t local) {
  Client& c = clients_[local];
  c.state = State::kConnecting;
  c.gen = (c.gen + 1) & core::kGenMask;
  const Destination& t = TargetFor(c);
  io_uring_sqe* sqe = ring_.Sqe();
  // A socket straight into the fixed-file table (kernel 5.19): it never takes a plain descriptor.
  io_uring_prep_socket_direct_alloc(sqe, t.addr.ss_family, SOCK_STREAM, 0, 0);
  io_uring_sqe_set_data64(sqe, PackUserData(kOpSocket, c.gen, local));
  ArmTimer(local, core::MonoNanos() + cfg_.login_timeout_ms * 1000000ull);
}

void LoadShard::Impl::OnSocket(uint32_t local, const io_uring_cqe* cqe) {
  Client& c = clients_[local];
  if (cqe->res < 0) {
    s_->counters_.connect_errors.Inc();
    ScheduleReconnect(local, core::MonoNanos());
    return;
  }
  if (c.state != State::kConnecting) {
    // The attempt was abandoned (timeout or the run ended) while the socket was being made.
    core::PrepCloseDirect(ring_, static_cast<uint32_t>(cqe->res), 0);
    return;
  }
  c.slot = cqe->res;
  const uint32_t ndest = static_cast<uint32_t>(cfg_.targets.size());
  const Destination& t = TargetFor(c);
  io_uring_sqe* sqe;
  if (!cfg_.sources.empty()) {
    // Each (source, destination) pair has its own 64K ephemeral ports. IP_BIND_ADDRESS_NO_PORT defers the
    // port choice to connect(), which then picks it per 4-tuple instead of reserving it per address.
    // setsockopt on a direct descriptor is an IORING_OP_URING_CMD (kernel 6.7); bind is IORING_OP_BIND
    // (kernel 6.11); both are prepared by hand (liburing 2.3) and linked ahead of the connect.
    static const int kOne = 1;
    const Destination& src = cfg_.sources[(c.index / ndest) % cfg_.sources.size()];
    sqe = ring_.Sqe();
    io_uring_prep_rw(IORING_OP_URING_CMD, sqe, c.slot, nullptr, 0, 0);
    sqe->off = kSocketUringOpSetsockopt;
    sqe->addr = (static_cast<uint64_t>(IP_BIND_ADDRESS_NO_PORT) << 32) | IPPROTO_IP;
    sqe->file_index = sizeof(kOne);
    sqe->addr3 = reinterpret_cast<uint64_t>(&kOne);
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_LINK;
    io_uring_sqe_set_data64(sqe, 0);
    sqe = ring_.Sqe();
    io_uring_prep_rw(kOpBindOpcode, sqe, c.slot, &src.addr, 0, src.len);
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_LINK;
    io_uring_sqe_set_data64(sqe, 0);
  }
  sqe = ring_.Sqe();
  io_uring_prep_connect(sqe, c.slot, reinterpret_cast<const sockaddr*>(&t.addr), t.len);
  sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, PackUserData(kOpConnect, c.gen, local));
}

void LoadShard::Impl::OnConnect(uint32_t local, const io_uring_cqe* cqe) {
  Client& c = clients_[local];
  uint64_t now = core::MonoNanos();
  if (c.state != State::kConnecting) {
    // Closed (login timeout, end of run) while connecting; the close completes the client.
    MaybeFinishClose(local);
    return;
  }
  if (cqe->res < 0) {
    s_->counters_.connect_errors.Inc();
    Close(local, true);
    return;
  }
  s_->counters_.connects.Inc();
  s_->counters_.connected.Add(1);
  s_->lat_.connect.Record(now - std::min(now, c.t_connect));
  if (Link* link = LinkOf(c)) link->Reset(now);
  c.t_login = now;
  if (UsesWs()) {
    // The HTTP/1.1 upgrade first; LOGIN (or, for ws-echo, nothing) once the 101 arrives.
    c.state = State::kUpgrading;
    SendUpgrade(local);
    ArmRecv(local);
    return;
  }
  c.state = State::kLoggingIn;
  SendLogin(local, now);
  ArmRecv(local);
}

void LoadShard::Impl::ArmRecv(uint32_t local) {
  Client& c = clients_[local];
  io_uring_sqe* sqe = ring_.Sqe();
  io_uring_prep_recv_multishot(sqe, c.slot, nullptr, 0, 0);
  sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
  sqe->buf_group = bufs_.group_id();
  io_uring_sqe_set_data64(sqe, PackUserData(kOpRecv, c.gen, local));
  c.flags |= kRecvArmed;
}

void LoadShard::Impl::OnRecv(uint32_t local, const io_uring_cqe* cqe) {
  Client& c = clients_[local];
  if (!(cqe->flags & IORING_CQE_F_MORE)) c.flags &= static_cast<uint8_t>(~kRecvArmed);
  bool live = Live(c.state);
  uint64_t now = core::MonoNanos();
  if (cqe->res > 0) {
    uint16_t bid = static_cast<uint16_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
    if (live) {
      if (Link* link = LinkOf(c)) {
        // Through the simulated downlink: delayed, rate-limited, or dropped when the link is dead.
        link->Push(LinkParams::kDown, now, bufs_.Buffer(bid), static_cast<uint32_t>(cqe->res));
        PumpLink(local, now);
      } else {
        Consume(local, bufs_.Buffer(bid), static_cast<uint32_t>(cqe->res));
      }
    }
    bufs_.Recycle(bid);
  } else if (cqe->res == -ENOBUFS) {
    bufs_.Grow(kInitialBuffers);
  } else if (live) {
    // EOF or an error: the server closed us (or the network did).
    Link* link = LinkOf(c);
    if (link != nullptr && link->zombie()) {
      // The gateway reaped a half-open connection: how long it took is the measurement.
      s_->counters_.zombies_reaped.Inc();
      s_->lat_.zombie_reap.Record(now - link->zombie_since());
    } else if (c.state != State::kLeaving) {
      s_->counters_.disconnects.Inc();
    }
    Close(local, c.state != State::kLeaving || (c.flags & kReconnect));
  }
  Client& c2 = clients_[local];
  if (c2.state == State::kClosing) {
    MaybeFinishClose(local);
  } else if (!(c2.flags & kRecvArmed) && Live(c2.state)) {
    ArmRecv(local);
  }
}

void LoadShard::Impl::Consume(uint32_t local, const uint8_t* data, uint32_t len) {
  if (UsesWs()) {
    ConsumeWs(local, data, len);
    return;
  }
  Client& c = clients_[local];
  std::span<const uint8_t> rest;
  core::SplitResult r = core::SplitFrames(
      &c.carry, data, len, 16u << 20,
      [&](const protocol::Header& h, std::span<const uint8_t> body) {
        HandleFrame(local, h, body);
        State st = clients_[local].state;
        return Live(st);
      },
      &rest);
  if (r == core::SplitResult::kTooLarge || r == core::SplitResult::kBadFrame) {
    s_->counters_.protocol_errors.Inc();
    Close(local, true);
  }
}

void LoadShard::Impl::WriteRaw(uint32_t local, const uint8_t* data, uint32_t n) {
  Client& c = clients_[local];
  if (Link* link = LinkOf(c)) {
    // Through the simulated uplink; PumpLink hands the bytes to the socket when they are due.
    uint64_t now = core::MonoNanos();
    link->Push(LinkParams::kUp, now, data, n);
    uint64_t due = link->NextDue(now);
    if (pumping_ == local) {
      // Written while PumpLink hands this client its downlink bytes (a PUSH_ACK, a PONG answer): the
      // pump passes the uplink on when it is done. Pumping again here would hand out the downlink chunk
      // the outer pump is still holding a second time.
    } else if (due <= now) {
      PumpLink(local, now);
    } else {
      ArmLinkTimer(local, due);
    }
    return;
  }
  Write(local, data, n);
}

void LoadShard::Impl::Write(uint32_t local, const uint8_t* data, uint32_t n) {
  Client& c = clients_[local];
  core::OutQueue* q = c.out;
  if (q == nullptr) q = c.out = new core::OutQueue();
  q->Append(data, n);
  if (!(c.flags & kDirty)) {
    c.flags |= kDirty;
    dirty_.push_back(local);
  }
}

void LoadShard::Impl::ArmLinkTimer(uint32_t local, uint64_t at_ns) {
  if (at_ns == kNever) return;
  uint32_t id = LinkTimerId(local);
  uint64_t tick = NsToTick(at_ns);
  if (wheel_.Expiry(id) > tick) wheel_.Arm(id, tick);
}

void LoadShard::Impl::PumpLink(uint32_t local, uint64_t now) {
  Client& c = clients_[local];
  Link* link = LinkOf(c);
  if (link == nullptr) return;
  if (!Live(c.state)) {
    link->DropPending();
    return;
  }
  link->Pop(LinkParams::kUp, now, [&](const uint8_t* data, uint32_t n) { Write(local, data, n); });
  pumping_ = local;
  link->Pop(LinkParams::kDown, now, [&](const uint8_t* data, uint32_t n) {
    State st = clients_[local].state;
    if (Live(st)) Consume(local, data, n);
  });
  pumping_ = kNoLink;
  // A frame the client answered while consuming went into the uplink: pass it on if it is due too.
  link->Pop(LinkParams::kUp, now, [&](const uint8_t* data, uint32_t n) { Write(local, data, n); });
  wheel_.Cancel(LinkTimerId(local));
  ArmLinkTimer(local, link->NextDue(now));
}

void LoadShard::Impl::Flush() {
  for (uint32_t local : dirty_) {
    Client& c = clients_[local];
    c.flags &= static_cast<uint8_t>(~kDirty);
    if (Live(c.state) && !(c.flags & kSendInflight)) {
      SubmitSend(local);
    }
  }
  dirty_.clear();
}

void LoadShard::Impl::SubmitSend(uint32_t local) {
  Client& c = clients_[local];
  core::OutQueue* q = c.out;
  if (q == nullptr) return;
  if (!q->Ready()) return;
  uint32_t len = q->send_len();
  // Fragmentation: a weak link cuts writes into small pieces, so frames reach the gateway split.
  if (const Link* link = LinkOf(c); link != nullptr && link->params().max_segment != 0) {
    len = std::min(len, link->params().max_segment);
  }
  io_uring_sqe* sqe = ring_.Sqe();
  io_uring_prep_send(sqe, c.slot, q->send_data(), len, MSG_NOSIGNAL);
  sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, PackUserData(kOpSend, c.gen, local));
  c.flags |= kSendInflight;
}

void LoadShard::Impl::OnSend(uint32_t local, const io_uring_cqe* cqe) {
  Client& c = clients_[local];
  c.flags &= static_cast<uint8_t>(~kSendInflight);
  if (c.state == State::kClosing) {
    MaybeFinishClose(local);
    return;
  }
  if (cqe->res < 0) {
    if (c.state != State::kLeaving) s_->counters_.disconnects.Inc();
    Close(local, c.state != State::kLeaving || (c.flags & kReconnect));
    return;
  }
  core::OutQueue* q = c.out;
  if (!q->Sent(static_cast<uint32_t>(cqe->res))) {
    SubmitSend(local);
    return;
  }
  core::OutQueue::Free(q);
  c.out = nullptr;
  // The LOGOUT is written: the session is over from the client's side.
  if (c.state == State::kLeaving) Close(local, (c.flags & kReconnect) != 0);
}

bool LoadShard::Impl::CloseAfterFlush(uint32_t local, bool reconnect) {
  Client& c = clients_[local];
  if (c.state != State::kOnline || !(c.flags & kSendInflight)) return false;
  // Output is still on its way: close once it is written (OnSend), as after a LOGOUT.
  BeginLeaving(local, reconnect);
  if (!finishing_) ArmTimer(local, core::MonoNanos() + kLeaveFallbackNs);
  return true;
}

void LoadShard::Impl::BeginLeaving(uint32_t local, bool reconnect) {
  Client& c = clients_[local];
  s_->counters_.online.Add(-1);
  if (reconnect) {
    c.flags |= kReconnect;
    c.t_down = core::MonoNanos();
  } else {
    c.flags &= static_cast<uint8_t>(~kReconnect);
  }
  c.state = State::kLeaving;
}

void LoadShard::Impl::Close(uint32_t local, bool reconnect, bool reset) {
  Client& c = clients_[local];
  if (c.state == State::kClosing || c.state == State::kDone || c.state == State::kWaiting) return;
  uint64_t now = core::MonoNanos();
  if (c.state == State::kOnline) {
    s_->counters_.online.Add(-1);
    if (reconnect) c.t_down = now;
  }
  if (Live(c.state)) {
    s_->counters_.connected.Add(-1);
  }
  s_->counters_.closes.Inc();
  if (Link* link = LinkOf(c)) {
    if (link->nat_dead()) s_->counters_.nat_blackholes.Inc();
    link->DropPending();
    wheel_.Cancel(LinkTimerId(local));
  }
  c.state = State::kClosing;
  // Reconnects go on in the grace period after the run: a client that lost its connection near the end
  // comes back and SYNCs what it missed, so the ledger can judge it.
  if (reconnect && !finishing_ && !e_->stop().load(std::memory_order_relaxed)) {
    c.flags |= kReconnect;
  } else {
    c.flags &= static_cast<uint8_t>(~kReconnect);
  }
  if (c.slot >= 0 && reset) {
    // An abrupt drop: SO_LINGER {1, 0} makes the close send RST. setsockopt on a direct descriptor is an
    // IORING_OP_URING_CMD (kernel 6.7), prepared by hand as liburing 2.3 has no helper. This path keeps its
    // own cancels instead of core::PrepShutdownAndClose because a shutdown would send FIN before the RST: the
    // receive and the send still outstanding are cancelled by their user_data, hard-linked ahead of the close.
    static const linger kAbort = {1, 0};
    io_uring_sqe* sqe = ring_.Sqe();
    io_uring_prep_rw(IORING_OP_URING_CMD, sqe, c.slot, nullptr, 0, 0);
    sqe->off = kSocketUringOpSetsockopt;                                // cmd_op
    sqe->addr = (static_cast<uint64_t>(SO_LINGER) << 32) | SOL_SOCKET;  // level, optname
    sqe->file_index = sizeof(kAbort);                                   // optlen
    sqe->addr3 = reinterpret_cast<uint64_t>(&kAbort);                   // optval
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_HARDLINK;
    io_uring_sqe_set_data64(sqe, 0);
    if (c.flags & kRecvArmed) {
      sqe = ring_.Sqe();
      io_uring_prep_cancel64(sqe, PackUserData(kOpRecv, c.gen, local), 0);
      sqe->flags |= IOSQE_IO_HARDLINK;
      io_uring_sqe_set_data64(sqe, 0);
    }
    if (c.flags & kSendInflight) {
      sqe = ring_.Sqe();
      io_uring_prep_cancel64(sqe, PackUserData(kOpSend, c.gen, local), 0);
      sqe->flags |= IOSQE_IO_HARDLINK;
      io_uring_sqe_set_data64(sqe, 0);
    }
    core::PrepCloseDirect(ring_, static_cast<uint32_t>(c.slot), PackUserData(kOpClose, c.gen, local));
    c.flags |= kCloseInflight;
  } else if (c.slot >= 0) {
    // Shutdown ends the outstanding receive and send at once (no per-request cancel lookup), then close.
    core::PrepShutdownAndClose(ring_, static_cast<uint32_t>(c.slot), PackUserData(kOpClose, c.gen, local));
    c.flags |= kCloseInflight;
  }
  MaybeFinishClose(local);
}

void LoadShard::Impl::MaybeFinishClose(uint32_t local) {
  Client& c = clients_[local];
  if (c.state != State::kClosing) return;
  if (c.flags & (kRecvArmed | kSendInflight | kCloseInflight)) return;
  if (c.out != nullptr) {
    core::OutQueue::Free(c.out);
    c.out = nullptr;
  }
  if (c.carry != nullptr) {
    std::free(c.carry);
    c.carry = nullptr;
  }
  c.slot = -1;
  c.syncing = 0;
  if (UsesWs()) {
    WsState& w = ws_[local];
    std::free(w.in);
    w.in = nullptr;
    w.assembler.Reset();
    std::vector<uint8_t>().swap(w.message);
  }
  if (finishing_) {
    SetDone(c);
  } else if (c.flags & kReconnect) {
    c.flags &= static_cast<uint8_t>(~kReconnect);
    ScheduleReconnect(local, core::MonoNanos());
  } else {
    NextJoin(local, std::max(core::MonoNanos(), c.leave_at == kNever ? 0 : c.leave_at));
  }
}

void LoadShard::Impl::ScheduleReconnect(uint32_t local, uint64_t now) {
  Client& c = clients_[local];
  if (finishing_ || e_->stop().load(std::memory_order_relaxed)) {
    SetDone(c);
    return;
  }
  // Exponential backoff with full jitter: uniform in [0, min(max, initial * multiplier^attempts)].
  double cap = std::min<double>(cfg_.reconnect_max_ms,
                                cfg_.reconnect_initial_ms * std::pow(cfg_.reconnect_multiplier, c.attempts));
  ++c.attempts;
  if (cfg_.targets.size() > 1) ++c.hop;
  uint64_t delay_ns = static_cast<uint64_t>(std::uniform_real_distribution<double>(0, cap)(rng_) * 1e6);
  if (c.t_down == 0) c.t_down = now;
  s_->counters_.reconnects.Inc();
  c.state = State::kWaiting;
  c.t_connect = now + delay_ns;
  ArmTimer(local, c.t_connect);
}

}  // namespace longlink::loadgen
