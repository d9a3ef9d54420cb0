// longlink-loadgen: simulated mobile clients against a longlink gateway.
//   longlink-loadgen --target=127.0.0.1:7000 --clients=10000 --connect-rate=5000 --duration=30s --rate=1
//   longlink-loadgen --scenario=loadgen/scenarios/mobile-mix.yaml --report-json=report.json
// Exit codes: 0 ok, 1 a threshold was violated, 2 bad flags or scenario, 3 the run is invalid because the
// generator itself was saturated.
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/time/time.h"
#include "core/cli.h"
#include "loadgen/engine.h"
#include "loadgen/report.h"
#include "loadgen/scenario.h"
#include "metrics/http_endpoint.h"

namespace ll = longlink::loadgen;

namespace {

// What this engine build runs of a scenario. Parts of the scenario model that the engine does not act on
// yet are refused here rather than silently ignored.
absl::Status Unsupported(const ll::Scenario& s) {
  if (s.target.protocol != ll::Protocol::kLongLink)
    return absl::UnimplementedError("target.protocol: only longlink is implemented");
  if (!s.target.source_addresses.empty())
    return absl::UnimplementedError("target.source_addresses: not implemented yet");
  for (const ll::ProfileShare& p : s.network.mix) {
    if (p.name != "none" && p.percent > 0) {
      return absl::UnimplementedError("network.mix: weak-network simulation is not implemented yet (profile '" +
                                      p.name + "')");
    }
  }
  for (const ll::Phase& p : s.phases) {
    if (p.kind != ll::PhaseKind::kRamp && p.kind != ll::PhaseKind::kHold && p.kind != ll::PhaseKind::kStorm &&
        p.kind != ll::PhaseKind::kChurn) {
      return absl::UnimplementedError(std::string("phases: only ramp, hold, storm and churn are implemented yet, not ") +
                                      std::string(ll::PhaseKindName(p.kind)));
    }
    if ((p.kind == ll::PhaseKind::kStorm || p.kind == ll::PhaseKind::kChurn) && p.drop == ll::DropMode::kLogout) {
      return absl::UnimplementedError(std::string("phases: ") + std::string(ll::PhaseKindName(p.kind)) +
                                      " with drop: logout is not implemented yet (close or reset)");
    }
  }
  if (s.messaging.targets == ll::TargetSelection::kGroups)
    return absl::UnimplementedError("messaging.targets: groups are not implemented yet");
  if (s.heartbeat.mode != ll::HeartbeatMode::kFixed)
    return absl::UnimplementedError("heartbeat.mode: only fixed is implemented yet");
  if (!s.auth.devices_distribution.empty())
    return absl::UnimplementedError("auth.devices_distribution: not implemented yet");
  return absl::OkStatus();
}

absl::StatusOr<ll::EngineConfig> ToEngineConfig(const ll::Scenario& s) {
  ll::EngineConfig c;
  for (const ll::Endpoint& e : s.target.addresses) {
    ll::Destination t;
    std::string text = e.host.find(':') != std::string::npos ? "[" + e.host + "]:" + std::to_string(e.port)
                                                             : e.host + ":" + std::to_string(e.port);
    absl::Status st = ll::ParseTarget(text, &t);
    if (!st.ok()) return st;
    c.targets.push_back(t);
  }
  c.clients = static_cast<uint32_t>(s.clients);
  c.shards = s.shards != 0 ? s.shards : std::max(1u, std::thread::hardware_concurrency());
  c.connect_rate = s.connect_rate;
  for (const ll::Phase& p : s.phases) {
    if (p.kind == ll::PhaseKind::kRamp && p.connect_rate > 0) {
      c.connect_rate = p.connect_rate;
      break;
    }
  }
  c.duration_ms = static_cast<uint64_t>(absl::ToInt64Milliseconds(s.duration));
  absl::Duration at = absl::ZeroDuration();
  for (const ll::Phase& p : s.phases) {
    if (p.kind == ll::PhaseKind::kStorm) {
      c.storms.push_back(ll::StormEvent{static_cast<uint64_t>(absl::ToInt64Milliseconds(at)), p.percent / 100.0,
                                        p.drop == ll::DropMode::kReset});
    }
    if (p.kind == ll::PhaseKind::kChurn) {
      // Churn is a storm of percent% of the connected clients, chosen afresh, every second of the phase.
      for (int64_t ms = 0; ms < absl::ToInt64Milliseconds(p.duration); ms += 1000) {
        c.storms.push_back(ll::StormEvent{static_cast<uint64_t>(absl::ToInt64Milliseconds(at) + ms),
                                          p.percent / 100.0, p.drop == ll::DropMode::kReset, /*random=*/true});
      }
    }
    at += p.duration;
  }
  c.msg_rate_per_client = s.messaging.rate_per_client;
  if (s.messaging.total_rate > 0 && s.clients > 0) c.msg_rate_per_client = s.messaging.total_rate / s.clients;
  c.payload_bytes = std::max<uint32_t>(8, s.messaging.payload.distribution == ll::PayloadDistribution::kFixed
                                              ? s.messaging.payload.size
                                              : s.messaging.payload.max);
  c.devices_per_user = std::max<uint32_t>(1, s.auth.devices_per_user);
  c.target_self = s.messaging.targets == ll::TargetSelection::kSelf;
  c.auth_token = s.auth.mode == ll::AuthMode::kToken;
  if (c.auth_token) {
    absl::StatusOr<std::string> secret = ll::ReadAuthSecret(s.auth);
    if (!secret.ok()) return secret.status();
    c.auth_secret = *secret;
  }
  c.reconnect_initial_ms = static_cast<uint32_t>(absl::ToInt64Milliseconds(s.reconnect.initial));
  c.reconnect_max_ms = static_cast<uint32_t>(absl::ToInt64Milliseconds(s.reconnect.max));
  c.reconnect_multiplier = s.reconnect.multiplier;
  c.push_ack = s.messaging.push_ack;
  c.sync_on_reconnect = s.messaging.sync_after_reconnect;
  c.seed = s.seed;
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "simulated mobile clients against a longlink gateway.\n"
      "  longlink-loadgen --target=HOST:PORT[,HOST:PORT...] --clients=N --connect-rate=R --duration=30s --rate=M\n"
      "  longlink-loadgen --scenario=FILE.yaml [overriding flags]\n"
      "Exit codes: 0 ok, 1 threshold violated, 2 bad flags or scenario, 3 generator saturated (run invalid).");
  longlink::core::NormalizeFlagDashes(argc, argv);
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "longlink-loadgen: unexpected argument '%s' (try --help)\n", rest[1]);
    return ll::kExitBadScenario;
  }
  absl::StatusOr<ll::Scenario> scenario = ll::ScenarioFromFlags();
  if (!scenario.ok()) {
    std::fprintf(stderr, "longlink-loadgen: %s\n", std::string(scenario.status().message()).c_str());
    return ll::kExitBadScenario;
  }
  absl::Status supported = Unsupported(*scenario);
  if (!supported.ok()) {
    std::fprintf(stderr, "longlink-loadgen: %s\n", std::string(supported.message()).c_str());
    return ll::kExitBadScenario;
  }
  absl::StatusOr<ll::EngineConfig> config = ToEngineConfig(*scenario);
  if (!config.ok()) {
    std::fprintf(stderr, "longlink-loadgen: %s\n", std::string(config.status().message()).c_str());
    return ll::kExitBadScenario;
  }
  ll::Scenario effective = *scenario;
  effective.shards = config->shards;
  ll::Engine engine(*config);
  longlink::metrics::HttpEndpoint endpoint;
  if (scenario->output.metrics_port >= 0) {
    endpoint.AddCollector([&engine](std::vector<prometheus::MetricFamily>* out) { ll::CollectMetrics(engine, out); });
    absl::Status mst = endpoint.Start("127.0.0.1", static_cast<uint16_t>(scenario->output.metrics_port));
    if (!mst.ok()) {
      std::fprintf(stderr, "longlink-loadgen: %s\n", std::string(mst.message()).c_str());
      return ll::kExitBadScenario;
    }
    std::fprintf(stderr, "longlink-loadgen: metrics on 127.0.0.1:%u/metrics\n", endpoint.port());
  }
  absl::Status st = engine.Run(static_cast<uint64_t>(absl::ToInt64Milliseconds(scenario->output.live_interval)));
  if (!st.ok()) {
    std::fprintf(stderr, "longlink-loadgen: %s\n", std::string(st.message()).c_str());
    return st.code() == absl::StatusCode::kInvalidArgument ? ll::kExitBadScenario : 1;
  }
  ll::Report report = ll::BuildReport(engine, effective);
  std::fputs(ll::RenderText(report, effective).c_str(), stdout);
  if (!scenario->output.report_json.empty()) {
    std::ofstream out(scenario->output.report_json);
    out << ll::RenderJson(report, effective);
    if (!out) {
      std::fprintf(stderr, "longlink-loadgen: cannot write %s\n", scenario->output.report_json.c_str());
      return 1;
    }
  }
  return ll::ReportExitCode(report);
}
