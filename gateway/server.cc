#include "gateway/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <vector>

#include "core/ring.h"
#include "core/shard_grid.h"
#include "core/status.h"
#include "gateway/admin/admin_server.h"
#include "gateway/shard.h"
#include "metrics/http_endpoint.h"
#include "metrics/stats.h"

namespace longlink::gateway {
namespace {

absl::StatusOr<int> Listen(const std::string& bind, uint16_t port) {
  sockaddr_storage ss{};
  socklen_t len;
  int family;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, bind.c_str(), &v4->sin_addr) == 1) {
    family = AF_INET;
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    len = sizeof(*v4);
  } else if (inet_pton(AF_INET6, bind.c_str(), &v6->sin6_addr) == 1) {
    family = AF_INET6;
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    len = sizeof(*v6);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("--bind: '", bind, "' is not an IPv4 or IPv6 address"));
  }
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus(errno, "socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  // Accepted sockets inherit these: direct descriptors cannot be setsockopt'ed one by one.
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) < 0) {
    int e = errno;
    close(fd);
    return ErrnoStatus(e, absl::StrCat("bind ", bind, ":", port));
  }
  if (listen(fd, 65535) < 0) {
    int e = errno;
    close(fd);
    return ErrnoStatus(e, "listen");
  }
  return fd;
}

