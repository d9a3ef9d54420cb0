// The partition manager: one thread per gateway that keeps the gateway's lease of life and its partition
// leases, takes partitions over (fence, confirm, replay) and gives them up. It blocks on NATS round trips,
// so it runs on its own thread; what it decides reaches the shards through the mailbox.
//
// Leases live in the <PREFIX>_OWNERS bucket (key p.<p>, value "<gateway id>/<incarnation>": a random number
// per process, so that two processes given one id never take each other's leases), whose entries expire after
// --nats-lease unless renewed; live gateways in <PREFIX>_GATEWAYS the same way. Every gateway aims at an
// equal share of the partitions among the live ones. A gateway writes to a partition only while its
// lease, counted from when the last renewal was sent, has time left (NatsFactory::LeaseUntil), so it stops
// before the bucket can let anyone else in; a new owner then also waits out the old owner's publishes
// still in flight, confirms its lease, and replays the partition's last idempotency window.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "gateway/backend/nats/nats_backend.h"

namespace longlink::gateway::nats {

class PartitionManager {
 public:
  explicit PartitionManager(NatsFactory* f);
  ~PartitionManager();

  void Start();
  // Stops the thread; with `release`, gives up every partition (so others take them at once).
  void Stop(bool release);
  // The gateway is draining: take no more partitions and give up those whose shards are idle.
  void Drain();
  // The connection came back: look again at once.
  void Wake();
  size_t owned() const;

  // ---- the bucket entries, blocking (this thread, or start-up) ----
  struct KvEntry {
    bool found = false;
    bool deleted = false;
    uint64_t revision = 0;
    std::string value;
  };
  static std::optional<KvEntry> KvGet(NatsLink& link, const std::string& bucket, const std::string& key,
                                      uint64_t timeout_ms);
  // Writes (or deletes) a key, on condition that its last revision is `expected` (if set). Returns the
  // new revision, or 0; *conflict tells a lost race from a failure.
  static uint64_t KvPut(NatsLink& link, const std::string& bucket, const std::string& key, const std::string& value,
                        std::optional<uint64_t> expected, bool del, bool* conflict, uint64_t timeout_ms);

 private:
  void Loop();
  void Step();
  std::optional<std::set<std::string>> LiveGateways();
  // Claims a partition's lease entry; its revision, or 0.
  uint64_t Claim(uint32_t p);
  // After the fence: confirms a claimed lease, replays the partition and hands it to its shard.
  bool Confirm(uint32_t p, uint64_t rev);
  // Takes up to `count` of `wanted` (in order); how many it got.
  size_t Acquire(const std::vector<uint32_t>& wanted, size_t count);
  void RenewAll();
  // A renewal that failed without an answer, or was refused as a conflict, may have landed after all (an
  // answer lost while the bucket changed leaders, or an earlier renewal that timed out but was stored). If
  // the entry still holds this process's value, adopts its revision and renews once more on it: true if
  // that succeeded.
  bool Reconcile(uint32_t p, uint64_t sent);
  // The gateway's key and every lease, when a third of a lease has passed since the last time (or now).
  void RenewIfDue(bool force);
  void Lose(uint32_t p, const char* why);
  void Release(uint32_t p);
  absl::StatusOr<std::unique_ptr<PartitionSnapshot>> Replay(uint32_t p, uint64_t epoch);

  NatsFactory* f_;
  NatsLink& link_;
  std::string owners_, gateways_;  // bucket names
  std::string lease_value_;          // "<gateway id>/<incarnation>"
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool draining_ = false;
  bool wake_ = false;
  struct Lease {
    uint64_t revision = 0;
    uint64_t valid_until_ms = 0;
  };
  std::map<uint32_t, Lease> leases_;
  std::set<std::string> live_;
  // Gateways seen live before and missing from the bucket since then (monotonic ms). A missing key is
  // only believed after a whole lease: a bucket electing a leader can fail renewals, or answer without
  // them, for a few seconds while the gateway is alive.
  std::map<std::string, uint64_t> missing_since_;
  uint64_t started_ms_ = 0;
  uint64_t last_renew_ms_ = 0;
};

}  // namespace longlink::gateway::nats
