// The backend seam: what the gateway hands to the messaging service behind it, what that service may ask
// of the gateway, and from which thread.
//
// The gateway owns connections, sessions and delivery; a backend owns message semantics (storage,
// sequences, routing across machines). One Backend instance runs per shard and is only ever called on that
// shard's thread, so a backend needs no locks:
//   - it reaches its instance on another shard with typed calls, GatewayPort::Call (one small struct per
//     kind, dispatched with DispatchCall);
//   - its GatewayPort calls route pushes and kicks to whichever shard holds the target user's connections;
//   - threads of its own (a messaging client's callbacks) and the admin HTTP threads reach a shard through
//     ShardRunner::RunOnShard, the runtime's mailbox with wake-up, never by touching shard state.
// Implementations live one per folder under gateway/backend/ (echo/, local/), each its own library with
// its own flags, and are listed in registry.cc; nothing else in gateway/ names one.
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "core/clock.h"
#include "metrics/stats.h"
#include "protocol/frame.h"

namespace prometheus {
struct MetricFamily;
}

namespace longlink::gateway {

class AdminOps;
class Backend;

// Names one connection; stays valid (and harmless) after the connection is gone.
struct ConnRef {
  uint32_t shard = 0;
  uint32_t id = 0;
  uint32_t gen = 0;
};

struct Session {
  ConnRef conn;
  uint64_t user_id = 0;
  uint32_t device_id = 0;
  uint8_t platform = 0;
  uint64_t session_id = 0;
};

// ---- typed calls between a backend's shard instances ----

// The body of a cross-shard call: a small flat struct with a kind unique within its backend, e.g.
//   struct DoneCall { static constexpr uint16_t kKind = 2; uint64_t server_msg_id; };
inline constexpr size_t kShardCallBytes = 32;
template <class M>
concept ShardCallBody = std::is_trivially_copyable_v<M> && sizeof(M) <= kShardCallBytes &&
                        std::is_same_v<std::remove_cv_t<decltype(M::kKind)>, uint16_t>;

// What does not fit a call body travels in a payload: allocated by the calling shard, reachable by the
// callee during the call (it may move data out of it), and deleted on the calling shard afterwards, so
// memory is always freed by the shard that allocated it.
struct ShardPayload {
  virtual ~ShardPayload() = default;
};

// One call as the callee sees it.
class ShardCall {
 public:
  ShardCall(uint16_t kind, uint32_t from, const void* body, ShardPayload* payload)
      : kind_(kind), from_(from), body_(body), payload_(payload) {}
  uint16_t kind() const { return kind_; }
  // The shard that made the call.
  uint32_t from() const { return from_; }
  template <ShardCallBody M>
  M As() const {
    assert(kind_ == M::kKind);
    M m;
    std::memcpy(&m, body_, sizeof(M));
    return m;
  }
  // The payload the caller attached, as the type it attached.
  template <class P>
  P& payload() const {
    assert(payload_ != nullptr);
    return *static_cast<P*>(payload_);
  }

 private:
  uint16_t kind_;
  uint32_t from_;
  const void* body_;
  ShardPayload* payload_;
};

// Calls `on(call.As<M>())` for the one M among Ms whose kind the call has; false if none matched.
template <ShardCallBody... Ms, class Fn>
bool DispatchCall(const ShardCall& call, Fn&& on) {
  return ((call.kind() == Ms::kKind ? (on(call.As<Ms>()), true) : false) || ...);
}

// What the gateway offers a backend on one shard. Valid only on that shard's thread.
class GatewayPort {
 public:
  virtual ~GatewayPort() = default;
  virtual uint32_t shard_id() const = 0;
  virtual uint32_t shard_count() const = 0;
  // The shard holding every connection of a user (connections move there at login).
  virtual uint32_t OwnerShard(uint64_t user_id) const = 0;

  // Queues an encoded frame on one connection, usually a reply. False if it is gone or not on this shard.
  virtual bool SendTo(const ConnRef& conn, std::span<const uint8_t> frame) = 0;
  // Queues an encoded frame to every online device of a user (device_id 0) or to one device, on whatever
  // shard holds them. The bytes are copied before the call returns.
  virtual void PushToUser(uint64_t user_id, uint32_t device_id, std::span<const uint8_t> frame) = 0;
  // The same frame to many users: one copy per shard involved.
  virtual void PushToUsers(std::span<const uint64_t> user_ids, std::span<const uint8_t> frame) = 0;
  // Sends KICK to a user's devices (device_id 0: all) and closes them.
  virtual void Kick(uint64_t user_id, uint32_t device_id, protocol::KickReason reason, std::string_view message) = 0;

  // Calls this backend's instance on `shard` with `m` (and `payload`, deleted on this shard afterwards).
  // A call to this shard runs at once; others go through the shard grid in order per (from, to) pair.
  template <ShardCallBody M>
  void Call(uint32_t shard, const M& m, ShardPayload* payload = nullptr) {
    PostCall(shard, M::kKind, &m, sizeof(M), payload);
  }

  // Records how long a backend operation took, for longlink_gateway_backend_latency_seconds.
  virtual void ObserveBackendLatency(double seconds) = 0;
  // Records the delay from a message's server time (PushBody::server_time_ms, stamped when the SEND was
  // accepted, on whichever gateway) to its live PUSH being queued here, for
  // longlink_gateway_push_delay_seconds. Not for SYNC replays.
  void ObservePushDelay(uint64_t server_time_ms) {
    uint64_t now = core::UnixNanos(), then = server_time_ms * 1000000ull;
    ObservePushDelaySeconds(now > then ? static_cast<double>(now - then) * 1e-9 : 0.0);
  }
  virtual void ObservePushDelaySeconds(double seconds) = 0;
  // Submits fdatasync(fd) on the shard's io_uring (IORING_OP_FSYNC with IORING_FSYNC_DATASYNC, kernel
  // 5.1); Backend::OnFsyncDone(token, res) follows on this shard.
  virtual void SubmitFsync(int fd, uint32_t token) = 0;

