// The engine (engine.h): the run as a whole, its shards started and joined, the live line, the memory and
// online peaks, the users and their groups; and LoadShard's thread around its Impl (load_shard.h), whose
// methods live in load_shard.cc, client_io.cc, ws_client.cc, session.cc and workload.cc.
#include "loadgen/engine.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>

#include "absl/strings/str_cat.h"
#include "core/clock.h"
#include "core/process.h"
#include "loadgen/load_shard.h"

namespace longlink::loadgen {

LoadShard::LoadShard(Engine* engine, uint32_t id) : engine_(engine), id_(id), impl_(std::make_unique<Impl>(this)) {}

LoadShard::~LoadShard() { Join(); }

void LoadShard::Start() {
  thread_ = std::thread([this] {
    status_ = impl_->Setup();
    if (!status_.ok()) {
      std::fprintf(stderr, "longlink-loadgen: shard %u: %s\n", id_, status_.ToString().c_str());
      finished_.store(true, std::memory_order_release);
      return;
    }
    impl_->Loop();
    finished_.store(true, std::memory_order_release);
  });
}

void LoadShard::Join() {
  if (thread_.joinable()) thread_.join();
}

void LoadShard::CopyLive(Histogram* e2e, Histogram* heartbeat, Histogram* lag) {
  std::lock_guard<std::mutex> lock(impl_->live_mu_);
  e2e->Merge(impl_->live_e2e_);
  heartbeat->Merge(impl_->live_heartbeat_);
  lag->Merge(impl_->live_lag_);
}

uint64_t Engine::TargetOnline(uint64_t ms) const {
  auto reached = [ms](const Wave& w) -> uint64_t {
    if (ms < w.start_ms) return 0;
    if (w.rate <= 0) return w.count;
    double n = static_cast<double>(ms - w.start_ms) * w.rate / 1000.0;
    return std::min<uint64_t>(w.count, static_cast<uint64_t>(n));
  };
  int64_t n = 0;
  for (const Wave& w : config_.joins) n += static_cast<int64_t>(reached(w));
  for (const Wave& w : config_.leaves) n -= static_cast<int64_t>(reached(w));
  return static_cast<uint64_t>(std::max<int64_t>(0, n));
}

Engine::Engine(EngineConfig config) : config_(std::move(config)) {
  run_id_ = std::random_device{}() | (static_cast<uint64_t>(std::random_device{}()) << 32) | 1;
  const uint32_t devices = std::max<uint32_t>(1, config_.devices_per_user);
  users_ = (config_.clients + devices - 1) / devices;
  if (config_.message_targets == TargetSelection::kGroups && users_ > 0 && config_.group_count > 0) {
    // Memberships as a compressed table user -> groups, from the arithmetic rule in EngineConfig.
    std::vector<uint32_t> count(users_ + 1, 0);
    for (uint32_t g = 0; g < config_.group_count; ++g) {
      for (uint32_t j = 0; j < GroupMembers(); ++j) ++count[GroupMember(g, j)];
    }
    group_offsets_.assign(users_ + 1, 0);
    for (uint64_t u = 1; u <= users_; ++u) group_offsets_[u] = group_offsets_[u - 1] + count[u];
    user_groups_.resize(group_offsets_[users_]);
    std::vector<uint32_t> fill(group_offsets_.begin(), group_offsets_.end() - 1);
    for (uint32_t g = 0; g < config_.group_count; ++g) {
      for (uint32_t j = 0; j < GroupMembers(); ++j) user_groups_[fill[GroupMember(g, j) - 1]++] = g;
    }
    for (uint64_t u = 1; u <= users_; ++u) users_with_groups_ += count[u] > 0 ? 1 : 0;
  }
  if (config_.joins.empty()) {
    config_.joins.push_back(Wave{0, config_.clients, 0, config_.connect_rate, Leave::kLogout});
  }
  // The shards exist from the start (idle until Run) so a metrics endpoint may read them at any time.
  for (uint32_t i = 0; i < config_.shards; ++i) shards_.push_back(std::make_unique<LoadShard>(this, i));
}
Engine::~Engine() = default;

namespace {

// Counter sums over the shards, as of one moment.
struct Totals {
  uint64_t connected = 0, online = 0, connects = 0, logins = 0, sent = 0, acked = 0, delivered = 0;
  uint64_t connect_errors = 0, login_failures = 0, protocol_errors = 0, disconnects = 0, reconnects = 0;
  uint64_t flaps = 0, zombies = 0, nat_blackholes = 0;
};

Totals Sum(const std::vector<std::unique_ptr<LoadShard>>& shards) {
  Totals t;
  for (const auto& s : shards) {
    const ShardCounters& c = s->counters();
    t.connected += static_cast<uint64_t>(std::max<int64_t>(0, c.connected.Get()));
    t.online += static_cast<uint64_t>(std::max<int64_t>(0, c.online.Get()));
    t.connects += c.connects.Get();
    t.logins += c.logins.Get();
    t.sent += c.sent.Get();
    t.acked += c.acked.Get();
    t.delivered += c.delivered.Get();
    t.connect_errors += c.connect_errors.Get();
    t.login_failures += c.login_failures.Get();
    t.protocol_errors += c.protocol_errors.Get();
    t.disconnects += c.disconnects.Get();
    t.reconnects += c.reconnects.Get();
    t.flaps += c.flaps.Get();
    t.zombies += c.zombies.Get();
    t.nat_blackholes += c.nat_blackholes.Get();
  }
  return t;
}

double Ms(const Histogram& h, double p) {
  return h.Count() == 0 ? 0.0 : static_cast<double>(h.ValueAtPercentile(p)) / 1e6;
}

}  // namespace

absl::Status Engine::Run(uint64_t live_interval_ms) {
  bool live_line = live_interval_ms > 0;
  rss_start_ = rss_peak_ = core::ResidentBytes();
  if (config_.targets.empty()) return absl::InvalidArgumentError("no target");
  start_ns_ = core::MonoNanos() + 50000000ull;
  end_ns_ = start_ns_ + config_.duration_ms * 1000000ull;
  started_ns_.store(start_ns_, std::memory_order_release);
  for (auto& s : shards_) s->Start();
  uint64_t next_live = start_ns_ + live_interval_ms * 1000000ull;
  uint64_t next_point = start_ns_ + 1000000000ull;
  Totals last_live, last_point;
  uint64_t last_point_ns = start_ns_;
  Histogram prev_e2e, prev_hb, prev_lag;
  bool done = false;
  while (!done) {
    usleep(100000);
    uint64_t now = core::MonoNanos();
    done = true;
    int64_t online_now = 0;
    for (auto& s : shards_) {
      done = done && s->finished();
      online_now += s->counters().online.Get();
    }
    online_peak_ = std::max<uint64_t>(online_peak_, static_cast<uint64_t>(std::max<int64_t>(0, online_now)));
    rss_peak_ = std::max(rss_peak_, core::ResidentBytes());
    bool point = now >= next_point || done;
    bool line = live_line && now >= next_live;
    if (!point && !line) continue;
    Totals t = Sum(shards_);
    Histogram e2e, hb, lag;
    for (auto& s : shards_) s->CopyLive(&e2e, &hb, &lag);
    if (line) {
      next_live += live_interval_ms * 1000000ull;
      auto per_s = [live_interval_ms](uint64_t a, uint64_t b) {
        return static_cast<unsigned long>(static_cast<double>(a - std::min(a, b)) * 1000.0 / live_interval_ms);
      };
      std::fprintf(stderr,
                   "t=%5.1fs connected=%lu online=%lu connect/s=%lu msg/s sent=%lu delivered=%lu e2e p50=%.2fms "
                   "p99=%.2fms errors=%lu reconnects=%lu\n",
                   static_cast<double>(now - start_ns_) / 1e9, static_cast<unsigned long>(t.connected),
                   static_cast<unsigned long>(t.online), per_s(t.connects, last_live.connects),
                   per_s(t.sent, last_live.sent), per_s(t.delivered, last_live.delivered), Ms(e2e, 50), Ms(e2e, 99),
                   static_cast<unsigned long>(t.connect_errors + t.login_failures + t.protocol_errors),
                   static_cast<unsigned long>(t.reconnects));
      last_live = t;
    }
    if (point && now > last_point_ns) {
      // One point of the timeline: rates and percentiles over the second that just ended.
      next_point += 1000000000ull;
      double secs = static_cast<double>(now - last_point_ns) / 1e9;
      auto rate = [secs](uint64_t a, uint64_t b) { return static_cast<double>(a - std::min(a, b)) / secs; };
      TimelinePoint p;
      p.t_s = static_cast<double>(now - start_ns_) / 1e9;
      // Past the end of the run the clients close: nobody is wanted online any more.
      p.target = now >= end_ns_ ? 0.0 : static_cast<double>(TargetOnline(now > start_ns_ ? (now - start_ns_) / 1000000ull : 0));
      p.online = static_cast<double>(t.online);
      p.connected = static_cast<double>(t.connected);
      p.connects = rate(t.connects, last_point.connects);
      p.logins = rate(t.logins, last_point.logins);
      p.sent = rate(t.sent, last_point.sent);
      p.acked = rate(t.acked, last_point.acked);
      p.delivered = rate(t.delivered, last_point.delivered);
      p.connect_errors = rate(t.connect_errors + t.login_failures, last_point.connect_errors + last_point.login_failures);
      p.disconnects = rate(t.disconnects, last_point.disconnects);
      p.reconnects = rate(t.reconnects, last_point.reconnects);
      p.protocol_errors = rate(t.protocol_errors, last_point.protocol_errors);
      p.flaps = rate(t.flaps, last_point.flaps);
      p.zombies = rate(t.zombies, last_point.zombies);
      p.nat_blackholes = rate(t.nat_blackholes, last_point.nat_blackholes);
      Histogram e2e_s = e2e.Since(prev_e2e), hb_s = hb.Since(prev_hb), lag_s = lag.Since(prev_lag);
      p.e2e_p50 = Ms(e2e_s, 50);
      p.e2e_p99 = Ms(e2e_s, 99);
      p.heartbeat_p99 = Ms(hb_s, 99);
      p.lag_p99 = Ms(lag_s, 99);
      timeline_.Add(p);
      last_point = t;
      last_point_ns = now;
      prev_e2e = std::move(e2e);
      prev_hb = std::move(hb);
      prev_lag = std::move(lag);
    }
  }
  for (auto& s : shards_) s->Join();
  for (auto& s : shards_) {
    if (!s->status().ok()) return s->status();
  }
  return absl::OkStatus();
}

absl::Status ParseTarget(const std::string& text, Destination* out) {
  std::string host;
  std::string port;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return absl::InvalidArgumentError(absl::StrCat("target '", text, "': expected [v6-address]:port"));
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("target '", text, "': expected host:port"));
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  char* end = nullptr;
  long p = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p <= 0 || p > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("target '", text, "': bad port '", port, "'"));
  }
  if (host == "localhost") host = "127.0.0.1";
  std::memset(&out->addr, 0, sizeof(out->addr));
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out->addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out->addr);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(p));
    out->len = sizeof(*v4);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(p));
    out->len = sizeof(*v6);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("target '", text, "': '", host, "' is not an IP address"));
  }
  out->text = text;
  return absl::OkStatus();
}

}  // namespace longlink::loadgen
