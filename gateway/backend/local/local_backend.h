// The embedded IM backend (--backend=local, the default): one-to-one and group messages with per-user
// inbox sequences, durable storage in a per-shard log, SYNC, device cursors, groups and presence.
//
// Everything about a user (inbox, seq counter, cursors, sessions, presence watchers) lives on the user's
// owner shard, where its connections already are; everything about a group (members) on the group's
// owner shard. A SEND is handled on the sender's shard (the origin): it stores the message in the inboxes
// of the recipients on that shard (the sender's own included) with one record, and once that record is
// durable calls DELIVER on every other shard holding recipients (group fan-out in chunks). Each recipient
// shard stores one record for its users and, once durable, pushes and answers DONE. SEND_ACK goes out
// when every record is durable. docs/architecture.md ("The local backend") has the whole design.
//
// LocalBackend is one shard's instance; its methods are spread over files by concern:
//   local_backend.cc  login, disconnect, SYNC, PUSH_ACK, tick, drain, statistics
//   send_pipeline.cc  SEND -> origin record -> DELIVER -> DONE -> SEND_ACK, and the re-drive at start
//   group_commit.cc   writing the batch and making it durable (fsync policies), then acting on it
//   groups.cc         group membership on the group's owner shard
//   presence.cc       subscriptions and online/offline events
//   admin_ops.cc      the admin API's operations (AdminOps)
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/functional/any_invocable.h"
#include "gateway/backend/admin_ops.h"
#include "gateway/backend/backend.h"
#include "gateway/backend/common/device_rate.h"
#include "gateway/backend/local/data_dir.h"
#include "gateway/backend/local/local_config.h"
#include "gateway/backend/local/store.h"
#include "gateway/backend/local/sync_pacer.h"

namespace longlink::gateway::local {

class LocalAdminOps;

// The process-wide part: the options, the data directory (format, lock, boot epoch) and the sync pacer.
class LocalFactory final : public BackendFactory {
 public:
  explicit LocalFactory(LocalOptions options);
  ~LocalFactory() override;

  // Prepares --data-dir (creates it, refuses another format version or shard count, bumps the epoch).
  absl::Status Open(ShardRunner* runner) override;
  std::unique_ptr<Backend> ForShard(GatewayPort* port) override;
  std::string Describe() const override;
  AdminOps* admin_ops() override;

  const LocalOptions& options() const { return options_; }
  uint16_t epoch() const { return dir_->epoch(); }
  // Shared by the shards' group commits (--fsync=batch): one per interval per core.
  SyncPacer& sync_pacer() { return sync_pacer_; }

