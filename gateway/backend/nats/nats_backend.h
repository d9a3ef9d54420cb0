// The NATS backend (--backend=nats): any number of gateways in front of one NATS cluster with JetStream,
// with the local backend's guarantees (docs/protocol.md 6.5). docs/architecture.md ("The NATS backend")
// has the design and its costs; in short:
//
//  - Users and groups fall into P partitions (PartitionOf). Partition p's inboxes are the stream
//    <PREFIX>_IN_<p>, one subject per user, replicated R times.
//  - Each partition has one owner gateway at a time, holding a lease in the <PREFIX>_OWNERS bucket; the
//    lease's revision is the owner's epoch. The owner is the only writer of its partition's inboxes: it
//    assigns each user's next seq, publishes with a message id (dedup) and the expected last subject
//    sequence, and keeps the partition's routing directory (which gateways hold which users), presence
//    watchers and groups. A new owner first waits out the old one's in-flight writes and replays the
//    stream's last idempotency window to rebuild what it needs (PartitionManager).
//  - A SEND goes to the owner of the sender's partition (the coordinator): it asks the owners of the
//    recipients' partitions to store their copies, then stores the sender's own copy, which is the commit
//    record and the idempotency record at once, then acknowledges. Every retry of one SEND has the same
//    server_msg_id, so copies already stored are recognised.
//  - Live PUSHes go from the owner to each gateway holding the recipient ("<prefix>.gw.<id>"): one
//    subscription per gateway, none per user or message. A gateway that may have missed some (its NATS
//    connection dropped, a partition changed owner) catches its users up from the streams.
//
// NatsBackend is one gateway shard's instance: the gateway side of its users (session.cc) and the owner
// side of the partitions this gateway owns that fall on this shard (owner.cc). The NATS client's threads
// only ever hand work to shards (ShardRunner::RunOnShard).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/functional/any_invocable.h"
#include "gateway/backend/admin_ops.h"
#include "gateway/backend/backend.h"
#include "gateway/backend/common/device_rate.h"
#include "gateway/backend/nats/link.h"
#include "gateway/backend/nats/nats_config.h"
#include "gateway/backend/nats/wire.h"

namespace longlink::gateway::nats {

class NatsAdminOps;
class NatsBackend;
class PartitionManager;
class ServerMonitor;

// What a new owner rebuilds from the last idempotency window of its partition's stream.
struct UserTail {
  uint64_t seq = 0;         // highest inbox seq seen
  uint64_t stream_seq = 0;  // its stream sequence
};
struct SenderCopy {  // the sender's own copy of a SEND: proof the SEND completed
  uint64_t server_msg_id = 0;
  uint64_t time_ms = 0;
};
struct PartitionSnapshot {
  uint32_t partition = 0;
  uint64_t epoch = 0;
  absl::flat_hash_map<uint64_t, UserTail> users;
  // (sender, device, client_msg_id) -> the completed SEND
  absl::flat_hash_map<std::tuple<uint64_t, uint32_t, uint64_t>, SenderCopy> sends;
  // (user, server_msg_id) -> (seq, time): copies stored
  absl::flat_hash_map<std::pair<uint64_t, uint64_t>, std::pair<uint64_t, uint64_t>> stored;
  uint64_t replayed = 0;  // messages read
};

// The process-wide part: options, the NATS link, the partition manager, the gateway's subscriptions.
class NatsFactory final : public BackendFactory {
 public:
  explicit NatsFactory(NatsOptions options);
  ~NatsFactory() override;
  void Close() override;

  // Checks the servers' version, connects, creates the streams and buckets (or checks them), subscribes
  // to this gateway's deliveries and starts the partition manager.
  absl::Status Open(ShardRunner* runner) override;
  std::unique_ptr<Backend> ForShard(GatewayPort* port) override;
  std::string Describe() const override;
  AdminOps* admin_ops() override;
  void Collect(std::vector<prometheus::MetricFamily>* out) override;

