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
#include "gateway/admin.h"
#include "gateway/backend/local/local_backend.h"
#include "gateway/shard.h"
#include "metrics/http_endpoint.h"
#include "protocol/websocket.h"
#include "protocol/ws_upgrade.h"

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

uint16_t BoundPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

void CollectGateway(const std::vector<std::unique_ptr<Shard>>& shards, core::ShardGrid* grid,
                    const metrics::Buckets* buckets, std::vector<prometheus::MetricFamily>* out) {
  using metrics::AddSample;
  const std::string p = "longlink_gateway_";
#define LL_SUM_(name, help)                                         \
  {                                                                 \
    auto f = metrics::CounterFamily(p + #name, help);               \
    uint64_t total = 0;                                             \
    for (const auto& s : shards) total += s->stats().name.Get();    \
    AddSample(&f, static_cast<double>(total));                      \
    out->push_back(std::move(f));                                   \
  }
  LONGLINK_GATEWAY_COUNTERS(LL_SUM_)
#undef LL_SUM_
#define LL_SUM_T_(name, help)                                                                        \
  {                                                                                                  \
    auto f = metrics::CounterFamily(p + #name, help);                                                \
    for (size_t t = 0; t < kTransports; ++t) {                                                       \
      uint64_t total = 0;                                                                            \
      for (const auto& s : shards) total += s->stats().name[t].Get();                                \
      AddSample(&f, static_cast<double>(total), {{"transport", std::string(TransportName(t))}});     \
    }                                                                                                \
    out->push_back(std::move(f));                                                                    \
  }
  LONGLINK_GATEWAY_TRANSPORT_COUNTERS(LL_SUM_T_)
#undef LL_SUM_T_
  {
    auto f = metrics::CounterFamily(p + "ws_upgrades_total", "WebSocket upgrade requests answered, by result");
    for (size_t r = 0; r < kWsUpgradeResults; ++r) {
      uint64_t total = 0;
      for (const auto& s : shards) total += s->stats().ws_upgrades[r].Get();
      std::string name;
      if (r < kWsUpgradeParseErrorBase) {
        static constexpr const char* kNames[] = {"ok", "echo", "bad_path", "bad_origin"};
        name = kNames[r];
      } else {
        auto e = static_cast<protocol::ws::UpgradeError>(r - kWsUpgradeParseErrorBase);
        // Request-side parse errors only (those a server answers with an HTTP status).
        if (e == protocol::ws::UpgradeError::kNone || protocol::ws::HttpStatusFor(e) == 0) continue;
        name = std::string(protocol::ws::UpgradeErrorName(e));
      }
      AddSample(&f, static_cast<double>(total), {{"result", name}});
    }
    out->push_back(std::move(f));
  }
  {
    auto f = metrics::CounterFamily(p + "ws_protocol_errors_total",
                                    "WebSocket connections closed for a framing violation, by error");
    for (size_t e = 1; e <= static_cast<size_t>(protocol::ws::Error::kBadCloseCode); ++e) {
      uint64_t total = 0;
      for (const auto& s : shards) total += s->stats().ws_errors[e].Get();
      AddSample(&f, static_cast<double>(total),
                {{"error", std::string(protocol::ws::ErrorName(static_cast<protocol::ws::Error>(e)))}});
    }
    out->push_back(std::move(f));
  }
  {
    auto f = metrics::CounterFamily(p + "closes_total", "Connections closed, by reason");
    for (size_t r = 0; r < static_cast<size_t>(CloseReason::kCount); ++r) {
      uint64_t total = 0;
      for (const auto& s : shards) total += s->stats().closes[r].Get();
      AddSample(&f, static_cast<double>(total), {{"reason", std::string(CloseReasonName(static_cast<CloseReason>(r)))}});
    }
    out->push_back(std::move(f));
  }
  for (int dir = 0; dir < 2; ++dir) {
    auto f = metrics::CounterFamily(p + (dir == 0 ? "frames_received_total" : "frames_sent_total"),
                                    dir == 0 ? "Frames received from clients, by opcode and transport"
                                             : "Frames sent to clients, by opcode and transport");
    for (size_t t = 0; t < kTransports; ++t) {
      for (uint8_t op = 0; op <= protocol::kMaxOpcode; ++op) {
        uint64_t total = 0;
        for (const auto& s : shards) {
          total += (dir == 0 ? s->stats().frames_in[t][op] : s->stats().frames_out[t][op]).Get();
        }
        if (total == 0 && op != 0) continue;
        AddSample(&f, static_cast<double>(total),
                  {{"opcode", std::string(protocol::OpcodeName(op))}, {"transport", std::string(TransportName(t))}});
      }
    }
    out->push_back(std::move(f));
  }
  {
    auto conns = metrics::GaugeFamily(p + "connections", "Open client connections, by shard and transport");
    auto sessions = metrics::GaugeFamily(p + "sessions", "Logged-in sessions, by shard and transport");
    auto pending = metrics::GaugeFamily(p + "pending_send_bytes", "Bytes queued for sending, by shard");
    auto mode = metrics::GaugeFamily(p + "ring_mode", "1 for the io_uring setup mode each shard runs with");
    auto depth = metrics::GaugeFamily(p + "cross_shard_queue_depth", "Messages waiting in queues into each shard");
    auto bufs = metrics::GaugeFamily(p + "recv_buffers", "Receive buffers in each shard's buffer ring");
    for (const auto& s : shards) {
      std::string id = std::to_string(s->id());
      for (size_t t = 0; t < kTransports; ++t) {
        std::string tn(TransportName(t));
        AddSample(&conns, static_cast<double>(s->stats().connections[t].Get()), {{"shard", id}, {"transport", tn}});
        AddSample(&sessions, static_cast<double>(s->stats().sessions[t].Get()), {{"shard", id}, {"transport", tn}});
      }
      AddSample(&pending, static_cast<double>(s->stats().pending_send_bytes.Get()), {{"shard", id}});
      AddSample(&mode, 1,
                {{"shard", id}, {"mode", std::string(core::RingModeName(static_cast<core::RingMode>(s->stats().ring_mode.Get())))}});
      size_t d = 0;
      for (uint32_t from = 0; from < grid->shards(); ++from) {
        if (from != s->id()) d += grid->Cell(from, s->id()).SizeApprox();
      }
      AddSample(&depth, static_cast<double>(d), {{"shard", id}});
      AddSample(&bufs, static_cast<double>(s->stats().recv_buffers.Get()), {{"shard", id}});
    }
    out->push_back(std::move(conns));
    out->push_back(std::move(sessions));
    out->push_back(std::move(pending));
    out->push_back(std::move(mode));
    out->push_back(std::move(depth));
    out->push_back(std::move(bufs));
  }
  for (int which = 0; which < 4; ++which) {
    static constexpr const char* kNames[] = {"login_latency_seconds", "backend_latency_seconds", "fsync_seconds",
                                             "loop_round_seconds"};
    static constexpr const char* kHelp[] = {
        "LOGIN received to LOGIN_ACK queued", "Time spent in backend operations",
        "Duration of one fdatasync of the message store",
        "Busy time of one shard loop round (completions, queues, timers, backend, sends); a long round delays "
        "every connection of the shard"};
    auto f = metrics::HistogramFamily(p + kNames[which], kHelp[which]);
    std::vector<uint64_t> counts;
    double sum = 0;
    for (const auto& s : shards) {
      const ShardStats& st = s->stats();
      const metrics::Histogram* h[] = {&st.login_latency, &st.backend_latency, &st.fsync_latency, &st.round_busy};
      h[which]->AddTo(&counts, &sum);
    }
    metrics::AddHistogram(&f, buckets->upper_bounds, counts, sum);
    out->push_back(std::move(f));
  }
  {
    auto f = metrics::GaugeFamily(p + "process_resident_memory_bytes", "Resident memory of the gateway process");
    AddSample(&f, static_cast<double>(metrics::ProcessResidentBytes()));
    out->push_back(std::move(f));
  }
}

}  // namespace

absl::Status RunGateway(const Config& config) {
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
  // After the listeners: a bad --bind must not leave a fresh data directory behind.
  absl::StatusOr<std::unique_ptr<BackendFactory>> made = MakeBackendFactory(config);
  if (!made.ok()) {
    for (int l : listeners) close(l);
    for (int l : ws_listeners) {
      if (l >= 0) close(l);
    }
    return made.status();
  }
  std::unique_ptr<BackendFactory> factory = std::move(*made);

  core::ShardGrid grid(config.shards, config.queue_capacity);
  Shared shared;
  shared.config = &config;
  shared.grid = &grid;
  shared.backend_factory = factory.get();
  static const metrics::Buckets kLatency = metrics::Buckets::Exponential(0.00001, 2, 22);
  std::vector<std::unique_ptr<Shard>> shards;
  for (uint32_t i = 0; i < config.shards; ++i) {
    shards.push_back(std::make_unique<Shard>(i, &shared, listeners[i], ws_listeners[i], &kLatency));
  }
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
    endpoint.AddCollector([&](std::vector<prometheus::MetricFamily>* out) {
      CollectGateway(shards, &grid, &kLatency, out);
    });
    endpoint.SetReadiness([&] { return !shared.draining.load(std::memory_order_relaxed); });
    absl::Status st = endpoint.Start(config.metrics_bind, static_cast<uint16_t>(config.metrics_port));
    if (!st.ok()) {
      shared.draining.store(true);
      for (auto& s : shards) s->Join();
      return st;
    }
  }
  int admin_port = -1;
  std::unique_ptr<AdminServer> admin;
  if (config.admin_port >= 0) {
    auto* lf = dynamic_cast<local::LocalFactory*>(factory.get());
    absl::Status st = lf == nullptr ? absl::InvalidArgumentError("--admin-port: the admin API needs --backend=local")
                                    : absl::OkStatus();
    if (st.ok()) {
      admin = std::make_unique<AdminServer>(lf, config.admin_token, config.web_root);
      st = admin->Start(config.admin_bind, static_cast<uint16_t>(config.admin_port));
    }
    if (!st.ok()) {
      shared.draining.store(true);
      for (auto& s : shards) s->Join();
      endpoint.Stop();
      return st;
    }
    admin_port = admin->port();
  }
  std::printf("longlink-gateway listening on %s:%u shards=%u metrics=%d backend=%s ring=%s admin=%d ws=%d %s\n",
              config.bind.c_str(), port, config.shards, config.metrics_port >= 0 ? endpoint.port() : -1,
              config.backend.c_str(),
              std::string(core::RingModeName(static_cast<core::RingMode>(shards[0]->stats().ring_mode.Get()))).c_str(),
              admin_port, ws_port, factory->Describe().c_str());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&sigs, &sig);
  std::fprintf(stderr, "longlink-gateway: %s received, draining\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  shared.draining.store(true);
  if (admin) admin->Stop();
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
