// The local backend's presence. A user's owner shard knows its sessions and keeps the subscriptions to it
// (in memory only); a user's first device coming online and its last leaving (decided at the end of the
// round) send a PRESENCE event to every subscriber, one copy per shard.
#include "core/clock.h"
#include "gateway/backend/local/local_backend.h"

namespace longlink::gateway::local {

namespace proto = longlink::protocol;

Backend::FrameVerdict LocalBackend::OnPresenceSubscribe(const Session& s, const proto::Header& h,
                                                        std::span<const uint8_t> body) {
  proto::PresenceSubscribeBody b;
  if (!proto::Decode(body, &b)) return FrameVerdict::kMalformed;
  size_t n = b.user_ids.size() / proto::kIdSize;
  for (size_t i = 0; i < n; ++i) {
    uint64_t target = proto::IdAt(b.user_ids, i);
    port_->Call(Owner(target), PresenceCall{target, s.user_id, s.device_id, h.request_id, b.subscribe != 0});
  }
  return FrameVerdict::kHandled;
}

void LocalBackend::OnPresence(const PresenceCall& c) {
  if (c.subscribe) {
    watchers_[c.watched].insert(c.subscriber);
  } else {
    auto it = watchers_.find(c.watched);
    if (it != watchers_.end()) {
      it->second.erase(c.subscriber);
      if (it->second.empty()) watchers_.erase(it);
    }
  }
  SendPresence(c.subscriber, c.device, c.request_id, c.watched);
}

void LocalBackend::SendPresence(uint64_t to_user, uint32_t device, uint32_t request_id, uint64_t user) {
  proto::PresenceBody b;
  b.user_id = user;
  auto it = sessions_.find(user);
  b.devices = it == sessions_.end() ? 0 : static_cast<uint32_t>(it->second.size());
  b.online = b.devices > 0 ? 1 : 0;
  b.time_ms = core::UnixMillis();
  port_->PushToUser(to_user, device, Encode(request_id, b));
}

void LocalBackend::PresenceChanged(uint64_t user, bool online) {
  auto it = watchers_.find(user);
  if (it == watchers_.end() || it->second.empty()) return;
  std::vector<uint64_t> to(it->second.begin(), it->second.end());
  proto::PresenceBody b;
  b.user_id = user;
  b.online = online ? 1 : 0;
  b.devices = online ? 1 : 0;
  b.time_ms = core::UnixMillis();
  port_->PushToUsers(to, Encode(0, b));
  stats_.presence_events_total.Inc(to.size());
}

}  // namespace longlink::gateway::local
