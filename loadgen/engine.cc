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

void LoadShard::CopyLive(Histogram* out) {
  std::lock_guard<std::mutex> lock(impl_->live_mu_);
  out->Merge(impl_->live_e2e_);
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

absl::Status Engine::Run(uint64_t live_interval_ms) {
  bool live_line = live_interval_ms > 0;
  rss_start_ = rss_peak_ = core::ResidentBytes();
  if (config_.targets.empty()) return absl::InvalidArgumentError("no target");
  start_ns_ = core::MonoNanos() + 50000000ull;
  end_ns_ = start_ns_ + config_.duration_ms * 1000000ull;
  for (auto& s : shards_) s->Start();
  uint64_t last_sent = 0, last_delivered = 0, last_connects = 0;
  uint64_t next = start_ns_ + live_interval_ms * 1000000ull;
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
    if (live_line && now >= next) {
      next += live_interval_ms * 1000000ull;
      uint64_t connected = 0, online = 0, sent = 0, delivered = 0, errors = 0, reconnects = 0, connects = 0;
      Histogram e2e;
      for (auto& s : shards_) {
        const ShardCounters& c = s->counters();
        connected += static_cast<uint64_t>(std::max<int64_t>(0, c.connected.Get()));
        online += static_cast<uint64_t>(std::max<int64_t>(0, c.online.Get()));
        sent += c.sent.Get();
        delivered += c.delivered.Get();
        errors += c.connect_errors.Get() + c.login_failures.Get() + c.protocol_errors.Get();
        reconnects += c.reconnects.Get();
        connects += c.connects.Get();
        s->CopyLive(&e2e);
      }
      std::fprintf(
          stderr,
          "t=%5.1fs connected=%lu online=%lu connect/s=%lu msg/s sent=%lu delivered=%lu e2e p50=%.2fms "
          "p99=%.2fms errors=%lu reconnects=%lu\n",
          static_cast<double>(now - start_ns_) / 1e9, connected, online,
          static_cast<unsigned long>(static_cast<double>(connects - last_connects) * 1000.0 / live_interval_ms),
          static_cast<unsigned long>(static_cast<double>(sent - last_sent) * 1000.0 / live_interval_ms),
          static_cast<unsigned long>(static_cast<double>(delivered - last_delivered) * 1000.0 / live_interval_ms),
          static_cast<double>(e2e.ValueAtPercentile(50)) / 1e6, static_cast<double>(e2e.ValueAtPercentile(99)) / 1e6,
          errors, reconnects);
      last_sent = sent;
      last_delivered = delivered;
      last_connects = connects;
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
