// The embedded IM backend (--backend=local, the default): one-to-one and group messages with per-user
// inbox sequences, durable storage in a per-shard log, SYNC, device cursors, groups and presence.
//
// Everything about a user (inbox, seq counter, cursors, sessions, presence watchers) lives on the user's
// owner shard, where its connections already are; everything about a group (members) on the group's
// owner shard. A SEND is handled on the sender's shard (the origin): it stores the message in the inboxes
// of the recipients on that shard (the sender's own included) with one record, and once that record is
// durable posts one DELIVER per other shard holding recipients (group fan-out in chunks). Each recipient
// shard stores one record for its users and, once durable, pushes and answers DONE. SEND_ACK goes out
// when every record is durable. docs/architecture.md ("The local backend") has the whole design.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gateway/backend/backend.h"
#include "gateway/backend/local/store.h"
#include "gateway/backend/local/sync_pacer.h"
#include "gateway/config.h"

namespace longlink::gateway::local {

class LocalBackend;

// Work for one shard from another thread (the admin API). Runs on the shard thread in its next tick.
using ShardCall = std::function<void(LocalBackend&)>;

// The process-wide part: the data directory (format marker, boot epoch) and a mailbox per shard.
class LocalFactory final : public BackendFactory {
 public:
  // Checks and prepares --data-dir: creates it, refuses another format version, bumps the boot epoch.
  static absl::StatusOr<std::unique_ptr<LocalFactory>> Create(const Config& config);

  std::unique_ptr<Backend> ForShard(GatewayPort* port) override;
  std::string Describe() const override;

  // Queues `call` for shard `shard` (thread-safe).
  void RunOnShard(uint32_t shard, ShardCall call);
  uint32_t shards() const { return shards_; }
  uint16_t epoch() const { return epoch_; }
  const Config& config() const { return config_; }
  // Shared by the shards' group commits (--fsync=batch): one per interval per core.
  SyncPacer& sync_pacer() { return sync_pacer_; }

 private:
  friend class LocalBackend;
  struct Mailbox {
    std::mutex mu;
    std::vector<ShardCall> calls;
  };
  LocalFactory(const Config& config, uint16_t epoch, int lock_fd);

 public:
  ~LocalFactory() override;

 private:
  Config config_;
  int lock_fd_;  // holds the data directory's LOCK (flock) while the factory lives
  uint16_t epoch_;
  uint32_t shards_;
  std::vector<std::unique_ptr<Mailbox>> mailboxes_;
  SyncPacer sync_pacer_;
};

// Per-shard counters, read on the shard thread (admin /v1/stats gathers them).
struct LocalStats {
  uint64_t sends = 0;             // SENDs accepted (new messages)
  uint64_t duplicate_sends = 0;   // SENDs answered from the idempotency map
  uint64_t records = 0;           // message records appended
  uint64_t inbox_entries = 0;     // (message, user) pairs stored
  uint64_t pushes = 0;            // PUSH frames queued (live)
  uint64_t sync_pushes = 0;       // PUSH frames sent in answer to SYNC
  uint64_t syncs = 0;
  uint64_t fsyncs = 0;
  uint64_t fsync_waits = 0;       // group commits put off because the process's sync budget was spent
  uint64_t redriven = 0;          // unfinished messages re-driven at start
  uint64_t redrive_duplicates = 0;
  uint64_t presence_events = 0;
};

// The admin API's view of one shard's backend. Every method runs on the shard thread (via RunOnShard);
// `done` callbacks are called on a shard thread too, exactly once.
class LocalBackend final : public Backend {
 public:
  LocalBackend(LocalFactory* factory, GatewayPort* port);
  ~LocalBackend() override;

  absl::Status Start() override;
  LoginVerdict OnLogin(const Session& s) override;
  void OnSend(const Session& s, uint32_t request_id, const protocol::SendBody& body) override;
  void OnSync(const Session& s, uint32_t request_id, const protocol::SyncBody& body) override;
  void OnPushAck(const Session& s, const protocol::PushAckBody& body) override;
  FrameVerdict OnFrame(const Session& s, const protocol::Header& h, std::span<const uint8_t> body) override;
  void OnDisconnect(const Session& s) override;
  void OnShardMessage(const BackendMessage& m) override;
  void ReleaseShardPayload(void* ptr) override;
  void OnTick(uint64_t now_ms) override;
  uint64_t MaxWaitNs(uint64_t now_ns) override;
  void OnFsyncDone(uint64_t token, int res) override;
  void OnStop() override;

  // ---- admin (shard thread) ----
  // Stores and pushes a message from user 0 to users (on this shard's initiative) or to a group;
  // done(status, server_msg_id) once stored durably everywhere (status: protocol::SendStatus).
  void AdminPush(std::vector<uint64_t> users, uint64_t group, std::vector<uint8_t> payload,
                 std::function<void(uint16_t, uint64_t)> done);
  // Group operations on the group's owner shard; done(status: protocol::GroupStatus) after durable.
  void AdminGroupOp(uint8_t op, uint64_t group, uint64_t user, std::function<void(uint16_t)> done);
  void AdminGroupMembers(uint64_t group, std::function<void(uint16_t, std::vector<uint64_t>)> done);
  // JSON object describing a user whose owner shard this is.
  std::string AdminUserJson(uint64_t user) const;
  // Kicks a user's devices (device 0: all); returns how many sessions it found.
  size_t AdminKick(uint64_t user, uint32_t device);
  const LocalStats& stats() const;
  const LocalStore& store() const;
  size_t online_users() const;
  uint32_t shard_id() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace longlink::gateway::local