  const NatsOptions& options() const { return options_; }
  const Subjects& subjects() const { return subjects_; }
  NatsLink& link() { return *link_; }
  ShardRunner* runner() { return runner_.load(); }
  uint32_t shards() const { return options_.shards; }
  // The shard that runs the owner side of partition p.
  uint32_t ShardOfPartition(uint32_t p) const { return p % options_.shards; }
  uint32_t Partition(uint64_t id) const { return PartitionOf(id, options_.partitions); }
  // Until when (monotonic ms) this gateway may write to partition p; 0 when it does not own it.
  uint64_t LeaseUntil(uint32_t p) const { return lease_until_[p].load(std::memory_order_acquire); }
  void SetLeaseUntil(uint32_t p, uint64_t ms) { lease_until_[p].store(ms, std::memory_order_release); }
  PartitionManager& manager() { return *manager_; }
  bool ready() const { return ready_.load(std::memory_order_acquire); }
  // Called with true on a library thread when the connection comes back after a loss.
  void OnConnectionState(bool connected);

  // Runs fn on `shard` with that shard's NatsBackend.
  bool OnShard(uint32_t shard, absl::AnyInvocable<void(NatsBackend&) &&> fn);

 private:
  absl::Status EnsureStreams();
  absl::Status CheckPartitionCount();
  void SubscribeGateway();

  NatsOptions options_;
  Subjects subjects_;
  std::atomic<ShardRunner*> runner_{nullptr};
  std::atomic<bool> closing_{false};
  std::unique_ptr<NatsLink> link_;
  std::unique_ptr<PartitionManager> manager_;
  std::unique_ptr<NatsAdminOps> admin_;
  std::unique_ptr<ServerMonitor> monitor_;
  std::unique_ptr<std::atomic<uint64_t>[]> lease_until_;
  std::atomic<bool> ready_{false};
  std::string server_version_;
};

#define LONGLINK_NATS_COUNTERS(C)                                                                    \
  C(publishes_total, "JetStream publishes of inbox copies")                                          \
  C(publish_errors_total, "JetStream publishes that failed or timed out (retried while the lease holds)") \
  C(fence_conflicts_total, "Publishes refused because the inbox moved under the owner (it reloads and retries)") \
  C(sends_total, "SENDs coordinated as new messages by a partition this gateway owns")                \
  C(duplicate_sends_total, "SENDs answered from the idempotency records (retries)")                  \
  C(send_failures_total, "SENDs answered UNAVAILABLE (a store failed or timed out; the client retries)") \
  C(deliveries_total, "PUSH and other frames received from owners for this gateway's users")          \
  C(deliveries_sent_total, "Frames published by this gateway's partitions to the gateways of their users") \
  C(syncs_total, "SYNC requests answered")                                                           \
  C(sync_pushes_total, "PUSH frames sent in answer to SYNC or in a catch-up")                        \
  C(catchups_total, "Users caught up from their inbox after a possible gap in live delivery")         \
  C(fetches_total, "Inbox reads (JetStream message gets)")                                           \
  C(requests_failed_total, "Requests to other owners that timed out or found no owner")              \
  C(presence_events_total, "PRESENCE events sent to watchers")                                       \
  C(takeovers_total, "Partitions taken over by this gateway")                                        \
  C(releases_total, "Partitions this gateway stopped owning (lease lost, released, drained)")        \
  C(reconnects_total, "Reconnections of the NATS connection")                                        \
  C(limited_total, "Requests refused for a per-device limit")                                        \
  C(seq_floors_written_total, "Users' last inbox seqs recorded in the seq-floor bucket as they went idle")

#define LONGLINK_NATS_GAUGES(G)                                                                      \
  G(connected, "1 while the NATS connection is up")                                                  \
  G(pending_publishes, "JetStream publishes awaiting their acknowledgement")                          \
  G(pending_requests, "Requests to NATS awaiting a reply (shard 0: the whole gateway)")              \
  G(directory_entries, "Users with devices online in the routing directory of owned partitions")     \
  G(owned_partitions, "Partitions this gateway owns")                                                \
  G(online_users, "Users with a device connected to this gateway")                                   \
  G(inflight_sends, "SENDs being coordinated")                                                       \
  G(idempotency_entries, "Completed SENDs remembered for retries")                                   \
  G(owner_users, "Users held in memory by owned partitions (directory, presence, inbox tails)")      \
  G(presence_subscriptions, "Users watched for presence by this gateway's devices (one per device and user)")

#define LONGLINK_NATS_HISTOGRAMS(H)                                                                  \
  H(publish_seconds, "JetStream publish to its acknowledgement (an inbox copy)")                     \
  H(fetch_seconds, "One inbox read (a JetStream message get)")                                       \
  H(send_seconds, "A SEND's round trip from the gateway to its coordinator and back")

struct NatsStats {
  LL_STATS_FIELDS(LONGLINK_NATS_COUNTERS, LONGLINK_NATS_GAUGES, LONGLINK_NATS_HISTOGRAMS)
  void Visit(metrics::StatsVisitor& v) const {
    LL_STATS_VISIT(LONGLINK_NATS_COUNTERS, LONGLINK_NATS_GAUGES, LONGLINK_NATS_HISTOGRAMS)
  }
};

class NatsBackend final : public Backend {
 public:
  NatsBackend(NatsFactory* factory, GatewayPort* port);
  ~NatsBackend() override;