 private:
  LocalOptions options_;
  std::unique_ptr<DataDir> dir_;
  SyncPacer sync_pacer_;
  std::unique_ptr<LocalAdminOps> admin_;
};

// Per-shard statistics, exported as longlink_backend_local_<name> and in /v1/stats.
#define LONGLINK_LOCAL_COUNTERS(C)                                                                    \
  C(duplicate_sends_total, "SENDs answered from the idempotency map (retries)")                      \
  C(entries_evicted_total, "Inbox entries dropped past --max-inbox")                                 \
  C(entries_expired_total, "Inbox entries dropped past --retention")                                 \
  C(fsync_waits_total, "Group commits put off because the process's sync budget was spent")          \
  C(fsyncs_total, "fdatasync calls on the message log")                                              \
  C(inbox_entries_total, "(message, user) pairs stored")                                             \
  C(limited_total, "Requests refused for a per-device limit (SEND or group rate, presence subscriptions)") \
  C(presence_events_total, "PRESENCE events sent to subscribers")                                    \
  C(pushes_total, "PUSH frames queued live")                                                         \
  C(records_total, "Message records appended to the log")                                            \
  C(redrive_duplicates_total, "Re-driven DELIVERs found already stored (answered without storing)")  \
  C(redriven_total, "Unfinished messages re-driven after a restart")                                 \
  C(segments_deleted_total, "Log segments deleted by compaction")                                    \
  C(sends_total, "SENDs accepted as new messages")                                                   \
  C(snapshots_total, "Snapshots written at segment starts")                                          \
  C(storage_errors_total, "Writes or fsyncs of the log that failed (the shard then refuses new messages)") \
  C(storage_recoveries_total, "Times the log was written and synced again after a failure")         \
  C(sync_pushes_total, "PUSH frames sent in answer to SYNC")                                         \
  C(syncs_total, "SYNC requests answered")

#define LONGLINK_LOCAL_GAUGES(G)                                                                      \
  G(deferred_delivers, "DELIVERs from other shards held while this shard's storage is failed")       \
  G(groups, "Groups owned by the shard")                                                             \
  G(idempotency_entries, "SENDs remembered for retries (--idempotency-window)")                      \
  G(inflight_messages, "Messages accepted and not yet stored everywhere")                            \
  G(log_unsynced_bytes, "Bytes appended to the log and not yet durable")                             \
  G(online_users, "Users with at least one device online")                                           \
  G(segments, "Log segments on disk")                                                                \
  G(presence_subscriptions, "Watched users of this shard's online devices (PRESENCE_SUBSCRIBE)")   \
  G(storage_failed, "1 after a write or fsync of the log failed: new messages are refused")          \
  G(users, "Users with an inbox")

#define LONGLINK_LOCAL_HISTOGRAMS(H) H(fsync_seconds, "Duration of one fdatasync of the message log")

struct LocalStats {
  LL_STATS_FIELDS(LONGLINK_LOCAL_COUNTERS, LONGLINK_LOCAL_GAUGES, LONGLINK_LOCAL_HISTOGRAMS)
  void Visit(metrics::StatsVisitor& v) const {
    LL_STATS_VISIT(LONGLINK_LOCAL_COUNTERS, LONGLINK_LOCAL_GAUGES, LONGLINK_LOCAL_HISTOGRAMS)
  }
};

// The bodies of this backend's cross-shard calls (GatewayPort::Call), one per kind.
struct DeliverCall {  // payload DeliverPayload: store for these users, then DONE
  static constexpr uint16_t kKind = 1;
  uint64_t server_msg_id;
};
struct DoneCall {  // the recipient shard's record is durable
  static constexpr uint16_t kKind = 2;
  uint64_t server_msg_id;
};
struct GroupLookupCall {  // to the group's owner: answer GroupMembersCall with the members
  static constexpr uint16_t kKind = 3;
  uint64_t group;
  uint64_t sender;  // checked for membership; 0: no check (admin push, re-drive)
  uint64_t server_msg_id;
};
struct GroupMembersCall {  // payload MembersPayload (when status is 0)
  static constexpr uint16_t kKind = 4;
  uint64_t server_msg_id;
  uint16_t status;  // protocol::SendStatus
};
struct GroupOpCall {  // a client's GROUP_CREATE / JOIN / LEAVE, on the group's owner
  static constexpr uint16_t kKind = 5;
  uint64_t group;
  uint64_t user;
  uint32_t device;
  uint32_t request_id;
  uint8_t op;  // GroupOp
};
struct GroupMembersPageCall {  // a client's GROUP_MEMBERS, on the group's owner
  static constexpr uint16_t kKind = 6;
  uint64_t group;
  uint64_t user;
  uint64_t after;
  uint32_t device;
  uint32_t request_id;
};
struct PresenceCall {  // (un)subscribe one device of `subscriber` to `watched`, on the watched user's owner
  static constexpr uint16_t kKind = 7;
  uint64_t watched;
  uint64_t subscriber;
  uint32_t device;
  uint32_t request_id;
  int8_t change;  // +1 a new subscription, -1 one ended, 0 none (only the answer)
  bool reply;     // answer with the current PRESENCE (not when the device went away)
};
struct RedriveDoneCall {  // the caller finished re-driving its unfinished messages
  static constexpr uint16_t kKind = 8;
};
struct DeliverDeferredCall {  // the recipient's storage failed: it holds the DELIVER until it recovers
  static constexpr uint16_t kKind = 9;
  uint64_t server_msg_id;
};
struct StorageRecoveredCall {  // the caller's storage works again
  static constexpr uint16_t kKind = 10;
};
struct StorageFailedCall {  // the caller's storage failed: send it nothing new to store until it recovers
  static constexpr uint16_t kKind = 11;
};

struct DeliverPayload final : ShardPayload {
  MsgHeader h;
  std::vector<uint8_t> payload;
  std::vector<uint64_t> users;
};
struct MembersPayload final : ShardPayload {
  std::vector<uint64_t> members;
};

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
  void OnShardCall(const ShardCall& call) override;
  void OnTick(uint64_t now_ms) override;
  uint64_t MaxWaitNs(uint64_t now_ns) override;
  void OnFsyncDone(uint32_t token, int res) override;
  void OnDrain() override;
  bool Idle() const override;
  void OnStop() override;
  bool Ready() const override { return ready_.load(std::memory_order_relaxed); }
  void VisitStats(metrics::StatsVisitor& v) const override { stats_.Visit(v); }
  void RefreshStats() override;

