// Shard: sessions. Frames of a connection (HandleFrame), LOGIN with its credentials, and moving a freshly
// logged-in connection to its user's owner shard (docs/architecture.md, "Where a user lives").
#include <cstdlib>
#include <cstring>

#include "core/clock.h"
#include "core/hash.h"
#include "core/user_data.h"
#include "gateway/shard.h"
#include "protocol/token.h"

namespace longlink::gateway {

using core::PackUserData;
using core::UnpackUserData;
namespace proto = longlink::protocol;

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
    proto::TokenResult r = proto::VerifyToken(cfg_.auth_secret, login.token, login.user_id, login.device_id,
                                            core::UnixMillis() / 1000);
    if (r != proto::TokenResult::kOk) {
      stats_.login_failures_total.Inc();
      proto::LoginAckBody ack;
      ack.status = static_cast<uint16_t>(proto::LoginStatus::kAuthFailed);
      std::string msg = std::string("authentication failed: ") + std::string(proto::TokenResultName(r));
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
  stats_.login_latency_seconds.Observe(static_cast<double>(core::MonoNanos() - start_ns) * 1e-9);
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
  MigrateMsg m{};
  m.user = c.user_id;
  m.start_ns = mig.start_ns;
  m.device = c.device_id;
  m.request_id = mig.request_id;
  m.token = mig.token;
  m.platform = c.platform;
  m.websocket = (c.ws & kWsOpen) != 0;
  // The bytes that followed LOGIN travel along; handed back here once the owner parsed them.
  Post(mig.owner, core::ShardMessage::Of(kMsgMigrate, m, c.carry));
  c.carry = nullptr;
  stats_.migrations_total.Inc();
  // The owner holds its own reference to the socket now; drop ours.
  core::PrepCloseDirect(ring_, c.file_slot, PackUserData(kOpIgnore, 0, 0));
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
  const MigrateMsg m = p.record;
  Carry* carry = p.carry;
  const uint16_t from = p.from;
  uint32_t slot = static_cast<uint32_t>(p.slot);
  migrations_in_.erase(key);
  if (migrations_in_.empty() && migrations_in_.bucket_count() > 64) migrations_in_.rehash(0);
  uint32_t id = conns_.Alloc();
  if (id == kNoConn) {
    core::PrepCloseDirect(ring_, slot, PackUserData(kOpIgnore, 0, 0));
    SlotFreed();
    stats_.closes[static_cast<size_t>(CloseReason::k_migrate_failed)].Inc();
    Release(from, kMsgMigrate, carry);
    return;
  }
  Conn& c = conns_[id];
  c.file_slot = slot;
  if (m.websocket) c.ws = kWsTransport | kWsOpen;
  stats_.connections[TransportOf(id)].Add(1);
  c.state = ConnState::kAwaitLogin;
  c.user_id = m.user;
  c.device_id = m.device;
  c.platform = m.platform;
  c.last_rx_tick = static_cast<uint32_t>(NowTick());
  CompleteLogin(id, m.request_id, m.start_ns);
  if (conns_[id].state == ConnState::kActive) {
    if (draining_) {
      SendGoaway(id);
      CloseAfterFlush(id, CloseReason::k_draining);
    } else if (carry != nullptr) {
      Consume(id, carry->data, carry->len);
    }
    if (conns_[id].state == ConnState::kActive && !(conns_[id].flags & kCloseAfterFlush)) ArmRecv(id);
  }
  Release(from, kMsgMigrate, carry);
}

void Shard::EndSession(uint32_t id) {
  Conn& c = conns_[id];
  if (!(c.flags & kInRegistry)) return;
  registry_.Remove(id);
  stats_.sessions[TransportOf(id)].Add(-1);
  backend_->OnDisconnect(SessionOf(id));
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

}  // namespace longlink::gateway