  absl::Status Start() override;
  LoginVerdict OnLogin(const Session& s) override;
  void OnSend(const Session& s, uint32_t request_id, const protocol::SendBody& body) override;
  void OnSync(const Session& s, uint32_t request_id, const protocol::SyncBody& body) override;
  void OnPushAck(const Session& s, const protocol::PushAckBody& body) override;
  FrameVerdict OnFrame(const Session& s, const protocol::Header& h, std::span<const uint8_t> body) override;
  void OnDisconnect(const Session& s) override;
  void OnTick(uint64_t now_ms) override;
  uint64_t MaxWaitNs(uint64_t now_ns) override;
  void OnDrain() override;
  void OnStop() override;
  bool Idle() const override;
  bool Ready() const override { return factory_->ready() && factory_->link().connected(); }
  void VisitStats(metrics::StatsVisitor& v) const override { stats_.Visit(v); }
  void RefreshStats() override;

  // ---- from library threads, through the mailbox ----
  void OnDelivery(Reply msg);
  void OnPartitionRequest(uint32_t p, std::string op, Reply msg);
  void OnOwnerAnnounce(const OwnerAnnounce& a);
  void OnConnectionRestored();
  // Publishes the deliveries that could not be published when they were made, while the link takes them.
  void RetryUndelivered();
  // The partition manager's decisions for partitions of this shard.
  void TakeOver(std::unique_ptr<PartitionSnapshot> snap);
  void DropPartition(uint32_t p, const char* why);
  // Gateways whose lease of life ended: their directory entries go, and each partition that had any is
  // announced again, so that a gateway that was alive after all (its renewals failed for a while) sends
  // its users again and catches them up.
  void PruneGateways(const absl::flat_hash_set<std::string>& gone);
  void ForgetGateway(const std::string& gateway);
  // The owner side's share of draining: true once no owner work is in progress here.
  bool OwnerIdle() const;

  // ---- for the admin API (shard thread) ----
  AdminUser LocalUserInfo(uint64_t user) const;
  uint64_t KickLocal(uint64_t user, uint32_t device);

  NatsStats& stats() { return stats_; }

 public:
  struct StoreOp;

 private:
  friend class NatsAdminOps;
  // ================= gateway side (session.cc) =================
  struct Device {
    uint32_t device = 0;
    uint8_t platform = 0;
    ConnRef conn;
    uint64_t since_ms = 0;
    uint64_t cursor = 0;
    bool cursor_dirty = false;
    DeviceRate rate;  // --max-sends-per-second, --max-group-ops-per-second
    std::unique_ptr<absl::flat_hash_set<uint64_t>> watching;
  };
  struct UserSessions {
    absl::InlinedVector<Device, 2> devices;
    uint64_t pushed_seq = 0;   // highest inbox seq pushed to this user's devices here
    uint64_t pushed_sseq = 0;  // its stream sequence, when known
    bool catching_up = false;
    bool catchup_again = false;
  };
  // One SYNC (request_id != 0, to one device) or one catch-up (request_id 0, to every device).
  struct SyncJob {
    uint64_t id = 0;
    uint64_t user = 0;
    uint32_t device = 0;
    ConnRef conn;
    uint32_t request_id = 0;
    bool catchup = false;
    uint64_t after_seq = 0;
    uint32_t limit = 0;
    uint64_t last_seq = 0, last_sseq = 0;  // the inbox's newest
    uint64_t lo = 0, hi = 0;               // binary search over stream sequences
    uint64_t next_sseq = 0;                // the next read
    uint64_t sent = 0, max_seq = 0;
    uint64_t prev_seq = 0;
  };

