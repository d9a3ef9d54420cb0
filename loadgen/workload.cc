// What an online client does on its own schedule (load_shard.h), from its timer: leaving when the plan says,
// the weak network's flaps and zombies, foreground/background switches, PINGs and the PONG timeout, SENDs on
// an open model with their intended times fixed in advance, and a delayed PUSH_ACK. Also the workload's
// arithmetic: message targets and recipients (a function of sender and seq, so the ledger can recompute
// them), group setup, and payload sizes.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "core/hash.h"
#include "loadgen/load_shard.h"

namespace longlink::loadgen {

namespace proto = longlink::protocol;
namespace ws = longlink::protocol::ws;

bool LoadShard::Impl::TargetOf(uint32_t index, uint32_t seq, uint8_t* kind, uint64_t* id) const {
  const uint64_t h = core::Mix64(cfg_.seed ^ (static_cast<uint64_t>(index) << 32 | seq));
  switch (cfg_.message_targets) {
    case TargetSelection::kSelf:
      *kind = static_cast<uint8_t>(proto::TargetKind::kUser);
      *id = UserOf(index);
      return true;
    case TargetSelection::kRandomUser:
      *kind = static_cast<uint8_t>(proto::TargetKind::kUser);
      *id = h % e_->users() + 1;
      return true;
    case TargetSelection::kGroups: {
      std::span<const uint32_t> groups = e_->GroupsOf(UserOf(index));
      if (groups.empty() || !e_->GroupsReady()) return false;
      *kind = static_cast<uint8_t>(proto::TargetKind::kGroup);
      *id = groups[h % groups.size()] + 1;
      return true;
    }
  }
  return false;
}

void LoadShard::Impl::AddDevicesOf(uint64_t user) {
  const uint64_t first = (user - 1) * cfg_.devices_per_user;
  for (uint64_t d = 0; d < cfg_.devices_per_user && first + d < cfg_.clients; ++d) {
    recipients_.push_back(static_cast<uint32_t>(first + d));
  }
}

void LoadShard::Impl::RecipientsOf(uint32_t index, uint32_t seq) {
  // The local backend's rule (docs/protocol.md 6.5.1): every device of every recipient user, and every
  // device of the sender (the sending device included).
  recipients_.clear();
  uint8_t kind = 0;
  uint64_t id = 0;
  if (!TargetOf(index, seq, &kind, &id)) return;
  AddDevicesOf(UserOf(index));
  if (kind == static_cast<uint8_t>(proto::TargetKind::kGroup)) {
    const uint32_t g = static_cast<uint32_t>(id - 1);
    for (uint32_t j = 0; j < e_->GroupMembers(); ++j) {
      uint64_t member = e_->GroupMember(g, j);
      if (member != UserOf(index)) AddDevicesOf(member);
    }
  } else if (id != UserOf(index)) {
    AddDevicesOf(id);
  }
}

void LoadShard::Impl::StartGroupSetup(uint32_t local) {
  Client& c = clients_[local];
  std::span<const uint32_t> groups = e_->GroupsOf(UserOf(c.index));
  c.groups_pending = static_cast<uint16_t>(std::min<size_t>(groups.size(), 0xffff));
  for (uint32_t k = 0; k < c.groups_pending; ++k) {
    // Create, which makes us the first member; if someone was first, join instead (OnGroupReply).
    proto::GroupCreateBody create;
    create.group_id = Wire(groups[k] + 1);
    Queue(local, kGroupRequest | k, create);
  }
  if (c.groups_pending == 0) c.groups_done = 1;
}

void LoadShard::Impl::OnGroupReply(uint32_t local, uint32_t request_id, const proto::GroupReplyBody& reply) {
  Client& c = clients_[local];
  if ((request_id & kGroupRequest) == 0 || c.groups_done || c.groups_pending == 0) return;
  const auto status = static_cast<proto::GroupStatus>(reply.status);
  if (status == proto::GroupStatus::kAlreadyExists) {
    proto::GroupJoinBody join;
    join.group_id = reply.group_id;
    Queue(local, request_id, join);
    return;
  }
  if (status != proto::GroupStatus::kOk) s_->counters_.protocol_errors.Inc();
  if (--c.groups_pending == 0) {
    c.groups_done = 1;
    e_->GroupsJoined();
  }
}

uint64_t LoadShard::Impl::DrawBackgroundSwitch(const Client& c, uint64_t now) {
  // Time in each state is exponential; the means keep bg_fraction of the clients in the background and
  // make bg_switches_per_hour switches per client per hour on average.
  double f = cfg_.bg_fraction;
  if (f <= 0 || f >= 1 || cfg_.bg_switches_per_hour <= 0) return kNever;
  double mean_h = 2.0 * (c.background ? f : 1.0 - f) / cfg_.bg_switches_per_hour;
  double s = std::exponential_distribution<double>(1.0 / (mean_h * 3600.0))(rng_);
  return now + static_cast<uint64_t>(s * 1e9);
}

uint64_t LoadShard::Impl::NextWake(const Client& c) const {
  uint64_t t = std::min(c.leave_at, c.next_bg);
  const Link* link = c.link == kNoLink ? nullptr : &links_[c.link];
  if (link != nullptr) {
    t = std::min({t, link->next_flap(), link->next_zombie()});
    if (link->zombie()) return t;  // a half-open client does nothing else
  }
  t = std::min(t, c.next_ping);
  t = std::min(t, c.next_msg);
  if (c.flags & kAckPending) t = std::min(t, c.ack_at);
  if (c.ping_out != 0) t = std::min<uint64_t>(t, c.ping_out + cfg_.pong_timeout_ms * 1000000ull);
  return t;
}

// The bookkeeping of a PING queued at `now` for its intended time c.next_ping, and the next one's time.
void LoadShard::Impl::PingSent(Client& c, uint64_t now) {
  s_->counters_.pings.Inc();
  s_->lat_.lag.Record(now - c.next_ping);
  s_->lat_.heartbeat_interval.Record(HeartbeatNs(c));
  if (c.ping_out == 0) c.ping_out = now;  // the timeout runs from when it left, not from when it was due
  c.next_ping += HeartbeatNs(c);
}

void LoadShard::Impl::Drive(uint32_t local, uint64_t now) {
  Client& c = clients_[local];
  if (now >= c.leave_at) {
    s_->counters_.leaves.Inc();
    Drop(local, static_cast<Leave>(c.leave), false);
    return;
  }
  Link* link = LinkOf(c);
  if (link != nullptr && !Running(now)) {
    // The run is over: no new network events in the grace period, only what is in flight settles.
    link->NoMoreFlap();
    link->NoMoreZombie();
  }
  if (link != nullptr) {
    if (now >= link->next_flap()) {
      // The radio drops: an abrupt close or an RST, and the app reconnects.
      s_->counters_.flaps.Inc();
      link->DrawFlap(now);
      if (link->zombie()) s_->counters_.zombies_unreaped.Inc();
      Close(local, true, link->Uniform() < 0.5);
      return;
    }
    if (now >= link->next_zombie()) {
      // The phone leaves coverage: it stops reading and writing and never closes. Only the gateway's
      // heartbeat timeout can end this connection; OnRecv times how long that takes.
      s_->counters_.zombies.Inc();
      link->BecomeZombie(now);
      link->NoMoreZombie();
      wheel_.Cancel(LinkTimerId(local));
      ArmTimer(local, NextWake(c));
      return;
    }
    if (link->zombie()) {
      ArmTimer(local, NextWake(c));
      return;
    }
  }
  if (now >= c.next_bg) {
    uint64_t before = HeartbeatNs(c);
    c.background ^= 1;
    s_->counters_.bg_switches.Inc();
    uint64_t after = HeartbeatNs(c);
    // The next PING moves with the interval, but not into the past: that would count as generator lag.
    c.next_ping = std::max(now, c.next_ping + after - before);
    c.next_bg = DrawBackgroundSwitch(c, now);
  }
  if (c.ping_out != 0 && now >= c.ping_out + cfg_.pong_timeout_ms * 1000000ull) {
    // No PONG in time: the connection is dead as far as the app can tell (a black hole, a stall, a dead
    // server). Close it and reconnect; an adaptive client also shortens its interval.
    s_->counters_.pong_timeouts.Inc();
    if (cfg_.hb_adaptive) {
      c.hb_ms = std::max<uint32_t>(cfg_.hb_initial_ms, static_cast<uint32_t>(c.hb_ms * cfg_.hb_backoff));
      c.hb_streak = 0;
      s_->counters_.hb_backoffs.Inc();
    }
    s_->counters_.disconnects.Inc();
    Close(local, true);
    return;
  }
  bool running = Running(now);
  if (cfg_.transport == Transport::kWebSocketEcho) {
    DriveEcho(local, now, running);
    return;
  }
  while (c.next_ping <= now) {
    proto::PingBody ping;
    ping.timestamp = c.next_ping;  // intended time: the round trip is measured from it
    Queue(local, 0, ping);
    PingSent(c, now);
  }
  if (cfg_.msg_rate_per_client > 0) {
    double interval_ns = 1e9 / cfg_.msg_rate_per_client;
    while (c.next_msg <= now && running) {
      proto::SendBody send;
      uint32_t seq = c.seq + 1;
      if (!TargetOf(c.index, seq, &send.target_kind, &send.target_id)) {
        // Group messages start once every member has joined: until then this send time passes unused.
        c.next_msg += static_cast<uint64_t>(interval_ns);
        continue;
      }
      send.target_id = Wire(send.target_id);
      c.seq = seq;
      const uint64_t id = MakeMessageId(c.index, seq);
      send.client_msg_id = e_->WireId(id);
      std::memcpy(payload_.data(), &c.next_msg, 8);  // the intended send time rides to the receiver
      c.sent_at[seq % 4] = c.next_msg;
      uint32_t size = PayloadSize();
      send.payload = std::span<const uint8_t>(payload_.data(), size);
      Queue(local, seq, send);
      s_->ledger_.Sent(id);
      s_->counters_.sent.Inc();
      s_->counters_.payload_bytes.Inc(size);
      s_->lat_.lag.Record(now - c.next_msg);
      c.next_msg += static_cast<uint64_t>(interval_ns);
    }
    if (!running) c.next_msg = kNever;
  }
  // A delayed PUSH_ACK goes out when due, or now if this round writes a frame anyway.
  if ((c.flags & kAckPending) && (now >= c.ack_at || (c.flags & kDirty))) QueuePushAck(local);
  ArmTimer(local, NextWake(c));
}

void LoadShard::Impl::DriveEcho(uint32_t local, uint64_t now, bool running) {
  Client& c = clients_[local];
  while (c.next_ping <= now) {
    // A WebSocket ping whose payload is its intended time: the pong carries it back.
    uint8_t stamp[8];
    std::memcpy(stamp, &c.next_ping, 8);
    QueueWs(local, ws::Opcode::kPing, stamp);
    PingSent(c, now);
  }
  if (cfg_.msg_rate_per_client > 0) {
    double interval_ns = 1e9 / cfg_.msg_rate_per_client;
    while (c.next_msg <= now && running) {
      std::memcpy(payload_.data(), &c.next_msg, 8);
      uint32_t size = PayloadSize();
      QueueWs(local, ws::Opcode::kBinary, std::span<const uint8_t>(payload_.data(), size));
      s_->counters_.sent.Inc();
      s_->counters_.payload_bytes.Inc(size);
      s_->lat_.lag.Record(now - c.next_msg);
      c.next_msg += static_cast<uint64_t>(interval_ns);
    }
    if (!running) c.next_msg = kNever;
  }
  ArmTimer(local, NextWake(c));
}

uint32_t LoadShard::Impl::PayloadSize() {
  const uint32_t lo =
      std::max<uint32_t>(cfg_.transport == Transport::kWebSocketEcho ? 8 : kPayloadHeader, cfg_.payload_min);
  const uint32_t hi = std::max<uint32_t>(lo, cfg_.payload_max);
  switch (cfg_.payload_dist) {
    case PayloadDistribution::kFixed:
      return hi;
    case PayloadDistribution::kUniform:
      return std::uniform_int_distribution<uint32_t>(lo, hi)(rng_);
    case PayloadDistribution::kLognormal: {
      double v =
          std::lognormal_distribution<double>(std::log(std::max(1.0, cfg_.payload_median)), cfg_.payload_sigma)(rng_);
      return static_cast<uint32_t>(std::clamp<double>(std::round(v), lo, hi));
    }
  }
  return hi;
}

}  // namespace longlink::loadgen
