// The backend interface: what the gateway hands to the messaging service behind it, and what that
// service can ask of the gateway.
//
// The gateway owns connections, sessions and delivery; a backend owns message semantics (storage,
// sequences, routing across machines). One Backend instance runs per shard and is only ever called on that
// shard's thread, so a backend needs no locks: it reaches other shards through GatewayPort::PostToShard,
// and its calls to GatewayPort route pushes to whichever shard holds the target user's connections.
// Implementations live one per folder under gateway/backend/ (echo/, local/, nats/) and are picked with
// --backend.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "protocol/frame.h"

namespace longlink::gateway {

struct Config;

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

// A message between backend instances on different shards; `ptr` (optional) is owned by the sender and
// is handed back to the sender's Backend::ReleaseShardPayload after the receiver's OnShardMessage returns.
// `from` is filled in by the gateway: the shard that posted it.
struct BackendMessage {
  uint32_t kind = 0;
  uint64_t a = 0;
  uint64_t b = 0;
  void* ptr = nullptr;
  uint32_t len = 0;
  uint32_t aux = 0;
  uint32_t from = 0;
};

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
  // Posts a message to the backend instance on another shard (or runs it at once for this shard).
  virtual void PostToShard(uint32_t shard, const BackendMessage& m) = 0;
  // Records how long a backend operation took, for longlink_gateway_backend_latency_seconds.
  virtual void ObserveBackendLatency(double seconds) = 0;
  // Submits fdatasync(fd) on the shard's io_uring (IORING_OP_FSYNC with IORING_FSYNC_DATASYNC, kernel
  // 5.1); Backend::OnFsyncDone(token, res) follows on this shard. `token` must fit in 56 bits.
  virtual void SubmitFsync(int fd, uint64_t token) = 0;
  // How long one fdatasync of the backend's store took (longlink_gateway_fsync_seconds).
  virtual void ObserveFsync(double seconds) = 0;
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

  virtual void OnShardMessage(const BackendMessage& m) {}
  virtual void ReleaseShardPayload(void* ptr) {}
  // Called once per loop iteration after completions were handled; `now_ms` is the monotonic clock.
  virtual void OnTick(uint64_t now_ms) {}
  // How long the shard may sleep waiting for completions before the backend needs OnTick again
  // (0: it has work left over from a bounded tick). The shard waits min(this, --tick-ms).
  virtual uint64_t MaxWaitNs(uint64_t now_ns) { return ~uint64_t{0}; }
  // A SubmitFsync finished; `res` is 0 or -errno.
  virtual void OnFsyncDone(uint64_t token, int res) {}
  // The gateway is draining: stop taking new work.
  virtual void OnDrain() {}
  // The shard's loop ended (after draining): finish writing and syncing, on the shard thread.
  virtual void OnStop() {}
};

// Creates the per-shard instances of one backend kind; process-wide state (a NATS connection, a shared
// data directory) lives here.
class BackendFactory {
 public:
  virtual ~BackendFactory() = default;
  virtual std::unique_ptr<Backend> ForShard(GatewayPort* port) = 0;
  // Short description for the start-up banner (e.g. "local fsync=batch").
  virtual std::string Describe() const { return std::string(); }
};

// The owner shard of a user (or group) id among `shards`: the one hash every component agrees on.
uint32_t OwnerShardOf(uint64_t id, uint32_t shards);

// The factory for --backend=<name>.
absl::StatusOr<std::unique_ptr<BackendFactory>> MakeBackendFactory(const Config& config);

}  // namespace longlink::gateway