  Device* FindDevice(const Session& s);
  bool Allow(Device* d, uint32_t DeviceRate::*counter, uint32_t limit);
  void QueueReg(uint64_t user);
  void FlushRegs();
  void SendFullReg(uint32_t p);
  void FlushCursors(uint64_t now_ms);
  void StartSync(std::unique_ptr<SyncJob> job);
  void SyncStep(uint64_t job_id);
  void SyncRead(uint64_t job_id, std::string request);
  void FinishSync(SyncJob& job, bool failed);
  void StartCatchup(uint64_t user);
  FrameVerdict OnGroupFrame(const Session& s, const protocol::Header& h, std::span<const uint8_t> body);
  FrameVerdict OnPresenceSubscribe(const Session& s, const protocol::Header& h, std::span<const uint8_t> body);
  void ReplyGroup(const ConnRef& conn, uint32_t request_id, uint64_t group, uint16_t status,
                  const std::vector<uint64_t>& members, bool has_more);
  void DropWatches(uint64_t user, Device& d);

  // ================= owner side (owner.cc) =================
  struct OwnerUser {
    uint64_t last_seq = 0;
    uint64_t last_sseq = 0;
    bool loaded = false;
    bool loading = false;
    bool writing = false;
    std::deque<std::shared_ptr<StoreOp>> queue;
    // Routing directory: devices per (gateway, shard) holding the user.
    struct At {
      uint32_t gateway;  // index into gateways_
      uint32_t shard;
      uint32_t devices;
    };
    absl::InlinedVector<At, 2> at;
    // Presence watchers: subscriber -> how many of its devices watch, per gateway shard they are on (so that
    // a gateway shard's complete list, after an owner change, replaces what came from there).
    struct WatchFrom {
      uint32_t gateway;  // index into gateways_
      uint32_t shard;
      uint32_t devices;
    };
    std::unique_ptr<absl::flat_hash_map<uint64_t, absl::InlinedVector<WatchFrom, 1>>> watchers;
    // When this entry was last put on Owned::touched (monotonic ms), and whether last_seq may be above
    // what the seq-floor bucket holds for the user (it is written before the entry is dropped).
    uint64_t touched_ms = 0;
    bool floor_due = false;
    uint64_t floor_due_ms = 0;  // since when (monotonic ms): written after the idle time, busy or not
    bool floor_writing = false;
    bool Idle() const {
      return at.empty() && queue.empty() && !writing && !loading && !floor_writing && watchers == nullptr;
    }
    uint32_t devices() const {
      uint32_t n = 0;
      for (const At& a : at) n += a.devices;
      return n;
    }
  };
  struct Group {
    bool loaded = false;
    bool exists = false;
    uint64_t revision = 0;
    absl::btree_set<uint64_t> members;
    bool busy = false;
    std::deque<absl::AnyInvocable<void() &&>> queue;
  };
  struct SendJob {
    uint64_t id = 0;
    uint32_t partition = 0;
    std::tuple<uint64_t, uint32_t, uint64_t> key;
    uint64_t server_msg_id = 0;
    uint64_t time_ms = 0;
    uint8_t conv_kind = 0;
    uint64_t target = 0;
    std::vector<uint8_t> payload;
    std::vector<std::string> waiters;  // reply subjects
    std::vector<AdminDone<uint64_t>> admin_waiters;
    uint32_t outstanding = 0;
    bool failed = false;
    bool done = false;
    uint16_t fail_status = 0;
    uint64_t deadline_ms = 0;
  };
  struct Owned {
    uint32_t p = 0;
    uint64_t epoch = 0;
    bool draining = false;
    natsSubscription* sub = nullptr;
    absl::flat_hash_map<uint64_t, OwnerUser> users;
    absl::flat_hash_map<std::tuple<uint64_t, uint32_t, uint64_t>, SenderCopy> sends;
    absl::flat_hash_map<std::pair<uint64_t, uint64_t>, std::pair<uint64_t, uint64_t>> stored;
    // When entries were added, for expiry after the idempotency window.
    std::deque<std::pair<uint64_t, std::tuple<uint64_t, uint32_t, uint64_t>>> sends_age;
    std::deque<std::pair<uint64_t, std::pair<uint64_t, uint64_t>>> stored_age;
    absl::flat_hash_map<std::tuple<uint64_t, uint32_t, uint64_t>, uint64_t> inflight;  // key -> job id
    absl::flat_hash_map<uint64_t, Group> groups;
    uint64_t directory_entries = 0;
    // (time, user) of every user entry touched, at most once a second per user: entries idle for
    // kUserIdleMs leave memory (after their seq floor is written), oldest first.
    std::deque<std::pair<uint64_t, uint64_t>> touched;
  };
  using StoreDone = absl::AnyInvocable<void(uint16_t status, uint64_t first_time_ms) &&>;

