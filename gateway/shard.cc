#include "gateway/shard.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <cstring>

#ifdef LONGLINK_WITH_MIMALLOC
#include <mimalloc.h>
#endif

#include "core/clock.h"
#include "core/frame_stream.h"
#include "core/status.h"
#include "core/user_data.h"
#include "gateway/auth/token.h"

namespace longlink::gateway {

using core::PackUserData;
using core::UnpackUserData;
using core::kShardMessageRelease;
namespace proto = longlink::protocol;

namespace {

// ArmAccept uses a multishot accept only while more fixed-file slots than this are free.
constexpr uint32_t kMultishotAcceptMinFreeSlots = 4096;
// Receive buffers a shard starts with, and adds each time its ring runs dry (up to --recv-buffers).
constexpr uint32_t kInitialRecvBuffers = 64;
// Marks a migrating connection as WebSocket in ShardMessage::b (see OnMigrateOut).
constexpr uint64_t kMigrateWsBit = 1ull << 63;

uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Blob for PushToUsers: the frame followed by the user ids, one allocation per target shard.
struct PushManyBlob {
  uint32_t frame_len;
  uint32_t user_count;
  // frame bytes, then user_count uint64_t (8-aligned)
  uint8_t* frame() { return reinterpret_cast<uint8_t*>(this + 1); }
  uint64_t* users() {
    size_t off = (frame_len + 7u) & ~size_t{7};
    return reinterpret_cast<uint64_t*>(frame() + off);
  }
  static size_t SizeFor(uint32_t frame_len, uint32_t users) {
    return sizeof(PushManyBlob) + ((frame_len + 7u) & ~size_t{7}) + sizeof(uint64_t) * users;
  }
};

}  // namespace

std::string_view CloseReasonName(CloseReason r) {
  switch (r) {
#define LL_NAME_(n)        \
  case CloseReason::k_##n: \
    return #n;
    LONGLINK_CLOSE_REASONS(LL_NAME_)
#undef LL_NAME_
    case CloseReason::kCount:
      break;
  }
  return "unknown";
}

Shard::Shard(uint32_t id, Shared* shared, int listen_fd, int ws_listen_fd, const metrics::Buckets* latency_buckets)
    : id_(id),
      shared_(shared),
      cfg_(*shared->config),
      shards_(shared->config->shards),
      outbox_(shared->grid, id),
      registry_(&conns_),
      stats_(latency_buckets),
      rng_state_(Mix64(id + 1)),
      tick_ms_(shared->config->tick_ms),
      scratch_(1024) {
  acceptors_[0].fd = listen_fd;
  acceptors_[1].fd = ws_listen_fd;
  acceptors_[1].op = kOpAcceptWs;
  acceptors_[1].transport = Transport::kWs;
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

uint32_t OwnerShardOf(uint64_t id, uint32_t shards) { return static_cast<uint32_t>(Mix64(id) % shards); }

uint32_t Shard::OwnerShard(uint64_t user_id) const { return OwnerShardOf(user_id, shards_); }

uint64_t Shard::NowTick() const { return core::MonoMillis() / tick_ms_; }

void Shard::Run() {
  owner_ = std::this_thread::get_id();
  setup_status_ = Setup();
  if (!setup_status_.ok()) {
    std::fprintf(stderr, "longlink-gateway: shard %u: %s\n", id_, setup_status_.ToString().c_str());
    shared_->failed.fetch_add(1);
    return;
  }
  shared_->started.fetch_add(1);
  Loop();
}

absl::Status Shard::Setup() {
  core::RingOptions ro;
  ro.sq_entries = cfg_.ring_entries;
  ro.cq_entries = cfg_.ring_entries * 4;
  ro.fixed_files = cfg_.max_conns_per_shard;
  ro.force_plain = cfg_.force_plain_ring;
  RETURN_IF_ERROR(ring_.Init(ro));
  stats_.ring_mode.Set(static_cast<int64_t>(ring_.mode()));
  RETURN_IF_ERROR(bufs_.Init(ring_.raw(), 0, cfg_.recv_buffers, cfg_.recv_buffer_size,
                             std::min<uint32_t>(cfg_.recv_buffers, kInitialRecvBuffers)));
  stats_.recv_buffers.Set(bufs_.active());
  // Room for connections still finishing their close while new ones arrive.
  RETURN_IF_ERROR(conns_.Init(cfg_.max_conns_per_shard + 4096));
  wheel_ = core::TimerWheel(4096, NowTick());
  wheel_.Reserve(conns_.capacity() * 2);
  backend_ = shared_->backend_factory->ForShard(this);
  RETURN_IF_ERROR(backend_->Start());
  shared_->grid->PublishRingFd(id_, ring_.fd());
  ArmAccept();
  return absl::OkStatus();
}

void Shard::Loop() {
  const uint64_t tick_ns = static_cast<uint64_t>(tick_ms_) * 1000000ull;
  for (;;) {
    if (!draining_ && shared_->draining.load(std::memory_order_relaxed)) StartDrain();
    if (draining_ && conns_.live() == 0 && migrations_in_.empty()) break;

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
    stats_.round_busy.Observe(static_cast<double>(core::MonoNanos() - round_start_ns) * 1e-9);
    if (draining_ && NowTick() >= drain_deadline_tick_) {
      for (uint32_t id = 0; id < conns_.high_water(); ++id) {
        ConnState s = conns_[id].state;
        if (s != ConnState::kFree && s != ConnState::kClosing) Close(id, CloseReason::k_draining);
      }
      drain_deadline_tick_ = ~uint64_t{0};
    }
  }
  backend_->OnStop();
  ring_.Submit();
}

void Shard::SubmitFsync(int fd, uint64_t token) {
  AssertOwner();
  io_uring_sqe* sqe = ring_.Sqe();
  io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
  io_uring_sqe_set_data64(sqe, (static_cast<uint64_t>(kOpFsync) << 56) | (token & ((uint64_t{1} << 56) - 1)));
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
      backend_->OnFsyncDone(cqe->user_data & ((uint64_t{1} << 56) - 1), cqe->res);
      return;
    default:
      break;
  }
  // Receive buffers go back to the ring whatever became of the connection.
  if (ud.op == kOpRecv && (cqe->flags & IORING_CQE_F_BUFFER) && (ud.slot >= conns_.high_water() ||
                                                                  conns_[ud.slot].gen != ud.gen)) {
    bufs_.Recycle(static_cast<uint16_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
  }
  if (ud.slot >= conns_.high_water() || conns_[ud.slot].gen != ud.gen ||
      conns_[ud.slot].state == ConnState::kFree) {
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
#ifdef LONGLINK_WITH_MIMALLOC
  // Bursts (a login storm queues a LOGIN_ACK per connection at once) leave freed pages in this thread's
  // heap; hand them back so resident memory follows the connections actually held.
  mi_collect(true);
#endif
}

// ---- accept ----

void Shard::ArmAccept() {
  for (Acceptor& a : acceptors_) ArmAcceptOn(a);
}

void Shard::ArmAcceptOn(Acceptor& a) {
  if (a.armed || draining_ || a.fd < 0) return;
  // The kernel takes a connection off the backlog before it looks for a fixed-file slot, and closes it if
  // the table is full; so accept runs only while a slot is free, and pending connections wait in the
  // backlog otherwise. A multishot accept drains the whole backlog at once, so it runs only while more
  // slots are free than the backlog holds (net.core.somaxconn, 4096 by default); nearer the limit each
  // accept is one-shot.
  uint32_t free_slots = cfg_.max_conns_per_shard - std::min(slots_used_, cfg_.max_conns_per_shard);
  if (free_slots == 0) {
    if (!accept_paused_) stats_.fixed_table_full_total.Inc();
    accept_paused_ = true;
    return;
  }
  accept_paused_ = false;
  a.multishot = free_slots > kMultishotAcceptMinFreeSlots;
  io_uring_sqe* sqe = ring_.Sqe();
  if (a.multishot) {
    // Multishot accept straight into the fixed-file table (kernel 5.19).
    io_uring_prep_multishot_accept_direct(sqe, a.fd, nullptr, nullptr, 0);
  } else {
    // One-shot accept into a kernel-picked slot (kernel 5.19). liburing 2.3 adds 1 to the index, as its
    // multishot helper does, so this asks for IORING_FILE_INDEX_ALLOC.
    io_uring_prep_accept_direct(sqe, a.fd, nullptr, nullptr, 0, IORING_FILE_INDEX_ALLOC - 1);
  }
  io_uring_sqe_set_data64(sqe, PackUserData(a.op, 0, 0));
  a.armed = true;
}

void Shard::SlotTaken() {
  ++slots_used_;
  uint32_t free_slots = cfg_.max_conns_per_shard - std::min(slots_used_, cfg_.max_conns_per_shard);
  for (Acceptor& a : acceptors_) {
    if (a.armed && a.multishot && !a.cancel_sent && free_slots <= kMultishotAcceptMinFreeSlots) {
      // Near the limit: replace the multishot accept by one-shot ones (OnAccept re-arms on -ECANCELED).
      io_uring_sqe* sqe = ring_.Sqe();
      io_uring_prep_cancel64(sqe, PackUserData(a.op, 0, 0), 0);
      io_uring_sqe_set_data64(sqe, PackUserData(kOpIgnore, 0, 0));
      a.cancel_sent = true;
    }
  }
}

void Shard::SlotFreed() {
  --slots_used_;
  if (accept_paused_) ArmAccept();
}

void Shard::OnAccept(const io_uring_cqe* cqe, Acceptor& a) {
  if (!(cqe->flags & IORING_CQE_F_MORE)) {
    a.armed = false;
    a.cancel_sent = false;
  }
  if (cqe->res < 0) {
    if (cqe->res == -ENFILE) {
      // A connection moved in from another shard took the last slot first (that accepted connection is
      // lost). Stop accepting until a slot frees up.
      if (!accept_paused_) stats_.fixed_table_full_total.Inc();
      accept_paused_ = true;
      return;
    }
    if (cqe->res != -ECANCELED) stats_.accept_errors_total.Inc();
    if (!a.armed && !accept_paused_) ArmAcceptOn(a);
    return;
  }
  SlotTaken();
  if (!a.armed && !accept_paused_) ArmAcceptOn(a);
  uint32_t slot = static_cast<uint32_t>(cqe->res);
  uint32_t id = conns_.Alloc();
  if (id == kNoConn) {
    io_uring_sqe* sqe = ring_.Sqe();
    io_uring_prep_close_direct(sqe, slot);
    io_uring_sqe_set_data64(sqe, 0);
    SlotFreed();
    return;
  }
  size_t t = static_cast<size_t>(a.transport);
  stats_.accepts_total[t].Inc();
  stats_.connections[t].Add(1);
  Conn& c = conns_[id];
  c.file_slot = slot;
  // A WebSocket connection first answers the upgrade, within the same deadline as LOGIN.
  if (a.transport == Transport::kWs) c.ws = kWsTransport;
  c.state = ConnState::kAwaitLogin;
  c.last_rx_tick = static_cast<uint32_t>(NowTick());
  wheel_.Arm(TimerId(id, kTimerSession), NowTick() + (cfg_.login_timeout_ms + tick_ms_ - 1) / tick_ms_);
  ArmRecv(id);
}

// ---- receive ----

void Shard::ArmRecv(uint32_t id) {
  Conn& c = conns_[id];
  if (c.flags & kRecvArmed) return;
  io_uring_sqe* sqe = ring_.Sqe();
  if (c.state == ConnState::kActive) {
    // Multishot recv (kernel 6.0): one request feeds every read until it ends.
    io_uring_prep_recv_multishot(sqe, static_cast<int>(c.file_slot), nullptr, 0, 0);
    c.flags |= kMultishot;
  } else {
    // Before login a one-shot recv: nothing is left outstanding when the connection moves shards.
    io_uring_prep_recv(sqe, static_cast<int>(c.file_slot), nullptr, 0, 0);
    c.flags &= static_cast<uint8_t>(~kMultishot);
  }
  sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
  sqe->buf_group = bufs_.group_id();
  io_uring_sqe_set_data64(sqe, PackUserData(kOpRecv, c.gen, id));
  c.flags |= kRecvArmed;
}

void Shard::OnRecv(uint32_t id, const io_uring_cqe* cqe) {
  Conn& c = conns_[id];
  bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;
  if (!more) c.flags &= static_cast<uint8_t>(~kRecvArmed);
  if (cqe->res > 0) {
    uint16_t bid = static_cast<uint16_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
    stats_.received_bytes_total[TransportOf(id)].Inc(static_cast<uint64_t>(cqe->res));
    if (c.state == ConnState::kAwaitLogin || c.state == ConnState::kActive) {
      c.last_rx_tick = static_cast<uint32_t>(NowTick());
      Consume(id, bufs_.Buffer(bid), static_cast<uint32_t>(cqe->res));
    }
    bufs_.Recycle(bid);
  } else if (cqe->res == 0) {
    Close(id, CloseReason::k_peer_closed);
  } else if (cqe->res == -ENOBUFS) {
    // The buffer ring ran dry; buffers come back as this round's data is parsed. Re-arm after that.
    stats_.buffer_ring_exhausted_total.Inc();
    if (bufs_.Grow(kInitialRecvBuffers) > 0) stats_.recv_buffers.Set(bufs_.active());
    if (!(c.flags & kRecvStarved) && c.state != ConnState::kClosing) {
      c.flags |= kRecvStarved;
      starved_.push_back(id);
    }
  } else if (cqe->res != -ECANCELED) {
    Close(id, CloseReason::k_read_error);
  }
  Conn& c2 = conns_[id];
  if (c2.state == ConnState::kClosing) {
    MaybeFree(id);
    return;
  }
  if (!(c2.flags & kRecvArmed) && !(c2.flags & kRecvStarved) && !(c2.flags & kCloseAfterFlush) &&
      (c2.state == ConnState::kActive || c2.state == ConnState::kAwaitLogin) && cqe->res > 0) {
    ArmRecv(id);
  }
}

void Shard::Consume(uint32_t id, uint8_t* data, uint32_t len) {
  Conn& c = conns_[id];
  if (c.state != ConnState::kAwaitLogin && c.state != ConnState::kActive) return;
  if (c.flags & kCloseAfterFlush) return;
  if (c.ws & kWsTransport) {
    if (c.ws & kWsOpen) {
      ConsumeWsFrames(id, data, len);
    } else {
      ConsumeUpgrade(id, data, len);
    }
    return;
  }
  std::span<const uint8_t> rest;
  core::SplitResult r = core::SplitFrames(
      &c.carry, data, len, cfg_.max_frame_bytes,
      [&](const proto::Header& h, std::span<const uint8_t> body) { return HandleFrame(id, h, body); }, &rest);
  switch (r) {
    case core::SplitResult::kDone:
      return;
    case core::SplitResult::kStopped:
      KeepForMigration(id, rest);
      return;
    case core::SplitResult::kTooLarge:
      Close(id, CloseReason::k_frame_too_large);
      return;
    case core::SplitResult::kBadFrame:
      Close(id, CloseReason::k_bad_frame);
      return;
  }
}

void Shard::KeepForMigration(uint32_t id, std::span<const uint8_t> rest) {
  // Bytes that followed LOGIN travel with a connection that moves to its owner shard.
  if (!rest.empty() && conns_[id].state == ConnState::kMigrating) {
    Carry* k = Carry::New(static_cast<uint32_t>(rest.size()));
    std::memcpy(k->data, rest.data(), rest.size());
    k->len = static_cast<uint32_t>(rest.size());
    conns_[id].carry = k;
  }
}

bool Shard::HandleFrame(uint32_t id, const proto::Header& h, std::span<const uint8_t> body) {
  stats_.frames_in[TransportOf(id)][proto::IsKnownOpcode(h.opcode) ? h.opcode : 0].Inc();
  Conn& c = conns_[id];
  if (c.state == ConnState::kAwaitLogin) {
    if (h.opcode != static_cast<uint8_t>(proto::Opcode::kLogin)) {
      SendError(id, h.request_id, proto::ErrorCode::kNotLoggedIn, "the first frame must be LOGIN");
      CloseAfterFlush(id, CloseReason::k_not_logged_in);
      return false;
    }
    return HandleLogin(id, h, body);
  }
  switch (static_cast<proto::Opcode>(h.opcode)) {
    case proto::Opcode::kPing: {
      proto::PingBody ping;
      if (!proto::Decode(body, &ping)) break;
      proto::PongBody pong;
      pong.timestamp = ping.timestamp;
      EnqueueFrame(id, h.request_id, pong);
      return conns_[id].state == ConnState::kActive;
    }
    case proto::Opcode::kSend: {
      proto::SendBody send;
      if (!proto::Decode(body, &send)) break;
      backend_->OnSend(SessionOf(id), h.request_id, send);
      return conns_[id].state == ConnState::kActive;
    }
    case proto::Opcode::kPushAck: {
      proto::PushAckBody ack;
      if (!proto::Decode(body, &ack)) break;
      backend_->OnPushAck(SessionOf(id), ack);
      return conns_[id].state == ConnState::kActive;
    }
    case proto::Opcode::kSync: {
      proto::SyncBody sync;
      if (!proto::Decode(body, &sync)) break;
      backend_->OnSync(SessionOf(id), h.request_id, sync);
      return conns_[id].state == ConnState::kActive;
    }
    case proto::Opcode::kLogout: {
      proto::LogoutBody lo;
      if (!proto::Decode(body, &lo)) break;
      CloseAfterFlush(id, CloseReason::k_logout);
      return false;
    }
    case proto::Opcode::kLogin:
      SendError(id, h.request_id, proto::ErrorCode::kAlreadyLoggedIn, "already logged in");
      return conns_[id].state == ConnState::kActive;
    case proto::Opcode::kPong:
      // A client may answer a server PING; nothing to do beyond the liveness already noted.
      return true;
    default: {
      Backend::FrameVerdict v = backend_->OnFrame(SessionOf(id), h, body);
      if (v == Backend::FrameVerdict::kMalformed) break;
      if (v == Backend::FrameVerdict::kNotMine) {
        if (proto::IsKnownOpcode(h.opcode)) {
          SendError(id, h.request_id, proto::ErrorCode::kUnsupported, "opcode not accepted from clients");
        } else {
          SendError(id, h.request_id, proto::ErrorCode::kUnknownOpcode, "unknown opcode");
        }
      }
      return conns_[id].state == ConnState::kActive;
    }
  }
  // A known opcode whose body did not decode.
  SendError(id, h.request_id, proto::ErrorCode::kMalformedBody,
            std::string("malformed ") + std::string(proto::OpcodeName(h.opcode)) + " body");
  CloseAfterFlush(id, CloseReason::k_malformed_body);
  return false;
}

// ---- login ----

bool Shard::HandleLogin(uint32_t id, const proto::Header& h, std::span<const uint8_t> body) {
  uint64_t start_ns = core::MonoNanos();
  proto::LoginBody login;
  if (!proto::Decode(body, &login)) {
    stats_.login_failures_total.Inc();
    SendError(id, h.request_id, proto::ErrorCode::kMalformedBody, "malformed login body");
    CloseAfterFlush(id, CloseReason::k_malformed_body);
    return false;
  }
  if (cfg_.auth == AuthMode::kToken) {
    auth::TokenResult r = auth::VerifyToken(cfg_.auth_secret, login.token, login.user_id, login.device_id,
                                            core::UnixMillis() / 1000);
    if (r != auth::TokenResult::kOk) {
      stats_.login_failures_total.Inc();
      proto::LoginAckBody ack;
      ack.status = static_cast<uint16_t>(proto::LoginStatus::kAuthFailed);
      std::string msg = std::string("authentication failed: ") + std::string(auth::TokenResultName(r));
      ack.message = msg;
      ack.server_time_ms = core::UnixMillis();
      EnqueueFrame(id, h.request_id, ack);
      CloseAfterFlush(id, CloseReason::k_auth_failed);
      return false;
    }
  }
  Conn& c = conns_[id];
  c.user_id = login.user_id;
  c.device_id = login.device_id;
  c.platform = login.platform;
  wheel_.Cancel(TimerId(id, kTimerSession));
  uint32_t owner = OwnerShard(login.user_id);
  if (owner == id_) {
    CompleteLogin(id, h.request_id, start_ns);
    return conns_[id].state == ConnState::kActive;
  }
  StartMigration(id, owner, h.request_id, start_ns);
  return false;
}

void Shard::CompleteLogin(uint32_t id, uint32_t request_id, uint64_t start_ns) {
  Conn& c = conns_[id];
  uint32_t old = registry_.Add(id);
  if (old != kNoConn) {
    // The same device logged in again: the newer connection wins.
    stats_.kicks_total.Inc();
    proto::KickBody kick;
    kick.reason = static_cast<uint16_t>(proto::KickReason::kDuplicateDevice);
    kick.message = "the same device logged in again";
    EnqueueFrame(old, 0, kick);
    EndSession(old);
    CloseAfterFlush(old, CloseReason::k_kicked);
  }
  c.state = ConnState::kActive;
  ++next_session_;
  if (backend_->OnLogin(SessionOf(id)) == LoginVerdict::kDeny) {
    stats_.login_failures_total.Inc();
    registry_.Remove(id);
    proto::LoginAckBody ack;
    ack.status = static_cast<uint16_t>(proto::LoginStatus::kAuthFailed);
    ack.message = "login denied";
    ack.server_time_ms = core::UnixMillis();
    EnqueueFrame(id, request_id, ack);
    CloseAfterFlush(id, CloseReason::k_login_rejected);
    return;
  }
  stats_.logins_total.Inc();
  stats_.sessions[TransportOf(id)].Add(1);
  proto::LoginAckBody ack;
  ack.status = static_cast<uint16_t>(proto::LoginStatus::kOk);
  ack.heartbeat_interval_ms = cfg_.heartbeat_interval_ms;
  ack.heartbeat_timeout_ms = cfg_.heartbeat_timeout_ms;
  ack.session_id = SessionOf(id).session_id;
  ack.server_time_ms = core::UnixMillis();
  EnqueueFrame(id, request_id, ack);
  stats_.login_latency.Observe(static_cast<double>(core::MonoNanos() - start_ns) * 1e-9);
  Conn& c2 = conns_[id];
  c2.last_rx_tick = static_cast<uint32_t>(NowTick());
  wheel_.Arm(TimerId(id, kTimerSession), NowTick() + (cfg_.heartbeat_timeout_ms + tick_ms_ - 1) / tick_ms_);
}

void Shard::StartMigration(uint32_t id, uint32_t owner, uint32_t request_id, uint64_t start_ns) {
  Conn& c = conns_[id];
  c.state = ConnState::kMigrating;
  uint32_t token = next_migration_++ & 0xffffff;
  outgoing_[id] = OutgoingMigration{owner, request_id, token, start_ns};
  io_uring_sqe* sqe = ring_.Sqe();
  // The descriptor moves first; the login record follows through the grid once the move succeeded, so
  // the owner never waits for a descriptor that failed to arrive.
  core::PrepMsgRingSendFd(sqe, shared_->grid->RingFd(owner), c.file_slot, PackUserData(kOpMigrateIn, id_, token));
  io_uring_sqe_set_data64(sqe, PackUserData(kOpMigrateOut, c.gen, id));
}

void Shard::OnMigrateOut(uint32_t id, const io_uring_cqe* cqe) {
  auto it = outgoing_.find(id);
  if (it == outgoing_.end()) return;
  OutgoingMigration mig = it->second;
  outgoing_.erase(it);
  // Logins come in bursts; give the burst's table back once it is over.
  if (outgoing_.empty() && outgoing_.bucket_count() > 64) outgoing_.rehash(0);
  Conn& c = conns_[id];
  if (cqe->res < 0) {
    // Typically -ENFILE: the owner shard's fixed-file table is full.
    stats_.login_failures_total.Inc();
    Close(id, CloseReason::k_migrate_failed);
    return;
  }
  core::ShardMessage m;
  m.kind = kMsgMigrate;
  m.a = c.user_id;
  // Monotonic nanoseconds stay far below 2^63: the top bit says the connection speaks WebSocket.
  m.b = mig.start_ns | ((c.ws & kWsOpen) ? kMigrateWsBit : 0);
  m.u32 = c.device_id;
  m.u32b = mig.request_id;
  m.len = (static_cast<uint32_t>(c.platform) << 24) | mig.token;
  m.ptr = c.carry;  // bytes that followed LOGIN; handed back here once the owner parsed them
  c.carry = nullptr;
  Post(mig.owner, m);
  stats_.migrations_total.Inc();
  // The owner holds its own reference to the socket now; drop ours.
  io_uring_sqe* sqe = ring_.Sqe();
  io_uring_prep_close_direct(sqe, c.file_slot);
  io_uring_sqe_set_data64(sqe, PackUserData(kOpIgnore, 0, 0));
  stats_.connections[TransportOf(id)].Add(-1);
  c.state = ConnState::kClosing;
  MaybeFree(id);
  SlotFreed();  // the close above runs before any accept submitted after it
}

void Shard::OnMigrateIn(const io_uring_cqe* cqe) {
  core::UserData ud = UnpackUserData(cqe->user_data);
  uint64_t key = (static_cast<uint64_t>(ud.gen) << 32) | ud.slot;
  if (cqe->res < 0) return;  // the sender saw the same error and closed the connection
  SlotTaken();
  PendingMigration& p = migrations_in_[key];
  p.slot = cqe->res;
  if (p.have_record) FinishMigrateIn(key, p);
}

void Shard::FinishMigrateIn(uint64_t key, PendingMigration& p) {
  core::ShardMessage m = p.record;
  uint32_t slot = static_cast<uint32_t>(p.slot);
  migrations_in_.erase(key);
  if (migrations_in_.empty() && migrations_in_.bucket_count() > 64) migrations_in_.rehash(0);
  auto release = [&] {
    if (m.ptr != nullptr) Post(m.from, core::ShardMessage{kShardMessageRelease, 0, kMsgMigrate, 0, 0, m.ptr, 0, 0});
  };
  uint32_t id = conns_.Alloc();
  if (id == kNoConn) {
    io_uring_sqe* sqe = ring_.Sqe();
    io_uring_prep_close_direct(sqe, slot);
    io_uring_sqe_set_data64(sqe, PackUserData(kOpIgnore, 0, 0));
    SlotFreed();
    stats_.closes[static_cast<size_t>(CloseReason::k_migrate_failed)].Inc();
    release();
    return;
  }
  Conn& c = conns_[id];
  c.file_slot = slot;
  if (m.b & kMigrateWsBit) c.ws = kWsTransport | kWsOpen;
  stats_.connections[TransportOf(id)].Add(1);
  c.state = ConnState::kAwaitLogin;
  c.user_id = m.a;
  c.device_id = m.u32;
  c.platform = static_cast<uint8_t>(m.len >> 24);
  c.last_rx_tick = static_cast<uint32_t>(NowTick());
  CompleteLogin(id, m.u32b, m.b & ~kMigrateWsBit);
  if (conns_[id].state == ConnState::kActive) {
    if (draining_) {
      proto::GoawayBody g;
      // The same spread as StartDrain: [0, drain_seconds) in milliseconds.
      uint64_t spread_ms = cfg_.drain_seconds * 1000ull;
      g.reconnect_delay_ms = static_cast<uint32_t>(spread_ms == 0 ? 0 : Mix64(++rng_state_) % spread_ms);
      g.reason = "draining";
      EnqueueFrame(id, 0, g);
      CloseAfterFlush(id, CloseReason::k_draining);
    } else if (m.ptr != nullptr) {
      auto* carry = static_cast<Carry*>(m.ptr);
      Consume(id, carry->data, carry->len);
    }
    if (conns_[id].state == ConnState::kActive && !(conns_[id].flags & kCloseAfterFlush)) ArmRecv(id);
  }
  release();
}

// ---- output ----

template <class Body>
bool Shard::EnqueueFrame(uint32_t id, uint32_t request_id, const Body& body) {
  size_t size = proto::FrameSize(body);
  if (size > scratch_.size()) scratch_.resize(size);
  size_t n = proto::Encode(request_id, body, scratch_);
  if (n == 0) return false;
  return Enqueue(id, {scratch_.data(), n});
}

bool Shard::Enqueue(uint32_t id, std::span<const uint8_t> bytes) {
  const Conn& c = conns_[id];
  if ((c.ws & kWsOpen) && !(c.ws & kWsEcho)) {
    // The one place longlink frames enter a connection's output, local or from another shard: on WebSocket
    // each becomes one unmasked binary message.
    uint8_t header[protocol::ws::kMaxHeaderSize];
    size_t hn = protocol::ws::EncodeFrameHeader(protocol::ws::Opcode::kBinary, true, bytes.size(), std::nullopt,
                                                header);
    return EnqueueRaw(id, {header, hn}, bytes, true);
  }
  return EnqueueRaw(id, {}, bytes, true);
}

bool Shard::EnqueueRaw(uint32_t id, std::span<const uint8_t> prefix, std::span<const uint8_t> bytes, bool frame) {
  Conn& c = conns_[id];
  if ((c.state != ConnState::kActive && c.state != ConnState::kAwaitLogin) || (c.flags & kCloseAfterFlush) ||
      (c.ws & kWsCloseSent)) {
    return false;
  }
  uint32_t n = static_cast<uint32_t>(prefix.size() + bytes.size());
  OutQueue* q = c.out;
  if (q == nullptr) q = c.out = new OutQueue();
  // The limit bounds the backlog, not one frame: a frame always joins a queue that is under the limit, so
  // a client that keeps up gets even a push larger than --max-frame-bytes (an echo adds its own fields).
  if (q->bytes() >= cfg_.max_pending_bytes) {
    stats_.slow_consumers_total.Inc();
    Close(id, CloseReason::k_slow_consumer);
    return false;
  }
  if (!prefix.empty()) q->Append(prefix.data(), static_cast<uint32_t>(prefix.size()));
  q->Append(bytes.data(), static_cast<uint32_t>(bytes.size()));
  stats_.pending_send_bytes.Add(n);
  if (frame && bytes.size() > 5) {
    uint8_t op = bytes[5];
    stats_.frames_out[TransportOf(id)][proto::IsKnownOpcode(op) ? op : 0].Inc();
  }
  if (!(c.flags & kDirty)) {
    c.flags |= kDirty;
    dirty_.push_back(id);
  }
  return true;
}

void Shard::FlushSends() {
  for (uint32_t id : dirty_) {
    Conn& c = conns_[id];
    if (!(c.flags & kDirty)) continue;
    c.flags &= static_cast<uint8_t>(~kDirty);
    if (c.state == ConnState::kFree || c.state == ConnState::kClosing) continue;
    if (!(c.flags & kSendInflight)) SubmitSend(id);
  }
  dirty_.clear();
}

void Shard::SubmitSend(uint32_t id) {
  Conn& c = conns_[id];
  OutQueue* q = c.out;
  if (q == nullptr) return;
  if (!q->Ready()) return;
  io_uring_sqe* sqe = ring_.Sqe();
  io_uring_prep_send(sqe, static_cast<int>(c.file_slot), q->send_data(), q->send_len(), MSG_NOSIGNAL);
  sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, PackUserData(kOpSend, c.gen, id));
  c.flags |= kSendInflight;
  wheel_.Arm(TimerId(id, kTimerWrite), NowTick() + (cfg_.write_timeout_ms + tick_ms_ - 1) / tick_ms_);
}

void Shard::OnSend(uint32_t id, const io_uring_cqe* cqe) {
  Conn& c = conns_[id];
  c.flags &= static_cast<uint8_t>(~kSendInflight);
  if (c.state == ConnState::kClosing) {
    MaybeFree(id);
    return;
  }
  if (cqe->res < 0) {
    Close(id, CloseReason::k_write_error);
    return;
  }
  OutQueue* q = c.out;
  uint32_t sent = static_cast<uint32_t>(cqe->res);
  stats_.sent_bytes_total[TransportOf(id)].Inc(sent);
  stats_.pending_send_bytes.Add(-static_cast<int64_t>(sent));
  if (!q->Sent(sent)) {
    SubmitSend(id);
    return;
  }
  wheel_.Cancel(TimerId(id, kTimerWrite));
  core::OutQueue::Free(q);
  c.out = nullptr;
  if (c.flags & kCloseAfterFlush) Close(id, c.reason);
}

void Shard::SendError(uint32_t id, uint32_t request_id, proto::ErrorCode code, std::string_view message) {
  proto::ErrorBody e;
  e.code = static_cast<uint16_t>(code);
  e.message = message;
  EnqueueFrame(id, request_id, e);
}

// ---- closing ----

void Shard::EndSession(uint32_t id) {
  Conn& c = conns_[id];
  if (!(c.flags & kInRegistry)) return;
  registry_.Remove(id);
  stats_.sessions[TransportOf(id)].Add(-1);
  backend_->OnDisconnect(SessionOf(id));
}

void Shard::CloseAfterFlush(uint32_t id, CloseReason reason) {
  Conn& c = conns_[id];
  if (c.state == ConnState::kClosing || c.state == ConnState::kFree || (c.flags & kCloseAfterFlush)) return;
  // On WebSocket the last thing sent is a close frame (unless an error path already queued its own).
  if ((c.ws & kWsOpen) && !(c.ws & kWsCloseSent)) WsSendClose(id, WsCloseCodeFor(reason), CloseReasonName(reason));
  EndSession(id);
  c.flags |= kCloseAfterFlush;
  c.reason = reason;
  wheel_.Cancel(TimerId(id, kTimerSession));
  if (c.out == nullptr || c.out->bytes() == 0) {
    Close(id, reason);
    return;
  }
  // Queued output goes out with this round's flush; the write timer bounds how long that may take.
  if (!(c.flags & kSendInflight)) {
    wheel_.Arm(TimerId(id, kTimerWrite), NowTick() + (cfg_.write_timeout_ms + tick_ms_ - 1) / tick_ms_);
  }
}

void Shard::Close(uint32_t id, CloseReason reason) {
  Conn& c = conns_[id];
  if (c.state == ConnState::kClosing || c.state == ConnState::kFree) return;
  if (c.flags & kCloseAfterFlush) reason = c.reason;
  EndSession(id);
  stats_.closes[static_cast<size_t>(reason)].Inc();
  stats_.connections[TransportOf(id)].Add(-1);
  c.reason = reason;
  c.state = ConnState::kClosing;
  wheel_.Cancel(TimerId(id, kTimerSession));
  wheel_.Cancel(TimerId(id, kTimerWrite));
  // Shut the socket down (IORING_OP_SHUTDOWN on a fixed file, kernel 5.11), which ends the outstanding
  // receive (EOF) and send at once, then close the descriptor; the hard link runs the close whatever the
  // shutdown returned. Cancelling by descriptor instead would walk every request of the ring, which makes
  // closing many connections at once quadratic.
  io_uring_sqe* sqe = ring_.Sqe();
  io_uring_prep_shutdown(sqe, static_cast<int>(c.file_slot), SHUT_RDWR);
  sqe->flags |= IOSQE_FIXED_FILE;
  sqe->flags |= IOSQE_IO_HARDLINK;
  io_uring_sqe_set_data64(sqe, PackUserData(kOpIgnore, 0, 0));
  sqe = ring_.Sqe();
  io_uring_prep_close_direct(sqe, c.file_slot);
  io_uring_sqe_set_data64(sqe, PackUserData(kOpClose, c.gen, id));
  c.flags |= kCloseInflight;
}

void Shard::OnClose(uint32_t id) {
  conns_[id].flags &= static_cast<uint8_t>(~kCloseInflight);
  SlotFreed();
  MaybeFree(id);
}

void Shard::MaybeFree(uint32_t id) {
  Conn& c = conns_[id];
  if (c.state != ConnState::kClosing) return;
  if (c.flags & (kRecvArmed | kSendInflight | kCloseInflight)) return;
  if (c.out != nullptr) {
    stats_.pending_send_bytes.Add(-static_cast<int64_t>(c.out->bytes()));
    core::OutQueue::Free(c.out);
    c.out = nullptr;
  }
  if (c.carry != nullptr) {
    std::free(c.carry);
    c.carry = nullptr;
  }
  if (c.ws & kWsFragmented) {
    ws_messages_.erase(id);
    if (ws_messages_.empty() && ws_messages_.bucket_count() > 64) ws_messages_.rehash(0);
  }
  conns_.Free(id);
}

// ---- delivery and cross-shard messages ----

bool Shard::SendTo(const ConnRef& ref, std::span<const uint8_t> frame) {
  AssertOwner();
  if (ref.shard != id_ || !conns_.Valid(ref.id, ref.gen)) return false;
  return Enqueue(ref.id, frame);
}

void Shard::DeliverLocal(uint64_t user_id, uint32_t device_id, std::span<const uint8_t> frame) {
  uint32_t id = registry_.First(user_id);
  while (id != kNoConn) {
    // Enqueue may close the connection (slow consumer), which unlinks it: read the next link first.
    uint32_t next = conns_[id].next;
    if (device_id == 0 || conns_[id].device_id == device_id) Enqueue(id, frame);
    id = next;
  }
}

void Shard::PushToUser(uint64_t user_id, uint32_t device_id, std::span<const uint8_t> frame) {
  AssertOwner();
  uint32_t owner = OwnerShard(user_id);
  if (owner == id_) {
    DeliverLocal(user_id, device_id, frame);
    return;
  }
  auto* copy = static_cast<uint8_t*>(std::malloc(frame.size()));
  std::memcpy(copy, frame.data(), frame.size());
  Post(owner, core::ShardMessage{kMsgPush, 0, device_id, user_id, 0, copy, static_cast<uint32_t>(frame.size()), 0});
}

void Shard::PushToUsers(std::span<const uint64_t> user_ids, std::span<const uint8_t> frame) {
  AssertOwner();
  std::vector<uint32_t> per_shard(shards_, 0);
  for (uint64_t u : user_ids) {
    uint32_t owner = OwnerShard(u);
    if (owner == id_) {
      DeliverLocal(u, 0, frame);
    } else {
      ++per_shard[owner];
    }
  }
  std::vector<PushManyBlob*> blobs(shards_, nullptr);
  for (uint32_t s = 0; s < shards_; ++s) {
    if (per_shard[s] == 0) continue;
    auto* b = static_cast<PushManyBlob*>(
        std::malloc(PushManyBlob::SizeFor(static_cast<uint32_t>(frame.size()), per_shard[s])));
    b->frame_len = static_cast<uint32_t>(frame.size());
    b->user_count = 0;
    std::memcpy(b->frame(), frame.data(), frame.size());
    blobs[s] = b;
  }
  for (uint64_t u : user_ids) {
    uint32_t owner = OwnerShard(u);
    if (owner != id_) blobs[owner]->users()[blobs[owner]->user_count++] = u;
  }
  for (uint32_t s = 0; s < shards_; ++s) {
    if (blobs[s] != nullptr) Post(s, core::ShardMessage{kMsgPushMany, 0, 0, 0, 0, blobs[s], 0, 0});
  }
}

void Shard::KickLocal(uint64_t user_id, uint32_t device_id, proto::KickReason reason, std::string_view message) {
  uint32_t id = registry_.First(user_id);
  while (id != kNoConn) {
    uint32_t next = conns_[id].next;
    if (device_id == 0 || conns_[id].device_id == device_id) {
      stats_.kicks_total.Inc();
      proto::KickBody k;
      k.reason = static_cast<uint16_t>(reason);
      k.message = message;
      EnqueueFrame(id, 0, k);
      CloseAfterFlush(id, CloseReason::k_kicked);
    }
    id = next;
  }
}

void Shard::Kick(uint64_t user_id, uint32_t device_id, proto::KickReason reason, std::string_view message) {
  AssertOwner();
  uint32_t owner = OwnerShard(user_id);
  if (owner == id_) {
    KickLocal(user_id, device_id, reason, message);
    return;
  }
  auto* copy = static_cast<char*>(std::malloc(std::max<size_t>(1, message.size())));
  std::memcpy(copy, message.data(), message.size());
  Post(owner, core::ShardMessage{kMsgKick, 0, device_id, user_id, 0, copy, static_cast<uint32_t>(message.size()),
                                 static_cast<uint32_t>(reason)});
}

void Shard::PostToShard(uint32_t shard, const BackendMessage& bm) {
  AssertOwner();
  if (shard == id_) {
    BackendMessage local = bm;
    local.from = id_;
    backend_->OnShardMessage(local);
    if (bm.ptr != nullptr) backend_->ReleaseShardPayload(bm.ptr);
    return;
  }
  Post(shard, core::ShardMessage{kMsgBackend, 0, bm.kind, bm.a, bm.b, bm.ptr, bm.len, bm.aux});
}

void Shard::Post(uint32_t to, core::ShardMessage m) {
  AssertOwner();
  m.from = static_cast<uint16_t>(id_);
  stats_.cross_shard_messages_total.Inc();
  if (!outbox_.Post(to, m)) stats_.cross_shard_overflow_total.Inc();
}

void Shard::OnShardMessage(const core::ShardMessage& m) {
  if (m.kind == kShardMessageRelease) {
    if (m.u32 == kMsgBackend) {
      backend_->ReleaseShardPayload(m.ptr);
    } else {
      std::free(m.ptr);
    }
    return;
  }
  switch (m.kind) {
    case kMsgMigrate: {
      uint64_t key = (static_cast<uint64_t>(m.from) << 32) | (m.len & 0xffffff);
      PendingMigration& p = migrations_in_[key];
      p.record = m;
      p.have_record = true;
      if (p.slot >= 0) FinishMigrateIn(key, p);
      return;  // the carry is released by FinishMigrateIn
    }
    case kMsgPush:
      DeliverLocal(m.a, m.u32, {static_cast<const uint8_t*>(m.ptr), m.len});
      break;
    case kMsgPushMany: {
      auto* b = static_cast<PushManyBlob*>(m.ptr);
      for (uint32_t i = 0; i < b->user_count; ++i) DeliverLocal(b->users()[i], 0, {b->frame(), b->frame_len});
      break;
    }
    case kMsgKick:
      KickLocal(m.a, m.u32, static_cast<proto::KickReason>(m.u32b),
                std::string_view(static_cast<const char*>(m.ptr), m.len));
      break;
    case kMsgBackend:
      backend_->OnShardMessage(BackendMessage{m.u32, m.a, m.b, m.ptr, m.len, m.u32b, m.from});
      break;
    default:
      break;
  }
  if (m.ptr != nullptr) Post(m.from, core::ShardMessage{kShardMessageRelease, 0, m.kind, 0, 0, m.ptr, 0, 0});
}

// ---- timers, sessions, drain ----

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
  uint64_t now = NowTick();
  uint32_t idle = static_cast<uint32_t>(now) - c.last_rx_tick;
  uint64_t timeout_ticks = (cfg_.heartbeat_timeout_ms + tick_ms_ - 1) / tick_ms_;
  if (idle >= timeout_ticks) {
    stats_.heartbeat_timeouts_total.Inc();
    Close(id, CloseReason::k_heartbeat_timeout);
    return;
  }
  wheel_.Arm(TimerId(id, kTimerSession), now - idle + timeout_ticks);
}

Session Shard::SessionOf(uint32_t id) {
  const Conn& c = conns_[id];
  Session s;
  s.conn = ConnRef{id_, id, c.gen};
  s.user_id = c.user_id;
  s.device_id = c.device_id;
  s.platform = c.platform;
  s.session_id = (static_cast<uint64_t>(id_) << 48) | (static_cast<uint64_t>(c.gen) << 24) | (id & 0xffffff);
  return s;
}

void Shard::StartDrain() {
  draining_ = true;
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
  // Tell every client to go elsewhere, each after its own delay so they do not all reconnect at once.
  // This one pass over the table happens once per process lifetime.
  uint64_t spread_ms = cfg_.drain_seconds * 1000ull;
  for (uint32_t id = 0; id < conns_.high_water(); ++id) {
    Conn& c = conns_[id];
    if (c.state == ConnState::kAwaitLogin) {
      Close(id, CloseReason::k_draining);
    } else if (c.state == ConnState::kActive && (c.ws & kWsEcho)) {
      CloseAfterFlush(id, CloseReason::k_draining);  // no session: just the close frame (1001)
    } else if (c.state == ConnState::kActive && !(c.flags & kCloseAfterFlush)) {
      proto::GoawayBody g;
      g.reconnect_delay_ms = static_cast<uint32_t>(spread_ms == 0 ? 0 : Mix64(++rng_state_) % spread_ms);
      g.reason = "draining";
      EnqueueFrame(id, 0, g);
      CloseAfterFlush(id, CloseReason::k_draining);
    }
  }
  drain_deadline_tick_ = NowTick() + (cfg_.write_timeout_ms + tick_ms_ - 1) / tick_ms_;
}

}  // namespace longlink::gateway
