// What the admin HTTP API (gateway/admin/) asks of a backend, in the backend's own terms: push a message to
// users or a group, kick a user's devices, describe a user and its devices, manage groups. Each backend
// implements it with whatever it has (the local backend stores admin pushes in inboxes; the echo backend
// only pushes live and has no groups); the routes know no backend.
//
// Every method is called on an admin HTTP thread and must not block it: it hands the work to the owning
// shard (ShardRunner::RunOnShard) or to the backend's own client, and `done` runs exactly once, on
// whatever thread finishes the work. The HTTP thread waits for `done` with a timeout.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"

namespace longlink::gateway {

// How an admin operation ended; the routes map each to an HTTP status.
enum class AdminCode : uint8_t {
  kOk,           // 200 (201 for a created group)
  kNotFound,     // 404: no such group, not a member
  kConflict,     // 409: the group exists already
  kBadRequest,   // 400
  kRejected,     // 403: the backend refused it
  kUnavailable,  // 503: storage or the messaging system is down, or the gateway is draining; retry
  kUnsupported,  // 501: this backend does not offer the operation
};

struct AdminResult {
  AdminCode code = AdminCode::kOk;
  std::string message;  // why, when not kOk
  static AdminResult Ok() { return {}; }
};

template <class T>
using AdminDone = absl::AnyInvocable<void(AdminResult, T) &&>;

struct AdminPush {
  std::vector<uint64_t> users;  // either users (deduplicated by the backend) ...
  uint64_t group = 0;           // ... or a group
  std::vector<uint8_t> payload;
};

struct AdminDevice {
  uint32_t device = 0;
  uint8_t platform = 0;
  uint64_t since_ms = 0;  // login time, Unix milliseconds
  uint64_t cursor = 0;    // highest seq the device acknowledged (0 where the backend keeps no cursors)
};

struct AdminUser {
  uint64_t user = 0;
  uint32_t shard = 0;  // the gateway shard that owns the user
  bool online = false;
  std::vector<AdminDevice> devices;
  uint64_t last_seq = 0;    // newest stored seq of the user's inbox
  uint64_t inbox_size = 0;  // messages kept for SYNC
};

class AdminOps {
 public:
  virtual ~AdminOps() = default;
  // Stores (where the backend stores anything) and pushes a message from user 0; done gets its
  // server_msg_id once it is stored everywhere.
  virtual void Push(AdminPush push, AdminDone<uint64_t> done) = 0;
  // Kicks a user's devices (device 0: all) with KICK(ADMIN); done gets how many sessions it found.
  virtual void Kick(uint64_t user, uint32_t device, AdminDone<uint64_t> done) = 0;
  virtual void User(uint64_t user, AdminDone<AdminUser> done) = 0;
  // Creates a group with its first members (may be empty).
  virtual void CreateGroup(uint64_t group, std::vector<uint64_t> members, AdminDone<bool> done) = 0;
  // Adds (add) or removes members; done reports the first failure, after every change is stored.
  virtual void ChangeMembers(uint64_t group, bool add, std::vector<uint64_t> users, AdminDone<bool> done) = 0;
  virtual void Members(uint64_t group, AdminDone<std::vector<uint64_t>> done) = 0;
};

}  // namespace longlink::gateway