  Owned* FindOwned(uint32_t p);
  // A user's entry in an owned partition (created if new), marked as in use now.
  OwnerUser& UserAt(Owned& o, uint64_t user);
  // Drops entries idle for long enough; a user whose last seq may be above its recorded floor gets the
  // floor written first.
  void SweepUsers(Owned& o, uint64_t now_ms);
  void WriteSeqFloor(Owned& o, uint64_t user, OwnerUser& u);
  // The user's last seq moved (or was learnt) and may be above its recorded floor: the sweep writes it
  // (the user is put on its list, whose entries UserAt adds at most once a second).
  static void FloorDue(Owned& o, uint64_t user, OwnerUser& u);
  // Puts an entry back on the sweep's list.
  static void Requeue(Owned& o, uint64_t user, OwnerUser& u);
  uint64_t UserIdleMs() const;
  void Respond(std::string_view reply_to, std::span<const uint8_t> body);
  void OnSendRequest(Owned& o, const SendRequest& r, std::string reply_to, AdminDone<uint64_t> admin_done);
  static StoreRequest StoreRequestOf(const SendJob& j);
  std::vector<uint8_t> CopyFrame(const StoreOp& op, uint64_t user, uint64_t seq, uint64_t time_ms);
  void Fanout(uint64_t job_id, std::vector<uint64_t> recipients);
  void StoreSenderCopy(uint64_t job_id);
  void FinishJob(uint64_t job_id, uint16_t status);
  void OnStoreRequest(Owned& o, StoreRequest r, std::string reply_to);
  // Stores copies for users of partition o.p; done once all are stored (or one failed).
  void StoreCopies(Owned& o, const StoreRequest& r, std::span<const uint8_t> payload, bool sender_copy,
                   StoreDone done);
  void RunUser(uint32_t p, uint64_t user);
  void LoadUser(uint32_t p, uint64_t user);
  void PublishCopy(uint32_t p, uint64_t user, std::shared_ptr<StoreOp> op);
  void DeliverToUser(Owned& o, uint64_t user, uint32_t device, uint64_t seq, uint64_t sseq, uint64_t time_ms,
                     std::span<const uint8_t> frame);
  void OnReg(Owned& o, const RegRequest& r, uint32_t shard);
  void SetDevices(Owned& o, uint64_t user, uint32_t gateway, uint32_t shard, uint32_t devices);
  void PresenceChanged(Owned& o, uint64_t user, bool online);
  void OnForward(const Forward& f);
  void OnGroupRequest(Owned& o, GroupRequest r, std::string reply_to,
                      absl::AnyInvocable<void(GroupReply) &&> local_done);
  void RunGroup(uint32_t p, uint64_t group);
  void OnPresenceRequest(Owned& o, const PresenceRequest& r, std::string reply_to);
  // One more (delta 1) or one less (-1) device of `subscriber` on (gateway, shard) watching `user`.
  void Watch(Owned& o, uint64_t user, uint64_t subscriber, uint32_t gateway, uint32_t shard, int delta);
  // Forgets the watches that came from a gateway (every shard of it, or one).
  // How many watches it dropped.
  size_t DropWatchesFrom(Owned& o, uint32_t gateway, std::optional<uint32_t> shard);
  // Drops a gateway's directory entries and presence watches from one partition; how many there were.
  size_t ForgetEntriesOf(Owned& o, uint32_t gateway);
  // This shard's devices' watches of users in partition p (every partition when unset), as one complete list
  // per partition to its owner, built in one pass over the sessions.
  void SendFullWatches(std::optional<uint32_t> only);
  void ExpireIdempotency(Owned& o, uint64_t now_ms);
  uint32_t GatewayIndex(const std::string& id);

