// The load generator's engine: shard-per-core io_uring threads, each driving its share of simulated
// mobile clients through their life: connect (a direct descriptor, so one process holds far more
// connections than the open-files limit), LOGIN, heartbeats at the server's interval, open-model
// messaging with intended send times fixed in advance, PUSH_ACK, SYNC after a reconnect, and reconnects
// with exponential backoff and full jitter.
//
// Every latency is measured from the intended time of the action (connect, ping, send), never from when
// the generator got round to it, so a saturated generator cannot hide server delays (no coordinated
// omission); the generator's own lag is measured too and makes the run invalid past a bound.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "loadgen/histogram.h"
#include "loadgen/ledger.h"
#include "loadgen/netsim.h"
#include "loadgen/timeline.h"
#include "loadgen/plan.h"
#include "loadgen/vocabulary.h"
#include "metrics/metrics.h"

namespace longlink::loadgen {

struct Destination {
  sockaddr_storage addr{};
  socklen_t len = 0;
  std::string text;  // host:port as given
};

// `percent` of the clients (chosen by a hash of the client index and the seed) run on this network.
struct NetShare {
  std::string name;
  double percent = 0;
  LinkParams params;
};

// What the engine runs; built from a Scenario.
struct EngineConfig {
  std::vector<Destination> targets;
  uint32_t clients = 100;
  uint32_t shards = 1;
  double connect_rate = 1000;      // connections per second, all shards together
  uint64_t duration_ms = 10000;    // the run: connects, then messaging until this
  uint64_t grace_ms = 3000;        // after the run: wait for outstanding acks and pushes
  double msg_rate_per_client = 0;  // messages per second per logged-in client
  uint32_t payload_bytes = 64;     // >= 8: the intended send time travels in the payload
  uint32_t devices_per_user = 1;
  // Users (and groups) are numbered from 1 inside the engine and from this id on the wire, so two generators
  // with disjoint ranges can share one gateway (scenario auth.first_user_id).
  uint64_t first_user_id = 1;
  // Targets are a function of (sender, message seq), so the ledger recomputes a message's recipients from
  // its id.
  TargetSelection message_targets = TargetSelection::kRandomUser;
  // kGroups: group g (id g + 1) has members users (g * group_size + j) % users + 1 for j < group_size. The
  // first device of each member creates or joins its groups after its first login; group messages start
  // once every member has.
  uint32_t group_count = 0;
  uint32_t group_size = 0;
  bool auth_token = false;
  std::string auth_secret;
  uint32_t login_timeout_ms = 10000;
  uint32_t reconnect_initial_ms = 200;
  uint32_t reconnect_max_ms = 10000;
  double reconnect_multiplier = 2.0;
  bool push_ack = true;
  uint32_t ack_delay_ms = 0;  // 0: PUSH_ACK at once; else cumulative, with the next frame or after this
  bool sync_on_reconnect = true;
  uint64_t seed = 1;
  uint32_t max_lag_ms = 100;  // generator lag (p99) beyond which the run is invalid
  // The plan (plan.h). When joins is empty, every client joins at connect_rate from the start.
  std::vector<StormEvent> storms;
  std::vector<Wave> joins;
  std::vector<Wave> leaves;
  // Heartbeats: fixed at the server's interval, or adaptive (grow by step after `hb_successes` answered
  // PINGs in a row, up to hb_max_ms and never past 80% of the server's timeout; multiply by hb_backoff when
  // a PONG is missed). A PING unanswered for pong_timeout_ms means the connection is dead: the client
  // closes it and reconnects, as a mobile app does.
  bool hb_adaptive = false;
  uint32_t hb_initial_ms = 20000;
  uint32_t hb_max_ms = 80000;
  uint32_t hb_step_ms = 10000;
  double hb_backoff = 0.5;
  uint32_t hb_successes = 3;
  uint32_t pong_timeout_ms = 10000;
  // Background apps beat `bg_multiplier` times less often; clients switch state at random,
  // bg_switches_per_hour on average, keeping bg_fraction of them in the background.
  double bg_fraction = 0;
  double bg_multiplier = 2;
  double bg_switches_per_hour = 0;
  PayloadDistribution payload_dist = PayloadDistribution::kFixed;
  uint32_t payload_min = 8;
  uint32_t payload_max = 64;
  double payload_median = 64;
  double payload_sigma = 1;
  std::vector<NetShare> network;  // empty: every client on a perfect network
  std::vector<Destination> sources;  // source addresses (port 0), bound with IP_BIND_ADDRESS_NO_PORT
  Transport transport = Transport::kTcp;
  std::string ws_path = "/";
  uint32_t ws_ping_ms = 30000;  // ws-echo: the WebSocket ping interval (no server announces one)
};

// Counters a shard bumps (relaxed stores only) and the reporter reads.
struct ShardCounters {
  metrics::Counter connects, connect_errors, logins, login_failures, sent, acked, delivered, duplicates, pings, pongs,
      reconnects, closes, protocol_errors, push_acks, syncs, unclean_closes, storm_drops, online_at_end, leaves,
      pong_timeouts, hb_grows, hb_backoffs, bg_switches, flaps, zombies, zombies_reaped, zombies_unreaped,
      nat_blackholes, stalls, sync_gaps, kicks, disconnects, payload_bytes, foreign, sends_refused;
  metrics::Gauge connected, online;
};

class Engine;

class LoadShard {
 public:
  LoadShard(Engine* engine, uint32_t id);
  ~LoadShard();
  void Start();
  void Join();
  const ShardCounters& counters() const { return counters_; }
  const absl::Status& status() const { return status_; }
  bool finished() const { return finished_.load(std::memory_order_acquire); }