  // ---- admin (shard thread; admin_ops.cc) ----
  // Stores and pushes a message from user 0 to users (on this shard's initiative) or to a group; done
  // once stored durably everywhere.
  void PushFromAdmin(AdminPush push, AdminDone<uint64_t> done);
  // One group change on the group's owner shard; done(status: protocol::GroupStatus) once durable.
  void GroupOpFromAdmin(uint8_t op, uint64_t group, uint64_t user, absl::AnyInvocable<void(uint16_t) &&> done);
  // The members of a group this shard owns (nullptr: no such group).
  const absl::btree_set<uint64_t>* GroupMembers(uint64_t group) const { return store_.Members(group); }
  // A user whose owner shard this is.
  AdminUser UserInfo(uint64_t user) const;
  // Kicks a user's devices (device 0: all); returns how many sessions it found.
  uint64_t KickFromAdmin(uint64_t user, uint32_t device);

  const LocalStats& stats() const { return stats_; }
  const LocalStore& store() const { return store_; }
  uint32_t shard_id() const { return self_; }

 private:
  struct Waiter {
    ConnRef conn;
    uint32_t request_id;
  };
  // A message that originated here and is not yet stored everywhere.
  struct Inflight {
    IdemKey key{0, 0, 0};
    uint64_t time_ms = 0;
    uint64_t start_ns = 0;
    uint32_t remaining = 0;  // DONEs still expected
    bool stored = false;     // the origin record is appended
    bool durable = false;    // ... and durable (acted on in log order)
    bool redrive = false;
    // Recipient shards whose storage failed while holding its DELIVER (usually none).
    absl::InlinedVector<uint16_t, 1> blocked_on;
    uint8_t conv_kind = 0;
    uint64_t target = 0;
    absl::InlinedVector<Waiter, 1> waiters;
    std::vector<uint64_t> remote;  // recipients on other shards, until the DELIVERs go out
    // Group SEND: the payload until the members arrive. Re-drive, or a stored message waiting for other
    // shards: the origin record.
    std::vector<uint8_t> pending;
    AdminDone<uint64_t> admin_done;
  };
  enum ActKind : uint8_t { kActOrigin, kActForeign, kActGroupReply };
  // Something to do once the log is durable up to `end`, in log order.
  struct Action {
    uint64_t end;
    uint64_t lsn;
    uint32_t size;
    LogPos pos;
    ActKind kind;
    uint32_t origin;
    uint64_t id;
  };
  struct GroupReply {
    uint64_t user;
    uint32_t device;
    uint32_t request_id;
    uint64_t group;
    uint16_t status;
    absl::AnyInvocable<void(uint16_t) &&> admin_done;
    bool answered = false;  // already answered UNAVAILABLE when the storage failed
  };
  // A DELIVER that arrived while this shard's storage was failed, stored once it works again.
  struct DeferredDeliver {
    uint32_t from;
    uint64_t id;
    MsgHeader h;
    std::vector<uint8_t> payload;
    std::vector<uint64_t> users;
  };

  struct DeviceSession {
    uint32_t device;
    uint8_t platform;
    ConnRef conn;
    uint64_t since_ms;
    DeviceRate rate;  // --max-sends-per-second, --max-group-ops-per-second
    // The users this device watches (PRESENCE_SUBSCRIBE), dropped with the session; null until the first.
    std::unique_ptr<absl::flat_hash_set<uint64_t>> watching;
  };
  // The session of a device on this shard, or null (an admin or re-driven operation has none).
  DeviceSession* FindDevice(const Session& s);
  // Counts one operation against a per-second limit; false when the device is over it (0: no limit).
  bool Allow(DeviceSession* d, uint32_t DeviceRate::*counter, uint32_t limit);

  // ---- helpers (local_backend.cc) ----
  uint64_t NewId();
  uint32_t Owner(uint64_t id) const { return port_->OwnerShard(id); }
  template <class Body>
  std::span<const uint8_t> Encode(uint32_t request_id, const Body& b);
  void SendAck(const ConnRef& conn, uint32_t request_id, uint64_t cmid, uint16_t status, uint64_t id,
               uint64_t time_ms);
  // A write or sync of the log failed: refuse new work, answer what is waiting with UNAVAILABLE, and
  // probe (Recover) every second until the log can be written and synced again.
  void Fail(const absl::Status& st);
  void Probe(uint64_t now_ms);
  // Whether a message to this user cannot be stored now: this shard's storage or the owner's failed.
  bool Unavailable(uint64_t user) const { return failed_ || peer_failed_[Owner(user)]; }
  // Whether a message cannot progress now: its origin record waits on this shard's failed log, or a
  // recipient shard holding its DELIVER is failed.
  bool Stuck(const Inflight& f) const;
  bool AnyPeerFailed() const;

