#include "gateway/backend/echo/echo_backend.h"

#include <array>
#include <atomic>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "core/clock.h"
#include "core/hash.h"
#include "gateway/backend/admin_ops.h"

namespace longlink::gateway {
namespace {

namespace proto = longlink::protocol;

#define LONGLINK_ECHO_COUNTERS(C)                                    \
  C(admin_pushes_total, "Live pushes sent by the admin API")         \
  C(echoes_total, "SENDs answered and pushed back to their sender")
#define LONGLINK_ECHO_GAUGES(G) G(online_users, "Users with at least one device online")

struct EchoStats {
  LL_STATS_FIELDS(LONGLINK_ECHO_COUNTERS, LONGLINK_ECHO_GAUGES, LL_STATS_NONE)
  void Visit(metrics::StatsVisitor& v) const { LL_STATS_VISIT(LONGLINK_ECHO_COUNTERS, LONGLINK_ECHO_GAUGES, LL_STATS_NONE) }
};

class EchoBackend final : public Backend {
 public:
  explicit EchoBackend(GatewayPort* port) : port_(port) {}

  LoginVerdict OnLogin(const Session& s) override {
    sessions_[s.user_id].push_back(Device{s.device_id, s.platform, core::UnixMillis(), s.conn.id, s.conn.gen});
    stats_.online_users.Set(static_cast<int64_t>(sessions_.size()));
    return LoginVerdict::kAllow;
  }
  void OnDisconnect(const Session& s) override {
    auto it = sessions_.find(s.user_id);
    if (it == sessions_.end()) return;
    auto& devs = it->second;
    for (size_t i = 0; i < devs.size(); ++i) {
      if (devs[i].conn_id == s.conn.id && devs[i].conn_gen == s.conn.gen) {
        devs.erase(devs.begin() + static_cast<ptrdiff_t>(i));
        break;
      }
    }
    if (devs.empty()) sessions_.erase(it);
    stats_.online_users.Set(static_cast<int64_t>(sessions_.size()));
  }

  void OnSend(const Session& s, uint32_t request_id, const proto::SendBody& body) override {
    uint64_t start = core::MonoNanos();
    uint64_t server_msg_id = (static_cast<uint64_t>(port_->shard_id()) << 48) | ++next_msg_id_;
    uint64_t now_ms = core::UnixMillis();
    proto::SendAckBody ack;
    ack.status = static_cast<uint16_t>(proto::SendStatus::kOk);
    ack.client_msg_id = body.client_msg_id;
    ack.server_msg_id = server_msg_id;
    ack.server_time_ms = now_ms;
    std::array<uint8_t, 64> ack_buf;
    size_t n = proto::Encode(request_id, ack, ack_buf);
    port_->SendTo(s.conn, std::span<const uint8_t>(ack_buf.data(), n));

    proto::PushBody push;
    push.server_msg_id = server_msg_id;
    push.from_user = s.user_id;
    push.from_device = s.device_id;
    push.conv_kind = body.target_kind;
    push.conv_id = body.target_id;
    push.client_msg_id = body.client_msg_id;
    push.server_time_ms = now_ms;
    push.payload = body.payload;
    Push(s.user_id, push);
    stats_.echoes_total.Inc();
    port_->ObserveBackendLatency(static_cast<double>(core::MonoNanos() - start) * 1e-9);
  }

  void OnSync(const Session& s, uint32_t request_id, const proto::SyncBody&) override {
    // Echo keeps no inbox: there is never anything to sync.
    proto::SyncDoneBody done;
    std::array<uint8_t, 32> buf;
    size_t n = proto::Encode(request_id, done, buf);
    port_->SendTo(s.conn, std::span<const uint8_t>(buf.data(), n));
  }
  void OnPushAck(const Session&, const proto::PushAckBody&) override {}

  void VisitStats(metrics::StatsVisitor& v) const override { stats_.Visit(v); }

  // ---- admin (shard thread) ----
  uint64_t AdminPush(const std::vector<uint64_t>& users, std::span<const uint8_t> payload) {
    uint64_t id = (static_cast<uint64_t>(port_->shard_id()) << 48) | ++next_msg_id_;
    proto::PushBody push;
    push.server_msg_id = id;
    push.server_time_ms = core::UnixMillis();
    push.conv_kind = static_cast<uint8_t>(proto::TargetKind::kUser);
    push.payload = payload;
    for (uint64_t u : users) {
      push.conv_id = u;
      Push(u, push);
    }
    stats_.admin_pushes_total.Inc(users.size());
    return id;
  }
  uint64_t AdminKick(uint64_t user, uint32_t device) {
    uint64_t n = 0;
    if (auto it = sessions_.find(user); it != sessions_.end()) {
      for (const Device& d : it->second) n += (device == 0 || d.device == device) ? 1 : 0;
    }
    port_->Kick(user, device, proto::KickReason::kAdmin, "kicked by an operator");
    return n;
  }
  AdminUser UserInfo(uint64_t user) const {
    AdminUser u;
    u.user = user;
    u.shard = port_->shard_id();
    if (auto it = sessions_.find(user); it != sessions_.end()) {
      u.online = true;
      for (const Device& d : it->second) u.devices.push_back(AdminDevice{d.device, d.platform, d.since_ms, 0});
    }
    return u;
  }