  // A latency histogram of the report (exact percentiles, read after Join) that also feeds a Prometheus
  // histogram the metrics endpoint reads while the run goes on (seconds, metrics::LatencyBuckets()).
  struct Timing : Histogram {
    void Record(uint64_t ns) {
      Histogram::Record(ns);
      live.Observe(static_cast<double>(ns) * 1e-9);
    }
    metrics::Histogram live;
  };
  // Latency histograms, owned by the shard thread; read them after Join().
  struct Latencies {
    Timing connect, login, heartbeat_rtt, send_ack, end_to_end, reconnect, lag, zombie_reap, sync;
    Histogram heartbeat_interval;
  };
  const Latencies& latencies() const { return lat_; }
  const LedgerShard& ledger() const { return ledger_; }
  // Copies of the end-to-end, heartbeat round trip and generator lag histograms, refreshed by the shard
  // twice a second, for the live line and the timeline.
  void CopyLive(Histogram* e2e, Histogram* heartbeat, Histogram* lag);

 private:
  class Impl;  // load_shard.h
  Engine* engine_;
  uint32_t id_;
  std::thread thread_;
  std::atomic<bool> finished_{false};
  std::atomic<uint64_t> started_ns_{0};
  absl::Status status_;
  ShardCounters counters_;
  Latencies lat_;
  LedgerShard ledger_;
  std::unique_ptr<Impl> impl_;
  friend class Impl;
};

class Engine {
 public:
  explicit Engine(EngineConfig config);
  ~Engine();
  // Runs the whole load and returns when every shard finished. A live line goes to stderr every
  // live_interval_ms (0: none).
  absl::Status Run(uint64_t live_interval_ms);

