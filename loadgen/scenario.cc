// The scenario's vocabulary and its small public functions: the built-in network profiles, the threshold
// metrics and how a threshold is parsed, printed and judged, durations as the file writes them, and the
// scalar helpers every scenario file uses (scenario_internal.h). Reading the YAML, checking a scenario,
// writing it back and the flag overrides each have their own file (scenario_read.cc, scenario_validate.cc,
// scenario_write.cc, scenario_flags.cc).
#include "loadgen/scenario.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "loadgen/scenario_internal.h"

namespace longlink::loadgen {
namespace {

using scenario_internal::FieldError;
using scenario_internal::FormatDouble;
using scenario_internal::kComparisons;
using scenario_internal::kPhaseKinds;
using scenario_internal::Named;
using scenario_internal::NameOf;
using scenario_internal::Quote;

// ---------------------------------------------------------------------------------------------------------
// Built-in network profiles (the figures and their sources are in docs/loadgen-scenarios.md)

NetworkProfile MakeProfile(int lat_up_ms, int jit_up_ms, int lat_down_ms, int jit_down_ms, uint64_t bw_up,
                           uint64_t bw_down, double stall_p, int stall_ms, uint32_t segment, double flaps,
                           double zombies, int nat_s) {
  NetworkProfile p;
  p.latency_up = absl::Milliseconds(lat_up_ms);
  p.jitter_up = absl::Milliseconds(jit_up_ms);
  p.latency_down = absl::Milliseconds(lat_down_ms);
  p.jitter_down = absl::Milliseconds(jit_down_ms);
  p.bandwidth_up = bw_up;
  p.bandwidth_down = bw_down;
  p.stall_probability = stall_p;
  p.stall_duration = absl::Milliseconds(stall_ms);
  p.max_segment = segment;
  p.flaps_per_hour = flaps;
  p.zombies_per_hour = zombies;
  p.nat_idle_timeout = absl::Seconds(nat_s);
  return p;
}

constexpr std::array<absl::string_view, 7> kProfileNames = {"none", "wifi", "4g", "3g", "edge", "gprs", "lossy"};

const std::array<NetworkProfile, 7>& Profiles() {
  static const std::array<NetworkProfile, 7> profiles = {
      NetworkProfile{},
      //          lat/jit up  lat/jit down  up B/s     down B/s   stall        seg   flap zomb  NAT s
      MakeProfile(10, 5, 10, 5, 2'500'000, 6'250'000, 0.001, 300, 0, 0.5, 0.1, 1800),
      MakeProfile(25, 10, 25, 10, 625'000, 2'500'000, 0.002, 500, 1400, 1, 0.2, 600),
      MakeProfile(100, 40, 100, 40, 62'500, 250'000, 0.005, 1000, 1400, 2, 0.5, 300),
      MakeProfile(250, 100, 250, 100, 12'500, 25'000, 0.01, 2000, 536, 4, 1, 300),
      MakeProfile(500, 200, 500, 200, 2'500, 5'000, 0.02, 3000, 536, 6, 2, 300),
      MakeProfile(150, 100, 150, 100, 62'500, 125'000, 0.05, 2000, 64, 30, 10, 120),
  };
  return profiles;
}

// ---------------------------------------------------------------------------------------------------------
// Threshold metrics

constexpr ThresholdMetric kMetrics[] = {
    {"connect_attempts", "TCP connections attempted"},
    {"connect_errors", "connection attempts that failed (refused, timed out, reset before LOGIN_ACK)"},
    {"connect_errors_pct", "connect_errors as a percentage of connect_attempts"},
    {"connect_p50_ms", "TCP connect time, median"},
    {"connect_p99_ms", "TCP connect time, 99th percentile"},
    {"login_errors", "LOGINs answered with a non-zero status or not answered"},
    {"login_errors_pct", "login_errors as a percentage of LOGINs sent"},
    {"login_p50_ms", "LOGIN to LOGIN_ACK, median"},
    {"login_p99_ms", "LOGIN to LOGIN_ACK, 99th percentile"},
    {"login_p999_ms", "LOGIN to LOGIN_ACK, 99.9th percentile"},
    {"connected_peak", "most clients logged in at the same time"},
    {"disconnects", "connections closed by the gateway or the network that the scenario did not drop"},
    {"kicks", "KICK frames received"},
    {"reconnects", "reconnections that logged in again"},
    {"reconnect_p99_ms", "from losing a connection to being logged in again, 99th percentile"},
    {"heartbeat_failures",
     "PINGs whose PONG did not arrive within heartbeat.pong_timeout (the client then reconnects)"},
    {"heartbeat_rtt_p99_ms", "PING to PONG, 99th percentile"},
    {"sent", "SEND frames sent"},
    {"send_errors", "SENDs answered with a non-zero SEND_ACK status or not answered"},
    {"ack_p99_ms", "SEND to SEND_ACK, 99th percentile"},
    {"delivered", "PUSHes of generated messages received (one per receiving device)"},
    {"lost", "accepted messages some connected recipient device never received by the end of the run"},
    {"lost_pct", "lost as a percentage of expected deliveries"},
    {"duplicates", "deliveries of a message a device had already received"},
    {"reordered", "deliveries that arrived after a later message from the same sender"},
    {"e2e_p50_ms", "SEND to PUSH at the recipient, median"},
    {"e2e_p99_ms", "SEND to PUSH at the recipient, 99th percentile"},
    {"e2e_p999_ms", "SEND to PUSH at the recipient, 99.9th percentile"},
    {"e2e_max_ms", "SEND to PUSH at the recipient, maximum"},
    {"sync_p99_ms", "SYNC to SYNC_DONE, 99th percentile"},
    {"zombie_reap_p50_ms", "from a connection going half-open to the gateway closing it, median"},
    {"zombie_reap_p99_ms", "from a connection going half-open to the gateway closing it, 99th percentile"},
    {"zombie_reap_max_ms", "from a connection going half-open to the gateway closing it, maximum"},
    {"zombies_unreaped", "half-open connections the gateway had not closed by the end of the run"},
    {"zombies", "connections the network simulation made half-open"},
    {"zombies_reaped", "half-open connections the gateway closed"},
    {"flaps", "connections the network simulation dropped abruptly"},
    {"stalls", "stalls of simulated links"},
    {"nat_blackholes", "connections silently black-holed by a simulated NAT idle timeout"},
    {"heartbeat_grows", "times an adaptive heartbeat interval grew"},
    {"heartbeat_backoffs", "times an adaptive heartbeat interval backed off after a missed PONG"},
    {"background_switches", "foreground/background switches of simulated apps"},
    {"leaves", "clients taken down by spike and drain phases"},
    {"storm_drops", "connections dropped by storm and churn phases"},
    {"online_at_end", "clients logged in when the run ended"},
    {"syncs", "SYNC requests sent"},
    {"memory_per_client_bytes", "growth of the generator's resident memory over the run, per simulated client"},
    {"sync_gaps", "SYNCs started by a gap in the inbox sequence"},
    {"generator_lag_p99_ms", "how late the generator ran its own timers, 99th percentile"},
};

// Other spellings accepted in thresholds; the canonical name is what the report and ScenarioToYaml use.
constexpr std::pair<absl::string_view, absl::string_view> kMetricAliases[] = {
    {"p50_e2e_ms", "e2e_p50_ms"},
    {"p99_e2e_ms", "e2e_p99_ms"},
    {"p999_e2e_ms", "e2e_p999_ms"},
    {"max_e2e_ms", "e2e_max_ms"},
};

}  // namespace

namespace scenario_internal {

// ---------------------------------------------------------------------------------------------------------
// Scalars and messages

std::string FormatDouble(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  if (ec != std::errc()) return absl::StrCat(v);
  return std::string(buf, end);
}

std::string Quote(absl::string_view s) {
  constexpr size_t kMax = 60;
  if (s.size() > kMax) return absl::StrCat("\"", absl::CHexEscape(s.substr(0, kMax)), "...\"");
  return absl::StrCat("\"", absl::CHexEscape(s), "\"");
}

absl::Status FieldError(absl::string_view path, absl::string_view problem) {
  if (path.empty()) return absl::InvalidArgumentError(problem);
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", problem));
}

std::string Count(double v) {
  return v == std::floor(v) && std::fabs(v) < 1e15 ? absl::StrCat(int64_t(v)) : FormatDouble(v);
}

bool ParseDurationText(absl::string_view text, absl::Duration* out, std::string* problem) {
  text = absl::StripAsciiWhitespace(text);
  absl::Duration d;
  if (!absl::ParseDuration(text, &d) || d == absl::InfiniteDuration() || d == -absl::InfiniteDuration()) {
    *problem = absl::StrCat("expected a duration like 30s, got ", Quote(text));
    return false;
  }
  if (d < absl::ZeroDuration()) {
    *problem = absl::StrCat("must not be negative, got ", Quote(text));
    return false;
  }
  if (d % absl::Milliseconds(1) != absl::ZeroDuration()) {
    *problem = absl::StrCat("must be a whole number of milliseconds, got ", Quote(text));
    return false;
  }
  *out = d;
  return true;
}

absl::Status ParseEndpoint(absl::string_view text, absl::string_view path, Endpoint* out) {
  const std::string bad = absl::StrCat("expected host:port (IPv6 as [addr]:port), got ", Quote(text));
  text = absl::StripAsciiWhitespace(text);
  size_t colon = text.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) return FieldError(path, bad);
  absl::string_view host = text.substr(0, colon);
  absl::string_view port = text.substr(colon + 1);
  if (absl::ConsumePrefix(&host, "[")) {
    if (!absl::ConsumeSuffix(&host, "]") || host.empty()) return FieldError(path, bad);
  } else if (host.find(':') != absl::string_view::npos) {
    return FieldError(path, absl::StrCat("write IPv6 addresses in brackets ([addr]:port), got ", Quote(text)));
  }
  uint32_t p = 0;
  if (port.empty() || !std::all_of(port.begin(), port.end(), absl::ascii_isdigit) || !absl::SimpleAtoi(port, &p)) {
    return FieldError(path, bad);
  }
  if (p < 1 || p > 65535) return FieldError(path, absl::StrCat("port must be 1..65535, got ", Quote(port)));
  out->host = std::string(host);
  out->port = static_cast<uint16_t>(p);
  return absl::OkStatus();
}

std::string EndpointText(const Endpoint& e) {
  if (e.host.find(':') != std::string::npos) return absl::StrCat("[", e.host, "]:", e.port);
  return absl::StrCat(e.host, ":", e.port);
}

bool IsIpLiteral(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// ---------------------------------------------------------------------------------------------------------
// Phases and profile parameters

const std::vector<absl::string_view>& PhaseKeys(PhaseKind kind) {
  static const auto* keys = new std::map<PhaseKind, std::vector<absl::string_view>>{
      {PhaseKind::kRamp, {"kind", "name", "duration", "target", "connect_rate"}},
      {PhaseKind::kHold, {"kind", "name", "duration"}},
      {PhaseKind::kSpike, {"kind", "name", "duration", "clients", "connect_rate"}},
      {PhaseKind::kChurn, {"kind", "name", "duration", "percent", "drop"}},
      {PhaseKind::kStorm, {"kind", "name", "duration", "percent", "drop"}},
      {PhaseKind::kDrain, {"kind", "name", "duration", "target", "drop"}},
  };
  return keys->at(kind);
}

absl::Duration RampTime(uint64_t n, double rate) {
  if (rate <= 0) return absl::Seconds(1);
  return absl::Seconds(std::max<double>(1, std::ceil(static_cast<double>(n) / rate - 1e-9)));
}

std::vector<absl::string_view> ProfileFieldNames() {
  std::vector<absl::string_view> names;
  for (const ProfileField& f : kProfileFields) names.push_back(f.name);
  return names;
}

bool SameField(const ProfileField& f, const NetworkProfile& a, const NetworkProfile& b) {
  if (f.duration != nullptr) return a.*f.duration == b.*f.duration;
  if (f.u64 != nullptr) return a.*f.u64 == b.*f.u64;
  if (f.u32 != nullptr) return a.*f.u32 == b.*f.u32;
  return a.*f.real == b.*f.real;
}

std::string FieldText(const ProfileField& f, const NetworkProfile& p) {
  if (f.duration != nullptr) return FormatScenarioDuration(p.*f.duration);
  if (f.u64 != nullptr) return absl::StrCat(p.*f.u64);
  if (f.u32 != nullptr) return absl::StrCat(p.*f.u32);
  return FormatDouble(p.*f.real);
}

std::string KnownProfiles() { return absl::StrJoin(kProfileNames, ", "); }

}  // namespace scenario_internal

// -----------------------------------------------------------------------------------------------------------
// Public

absl::string_view PhaseKindName(PhaseKind kind) { return NameOf(kPhaseKinds, kind); }

absl::string_view ComparisonSymbol(Comparison op) { return NameOf(kComparisons, op); }

std::string FormatScenarioDuration(absl::Duration d) {
  const int64_t ms = absl::ToInt64Milliseconds(d);
  if (ms == 0) return "0s";
  if (ms % 3'600'000 == 0) return absl::StrCat(ms / 3'600'000, "h");
  if (ms % 60'000 == 0) return absl::StrCat(ms / 60'000, "m");
  if (ms % 1000 == 0) return absl::StrCat(ms / 1000, "s");
  return absl::StrCat(ms, "ms");
}

const NetworkProfile* FindBuiltinProfile(absl::string_view name) {
  for (size_t i = 0; i < kProfileNames.size(); ++i) {
    if (kProfileNames[i] == name) return &Profiles()[i];
  }
  return nullptr;
}

absl::Span<const absl::string_view> BuiltinProfileNames() { return kProfileNames; }

absl::Span<const ThresholdMetric> ThresholdMetrics() { return kMetrics; }

absl::StatusOr<Threshold> ParseThreshold(absl::string_view text) {
  const std::string bad =
      absl::StrCat("expected \"<metric> <op> <number>\" (op one of < <= > >= == !=), got ", Quote(text));
  absl::string_view rest = absl::StripAsciiWhitespace(text);
  size_t n = 0;
  while (n < rest.size() && (absl::ascii_isalnum(rest[n]) || rest[n] == '_')) ++n;
  if (n == 0) return absl::InvalidArgumentError(bad);
  absl::string_view metric = rest.substr(0, n);
  rest = absl::StripLeadingAsciiWhitespace(rest.substr(n));
  Threshold t;
  bool have_op = false;
  for (const Named<Comparison>& c : kComparisons) {
    if (absl::ConsumePrefix(&rest, c.name)) {
      t.op = c.value;
      have_op = true;
      break;
    }
  }
  rest = absl::StripAsciiWhitespace(rest);
  if (!have_op || rest.empty() || !absl::SimpleAtod(rest, &t.value) || !std::isfinite(t.value)) {
    return absl::InvalidArgumentError(bad);
  }
  for (const auto& [alias, canonical] : kMetricAliases) {
    if (metric == alias) metric = canonical;
  }
  for (const ThresholdMetric& m : kMetrics) {
    if (m.name == metric) {
      t.metric = std::string(metric);
      return t;
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown metric ", Quote(metric), " (docs/loadgen-scenarios.md lists the metrics)"));
}

std::string ThresholdText(const Threshold& t) {
  return absl::StrCat(t.metric, " ", ComparisonSymbol(t.op), " ", FormatDouble(t.value));
}

bool ThresholdHolds(const Threshold& t, double observed) {
  switch (t.op) {
    case Comparison::kLess:
      return observed < t.value;
    case Comparison::kLessEqual:
      return observed <= t.value;
    case Comparison::kGreater:
      return observed > t.value;
    case Comparison::kGreaterEqual:
      return observed >= t.value;
    case Comparison::kEqual:
      return observed == t.value;
    case Comparison::kNotEqual:
      return observed != t.value;
  }
  return false;
}

absl::StatusOr<std::string> ReadAuthSecret(const Auth& auth) {
  if (auth.secret_file.empty()) return auth.secret;
  std::ifstream in(auth.secret_file);
  if (!in) {
    return FieldError("auth.secret_file", absl::StrCat("cannot read ", auth.secret_file, ": ", std::strerror(errno)));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::string secret(absl::StripTrailingAsciiWhitespace(ss.str()));
  if (secret.empty()) return FieldError("auth.secret_file", absl::StrCat(auth.secret_file, " is empty"));
  return secret;
}

}  // namespace longlink::loadgen
