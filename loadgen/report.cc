#include "loadgen/report.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/clock.h"
#include "metrics/http_endpoint.h"
#include "metrics/stats.h"

namespace longlink::loadgen {
namespace {

Report::Latency Summarize(const std::string& name, const Histogram& h) {
  Report::Latency l;
  l.name = name;
  l.count = h.Count();
  l.p50 = static_cast<double>(h.ValueAtPercentile(50)) / 1e6;
  l.p90 = static_cast<double>(h.ValueAtPercentile(90)) / 1e6;
  l.p99 = static_cast<double>(h.ValueAtPercentile(99)) / 1e6;
  l.p999 = static_cast<double>(h.ValueAtPercentile(99.9)) / 1e6;
  l.max = static_cast<double>(h.Max()) / 1e6;
  if (l.count > 0) {
    // 0, 50, 75, 87.5, ...: the tail gets as many points as the body, as in HdrHistogram's plots.
    for (double rest = 100; rest >= 0.001 && 100 - rest < 100.0 * (1.0 - 1.0 / static_cast<double>(l.count));
         rest /= 2) {
      double p = 100 - rest;
      l.spectrum.emplace_back(p, static_cast<double>(h.ValueAtPercentile(p)) / 1e6);
    }
    l.spectrum.emplace_back(100, l.max);
  }
  return l;
}

std::string JsonString(absl::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    switch (ch) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20) {
          out += absl::StrFormat("\\u%04x", ch);
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

std::string JsonNumber(double v) {
  if (!std::isfinite(v)) return "null";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return absl::StrFormat("%.0f", v);
  return absl::StrFormat("%.6g", v);
}

}  // namespace

std::string MachineDescription() {
  utsname u{};
  uname(&u);
  long pages = sysconf(_SC_PHYS_PAGES);
  long page = sysconf(_SC_PAGESIZE);
  return absl::StrFormat("%s %s %s, %ld cores, %.1f GiB", u.sysname, u.release, u.machine,
                         sysconf(_SC_NPROCESSORS_ONLN), static_cast<double>(pages) * page / (1 << 30));
}

Report BuildReport(const Engine& engine, const Scenario& scenario) {
  Report r;
  LoadShard::Latencies all;
  uint64_t connects = 0, connect_errors = 0, logins = 0, login_failures = 0, sent = 0, delivered = 0, duplicates = 0,
           pings = 0, pongs = 0, reconnects = 0, protocol_errors = 0, acked = 0, unclean = 0,
           storm_drops = 0, online_at_end = 0;
  // Counters reported as they are, by their report name.
  struct Plain {
    const char* name;
    uint64_t (*get)(const ShardCounters&);
  };
  static const Plain kPlain[] = {
      {"leaves", [](const ShardCounters& c) { return c.leaves.Get(); }},
      {"disconnects", [](const ShardCounters& c) { return c.disconnects.Get(); }},
      {"kicks", [](const ShardCounters& c) { return c.kicks.Get(); }},
      {"heartbeat_failures", [](const ShardCounters& c) { return c.pong_timeouts.Get(); }},
      {"heartbeat_grows", [](const ShardCounters& c) { return c.hb_grows.Get(); }},
      {"heartbeat_backoffs", [](const ShardCounters& c) { return c.hb_backoffs.Get(); }},
      {"background_switches", [](const ShardCounters& c) { return c.bg_switches.Get(); }},
      {"flaps", [](const ShardCounters& c) { return c.flaps.Get(); }},
      {"stalls", [](const ShardCounters& c) { return c.stalls.Get(); }},
      {"zombies", [](const ShardCounters& c) { return c.zombies.Get(); }},
      {"zombies_reaped", [](const ShardCounters& c) { return c.zombies_reaped.Get(); }},
      {"zombies_unreaped", [](const ShardCounters& c) { return c.zombies_unreaped.Get(); }},
      {"nat_blackholes", [](const ShardCounters& c) { return c.nat_blackholes.Get(); }},
      {"syncs", [](const ShardCounters& c) { return c.syncs.Get(); }},
      {"sync_gaps", [](const ShardCounters& c) { return c.sync_gaps.Get(); }},
      {"push_acks", [](const ShardCounters& c) { return c.push_acks.Get(); }},
      {"payload_bytes", [](const ShardCounters& c) { return c.payload_bytes.Get(); }},
      {"foreign_deliveries", [](const ShardCounters& c) { return c.foreign.Get(); }},
      {"sends_refused", [](const ShardCounters& c) { return c.sends_refused.Get(); }},
  };
  std::vector<const LedgerShard*> ledgers;
  for (const auto& s : engine.shards()) {
    const ShardCounters& c = s->counters();
    connects += c.connects.Get();
    connect_errors += c.connect_errors.Get();
    logins += c.logins.Get();
    login_failures += c.login_failures.Get();
    sent += c.sent.Get();
    acked += c.acked.Get();
    delivered += c.delivered.Get();
    duplicates += c.duplicates.Get();
    pings += c.pings.Get();
    pongs += c.pongs.Get();
    reconnects += c.reconnects.Get();
    protocol_errors += c.protocol_errors.Get();
    unclean += c.unclean_closes.Get();
    storm_drops += c.storm_drops.Get();
    online_at_end += c.online_at_end.Get();
    const LoadShard::Latencies& l = s->latencies();
    all.connect.Merge(l.connect);
    all.login.Merge(l.login);
    all.heartbeat_rtt.Merge(l.heartbeat_rtt);
    all.send_ack.Merge(l.send_ack);
    all.end_to_end.Merge(l.end_to_end);
    all.reconnect.Merge(l.reconnect);
    all.lag.Merge(l.lag);
    all.zombie_reap.Merge(l.zombie_reap);
    all.sync.Merge(l.sync);
    all.heartbeat_interval.Merge(l.heartbeat_interval);
    ledgers.push_back(&s->ledger());
  }
  r.ledger = Merge(std::span<const LedgerShard* const>(ledgers.data(), ledgers.size()));
  const EngineConfig& ec = engine.config();
  const uint32_t dpu = std::max<uint32_t>(ec.devices_per_user, 1);
  for (const LostDelivery& l : r.ledger.lost_sample) {
    r.lost.push_back(Report::Lost{l.sender / dpu + ec.first_user_id, l.sender % dpu + 1, l.seq,
                                  engine.WireId(MakeMessageId(l.sender, l.seq)), l.recipient / dpu + ec.first_user_id,
                                  l.recipient % dpu + 1});
  }
  r.elapsed_s = static_cast<double>(engine.end_ns() - engine.start_ns()) / 1e9;
  r.timeline = engine.timeline().points();
  r.timeline_spacing_s = engine.timeline().spacing_s();
  r.latencies = {Summarize("connect", all.connect),
                 Summarize("login", all.login),
                 Summarize("heartbeat_rtt", all.heartbeat_rtt),
                 Summarize("send_ack", all.send_ack),
                 Summarize("end_to_end", all.end_to_end),
                 Summarize("reconnect", all.reconnect),
                 Summarize("sync", all.sync),
                 Summarize("zombie_reap", all.zombie_reap),
                 Summarize("heartbeat_interval", all.heartbeat_interval),
                 Summarize("generator_lag", all.lag)};
  auto& m = r.metrics;
  for (const Plain& p : kPlain) {
    uint64_t total = 0;
    for (const auto& s : engine.shards()) total += p.get(s->counters());
    m[p.name] = static_cast<double>(total);
  }
  m["connected_peak"] = static_cast<double>(engine.online_peak());
  // Everything the run added to the generator's memory (client state, rings, buffers, ledger, histograms),
  // per simulated client.
  m["memory_per_client_bytes"] =
      scenario.clients == 0 ? 0
                            : static_cast<double>(engine.rss_peak() - std::min(engine.rss_peak(), engine.rss_start())) /
                                  static_cast<double>(scenario.clients);
  uint64_t attempts = connects + connect_errors;
  m["connect_attempts"] = static_cast<double>(attempts);
  m["connect_errors"] = static_cast<double>(connect_errors);
  m["connect_errors_pct"] = attempts == 0 ? 0 : 100.0 * static_cast<double>(connect_errors) / attempts;
  m["login_errors"] = static_cast<double>(login_failures);
  m["login_errors_pct"] = connects == 0 ? 0 : 100.0 * static_cast<double>(login_failures) / connects;
  m["reconnects"] = static_cast<double>(reconnects);
  m["sent"] = static_cast<double>(r.ledger.sent);
  m["delivered"] = static_cast<double>(r.ledger.delivered_unique);
  m["lost"] = static_cast<double>(r.ledger.lost);
  m["lost_pct"] =
      r.ledger.expected_deliveries == 0 ? 0 : 100.0 * static_cast<double>(r.ledger.lost) / r.ledger.expected_deliveries;
  m["duplicates"] = static_cast<double>(r.ledger.duplicates);
  m["reordered"] = static_cast<double>(r.ledger.out_of_order);
  m["send_errors"] = static_cast<double>(r.ledger.inflight);
  for (const Report::Latency& l : r.latencies) {
    std::string base = l.name == "heartbeat_rtt"   ? "heartbeat_rtt"
                       : l.name == "end_to_end"    ? "e2e"
                       : l.name == "send_ack"      ? "ack"
                       : l.name == "generator_lag" ? "generator_lag"
                                                   : l.name;
    if (l.count == 0) continue;
    m[base + "_p50_ms"] = l.p50;
    m[base + "_p99_ms"] = l.p99;
    m[base + "_p999_ms"] = l.p999;
    m[base + "_max_ms"] = l.max;
  }
  m["pings"] = static_cast<double>(pings);
  m["echo_sent"] = static_cast<double>(sent);
  m["echo_received"] = static_cast<double>(delivered);
  m["pongs"] = static_cast<double>(pongs);
  m["protocol_errors"] = static_cast<double>(protocol_errors);
  m["unclean_closes"] = static_cast<double>(unclean);
  m["storm_drops"] = static_cast<double>(storm_drops);
  m["online_at_end"] = static_cast<double>(online_at_end);
  double lag_p99 = static_cast<double>(all.lag.ValueAtPercentile(99)) / 1e6;
  if (all.lag.Count() > 0 && lag_p99 > 100) {
    r.valid = false;
    r.invalid_reason = absl::StrFormat(
        "the generator ran its timers %.1f ms late at p99 (bound 100 ms): it was saturated, so latencies "
        "measure the generator, not the server",
        lag_p99);
  }
  for (const Threshold& t : scenario.thresholds) {
    ThresholdResult tr;
    tr.text = ThresholdText(t);
    auto it = m.find(t.metric);
    tr.measured = it != m.end();
    tr.observed = tr.measured ? it->second : 0;
    tr.held = tr.measured && ThresholdHolds(t, tr.observed);
    r.thresholds.push_back(tr);
  }
  return r;
}

void CollectMetrics(const Engine& engine, const Scenario& scenario, const RunLabels& run,
                    std::vector<prometheus::MetricFamily>* out) {
  const std::vector<prometheus::ClientMetric::Label> labels = {{"run_id", run.run_id}};
  struct Item {
    const char* name;
    const char* help;
    uint64_t (*get)(const ShardCounters&);
  };
  static const Item kCounters[] = {
      {"connects_total", "TCP connections established", [](const ShardCounters& c) { return c.connects.Get(); }},
      {"connect_errors_total", "Connection attempts that failed",
       [](const ShardCounters& c) { return c.connect_errors.Get(); }},
      {"logins_total", "Successful logins", [](const ShardCounters& c) { return c.logins.Get(); }},
      {"login_failures_total", "Logins refused or timed out",
       [](const ShardCounters& c) { return c.login_failures.Get(); }},
      {"messages_sent_total", "SEND frames sent", [](const ShardCounters& c) { return c.sent.Get(); }},
      {"messages_acked_total", "SEND_ACKs received", [](const ShardCounters& c) { return c.acked.Get(); }},
      {"messages_delivered_total", "PUSHes received (first delivery)",
       [](const ShardCounters& c) { return c.delivered.Get(); }},
      {"messages_duplicated_total", "PUSHes of messages already delivered",
       [](const ShardCounters& c) { return c.duplicates.Get(); }},
      {"payload_bytes_total", "Message payload bytes sent", [](const ShardCounters& c) { return c.payload_bytes.Get(); }},
      {"pings_total", "PINGs sent", [](const ShardCounters& c) { return c.pings.Get(); }},
      {"pongs_total", "PONGs received", [](const ShardCounters& c) { return c.pongs.Get(); }},
      {"reconnects_total", "Reconnect attempts scheduled", [](const ShardCounters& c) { return c.reconnects.Get(); }},
      {"syncs_total", "SYNCs that caught an inbox up after a reconnect",
       [](const ShardCounters& c) { return c.syncs.Get(); }},
      {"protocol_errors_total", "Unexpected or malformed frames",
       [](const ShardCounters& c) { return c.protocol_errors.Get(); }},
      {"sends_refused_total", "SEND_ACKs with a non-zero status (the message was not stored)",
       [](const ShardCounters& c) { return c.sends_refused.Get(); }},
      {"disconnects_total", "Connections lost that the scenario did not drop",
       [](const ShardCounters& c) { return c.disconnects.Get(); }},
      {"kicks_total", "KICKs received from the gateway", [](const ShardCounters& c) { return c.kicks.Get(); }},
      {"heartbeat_failures_total", "PINGs left unanswered past the pong timeout",
       [](const ShardCounters& c) { return c.pong_timeouts.Get(); }},
      {"flaps_total", "Simulated abrupt connection losses", [](const ShardCounters& c) { return c.flaps.Get(); }},
      {"stalls_total", "Simulated network stalls", [](const ShardCounters& c) { return c.stalls.Get(); }},
      {"nat_blackholes_total", "Simulated NAT bindings that expired silently",
       [](const ShardCounters& c) { return c.nat_blackholes.Get(); }},
      {"zombies_total", "Connections made half-open by the network simulation",
       [](const ShardCounters& c) { return c.zombies.Get(); }},
      {"zombies_reaped_total", "Half-open connections the gateway closed",
       [](const ShardCounters& c) { return c.zombies_reaped.Get(); }},
      {"leaves_total", "Clients taken down by drain and spike phases",
       [](const ShardCounters& c) { return c.leaves.Get(); }},
      {"storm_drops_total", "Connections dropped by reconnect storms and churn",
       [](const ShardCounters& c) { return c.storm_drops.Get(); }},
  };
  for (const Item& item : kCounters) {
    auto f = metrics::CounterFamily(std::string("longlink_loadgen_") + item.name, item.help);
    uint64_t total = 0;
    for (const auto& s : engine.shards()) total += item.get(s->counters());
    metrics::AddSample(&f, static_cast<double>(total), labels);
    out->push_back(std::move(f));
  }
  int64_t connected = 0, online = 0;
  for (const auto& s : engine.shards()) {
    connected += s->counters().connected.Get();
    online += s->counters().online.Get();
  }
  uint64_t started = engine.started_ns(), now = core::MonoNanos();
  uint64_t target = started == 0 || now < started || now - started >= engine.config().duration_ms * 1000000ull
                        ? 0
                        : engine.TargetOnline((now - started) / 1000000ull);
  bool finished = engine.run_finished();
  struct Gauge {
    const char* name;
    const char* help;
    double value;
  };
  const Gauge gauges[] = {
      {"connected", "Clients with an open connection", static_cast<double>(std::max<int64_t>(0, connected))},
      {"online", "Clients logged in", static_cast<double>(std::max<int64_t>(0, online))},
      {"target_online", "Clients the scenario's phases want online now (0 once the run has finished)",
       finished ? 0.0 : static_cast<double>(target)},
      {"clients", "Clients the scenario simulates", static_cast<double>(scenario.clients)},
      {"target_connect_rate", "The scenario's connect rate (connections per second)", scenario.connect_rate},
      {"run_finished", "1 once the run is over and the report is built", finished ? 1.0 : 0.0},
      {"run_valid", "0 when the generator fell behind its own timers (its latencies measure itself); 1 otherwise",
       engine.final_valid() ? 1.0 : 0.0},
      {"run_passed", "0 when the finished run violated a threshold or was invalid; 1 otherwise",
       engine.final_passed() ? 1.0 : 0.0},
      {"messages_lost", "Acknowledged deliveries the ledger found missing (known when the run finishes, 0 before)",
       static_cast<double>(engine.final_lost())},
      {"messages_out_of_order",
       "Deliveries the ledger found out of order (known when the run finishes, 0 before)",
       static_cast<double>(engine.final_out_of_order())},
  };
  for (const Gauge& g : gauges) {
    auto f = metrics::GaugeFamily(std::string("longlink_loadgen_") + g.name, g.help);
    metrics::AddSample(&f, g.value, labels);
    out->push_back(std::move(f));
  }
  auto info = metrics::GaugeFamily("longlink_loadgen_run_info", "Always 1: the run and its scenario");
  metrics::AddSample(&info, 1, {{"run_id", run.run_id}, {"scenario", run.scenario}});
  out->push_back(std::move(info));

  struct Hist {
    const char* name;
    const char* help;
    const LoadShard::Timing LoadShard::Latencies::*timing;
  };
  static const Hist kHists[] = {
      {"connect_seconds", "TCP connect time", &LoadShard::Latencies::connect},
      {"login_seconds", "LOGIN to LOGIN_ACK", &LoadShard::Latencies::login},
      {"heartbeat_rtt_seconds", "PING to PONG", &LoadShard::Latencies::heartbeat_rtt},
      {"send_ack_seconds", "SEND to SEND_ACK", &LoadShard::Latencies::send_ack},
      {"end_to_end_seconds", "SEND to the recipient's PUSH", &LoadShard::Latencies::end_to_end},
      {"reconnect_seconds", "Connection loss to logged in again", &LoadShard::Latencies::reconnect},
      {"sync_seconds", "SYNC round trip after a reconnect", &LoadShard::Latencies::sync},
      {"zombie_reap_seconds", "Half-open connection made to the gateway closing it",
       &LoadShard::Latencies::zombie_reap},
      {"generator_lag_seconds", "How late the generator ran its timers (past 100 ms at p99 the run is invalid)",
       &LoadShard::Latencies::lag},
  };
  for (const Hist& h : kHists) {
    auto f = metrics::HistogramFamily(std::string("longlink_loadgen_") + h.name, h.help);
    std::vector<uint64_t> counts(metrics::LatencyBuckets().upper_bounds.size() + 1, 0);
    double sum = 0;
    for (const auto& s : engine.shards()) (s->latencies().*h.timing).live.AddTo(&counts, &sum);
    metrics::AddHistogram(&f, metrics::LatencyBuckets().upper_bounds, counts, sum, labels);
    out->push_back(std::move(f));
  }
  metrics::CollectProcess(out);
}

int ReportExitCode(const Report& r) {
  if (!r.valid) return kExitSaturated;
  for (const ThresholdResult& t : r.thresholds) {
    if (!t.held) return kExitThresholdsViolated;
  }
  return kExitOk;
}

std::string RenderText(const Report& r, const Scenario& s) {
  std::ostringstream o;
  const LedgerTotals& l = r.ledger;
  o << "longlink-loadgen report\n";
  o << absl::StrFormat("  scenario      %s: %d clients, %d shards, %.0f connects/s, %.1f s, %.3g msg/s per client\n",
                       s.name.empty() ? "(flags)" : s.name, s.clients, s.shards, s.connect_rate, r.elapsed_s,
                       s.messaging.rate_per_client);
  o << "  machine       " << MachineDescription() << "\n";
  auto& m = r.metrics;
  o << absl::StrFormat(
      "  connections   %.0f attempts, %.0f errors, %.0f login errors, %.0f reconnects, %.0f protocol errors, "
      "%.0f closes unfinished at the end; %.0f dropped by storms and churn; %.0f online at the end of the run\n",
      m.at("connect_attempts"), m.at("connect_errors"), m.at("login_errors"), m.at("reconnects"),
      m.at("protocol_errors"), m.at("unclean_closes"), m.at("storm_drops"), m.at("online_at_end"));
  o << absl::StrFormat("  memory        %.0f bytes of generator memory per simulated client (peak RSS growth)\n",
                       m.at("memory_per_client_bytes"));
  o << absl::StrFormat(
      "  sessions      peak %.0f online, %.0f left by the scenario, %.0f lost connections, %.0f kicks, "
      "%.0f heartbeat failures, heartbeat interval grew %.0f and backed off %.0f times, %.0f background "
      "switches\n",
      m.at("connected_peak"), m.at("leaves"), m.at("disconnects"), m.at("kicks"), m.at("heartbeat_failures"),
      m.at("heartbeat_grows"), m.at("heartbeat_backoffs"), m.at("background_switches"));
  if (!s.network.mix.empty()) {
    o << absl::StrFormat(
        "  network       %.0f flaps, %.0f stalls, %.0f NAT black holes, %.0f zombies (%.0f reaped by the "
        "gateway, %.0f not reaped by the end)\n",
        m.at("flaps"), m.at("stalls"), m.at("nat_blackholes"), m.at("zombies"), m.at("zombies_reaped"),
        m.at("zombies_unreaped"));
  }
  if (s.target.protocol == Transport::kWebSocketEcho) {
    o << absl::StrFormat("  echo          %.0f messages sent, %.0f echoed back\n", m.at("echo_sent"), m.at("echo_received"));
  }
  o << absl::StrFormat(
      "  messages      %d sent, %d acked, %d expected deliveries, %d delivered, %d lost, %d duplicates, "
      "%d out of order, %d unacked at the end, %.0f refused (not stored; retryable)\n",
      l.sent, l.acked, l.expected_deliveries, l.delivered_unique, l.lost, l.duplicates, l.out_of_order, l.inflight,
      m.at("sends_refused"));
  for (const Report::Lost& x : r.lost) {
    o << absl::StrFormat("  lost          user %d device %d message %d (client_msg_id %d) to user %d device %d\n",
                         x.sender_user, x.sender_device, x.seq, x.client_msg_id, x.recipient_user,
                         x.recipient_device);
  }
  if (l.lost > r.lost.size()) o << absl::StrFormat("  lost          ... and %d more\n", l.lost - r.lost.size());
  if (r.elapsed_s > 0) {
    o << absl::StrFormat("  throughput    %.0f msg/s sent, %.0f msg/s delivered\n",
                         static_cast<double>(l.sent) / r.elapsed_s,
                         static_cast<double>(l.delivered_unique) / r.elapsed_s);
  }
  o << "  timings (ms)          count       p50       p90       p99     p99.9       max\n";
  for (const Report::Latency& lat : r.latencies) {
    o << absl::StrFormat("  %-16s %10d %9.2f %9.2f %9.2f %9.2f %9.2f\n", lat.name, lat.count, lat.p50, lat.p90, lat.p99,
                         lat.p999, lat.max);
  }
  for (const ThresholdResult& t : r.thresholds) {
    o << absl::StrFormat("  threshold     %-28s %s (observed %s)\n", t.text,
                         !t.measured ? "NOT MEASURED"
                         : t.held    ? "ok"
                                     : "VIOLATED",
                         t.measured ? absl::StrFormat("%.3f", t.observed) : "-");
  }
  if (!r.valid) o << "  RUN INVALID   " << r.invalid_reason << "\n";
  o << "  result        "
    << (ReportExitCode(r) == kExitOk          ? "ok"
        : ReportExitCode(r) == kExitSaturated ? "invalid"
                                              : "thresholds violated")
    << "\n";
  return o.str();
}

std::string RenderJson(const Report& r, const Scenario& s) {
  std::ostringstream o;
  o << "{\n  \"scenario\": " << JsonString(ScenarioToYaml(s, /*redact_secret=*/true)) << ",\n";
  o << "  \"machine\": " << JsonString(MachineDescription()) << ",\n";
  o << "  \"elapsed_seconds\": " << JsonNumber(r.elapsed_s) << ",\n";
  o << "  \"valid\": " << (r.valid ? "true" : "false") << ",\n";
  o << "  \"invalid_reason\": " << JsonString(r.invalid_reason) << ",\n";
  o << "  \"exit_code\": " << ReportExitCode(r) << ",\n";
  const LedgerTotals& l = r.ledger;
  o << "  \"ledger\": {\"sent\": " << l.sent << ", \"acked\": " << l.acked << ", \"inflight\": " << l.inflight
    << ", \"expected_deliveries\": " << l.expected_deliveries << ", \"delivered_unique\": " << l.delivered_unique
    << ", \"duplicates\": " << l.duplicates << ", \"out_of_order\": " << l.out_of_order << ", \"lost\": " << l.lost
    << ", \"delivered_unacked\": " << l.delivered_unacked
    << ", \"delivered_to_non_recipient\": " << l.delivered_to_non_recipient << ", \"lost_sample\": [";
  for (size_t i = 0; i < r.lost.size(); ++i) {
    const Report::Lost& x = r.lost[i];
    o << (i ? ", " : "") << "{\"sender_user\": " << x.sender_user << ", \"sender_device\": " << x.sender_device
      << ", \"seq\": " << x.seq << ", \"client_msg_id\": " << x.client_msg_id << ", \"recipient_user\": "
      << x.recipient_user << ", \"recipient_device\": " << x.recipient_device << "}";
  }
  o << "]},\n";
  o << "  \"latency_ms\": {";
  for (size_t i = 0; i < r.latencies.size(); ++i) {
    const Report::Latency& lat = r.latencies[i];
    o << (i ? ", " : "") << JsonString(lat.name) << ": {\"count\": " << lat.count
      << ", \"p50\": " << JsonNumber(lat.p50) << ", \"p90\": " << JsonNumber(lat.p90)
      << ", \"p99\": " << JsonNumber(lat.p99) << ", \"p999\": " << JsonNumber(lat.p999)
      << ", \"max\": " << JsonNumber(lat.max) << "}";
  }
  o << "},\n  \"metrics\": {";
  bool first = true;
  for (const auto& [k, v] : r.metrics) {
    o << (first ? "" : ", ") << JsonString(k) << ": " << JsonNumber(v);
    first = false;
  }
  o << "},\n  \"thresholds\": [";
  for (size_t i = 0; i < r.thresholds.size(); ++i) {
    const ThresholdResult& t = r.thresholds[i];
    o << (i ? ", " : "") << "{\"threshold\": " << JsonString(t.text)
      << ", \"measured\": " << (t.measured ? "true" : "false") << ", \"observed\": " << JsonNumber(t.observed)
      << ", \"held\": " << (t.held ? "true" : "false") << "}";
  }
  o << "]\n}\n";
  return o.str();
}

}  // namespace longlink::loadgen