  // ---- common ----
  // A request whose reply (or failure) comes back to this shard as `fn(reply)`.
  void Ask(std::string_view subject, std::span<const uint8_t> data, const Headers* headers,
           absl::AnyInvocable<void(Reply) &&> fn, uint64_t timeout_ms = 0);
  template <class Body>
  std::vector<uint8_t> Frame(uint32_t request_id, const Body& b);

  NatsFactory* factory_;
  GatewayPort* port_;
  const NatsOptions& opts_;
  const Subjects& subj_;
  NatsStats stats_;
  uint32_t self_ = 0;
  uint32_t shards_ = 1;
  bool draining_ = false;
  uint64_t next_id_ = 1;
  uint64_t next_flush_ms_ = 0;
  uint64_t next_housekeeping_ms_ = 0;
  int64_t pending_publishes_ = 0;
  uint64_t outstanding_asks_ = 0;

  absl::flat_hash_map<uint64_t, UserSessions> sessions_;
  absl::flat_hash_set<uint64_t> reg_dirty_;
  // Users whose full registration failed: caught up once a later registration of theirs succeeds.
  absl::flat_hash_set<uint64_t> catchup_after_reg_;
  uint64_t reg_backoff_until_ms_ = 0;
  // Deliveries this shard's partitions could not publish (the connection was down), published again once it
  // is back; bounded (past the bound the recipients' next PUSH shows the gap and they SYNC).
  std::deque<std::pair<std::string, std::vector<uint8_t>>> undelivered_;
  size_t undelivered_bytes_ = 0;
  absl::flat_hash_map<uint64_t, std::unique_ptr<SyncJob>> syncs_;
  std::deque<uint64_t> catchup_queue_;
  std::vector<std::pair<uint32_t, uint64_t>> retry_;  // (partition, user) with a store to try again
  uint32_t catchups_running_ = 0;

  absl::flat_hash_map<uint32_t, std::unique_ptr<Owned>> owned_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<SendJob>> jobs_;
  std::vector<std::string> gateways_;
  absl::flat_hash_map<std::string, uint32_t> gateway_index_;
};

// One inbox copy to store, queued on its user.
struct NatsBackend::StoreOp {
  struct Batch {
    uint32_t remaining = 0;
    bool failed = false;
    uint64_t first_time_ms = 0;
    StoreDone done;
  };
  std::shared_ptr<Batch> batch;
  std::shared_ptr<const std::vector<uint8_t>> payload;
  uint64_t server_msg_id = 0;
  uint64_t time_ms = 0;
  uint64_t from_user = 0;
  uint32_t from_device = 0;
  uint8_t conv_kind = 0;
  uint64_t target = 0;
  uint64_t client_msg_id = 0;
  bool sender_copy = false;
  uint64_t deadline_ms = 0;
  uint64_t retry_at_ms = 0;
  uint64_t seq = 0;
};

template <class Body>
std::vector<uint8_t> NatsBackend::Frame(uint32_t request_id, const Body& b) {
  std::vector<uint8_t> out(protocol::FrameSize(b));
  out.resize(protocol::Encode(request_id, b, out));
  return out;
}

}  // namespace longlink::gateway::nats