  const EngineConfig& config() const { return config_; }
  const std::vector<std::unique_ptr<LoadShard>>& shards() const { return shards_; }
  uint64_t start_ns() const { return start_ns_; }
  uint64_t end_ns() const { return end_ns_; }
  std::atomic<bool>& stop() { return stop_; }
  // Random per run; carried in every payload (see kPayloadHeader in load_shard.h).
  const uint64_t& run_id() const { return run_id_; }
  // The client_msg_id on the wire: the ledger's id (sender << 32 | seq, both below 2^24) with 8 bits of
  // the run id above each half. Servers deduplicate SENDs by (user, device, client_msg_id) across
  // restarts, so a second run against the same data must not reuse the first run's ids.
  uint64_t WireId(uint64_t ledger_id) const {
    const uint64_t tag = run_id_ >> 48;
    return ledger_id | (tag >> 8) << 56 | (tag & 0xff) << 24;
  }
  static uint64_t LedgerId(uint64_t wire_id) { return wire_id & 0x00ffffff00ffffffull; }
  // Users (1-based) and their groups, built once from the config.
  uint64_t users() const { return users_; }
  std::span<const uint32_t> GroupsOf(uint64_t user) const {
    if (group_offsets_.empty()) return {};
    return std::span<const uint32_t>(user_groups_.data() + group_offsets_[user - 1],
                                     group_offsets_[user] - group_offsets_[user - 1]);
  }
  uint64_t GroupMember(uint32_t group, uint32_t j) const {
    return (static_cast<uint64_t>(group) * config_.group_size + j) % users_ + 1;
  }
  uint32_t GroupMembers() const { return static_cast<uint32_t>(std::min<uint64_t>(config_.group_size, users_)); }
  // A shard reports a user whose memberships are all in place; group messages wait for every such user.
  void GroupsJoined() { groups_ready_users_.fetch_add(1, std::memory_order_relaxed); }
  bool GroupsReady() const { return groups_ready_users_.load(std::memory_order_relaxed) >= users_with_groups_; }
  uint64_t groups_ready_users() const { return groups_ready_users_.load(std::memory_order_relaxed); }
  uint64_t users_with_groups() const { return users_with_groups_; }
  // Most clients logged in at once, sampled every 100 ms by Run.
  uint64_t online_peak() const { return online_peak_; }
  // The process's resident memory before the shards started and at its highest during the run.
  uint64_t rss_start() const { return rss_start_; }
  uint64_t rss_peak() const { return rss_peak_; }
  // How many clients the plan wants online `ms` into the run (its join and leave waves).
  uint64_t TargetOnline(uint64_t ms) const;
  // The run second by second (Run samples it); read after Run returns.
  const Timeline& timeline() const { return timeline_; }
  // The ledger's verdict, published once the report is built, for the metrics endpoint (any thread).
  void PublishFinal(uint64_t lost, uint64_t out_of_order, bool valid, bool passed) {
    final_lost_.store(lost, std::memory_order_relaxed);
    final_out_of_order_.store(out_of_order, std::memory_order_relaxed);
    final_valid_.store(valid, std::memory_order_relaxed);
    final_passed_.store(passed, std::memory_order_relaxed);
    // release: the figures above are visible to a scraper that sees the run finished.
    finished_.store(true, std::memory_order_release);
  }
  // When the run started (CLOCK_MONOTONIC ns; 0 before Run), for the metrics endpoint's thread.
  uint64_t started_ns() const { return started_ns_.load(std::memory_order_acquire); }
  bool run_finished() const { return finished_.load(std::memory_order_acquire); }
  uint64_t final_lost() const { return final_lost_.load(std::memory_order_relaxed); }
  uint64_t final_out_of_order() const { return final_out_of_order_.load(std::memory_order_relaxed); }
  bool final_passed() const { return final_passed_.load(std::memory_order_relaxed); }
  bool final_valid() const { return final_valid_.load(std::memory_order_relaxed); }

 private:
  EngineConfig config_;
  std::vector<std::unique_ptr<LoadShard>> shards_;
  uint64_t start_ns_ = 0;
  uint64_t end_ns_ = 0;
  std::atomic<bool> stop_{false};
  uint64_t online_peak_ = 0;
  uint64_t users_ = 0;
  uint64_t run_id_ = 0;
  std::vector<uint32_t> group_offsets_;  // users + 1 entries into user_groups_
  std::vector<uint32_t> user_groups_;
  uint64_t users_with_groups_ = 0;
  std::atomic<uint64_t> groups_ready_users_{0};
  uint64_t rss_start_ = 0;
  uint64_t rss_peak_ = 0;
  Timeline timeline_;
  std::atomic<bool> finished_{false};
  std::atomic<uint64_t> started_ns_{0};
  std::atomic<uint64_t> final_lost_{0};
  std::atomic<uint64_t> final_out_of_order_{0};
  std::atomic<bool> final_valid_{true};
  std::atomic<bool> final_passed_{true};
};

// Parses "host:port" or "[v6]:port" into a Target.
absl::Status ParseTarget(const std::string& text, Destination* out);

}  // namespace longlink::loadgen