  // ---- send pipeline (send_pipeline.cc) ----
  void StoreOrigin(uint64_t id, Inflight& f, const MsgHeader& hdr, std::span<const uint8_t> payload,
                   std::span<const uint64_t> local, std::vector<uint64_t> remote, bool record_remote);
  size_t IndexAndPush(const MsgView& m, LogPos pos, bool push_now = true);
  size_t Push(const MsgView& m);
  static uint64_t ConvId(const MsgHeader& h, uint64_t inbox_owner);
  void PostDelivers(uint64_t id, Inflight& f, const MsgView& m);
  void Finish(uint64_t id);
  void FailSend(uint64_t id, uint16_t status);
  MsgHeader Header(const Inflight& f, uint64_t id) const;
  void OnDeliver(const ShardCall& call, const DeliverCall& d);
  void StoreDeliver(uint32_t from, uint64_t id, const MsgHeader& hdr, std::span<const uint8_t> payload,
                    std::span<const uint64_t> users);
  void OnDeliverDeferred(uint32_t from, const DeliverDeferredCall& c);
  void OnMembers(const GroupMembersCall& c, MembersPayload* p);
  void Redrive();
  void BroadcastRedriveDone();

  // ---- group commit (group_commit.cc) ----
  void Flush();
  void StartFsync(uint64_t now_ns);
  void ProcessDurable();

  // ---- groups (groups.cc) ----
  FrameVerdict OnGroupFrame(const Session& s, const protocol::Header& h, std::span<const uint8_t> body);
  void OnLookup(uint32_t from, const GroupLookupCall& c);
  void OnGroupOp(const GroupOpCall& c);
  void OnMembersPage(const GroupMembersPageCall& c);
  // Applies one membership change and answers once it is durable: a client (user, device, request_id) or
  // an admin callback.
  void ApplyGroupOp(uint8_t op, uint64_t group, uint64_t user, uint32_t device, uint32_t request_id,
                    absl::AnyInvocable<void(uint16_t) &&> admin_done);
  void ReplyGroup(uint64_t user, uint32_t device, uint32_t request_id, uint64_t group, uint16_t status,
                  std::span<const uint8_t> members, bool has_more);

  // ---- presence (presence.cc) ----
  FrameVerdict OnPresenceSubscribe(const Session& s, const protocol::Header& h, std::span<const uint8_t> body);
  void OnPresence(const PresenceCall& c);
  void SendPresence(uint64_t to_user, uint32_t device, uint32_t request_id, uint64_t user);
  void PresenceChanged(uint64_t user, bool online);
  // A device's session ended: its subscriptions end with it.
  void DropSubscriptions(uint64_t user, DeviceSession& d);

  LocalFactory* factory_;
  GatewayPort* port_;
  const LocalOptions& opts_;
  LocalStore store_;
  LocalStats stats_;
  uint32_t self_ = 0;
  uint32_t shards_ = 1;
  uint64_t counter_ = 0;
  bool started_ = false;
  bool failed_ = false;
  bool draining_ = false;
  bool fsync_inflight_ = false;
  uint32_t fsync_token_ = 0;   // of the fdatasync in flight
  uint64_t fsync_lsn_ = 0;     // what it makes durable
  bool more_work_ = false;
  uint64_t next_fsync_ns_ = 0;
  uint64_t fsync_started_ns_ = 0;
  uint64_t next_housekeeping_ms_ = 0;
  int64_t presence_subscriptions_ = 0;
  // Idempotency entries are not retired before this: while a failure holds messages, and for one window
  // after, so that retries of what was answered UNAVAILABLE still find the first copy.
  uint64_t idem_hold_until_ms_ = 0;
  uint32_t redrive_outstanding_ = 0;
  uint32_t redrive_done_seen_ = 0;
  // Storage failures: this shard's (failed_ above), probing, and which peers reported theirs.
  std::atomic<bool> ready_{true};
  uint64_t failed_since_ms_ = 0;
  uint64_t next_probe_ms_ = 0;
  uint64_t last_failure_log_ms_ = 0;
  std::vector<bool> peer_failed_;
  std::vector<DeferredDeliver> deferred_;

  absl::flat_hash_map<uint64_t, Inflight> inflight_;
  std::deque<Action> actions_;
  std::deque<GroupReply> group_replies_;
  absl::flat_hash_map<uint64_t, absl::InlinedVector<DeviceSession, 2>> sessions_;
  // watched user -> subscriber -> how many of the subscriber's devices watch it
  absl::flat_hash_map<uint64_t, absl::flat_hash_map<uint64_t, uint32_t>> watchers_;
  std::vector<uint64_t> maybe_offline_;
  std::vector<InboxSlot> slots_;
  std::vector<uint8_t> frame_;
  std::vector<uint8_t> read_buf_;
};

template <class Body>
std::span<const uint8_t> LocalBackend::Encode(uint32_t request_id, const Body& b) {
  size_t size = protocol::FrameSize(b);
  if (size > frame_.size()) frame_.resize(size);
  size_t n = protocol::Encode(request_id, b, frame_);
  return {frame_.data(), n};
}

}  // namespace longlink::gateway::local
