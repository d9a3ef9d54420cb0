// longlink-loadgen: simulated mobile clients against a longlink gateway.
//   longlink-loadgen --target=127.0.0.1:7000 --clients=10000 --connect-rate=5000 --duration=30s --rate=1
//   longlink-loadgen --scenario=loadgen/scenarios/mobile-mix.yaml --report-json=report.json
// Exit codes: 0 ok, 1 a threshold was violated, 2 bad flags or scenario, 3 the run is invalid because the
// generator itself was saturated.
#include <netinet/in.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/cli.h"
#include "loadgen/engine.h"
#include "loadgen/plan.h"
#include "loadgen/report.h"
#include "loadgen/scenario.h"
#include "metrics/http_endpoint.h"

namespace ll = longlink::loadgen;

namespace {

// What this engine build runs of a scenario. Parts of the scenario model that the engine does not act on
// yet are refused here rather than silently ignored.
absl::Status Unsupported(const ll::Scenario& s) {
  if (!s.auth.devices_distribution.empty())
    return absl::UnimplementedError("auth.devices_distribution: not implemented yet");
  return absl::OkStatus();
}

uint32_t Ms(absl::Duration d) { return static_cast<uint32_t>(absl::ToInt64Milliseconds(d)); }

absl::StatusOr<ll::Destination> ToDestination(const std::string& host, uint16_t port) {
  ll::Destination t;
  std::string text = host.find(':') != std::string::npos ? "[" + host + "]:" + std::to_string(port)
                                                         : host + ":" + std::to_string(port);
  absl::Status st = ll::ParseTarget(text, &t);
  if (!st.ok()) return st;
  return t;
}

absl::StatusOr<ll::EngineConfig> ToEngineConfig(const ll::Scenario& s) {
  ll::EngineConfig c;
  for (const ll::Endpoint& e : s.target.addresses) {
    absl::StatusOr<ll::Destination> t = ToDestination(e.host, e.port);
    if (!t.ok()) return t.status();
    c.targets.push_back(*t);
  }
  for (const std::string& host : s.target.source_addresses) {
    // ParseTarget wants a port; a source takes port 0 (chosen by connect, IP_BIND_ADDRESS_NO_PORT).
    absl::StatusOr<ll::Destination> t = ToDestination(host, 1);
    if (!t.ok()) return absl::InvalidArgumentError("target.source_addresses: " + std::string(t.status().message()));
    if (t->addr.ss_family != c.targets[0].addr.ss_family) {
      return absl::InvalidArgumentError("target.source_addresses: " + host +
                                        " is not of the same address family as the targets");
    }
    if (t->addr.ss_family == AF_INET) {
      reinterpret_cast<sockaddr_in*>(&t->addr)->sin_port = 0;
    } else {
      reinterpret_cast<sockaddr_in6*>(&t->addr)->sin6_port = 0;
    }
    c.sources.push_back(*t);
  }
  c.clients = static_cast<uint32_t>(s.clients);
  c.shards = s.shards != 0 ? s.shards : std::max(1u, std::thread::hardware_concurrency());
  c.connect_rate = s.connect_rate;
  c.duration_ms = static_cast<uint64_t>(absl::ToInt64Milliseconds(s.duration));
  c.grace_ms = static_cast<uint64_t>(absl::ToInt64Milliseconds(s.grace));
  // Phases become join and leave waves over client index ranges, and storm events.
  absl::StatusOr<ll::Plan> plan = ll::CompilePlan(s);
  if (!plan.ok()) return plan.status();
  c.joins = std::move(plan->joins);
  c.leaves = std::move(plan->leaves);
  c.storms = std::move(plan->storms);
  c.msg_rate_per_client = s.messaging.rate_per_client;
  if (s.messaging.total_rate > 0 && s.clients > 0) c.msg_rate_per_client = s.messaging.total_rate / s.clients;
  const ll::Payload& pl = s.messaging.payload;
  c.payload_dist = pl.distribution;
  switch (pl.distribution) {
    case ll::PayloadDistribution::kFixed:
      c.payload_min = c.payload_max = std::max<uint32_t>(16, pl.size);
      break;
    case ll::PayloadDistribution::kUniform:
      c.payload_min = std::max<uint32_t>(16, pl.min);
      c.payload_max = std::max<uint32_t>(c.payload_min, pl.max);
      break;
    case ll::PayloadDistribution::kLognormal:
      c.payload_min = std::max<uint32_t>(16, pl.min);
      c.payload_max = std::max<uint32_t>(c.payload_min, pl.max);
      c.payload_median = pl.median;
      c.payload_sigma = pl.sigma;
      break;
  }
  c.devices_per_user = std::max<uint32_t>(1, s.auth.devices_per_user);
  c.first_user_id = s.auth.first_user_id;
  c.message_targets = s.messaging.targets;
  if (s.messaging.targets == ll::TargetSelection::kGroups) {
    c.group_count = s.messaging.groups.count;
    c.group_size = s.messaging.groups.size;
  }
  c.auth_token = s.auth.mode == ll::AuthMode::kToken;
  if (c.auth_token) {
    absl::StatusOr<std::string> secret = ll::ReadAuthSecret(s.auth);
    if (!secret.ok()) return secret.status();
    c.auth_secret = *secret;
  }
  c.reconnect_initial_ms = Ms(s.reconnect.initial);
  c.reconnect_max_ms = Ms(s.reconnect.max);
  c.reconnect_multiplier = s.reconnect.multiplier;
  c.push_ack = s.messaging.push_ack;
  c.ack_delay_ms = Ms(s.messaging.ack_delay);
  c.sync_on_reconnect = s.messaging.sync_after_reconnect;
  const ll::Heartbeat& h = s.heartbeat;
  c.hb_adaptive = h.mode == ll::HeartbeatMode::kAdaptive;
  c.hb_initial_ms = Ms(h.initial);
  c.hb_max_ms = Ms(h.max);
  c.hb_step_ms = Ms(h.step);
  c.hb_backoff = h.backoff;
  c.hb_successes = h.successes_per_step;
  c.pong_timeout_ms = Ms(h.pong_timeout);
  c.bg_fraction = h.background.fraction;
  c.bg_multiplier = h.background.interval_multiplier;
  c.bg_switches_per_hour = h.background.switches_per_hour;
  for (const ll::ProfileShare& share : s.network.mix) {
    if (share.percent <= 0) continue;
    c.network.push_back(ll::NetShare{share.name, share.percent, ll::LinkParams::From(share.params)});
  }
  c.transport = s.target.protocol;
  c.ws_path = s.target.ws_path;
  c.ws_ping_ms = Ms(s.target.ws_ping_interval);
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
  // --help lists the loadgen's own flags (--helpfull adds Abseil's).
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) { return absl::StrContains(file, "loadgen/"); };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
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
  ll::RunLabels run{scenario->output.run_id, effective.name.empty() ? "flags" : effective.name};
  if (run.run_id.empty()) run.run_id = run.scenario + "-" + absl::FormatTime("%Y%m%dT%H%M%SZ", absl::Now(), absl::UTCTimeZone());
  longlink::metrics::HttpEndpoint endpoint;
  if (scenario->output.metrics_port >= 0) {
    endpoint.AddCollector([&engine, &effective, &run](std::vector<prometheus::MetricFamily>* out) {
      ll::CollectMetrics(engine, effective, run, out);
    });
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
  engine.PublishFinal(static_cast<uint64_t>(report.ledger.lost), static_cast<uint64_t>(report.ledger.out_of_order),
                      report.valid, ll::ReportExitCode(report) == ll::kExitOk);
  std::fputs(ll::RenderText(report, effective).c_str(), stdout);
  int code = ll::ReportExitCode(report);
  auto write = [&code](const std::string& path, const std::string& text) {
    if (path.empty()) return;
    std::ofstream out(path);
    out << text;
    out.close();
    if (!out) {
      std::fprintf(stderr, "longlink-loadgen: cannot write %s\n", path.c_str());
      if (code == ll::kExitOk) code = 1;
    }
  };
  write(scenario->output.report_json, ll::RenderJson(report, effective));
  write(scenario->output.report_html, ll::RenderHtml(report, effective));
  std::fflush(stdout);
  if (scenario->output.metrics_port >= 0 && scenario->output.metrics_linger > absl::ZeroDuration()) {
    // The final figures (messages lost, run finished, ...) stay up for one more scrape or two.
    std::fprintf(stderr, "longlink-loadgen: serving the final metrics for %s more\n",
                 absl::FormatDuration(scenario->output.metrics_linger).c_str());
    absl::SleepFor(scenario->output.metrics_linger);
  }
  return code;
}