// Whether a bind address only takes connections from this machine.
bool Loopback(const std::string& bind) {
  in_addr a4{};
  if (inet_pton(AF_INET, bind.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  in6_addr a6{};
  return inet_pton(AF_INET6, bind.c_str(), &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

// Settings that are fine on loopback and dangerous anywhere else are said loudly at start.
void WarnAboutExposure(const Config& config) {
  if (config.auth == AuthMode::kNone && !Loopback(config.bind)) {
    std::fprintf(stderr,
                 "longlink-gateway: WARNING: --auth=none on %s: anyone who reaches the port can log in as any "
                 "user; use --auth=token outside closed networks\n",
                 config.bind.c_str());
  }
  if (config.admin_port >= 0 && config.admin_token.empty() && !Loopback(config.admin_bind)) {
    std::fprintf(stderr,
                 "longlink-gateway: WARNING: the admin API on %s has no --admin-token: anyone who reaches it can "
                 "push messages to and kick any user\n",
                 config.admin_bind.c_str());
  }
}

core::RingMode RingModeOf(const Shard& s) {
  for (size_t m = 0; m < kRingModes; ++m) {
    if (s.stats().ring_mode[m].Get() != 0) return static_cast<core::RingMode>(m);
  }
  return core::RingMode::kPlain;
}

uint16_t BoundPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

// The runtime's answer to threads outside the shards: each shard's mailbox.
class Runner final : public ShardRunner {
 public:
  explicit Runner(uint32_t shards) : shards_(shards) {}
  void Attach(std::vector<std::unique_ptr<Shard>>* shards) { list_ = shards; }
  uint32_t shard_count() const override { return shards_; }
  bool RunOnShard(uint32_t shard, absl::AnyInvocable<void(Backend&) &&> fn) override {
    if (list_ == nullptr || shard >= list_->size()) return false;
    return (*list_)[shard]->RunOnShard(std::move(fn));
  }

 private:
  uint32_t shards_;
  std::vector<std::unique_ptr<Shard>>* list_ = nullptr;
};

// Scrape time: the gateway's families (longlink_gateway_*), the backend's (longlink_backend_<name>_*),
// build information and the standard process families.
void Collect(const Config& config, const std::vector<std::unique_ptr<Shard>>& shards, core::ShardGrid* grid,
             BackendFactory* factory, bool ready, std::vector<prometheus::MetricFamily>* out) {
  metrics::PrometheusStats gateway("longlink_gateway_");
  metrics::PrometheusStats backend(absl::StrCat("longlink_backend_", config.backend, "_"));
  for (const auto& s : shards) {
    // The queue depth is read here, from the grid's counters, rather than kept by every shard each round.
    size_t depth = 0;
    for (uint32_t from = 0; from < grid->shards(); ++from) {
      if (from != s->id()) depth += grid->Cell(from, s->id()).SizeApprox();
    }
    s->SetQueueDepth(depth);
    gateway.BeginShard(s->id());
    s->stats().Visit(gateway);
    backend.BeginShard(s->id());
    if (const Backend* b = s->backend()) b->VisitStats(backend);
  }
  gateway.AppendTo(out);
  backend.AppendTo(out);
  auto info = metrics::GaugeFamily("longlink_build_info", "Always 1: the version of longlink-gateway and its backend");
  metrics::AddSample(&info, 1, {{"version", LONGLINK_VERSION}, {"backend", config.backend}});
  out->push_back(std::move(info));
  auto r = metrics::GaugeFamily("longlink_gateway_ready", "1 while /readyz answers 200 (not draining, backend ready)");
  metrics::AddSample(&r, ready ? 1 : 0);
  out->push_back(std::move(r));
  factory->Collect(out);
  metrics::CollectProcess(out);
}

}  // namespace

absl::Status RunGateway(const Config& config, std::unique_ptr<BackendFactory> factory) {
  // Signals are taken synchronously by this thread; every shard thread inherits the blocked mask.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::vector<int> listeners;
  uint16_t port = config.port;
  for (uint32_t i = 0; i < config.shards; ++i) {
    absl::StatusOr<int> fd = Listen(config.bind, port);
    if (!fd.ok()) {
      for (int l : listeners) close(l);
      return fd.status();
    }
    if (port == 0) port = BoundPort(*fd);  // the other shards join the port the first one got
    listeners.push_back(*fd);
  }
  // The WebSocket listener: one SO_REUSEPORT socket per shard, like the TCP one.
  std::vector<int> ws_listeners(config.shards, -1);
  int ws_port = config.ws_port;
  if (config.ws_port >= 0) {
    uint16_t wp = static_cast<uint16_t>(config.ws_port);
    for (uint32_t i = 0; i < config.shards; ++i) {
      absl::StatusOr<int> fd = Listen(config.bind, wp);
      if (!fd.ok()) {
        for (int l : listeners) close(l);
        for (int l : ws_listeners) {
          if (l >= 0) close(l);
        }
        return fd.status();
      }
      if (wp == 0) wp = BoundPort(*fd);
      ws_listeners[i] = *fd;
    }
    ws_port = wp;
  }
  core::ShardGrid grid(config.shards, config.queue_capacity);
  Shared shared(config.shards);
  shared.config = &config;
  shared.grid = &grid;
  shared.backend_factory = factory.get();
  std::vector<std::unique_ptr<Shard>> shards;
  for (uint32_t i = 0; i < config.shards; ++i) {
    shards.push_back(std::make_unique<Shard>(i, &shared, listeners[i], ws_listeners[i]));
  }
  Runner runner(config.shards);
  runner.Attach(&shards);
  // After the listeners: a bad --bind must not leave a fresh data directory behind. (The listeners now
  // belong to the shards, which close them.)
  absl::Status opened = factory->Open(&runner);
  if (!opened.ok()) {
    factory->Close();  // what Open acquired before it failed, while the runner is still there
    return opened;
  }
  // On every way out, after the shards stopped and before the runner goes.
  struct CloseFactory {
    BackendFactory* f;
    ~CloseFactory() { f->Close(); }
  } close_factory{factory.get()};
  for (auto& s : shards) s->Start();
  while (shared.started.load() + shared.failed.load() < config.shards) usleep(1000);
  if (shared.failed.load() != 0) {
    shared.draining.store(true);
    for (auto& s : shards) s->Join();
    for (auto& s : shards) {
      if (!s->setup_status().ok()) return s->setup_status();
    }
    return absl::InternalError("a shard failed to start");
  }

  metrics::HttpEndpoint endpoint;
  if (config.metrics_port >= 0) {
    // Not ready while draining, or while any shard's backend cannot take new work (its storage failed).
    auto ready = [&] {
      if (shared.draining.load(std::memory_order_relaxed)) return false;
      for (const auto& s : shards) {
        if (const Backend* b = s->backend(); b != nullptr && !b->Ready()) return false;
      }
      return true;
    };
    endpoint.AddCollector([&, ready](std::vector<prometheus::MetricFamily>* out) {
      Collect(config, shards, &grid, factory.get(), ready(), out);
    });
    endpoint.SetReadiness(ready);
    absl::Status st = endpoint.Start(config.metrics_bind, static_cast<uint16_t>(config.metrics_port));
    if (!st.ok()) {
      shared.draining.store(true);
      for (auto& s : shards) s->Join();
      return st;
    }
  }
  int admin_port = -1;
  std::unique_ptr<admin::AdminServer> admin_server;
  if (config.admin_port >= 0) {
    admin::AdminOptions ao;
    ao.token = config.admin_token;
    ao.web_root = config.web_root;
    ao.backend = config.backend;
    admin_server = std::make_unique<admin::AdminServer>(factory->admin_ops(), &runner, ao);
    absl::Status st = admin_server->Start(config.admin_bind, static_cast<uint16_t>(config.admin_port));
    if (!st.ok()) {
      shared.draining.store(true);
      for (auto& s : shards) s->Join();
      endpoint.Stop();
      return st;
    }
    admin_port = admin_server->port();
  }
  WarnAboutExposure(config);
  std::printf("longlink-gateway listening on %s:%u shards=%u metrics=%d backend=%s ring=%s admin=%d ws=%d %s\n",
              config.bind.c_str(), port, config.shards, config.metrics_port >= 0 ? endpoint.port() : -1,
              config.backend.c_str(),
              std::string(core::RingModeName(RingModeOf(*shards[0]))).c_str(),
              admin_port, ws_port, factory->Describe().c_str());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&sigs, &sig);
  std::fprintf(stderr, "longlink-gateway: %s received, draining\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  shared.draining.store(true);
  if (admin_server) admin_server->Stop();
  for (auto& s : shards) s->Join();
  endpoint.Stop();
  uint64_t open = 0;
  for (auto& s : shards) {
    for (const metrics::Gauge& g : s->stats().connections) open += static_cast<uint64_t>(g.Get());
  }
  std::fprintf(stderr, "longlink-gateway: drained, %lu connections left open\n", static_cast<unsigned long>(open));
  return absl::OkStatus();
}

}  // namespace longlink::gateway