 private:
  struct Device {
    uint32_t device;
    uint8_t platform;
    uint64_t since_ms;
    uint32_t conn_id;
    uint32_t conn_gen;
  };

  void Push(uint64_t user, const proto::PushBody& push) {
    // The payload is bounded by --max-frame-bytes, so the push fits a buffer of that size plus headers.
    size_t size = proto::FrameSize(push);
    if (size > scratch_.size()) scratch_.resize(size);
    size_t n = proto::Encode(0, push, scratch_);
    port_->PushToUser(user, 0, std::span<const uint8_t>(scratch_.data(), n));
  }

  GatewayPort* port_;
  uint64_t next_msg_id_ = 0;
  std::vector<uint8_t> scratch_ = std::vector<uint8_t>(1024);
  absl::flat_hash_map<uint64_t, absl::InlinedVector<Device, 2>> sessions_;
  EchoStats stats_;
};

AdminResult Stopping() { return {AdminCode::kUnavailable, "the gateway is stopping"}; }
AdminResult NoGroups() { return {AdminCode::kUnsupported, "--backend=echo has no groups"}; }

class EchoAdminOps final : public AdminOps {
 public:
  explicit EchoAdminOps(ShardRunner* runner) : runner_(runner) {}

  void Push(AdminPush push, AdminDone<uint64_t> done) override {
    if (push.group != 0) {
      std::move(done)(NoGroups(), 0);
      return;
    }
    // One shard pushes; the gateway routes each user's copy to its owner.
    Run<uint64_t>(Owner(push.users.empty() ? 0 : push.users[0]), std::move(done),
                  [push = std::move(push)](EchoBackend& b) { return b.AdminPush(push.users, push.payload); });
  }
  void Kick(uint64_t user, uint32_t device, AdminDone<uint64_t> done) override {
    Run<uint64_t>(Owner(user), std::move(done), [user, device](EchoBackend& b) { return b.AdminKick(user, device); });
  }
  void User(uint64_t user, AdminDone<AdminUser> done) override {
    Run<AdminUser>(Owner(user), std::move(done), [user](EchoBackend& b) { return b.UserInfo(user); });
  }
  void CreateGroup(uint64_t, std::vector<uint64_t>, AdminDone<bool> done) override { std::move(done)(NoGroups(), false); }
  void ChangeMembers(uint64_t, bool, std::vector<uint64_t>, AdminDone<bool> done) override {
    std::move(done)(NoGroups(), false);
  }
  void Members(uint64_t, AdminDone<std::vector<uint64_t>> done) override { std::move(done)(NoGroups(), {}); }

 private:
  uint32_t Owner(uint64_t id) const { return core::OwnerShardOf(id, runner_->shard_count()); }
  template <class T, class Fn>
  void Run(uint32_t shard, AdminDone<T> done, Fn fn) {
    auto d = std::make_shared<AdminDone<T>>(std::move(done));
    bool queued = runner_->RunOnShard(shard, [d, fn = std::move(fn)](Backend& b) mutable {
      T result = fn(static_cast<EchoBackend&>(b));
      std::move(*d)(AdminResult::Ok(), std::move(result));
    });
    if (!queued) std::move(*d)(Stopping(), T{});
  }

  ShardRunner* runner_;
};

class EchoFactory final : public BackendFactory {
 public:
  absl::Status Open(ShardRunner* runner) override {
    if (runner != nullptr) admin_ = std::make_unique<EchoAdminOps>(runner);
    return absl::OkStatus();
  }
  std::unique_ptr<Backend> ForShard(GatewayPort* port) override { return std::make_unique<EchoBackend>(port); }
  AdminOps* admin_ops() override { return admin_.get(); }

 private:
  std::unique_ptr<EchoAdminOps> admin_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<BackendFactory>> ConfigureEchoBackend(const GatewayInfo&) {
  return std::unique_ptr<BackendFactory>(new EchoFactory());
}

}  // namespace longlink::gateway