 protected:
  virtual void PostCall(uint32_t shard, uint16_t kind, const void* body, size_t size, ShardPayload* payload) = 0;
};

// How threads that are not shards reach one: the runtime's mailbox with wake-up (core/mailbox.h).
class ShardRunner {
 public:
  virtual ~ShardRunner() = default;
  virtual uint32_t shard_count() const = 0;
  // Any thread. Runs `fn` on `shard`'s thread with that shard's Backend as soon as the shard's loop gets
  // to it; an idle shard is woken. False (and `fn` dropped) once the shard has stopped.
  virtual bool RunOnShard(uint32_t shard, absl::AnyInvocable<void(Backend&) &&> fn) = 0;
};

enum class LoginVerdict : uint8_t { kAllow, kDeny };

class Backend {
 public:
  virtual ~Backend() = default;
  // Called on the shard thread before the shard accepts connections.
  virtual absl::Status Start() { return absl::OkStatus(); }

  // A user device authenticated and now lives on this shard (the user's owner shard).
  virtual LoginVerdict OnLogin(const Session& s) = 0;
  virtual void OnSend(const Session& s, uint32_t request_id, const protocol::SendBody& body) = 0;
  virtual void OnSync(const Session& s, uint32_t request_id, const protocol::SyncBody& body) = 0;
  virtual void OnPushAck(const Session& s, const protocol::PushAckBody& body) = 0;
  // Frames the gateway does not interpret itself. kNotMine has the gateway answer ERROR kUnknownOpcode
  // (or kUnsupported for a known server-only opcode); kMalformed answers ERROR kMalformedBody and closes.
  enum class FrameVerdict : uint8_t { kHandled, kNotMine, kMalformed };
  virtual FrameVerdict OnFrame(const Session& s, const protocol::Header& h, std::span<const uint8_t> body) {
    return FrameVerdict::kNotMine;
  }
  // The session ended (any reason), on the shard that held it.
  virtual void OnDisconnect(const Session& s) = 0;

  // A GatewayPort::Call from this backend's instance on another shard (or this one).
  virtual void OnShardCall(const ShardCall& call) {}
  // Called once per loop iteration after completions were handled; `now_ms` is the monotonic clock.
  virtual void OnTick(uint64_t now_ms) {}
  // How long the shard may sleep waiting for completions before the backend needs OnTick again
  // (0: it has work left over from a bounded tick). The shard waits min(this, --tick-ms).
  virtual uint64_t MaxWaitNs(uint64_t now_ns) { return ~uint64_t{0}; }
  // A SubmitFsync finished; `res` is 0 or -errno.
  virtual void OnFsyncDone(uint32_t token, int res) {}

  // The gateway is draining (SIGTERM): it has stopped reading from clients and sent them GOAWAY. New work
  // that still arrives (from other shards, the admin API) is refused with a retryable status; work already
  // accepted is finished.
  virtual void OnDrain() {}
  // While draining: true once nothing this instance accepted is still in progress (stored, acknowledged,
  // delivered to other shards). Connections are closed, and the shard's loop may end, only when every
  // shard's backend is idle (or the drain deadline passed), so that answers still reach clients.
  virtual bool Idle() const { return true; }
  // The shard's loop ended (after draining): finish writing and syncing, on the shard thread.
  virtual void OnStop() {}
  // Any thread (the /readyz handler): false while this instance cannot take new work (its storage or its
  // messaging system failed); it answers such work with a retryable status meanwhile.
  virtual bool Ready() const { return true; }

  // The backend's statistics, exported as longlink_backend_<name>_<metric> and in the admin API's
  // /v1/stats. VisitStats runs on any thread and reads only metric cells; RefreshStats runs on the shard
  // thread (every couple of seconds and before /v1/stats) to set gauges that mirror shard state.
  virtual void VisitStats(metrics::StatsVisitor& v) const {}
  virtual void RefreshStats() {}
};

// Creates the per-shard instances of one backend kind; process-wide state (a messaging-system connection,
// a shared data directory) lives here. Made by the backend's registry entry from its own flags.
class BackendFactory {
 public:
  virtual ~BackendFactory() = default;
  // Acquires process-wide resources (a data directory, a connection), after the gateway bound its
  // listeners and before any shard starts. `runner` outlives the factory's use of it.
  virtual absl::Status Open(ShardRunner* runner) { return absl::OkStatus(); }
  virtual std::unique_ptr<Backend> ForShard(GatewayPort* port) = 0;
  // After Open succeeded and every shard stopped, before `runner` goes: gives up process-wide resources;
  // nothing may reach the runner once it returns.
  virtual void Close() {}
  // Short description for the start-up banner (e.g. "data-dir=./d fsync=batch").
  virtual std::string Describe() const { return std::string(); }
  // The admin API's view of this backend (owned by the factory), or nullptr if it offers none.
  virtual AdminOps* admin_ops() { return nullptr; }
  // Families for /metrics that are not per-shard statistics (e.g. the messaging system's own servers,
  // labelled by server); any thread, at scrape time.
  virtual void Collect(std::vector<prometheus::MetricFamily>* out) {}
};

}  // namespace longlink::gateway
