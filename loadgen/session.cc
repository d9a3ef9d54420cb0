// The longlink session of a client (load_shard.h): LOGIN and what LOGIN_ACK starts, the frames the server
// sends (PONG, SEND_ACK, PUSH, SYNC_DONE, GROUP_REPLY, KICK, GOAWAY), the client's inbox cursor with its
// reorder window, SYNC rounds and PUSH_ACKs, and leaving the way the scenario says.
#include <algorithm>
#include <cstring>
#include <random>
#include <string>

#include "core/clock.h"
#include "loadgen/load_shard.h"
#include "protocol/token.h"

namespace longlink::loadgen {

namespace proto = longlink::protocol;

void LoadShard::Impl::SendLogin(uint32_t local, uint64_t now) {
  Client& c = clients_[local];
  proto::LoginBody login;
  login.user_id = Wire(UserOf(c.index));
  login.device_id = DeviceOf(c.index);
  login.platform = 2;
  std::string token;
  if (cfg_.auth_token) {
    token = protocol::MintToken(cfg_.auth_secret, login.user_id, login.device_id, core::UnixMillis() / 1000 + 86400);
    login.token = token;
  }
  Queue(local, 1, login);
}

void LoadShard::Impl::BecomeOnline(uint32_t local, uint64_t now) {
  Client& c = clients_[local];
  s_->counters_.logins.Inc();
  s_->counters_.online.Add(1);
  s_->lat_.login.Record(now - c.t_login);
  if (c.t_down != 0) {
    s_->lat_.reconnect.Record(now - c.t_down);
    c.t_down = 0;
  }
  c.state = State::kOnline;
  c.attempts = 0;
  c.ping_out = 0;
  // An ack still pending from the last connection is not owed any more: the SYNC after login starts from
  // the cursor, and the next push acknowledges it.
  c.flags &= static_cast<uint8_t>(~kAckPending);
  // Random phase so that clients do not beat in lockstep; the first SEND is due at a random point of the
  // first interval for the same reason.
  c.next_ping = now + rng_() % HeartbeatNs(c);
  if (cfg_.msg_rate_per_client > 0) {
    double interval_ns = 1e9 / cfg_.msg_rate_per_client;
    c.next_msg = now + static_cast<uint64_t>(std::uniform_real_distribution<double>(0, interval_ns)(rng_));
  } else {
    c.next_msg = kNever;
  }
}

void LoadShard::Impl::SendSync(uint32_t local, uint64_t after, uint64_t now, bool page) {
  Client& c = clients_[local];
  if (!page) c.sync_from = c.last_push_seq;
  proto::SyncBody sync;
  sync.after_seq = after;
  sync.limit = kSyncLimit;
  Queue(local, 2, sync);
  s_->counters_.syncs.Inc();
  c.syncing = 1;
  if (!page) c.t_sync = now;
}

void LoadShard::Impl::HandleFrame(uint32_t local, const proto::Header& h, std::span<const uint8_t> body) {
  Client& c = clients_[local];
  uint64_t now = core::MonoNanos();
  switch (static_cast<proto::Opcode>(h.opcode)) {
    case proto::Opcode::kLoginAck: {
      proto::LoginAckBody ack;
      if (!proto::Decode(body, &ack) || ack.status != 0) {
        s_->counters_.login_failures.Inc();
        Close(local, true);
        return;
      }
      if (c.state != State::kLoggingIn) return;
      c.hb_timeout_ms = ack.heartbeat_timeout_ms;
      if (cfg_.hb_adaptive) {
        // The learnt interval survives reconnects (as a smart-heartbeat client keeps it per network), but
        // never reaches the server's timeout.
        uint32_t cap =
            std::min<uint32_t>(cfg_.hb_max_ms, static_cast<uint32_t>(uint64_t{ack.heartbeat_timeout_ms} * 4 / 5));
        c.hb_ms = std::max<uint32_t>(50, std::min(c.hb_ms, cap));
      } else {
        c.hb_ms = std::max<uint32_t>(ack.heartbeat_interval_ms, 50);
      }
      c.hb_streak = 0;
      c.syncing = 0;
      // seen_above is kept: the seqs it marks were shown already, and a SYNC from the cursor after this
      // login returns them again (clearing it once counted such a replay as a duplicate delivery).
      BecomeOnline(local, now);
      if (cfg_.bg_switches_per_hour > 0 && c.next_bg == kNever) c.next_bg = DrawBackgroundSwitch(c, now);
      // SYNC from the last contiguous seq after every login: what arrived while offline comes now.
      if (cfg_.sync_on_reconnect) SendSync(local, c.last_push_seq, now);
      if (cfg_.message_targets == TargetSelection::kGroups && DeviceOf(c.index) == 1 && !c.groups_done) {
        StartGroupSetup(local);
      }
      ArmTimer(local, NextWake(c));
      return;
    }
    case proto::Opcode::kPong: {
      proto::PongBody pong;
      if (!proto::Decode(body, &pong)) {
        s_->counters_.protocol_errors.Inc();
        return;
      }
      s_->counters_.pongs.Inc();
      s_->lat_.heartbeat_rtt.Record(now - std::min(now, pong.timestamp));
      c.ping_out = 0;
      if (cfg_.hb_adaptive && ++c.hb_streak >= cfg_.hb_successes) {
        c.hb_streak = 0;
        uint32_t cap = std::min<uint32_t>(cfg_.hb_max_ms, static_cast<uint32_t>(uint64_t{c.hb_timeout_ms} * 4 / 5));
        uint32_t grown = std::min<uint32_t>(cap, c.hb_ms + cfg_.hb_step_ms);
        if (grown > c.hb_ms) {
          uint64_t before = HeartbeatNs(c);
          c.hb_ms = grown;
          c.next_ping = std::max(now, c.next_ping - before + HeartbeatNs(c));
          s_->counters_.hb_grows.Inc();
          if (c.state == State::kOnline) ArmTimer(local, NextWake(c));
        }
      }
      return;
    }
    case proto::Opcode::kSendAck: {
      proto::SendAckBody ack;
      if (!proto::Decode(body, &ack)) {
        s_->counters_.protocol_errors.Inc();
        return;
      }
      if (ack.status != 0) {
        // Refused (for example UNAVAILABLE while a partition changes owner): not stored, so not in the ledger.
        s_->counters_.sends_refused.Inc();
        return;
      }
      s_->counters_.acked.Inc();
      uint64_t id = e_->LedgerId(ack.client_msg_id);
      uint32_t acked_seq = MessageSeq(id);
      // Only the last four SENDs' times are kept: an ack more than four messages late is not timed.
      if (acked_seq + 4 > c.seq) s_->lat_.send_ack.Record(now - std::min(now, c.sent_at[acked_seq % 4]));
      RecipientsOf(c.index, acked_seq);
      s_->ledger_.Acked(id, recipients_);
      return;
    }
    case proto::Opcode::kPush: {
      proto::PushBody push;
      if (!proto::Decode(body, &push)) {
        s_->counters_.protocol_errors.Inc();
        return;
      }
      OnPush(local, push, now);
      return;
    }
    case proto::Opcode::kSyncDone: {
      proto::SyncDoneBody done;
      if (!proto::Decode(body, &done)) {
        s_->counters_.protocol_errors.Inc();
        return;
      }
      // The cursor moves only over PUSHes that arrived (OnPush), never to max_seq: a seq below max_seq
      // that this answer did not carry is stored but not yet deliverable, and jumping would drop it.
      if (done.has_more) {
        SendSync(local, std::max(c.last_push_seq, done.max_seq), now, /*page=*/true);
      } else if (c.last_push_seq < c.high_seen && c.last_push_seq > c.sync_from) {
        // Still behind what was seen, but this round made progress: go again from the cursor.
        SendSync(local, c.last_push_seq, now);
      } else {
        c.syncing = 0;
        s_->lat_.sync.Record(now - c.t_sync);
      }
      return;
    }
    case proto::Opcode::kGroupReply: {
      proto::GroupReplyBody reply;
      if (!proto::Decode(body, &reply)) {
        s_->counters_.protocol_errors.Inc();
        return;
      }
      OnGroupReply(local, h.request_id, reply);
      return;
    }
    case proto::Opcode::kPresence:
      return;
    case proto::Opcode::kError:
      if (h.request_id == 2 && c.syncing) {
        // The SYNC was refused (the backend is unavailable for now): the next gap or reconnect asks again.
        c.syncing = 0;
        return;
      }
      s_->counters_.protocol_errors.Inc();
      return;
    case proto::Opcode::kKick:
      s_->counters_.kicks.Inc();
      Close(local, true);
      return;
    case proto::Opcode::kGoaway:
      Close(local, true);
      return;
    default:
      s_->counters_.protocol_errors.Inc();
      return;
  }
}

void LoadShard::Impl::OnPush(uint32_t local, const proto::PushBody& push, uint64_t now) {
  Client& c = clients_[local];
  if (push.seq != 0) {
    // The client's own dedup by inbox seq: a PUSH at or below the cursor, or one already seen above it,
    // was shown before (a SYNC overlapping live pushes). Only new seqs reach the ledger, whose duplicates
    // therefore count messages the server stored or sent twice under different seqs.
    if (push.seq <= c.last_push_seq) return;
    c.high_seen = std::max(c.high_seen, push.seq);
    uint64_t ahead = push.seq - c.last_push_seq - 2;  // bit index in seen_above when seq > cursor + 1
    if (push.seq > c.last_push_seq + 1 && ahead >= 64) {
      // Beyond the client's 64-message reorder window: not shown now; a SYNC from the cursor fetches it
      // in order (OnSyncDone keeps syncing while the cursor is behind what was seen).
      if (!c.syncing && cfg_.sync_on_reconnect) {
        s_->counters_.sync_gaps.Inc();
        SendSync(local, c.last_push_seq, now);
      }
      return;
    }
    if (push.seq > c.last_push_seq + 1) {
      if (c.seen_above & (uint64_t{1} << ahead)) return;
      c.seen_above |= uint64_t{1} << ahead;
    }
  }
  uint64_t run = 0;
  if (push.payload.size() >= kPayloadHeader) std::memcpy(&run, push.payload.data() + 8, 8);
  if (run != e_->run_id()) {
    // Not this run's message (an earlier run's, or someone else's): shown, acknowledged, not judged.
    s_->counters_.foreign.Inc();
  } else if (s_->ledger_.Delivered(c.index, e_->LedgerId(push.client_msg_id))) {
    s_->counters_.delivered.Inc();
    uint64_t sent_at;
    std::memcpy(&sent_at, push.payload.data(), 8);
    s_->lat_.end_to_end.Record(now - std::min(now, sent_at));
  } else {
    s_->counters_.duplicates.Inc();
  }
  if (push.seq == 0) return;
  if (push.seq == c.last_push_seq + 1) {
    // Contiguous: move the cursor over this seq and any that arrived early.
    c.last_push_seq = push.seq;
    while (c.seen_above & 1) {
      c.seen_above >>= 1;
      ++c.last_push_seq;
    }
    c.seen_above >>= 1;
    if (cfg_.push_ack) {
      if (cfg_.ack_delay_ms == 0 || (c.flags & kDirty)) {
        // At once, or the client is writing this round anyway: the ack rides along.
        QueuePushAck(local);
      } else if (!(c.flags & kAckPending)) {
        c.flags |= kAckPending;
        c.ack_at = now + cfg_.ack_delay_ms * 1000000ull;
        if (c.state == State::kOnline) ArmTimer(local, NextWake(c));
      }
    }
  } else if (!c.syncing && cfg_.sync_on_reconnect) {
    // A gap in the inbox sequence: the client rule is to SYNC from the last contiguous seq.
    s_->counters_.sync_gaps.Inc();
    SendSync(local, c.last_push_seq, now);
  }
}

void LoadShard::Impl::QueuePushAck(uint32_t local) {
  Client& c = clients_[local];
  c.flags &= static_cast<uint8_t>(~kAckPending);
  proto::PushAckBody pa;
  pa.seq = c.last_push_seq;
  Queue(local, 0, pa);
  s_->counters_.push_acks.Inc();
}

void LoadShard::Impl::Drop(uint32_t local, Leave how, bool reconnect) {
  Client& c = clients_[local];
  if (c.state != State::kOnline) {
    Close(local, reconnect, how == Leave::kReset);
    return;
  }
  if (how == Leave::kLogout && cfg_.transport == Transport::kWebSocketEcho) {
    // An echo server knows no LOGOUT: a WebSocket close is the orderly goodbye.
    SendWsClose(local);
    if (!CloseAfterFlush(local, reconnect)) Close(local, reconnect);
    return;
  }
  switch (how) {
    case Leave::kLogout: {
      if (c.flags & kAckPending) QueuePushAck(local);  // an orderly goodbye settles the cursor first
      proto::LogoutBody logout;
      Queue(local, 0, logout);
      BeginLeaving(local, reconnect);
      ArmTimer(local, core::MonoNanos() + kLeaveFallbackNs);
      break;
    }
    case Leave::kClose:
      Close(local, reconnect);
      break;
    case Leave::kReset:
      Close(local, reconnect, true);
      break;
  }
}

}  // namespace longlink::loadgen
