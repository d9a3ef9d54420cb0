// Shard: sessions. Frames of a connection (HandleFrame), LOGIN with its credentials, and moving a freshly
// logged-in connection to its user's owner shard (docs/architecture.md, "Where a user lives").
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
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
  // Bytes that followed LOGIN travel with a connection that moves to its owner shard, or wait for its
  // address check.
  ConnState s = conns_[id].state;
  if (!rest.empty() && (s == ConnState::kMigrating || s == ConnState::kCheckingAddress)) {
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
      return HandleRelogin(id, h, body);
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
  Conn& guard_conn = conns_[id];
  if (login_guard_.active(core::MonoMillis()) && !(guard_conn.ws & kAddrChecked)) {
    // Some address is being refused: this LOGIN waits until its own address is known (OnPeerAddress).
    pending_logins_[id] = PendingLogin{h, std::vector<uint8_t>(body.begin(), body.end())};
    guard_conn.state = ConnState::kCheckingAddress;
    LearnAddress(id, kOpPeerAddrCheck);
    return false;
  }
  proto::LoginBody login;
  if (!proto::Decode(body, &login)) {
    LoginFailed(id);
    SendError(id, h.request_id, proto::ErrorCode::kMalformedBody, "malformed login body");
    CloseAfterFlush(id, CloseReason::k_malformed_body);
    return false;
  }
  uint64_t expiry = 0;
  if (cfg_.auth == AuthMode::kToken) {
    proto::TokenResult r = proto::VerifyToken(cfg_.auth_secret, login.token, login.user_id, login.device_id,
                                              core::UnixMillis() / 1000, &expiry);
    if (r != proto::TokenResult::kOk) {
      LoginFailed(id);
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
  if (conns_.has_expiry()) conns_.set_expiry(id, static_cast<uint32_t>(std::min<uint64_t>(expiry, UINT32_MAX)));
  uint32_t owner = OwnerShard(login.user_id);
  if (owner == id_) {
    CompleteLogin(id, h.request_id, start_ns);
    return conns_[id].state == ConnState::kActive;
  }
  StartMigration(id, owner, h.request_id, start_ns);
  return false;
}

void Shard::LoginFailed(uint32_t id) {
  stats_.login_failures_total.Inc();
  if (login_guard_.enabled()) LearnAddress(id, kOpPeerAddrFailed);
}

void Shard::LearnAddress(uint32_t id, Op purpose) {
  const Conn& c = conns_[id];
  core::PrepFixedFdInstall(ring_, c.file_slot, PackUserData(purpose, c.gen, id));
}

namespace {

// The source address of a socket descriptor, IPv4 mapped into IPv6.
bool PeerOf(int fd, PeerAddress* out) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return false;
  if (ss.ss_family == AF_INET6) {
    std::memcpy(out->bytes, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr, 16);
    bool mapped = out->bytes[10] == 0xff && out->bytes[11] == 0xff &&
                  std::all_of(out->bytes, out->bytes + 10, [](uint8_t b) { return b == 0; });
    if (!mapped) std::memset(out->bytes + 8, 0, 8);  // the /64
    return true;
  }
  if (ss.ss_family == AF_INET) {
    out->bytes[10] = out->bytes[11] = 0xff;
    std::memcpy(out->bytes + 12, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, 4);
    return true;
  }
  return false;
}

}  // namespace

void Shard::OnPeerAddress(const io_uring_cqe* cqe, Op purpose) {
  core::UserData ud = UnpackUserData(cqe->user_data);
  PeerAddress addr;
  bool known = false;
  if (cqe->res >= 0) {
    known = PeerOf(cqe->res, &addr);
    close(cqe->res);
  }
  uint64_t now_ms = core::MonoMillis();
  if (purpose == kOpPeerAddrFailed) {
    if (known && login_guard_.Failed(addr, now_ms)) {
      stats_.login_blocked_addresses.Set(static_cast<int64_t>(login_guard_.blocked(now_ms)));
    }
    return;
  }
  if (core::IsStale(ud, conns_.high_water(), ud.slot < conns_.high_water() ? conns_[ud.slot].gen : 0)) return;
  uint32_t id = ud.slot;
  auto it = pending_logins_.find(id);
  if (conns_[id].state != ConnState::kCheckingAddress || it == pending_logins_.end()) return;
  PendingLogin login = std::move(it->second);
  pending_logins_.erase(it);
  Conn& c = conns_[id];
  c.state = ConnState::kAwaitLogin;
  // An address that cannot be learned (a kernel without FIXED_FD_INSTALL) is let through: the guard then
  // only counts.
  if (known && login_guard_.Blocked(addr, now_ms)) {
    stats_.login_throttled_total.Inc();
    proto::LoginAckBody ack;
    ack.status = static_cast<uint16_t>(proto::LoginStatus::kServerBusy);
    ack.message = "too many failed logins from this address; retry later";
    ack.server_time_ms = core::UnixMillis();
    EnqueueFrame(id, login.header.request_id, ack);
    CloseAfterFlush(id, CloseReason::k_login_throttled);
    return;
  }
  c.ws |= kAddrChecked;
  bool go_on = HandleLogin(id, login.header, login.body);  // HandleFrame counted the frame already
  Conn& after = conns_[id];
  // Whatever followed the LOGIN waited in the carry; a connection that moved shards took it along.
  if (go_on && after.carry != nullptr &&
      (after.state == ConnState::kActive || after.state == ConnState::kAwaitLogin)) {
    Carry* k = after.carry;
    after.carry = nullptr;
    Consume(id, k->data, k->len);
    std::free(k);
  }
  Conn& last = conns_[id];
  if ((last.state == ConnState::kActive || last.state == ConnState::kAwaitLogin) && !(last.flags & kCloseAfterFlush)) {
    ArmRecv(id);
  }
}

bool Shard::HandleRelogin(uint32_t id, const proto::Header& h, std::span<const uint8_t> body) {
  Conn& c = conns_[id];
  proto::LoginBody login;
  if (!proto::Decode(body, &login)) {
    SendError(id, h.request_id, proto::ErrorCode::kMalformedBody, "malformed LOGIN body");
    CloseAfterFlush(id, CloseReason::k_malformed_body);
    return false;
  }
  if (cfg_.auth != AuthMode::kToken || login.user_id != c.user_id || login.device_id != c.device_id) {
    SendError(id, h.request_id, proto::ErrorCode::kAlreadyLoggedIn, "already logged in");
    return c.state == ConnState::kActive;
  }
  // The same user and device with a fresh token: the session lives on under the new expiry.
  uint64_t expiry = 0;
  proto::TokenResult r = proto::VerifyToken(cfg_.auth_secret, login.token, login.user_id, login.device_id,
                                            core::UnixMillis() / 1000, &expiry);
  proto::LoginAckBody ack;
  ack.server_time_ms = core::UnixMillis();
  if (r != proto::TokenResult::kOk) {
    LoginFailed(id);
    ack.status = static_cast<uint16_t>(proto::LoginStatus::kAuthFailed);
    std::string msg = std::string("token refresh failed: ") + std::string(proto::TokenResultName(r));
    ack.message = msg;
    EnqueueFrame(id, h.request_id, ack);
    CloseAfterFlush(id, CloseReason::k_auth_failed);
    return false;
  }
  stats_.token_refreshes_total.Inc();
  conns_.set_expiry(id, static_cast<uint32_t>(std::min<uint64_t>(expiry, UINT32_MAX)));
  ack.status = static_cast<uint16_t>(proto::LoginStatus::kOk);
  ack.heartbeat_interval_ms = cfg_.heartbeat_interval_ms;
  ack.heartbeat_timeout_ms = cfg_.heartbeat_timeout_ms;
  ack.session_id = SessionOf(id).session_id;
  EnqueueFrame(id, h.request_id, ack);
  wheel_.Arm(TimerId(id, kTimerSession), SessionDeadlineTick(id));
  return conns_[id].state == ConnState::kActive;
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
  wheel_.Arm(TimerId(id, kTimerSession), SessionDeadlineTick(id));
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
  m.start_ns = mig.start_ns | ((c.ws & kWsOpen) ? kMigrateWsBit : 0);
  m.device = c.device_id;
  m.request_id = mig.request_id;
  m.token_platform = (mig.token & 0xffffff) | (static_cast<uint32_t>(c.platform) << 24);
  m.expiry = conns_.has_expiry() ? conns_.expiry(id) : 0;
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
  if (m.start_ns & kMigrateWsBit) c.ws = kWsTransport | kWsOpen;
  stats_.connections[TransportOf(id)].Add(1);
  c.state = ConnState::kAwaitLogin;
  c.user_id = m.user;
  c.device_id = m.device;
  c.platform = static_cast<uint8_t>(m.token_platform >> 24);
  c.last_rx_tick = static_cast<uint32_t>(NowTick());
  if (conns_.has_expiry()) conns_.set_expiry(id, m.expiry);
  CompleteLogin(id, m.request_id, m.start_ns & ~kMigrateWsBit);
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
