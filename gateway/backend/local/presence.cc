// The local backend's presence. A user's owner shard knows its sessions and keeps the subscriptions to it
// (in memory only); a user's first device coming online and its last leaving (decided at the end of the
// round) send a PRESENCE event to every subscriber, one copy per shard.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/clock.h"
#include "gateway/backend/local/local_backend.h"

namespace longlink::gateway::local {

namespace proto = longlink::protocol;

Backend::FrameVerdict LocalBackend::OnPresenceSubscribe(const Session& s, const proto::Header& h,
                                                        std::span<const uint8_t> body) {
  proto::PresenceSubscribeBody b;
  if (!proto::Decode(body, &b)) return FrameVerdict::kMalformed;
  DeviceSession* d = FindDevice(s);
  if (d == nullptr) return FrameVerdict::kHandled;
  if (d->watching == nullptr) d->watching = std::make_unique<absl::flat_hash_set<uint64_t>>();
  // The device's set is updated first and the calls made afterwards: a call to this shard runs at once and
  // its answer may close this very connection (a slow consumer), which ends the session and frees `d`.
  std::vector<PresenceCall> calls;
  std::string refusal;
  size_t n = b.user_ids.size() / proto::kIdSize;
  for (size_t i = 0; i < n; ++i) {
    uint64_t target = proto::IdAt(b.user_ids, i);
    int8_t change = 0;
    if (b.subscribe != 0) {
      if (!d->watching->contains(target)) {
        if (d->watching->size() >= opts_.max_presence_subscriptions) {
          // The rest of the list is refused, and said so once; what came before it stands.
          stats_.limited_total.Inc();
          refusal = absl::StrCat("presence subscriptions: at most ", opts_.max_presence_subscriptions,
                                 " per device; ", n - i, " of this request refused");
          break;
        }
        d->watching->insert(target);
        ++presence_subscriptions_;
        change = 1;
      }
    } else if (d->watching->erase(target) != 0) {
      --presence_subscriptions_;
      change = -1;
    }
    calls.push_back(PresenceCall{target, s.user_id, s.device_id, h.request_id, change, true});
  }
  if (d->watching->empty()) d->watching.reset();
  for (const PresenceCall& c : calls) port_->Call(Owner(c.watched), c);
  if (!refusal.empty()) {
    proto::ErrorBody e;
    e.code = static_cast<uint16_t>(proto::ErrorCode::kLimitExceeded);
    e.message = refusal;
    port_->SendTo(s.conn, Encode(h.request_id, e));  // false if the connection went away meanwhile
  }
  return FrameVerdict::kHandled;
}

void LocalBackend::DropSubscriptions(uint64_t user, DeviceSession& d) {
  if (d.watching == nullptr) return;
  for (uint64_t target : *d.watching) {
    port_->Call(Owner(target), PresenceCall{target, user, d.device, 0, -1, false});
  }
  presence_subscriptions_ -= static_cast<int64_t>(d.watching->size());
  d.watching.reset();
}

void LocalBackend::OnPresence(const PresenceCall& c) {
  if (c.change > 0) {
    ++watchers_[c.watched][c.subscriber];
  } else if (c.change < 0) {
    auto it = watchers_.find(c.watched);
    if (it != watchers_.end()) {
      auto sub = it->second.find(c.subscriber);
      if (sub != it->second.end() && --sub->second == 0) it->second.erase(sub);
      if (it->second.empty()) watchers_.erase(it);
    }
  }
  if (c.reply) SendPresence(c.subscriber, c.device, c.request_id, c.watched);
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
  std::vector<uint64_t> to;
  to.reserve(it->second.size());
  for (const auto& [subscriber, devices] : it->second) to.push_back(subscriber);
  proto::PresenceBody b;
  b.user_id = user;
  b.online = online ? 1 : 0;
  b.devices = online ? 1 : 0;
  b.time_ms = core::UnixMillis();
  port_->PushToUsers(to, Encode(0, b));
  stats_.presence_events_total.Inc(to.size());
}

}  // namespace longlink::gateway::local
