#include "loadgen/scenario.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <map>
#include <optional>
#include <sstream>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/status.h"
#include "yaml-cpp/yaml.h"

// Every flag is a string, empty when not given, so an unset flag leaves the scenario file's value alone and
// a bad value goes through the same checks as the file, reported with the flag's name and exit status 2.
ABSL_FLAG(std::string, scenario, "", "YAML scenario file (docs/loadgen-scenarios.md); the flags below override it");
ABSL_FLAG(std::string, target, "", "Comma-separated host:port list of gateway addresses to spread connections over");
ABSL_FLAG(std::string, source_addresses, "", "Comma-separated local addresses to connect from");
ABSL_FLAG(std::string, clients, "", "Simulated client connections");
ABSL_FLAG(std::string, shards, "", "Generator threads (0 = number of cores)");
ABSL_FLAG(std::string, connect_rate, "", "New connections per second");
ABSL_FLAG(std::string, duration, "", "Run length, e.g. 30s, 2m");
ABSL_FLAG(std::string, seed, "", "Random seed");
ABSL_FLAG(std::string, rate, "", "Messages per second per connected client");
ABSL_FLAG(std::string, auth, "", "none or token");
ABSL_FLAG(std::string, auth_secret, "", "Secret for minting tokens with --auth=token");
ABSL_FLAG(std::string, auth_secret_file, "", "File holding the secret for --auth=token");
ABSL_FLAG(std::string, report_json, "", "Write the final report as JSON to this file");
ABSL_FLAG(std::string, metrics_port, "", "Generator's Prometheus port (-1 off, 0 any)");
ABSL_FLAG(std::string, live_interval, "", "Print a status line this often (0s: never)");
ABSL_FLAG(std::string, protocol, "", "longlink (TCP), ws (longlink over WebSocket) or ws-echo (any WebSocket echo server)");
ABSL_FLAG(std::string, ws_path, "", "Request path of the WebSocket upgrade");

namespace longlink::loadgen {
namespace {

// ---------------------------------------------------------------------------------------------------------
// Names

template <typename E>
struct Named {
  E value;
  absl::string_view name;
};

constexpr Named<Protocol> kProtocols[] = {
    {Protocol::kLongLink, "longlink"}, {Protocol::kWebSocket, "ws"}, {Protocol::kWebSocketEcho, "ws-echo"}};
constexpr Named<AuthMode> kAuthModes[] = {{AuthMode::kNone, "none"}, {AuthMode::kToken, "token"}};
constexpr Named<PhaseKind> kPhaseKinds[] = {{PhaseKind::kRamp, "ramp"},   {PhaseKind::kHold, "hold"},
                                            {PhaseKind::kSpike, "spike"}, {PhaseKind::kChurn, "churn"},
                                            {PhaseKind::kStorm, "storm"}, {PhaseKind::kDrain, "drain"}};
constexpr Named<DropMode> kDropModes[] = {
    {DropMode::kLogout, "logout"}, {DropMode::kClose, "close"}, {DropMode::kReset, "reset"}};
constexpr Named<HeartbeatMode> kHeartbeatModes[] = {{HeartbeatMode::kFixed, "fixed"},
                                                    {HeartbeatMode::kAdaptive, "adaptive"}};
constexpr Named<TargetSelection> kTargetSelections[] = {{TargetSelection::kSelf, "self"},
                                                        {TargetSelection::kRandomUser, "random_user"},
                                                        {TargetSelection::kGroups, "groups"}};
constexpr Named<PayloadDistribution> kDistributions[] = {{PayloadDistribution::kFixed, "fixed"},
                                                         {PayloadDistribution::kUniform, "uniform"},
                                                         {PayloadDistribution::kLognormal, "lognormal"}};
// Two-character operators first so "<=" is not read as "<" followed by "=".
constexpr Named<Comparison> kComparisons[] = {{Comparison::kLessEqual, "<="}, {Comparison::kGreaterEqual, ">="},
                                              {Comparison::kEqual, "=="},     {Comparison::kNotEqual, "!="},
                                              {Comparison::kLess, "<"},       {Comparison::kGreater, ">"}};

template <typename E, size_t N>
absl::string_view NameOf(const Named<E> (&table)[N], E value) {
  for (const Named<E>& n : table) {
    if (n.value == value) return n.name;
  }
  return "?";
}

template <typename E, size_t N>
std::string Choices(const Named<E> (&table)[N]) {
  std::string out;
  for (size_t i = 0; i < N; ++i) {
    absl::StrAppend(&out, i == 0 ? "" : (i + 1 == N ? " or " : ", "), table[i].name);
  }
  return out;
}

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
    {"heartbeat_failures", "PINGs whose PONG did not arrive within heartbeat.pong_timeout (the client then reconnects)"},
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

// ---------------------------------------------------------------------------------------------------------
// Scalars

constexpr uint64_t kMaxClients = 100'000'000;
constexpr uint32_t kMaxShards = 1024;
// A SEND frame is 33 bytes plus the payload, and the gateway's --max-frame-bytes is at most 16 MiB.
constexpr uint32_t kMaxPayload = (16u << 20) - 33;
constexpr absl::Duration kMaxDuration = absl::Hours(24 * 30);

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

// "1000 clients" reads better than "1e+03 clients" in messages.
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

// Splits "host:port" or "[v6]:port".
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
// Reading YAML into the struct

using Marks = std::map<std::string, YAML::Mark>;

std::string Describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Scalar:
      return Quote(n.Scalar());
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    default:
      return "nothing";
  }
}

absl::Status Convert(const YAML::Node& n, const std::string& path, std::string* out) {
  if (!n.IsScalar()) return FieldError(path, absl::StrCat("expected a string, got ", Describe(n)));
  *out = n.Scalar();
  return absl::OkStatus();
}

absl::Status ConvertUint(const YAML::Node& n, const std::string& path, uint64_t max, uint64_t* out) {
  uint64_t v = 0;
  if (!n.IsScalar()) return FieldError(path, absl::StrCat("expected a whole number, got ", Describe(n)));
  absl::string_view s = absl::StripAsciiWhitespace(n.Scalar());
  if (absl::StartsWith(s, "-")) {
    return FieldError(path, absl::StrCat("must not be negative, got ", Quote(s)));
  }
  if (!absl::SimpleAtoi(s, &v)) return FieldError(path, absl::StrCat("expected a whole number, got ", Quote(s)));
  if (v > max) return FieldError(path, absl::StrCat("must be at most ", max, ", got ", Quote(s)));
  *out = v;
  return absl::OkStatus();
}

absl::Status Convert(const YAML::Node& n, const std::string& path, uint64_t* out) {
  return ConvertUint(n, path, UINT64_MAX, out);
}

absl::Status Convert(const YAML::Node& n, const std::string& path, uint32_t* out) {
  uint64_t v = 0;
  RETURN_IF_ERROR(ConvertUint(n, path, UINT32_MAX, &v));
  *out = static_cast<uint32_t>(v);
  return absl::OkStatus();
}

absl::Status Convert(const YAML::Node& n, const std::string& path, int32_t* out) {
  if (!n.IsScalar()) return FieldError(path, absl::StrCat("expected a whole number, got ", Describe(n)));
  if (!absl::SimpleAtoi(n.Scalar(), out)) {
    return FieldError(path, absl::StrCat("expected a whole number, got ", Quote(n.Scalar())));
  }
  return absl::OkStatus();
}

absl::Status Convert(const YAML::Node& n, const std::string& path, double* out) {
  if (!n.IsScalar()) return FieldError(path, absl::StrCat("expected a number, got ", Describe(n)));
  double v = 0;
  if (!absl::SimpleAtod(n.Scalar(), &v) || !std::isfinite(v)) {
    return FieldError(path, absl::StrCat("expected a number, got ", Quote(n.Scalar())));
  }
  *out = v;
  return absl::OkStatus();
}

absl::Status Convert(const YAML::Node& n, const std::string& path, absl::Duration* out) {
  if (!n.IsScalar()) return FieldError(path, absl::StrCat("expected a duration like 30s, got ", Describe(n)));
  std::string problem;
  if (!ParseDurationText(n.Scalar(), out, &problem)) return FieldError(path, problem);
  return absl::OkStatus();
}

absl::Status Convert(const YAML::Node& n, const std::string& path, bool* out) {
  if (n.IsScalar()) {
    if (n.Scalar() == "true") {
      *out = true;
      return absl::OkStatus();
    }
    if (n.Scalar() == "false") {
      *out = false;
      return absl::OkStatus();
    }
  }
  return FieldError(path, absl::StrCat("expected true or false, got ", Describe(n)));
}

template <typename E, size_t N>
absl::Status ConvertEnum(const YAML::Node& n, const std::string& path, const Named<E> (&table)[N], E* out) {
  if (n.IsScalar()) {
    for (const Named<E>& e : table) {
      if (e.name == n.Scalar()) {
        *out = e.value;
        return absl::OkStatus();
      }
    }
  }
  return FieldError(path, absl::StrCat("expected ", Choices(table), ", got ", Describe(n)));
}

absl::Status Convert(const YAML::Node& n, const std::string& path, Protocol* out) {
  return ConvertEnum(n, path, kProtocols, out);
}
absl::Status Convert(const YAML::Node& n, const std::string& path, AuthMode* out) {
  return ConvertEnum(n, path, kAuthModes, out);
}
absl::Status Convert(const YAML::Node& n, const std::string& path, PhaseKind* out) {
  return ConvertEnum(n, path, kPhaseKinds, out);
}
absl::Status Convert(const YAML::Node& n, const std::string& path, DropMode* out) {
  return ConvertEnum(n, path, kDropModes, out);
}
absl::Status Convert(const YAML::Node& n, const std::string& path, HeartbeatMode* out) {
  return ConvertEnum(n, path, kHeartbeatModes, out);
}
absl::Status Convert(const YAML::Node& n, const std::string& path, TargetSelection* out) {
  return ConvertEnum(n, path, kTargetSelections, out);
}
absl::Status Convert(const YAML::Node& n, const std::string& path, PayloadDistribution* out) {
  return ConvertEnum(n, path, kDistributions, out);
}

void RecordMark(Marks* marks, const std::string& path, const YAML::Node& value, const YAML::Node& key) {
  YAML::Mark m = value.Mark();
  if (m.is_null() || m.line < 0) m = key.Mark();
  if (!m.is_null() && m.line >= 0) marks->emplace(path, m);
}

// The entries of one YAML map, checked against the keys its section allows.
class MapView {
 public:
  // `keys` null: any key is allowed (profile names, device counts). A null node reads as an empty map.
  static absl::StatusOr<MapView> Open(const YAML::Node& node, std::string path,
                                      const std::vector<absl::string_view>* keys, Marks* marks) {
    MapView v;
    v.path_ = std::move(path);
    if (node.IsNull() || !node.IsDefined()) return v;
    if (!node.IsMap()) {
      return FieldError(v.path_, absl::StrCat("expected a map of fields, got ", Describe(node)));
    }
    for (auto it = node.begin(); it != node.end(); ++it) {
      // Copies: the iterator's operator-> hands out a temporary proxy.
      const YAML::Node key = it->first;
      const YAML::Node value = it->second;
      if (!key.IsScalar()) {
        return FieldError(
            v.path_, absl::StrCat("keys must be plain names, got ", Describe(key), " on line ", key.Mark().line + 1));
      }
      const std::string name = key.Scalar();
      std::string child = v.PathOf(name);
      RecordMark(marks, child, value, key);
      if (keys != nullptr && std::find(keys->begin(), keys->end(), name) == keys->end()) {
        return FieldError(child, absl::StrCat("unknown field (expected one of: ", absl::StrJoin(*keys, ", "), ")"));
      }
      if (v.Has(name)) return FieldError(child, "given twice");
      v.entries_.emplace_back(name, value);
    }
    return v;
  }

  const std::string& path() const { return path_; }
  const std::vector<std::pair<std::string, YAML::Node>>& entries() const { return entries_; }

  std::string PathOf(absl::string_view key) const {
    return path_.empty() ? std::string(key) : absl::StrCat(path_, ".", key);
  }

  bool Has(absl::string_view key) const {
    for (const auto& [k, v] : entries_) {
      if (k == key) return true;
    }
    return false;
  }

  YAML::Node Get(absl::string_view key) const {
    for (const auto& [k, v] : entries_) {
      if (k == key) return v;
    }
    return YAML::Node();
  }

  // Leaves *out alone when the key is absent.
  template <typename T>
  absl::Status Read(absl::string_view key, T* out) const {
    if (!Has(key)) return absl::OkStatus();
    return Convert(Get(key), PathOf(key), out);
  }

 private:
  std::string path_;
  std::vector<std::pair<std::string, YAML::Node>> entries_;
};

absl::StatusOr<MapView> OpenMap(const YAML::Node& node, std::string path, std::vector<absl::string_view> keys,
                                Marks* marks) {
  return MapView::Open(node, std::move(path), &keys, marks);
}

// Calls fn(element, element_path) for each element of a YAML list.
template <typename Fn>
absl::Status ForEachElement(const YAML::Node& node, const std::string& path, absl::string_view what, Marks* marks,
                            Fn fn) {
  if (node.IsNull()) return absl::OkStatus();
  if (!node.IsSequence()) return FieldError(path, absl::StrCat("expected a list of ", what, ", got ", Describe(node)));
  for (size_t i = 0; i < node.size(); ++i) {
    std::string child = absl::StrCat(path, "[", i, "]");
    RecordMark(marks, child, node[i], node);
    RETURN_IF_ERROR(fn(node[i], child));
  }
  return absl::OkStatus();
}

absl::Status ReadTarget(const YAML::Node& node, Marks* marks, Target* t) {
  ASSIGN_OR_RETURN(MapView m, OpenMap(node, "target",
                                      {"addresses", "source_addresses", "protocol", "ws_path", "ws_ping_interval"},
                                      marks));
  RETURN_IF_ERROR(m.Read("ws_path", &t->ws_path));
  RETURN_IF_ERROR(m.Read("ws_ping_interval", &t->ws_ping_interval));
  if (m.Has("addresses")) {
    RETURN_IF_ERROR(ForEachElement(m.Get("addresses"), m.PathOf("addresses"), "host:port addresses", marks,
                                   [&](const YAML::Node& e, const std::string& path) -> absl::Status {
                                     std::string text;
                                     RETURN_IF_ERROR(Convert(e, path, &text));
                                     Endpoint ep;
                                     RETURN_IF_ERROR(ParseEndpoint(text, path, &ep));
                                     t->addresses.push_back(std::move(ep));
                                     return absl::OkStatus();
                                   }));
  }
  if (m.Has("source_addresses")) {
    RETURN_IF_ERROR(ForEachElement(m.Get("source_addresses"), m.PathOf("source_addresses"), "addresses", marks,
                                   [&](const YAML::Node& e, const std::string& path) -> absl::Status {
                                     std::string text;
                                     RETURN_IF_ERROR(Convert(e, path, &text));
                                     t->source_addresses.push_back(std::move(text));
                                     return absl::OkStatus();
                                   }));
  }
  return m.Read("protocol", &t->protocol);
}

absl::Status ReadAuth(const YAML::Node& node, Marks* marks, Auth* a) {
  ASSIGN_OR_RETURN(MapView m,
                   OpenMap(node, "auth",
                           {"mode", "secret", "secret_file", "token_ttl", "first_user_id", "devices_per_user"}, marks));
  RETURN_IF_ERROR(m.Read("mode", &a->mode));
  RETURN_IF_ERROR(m.Read("secret", &a->secret));
  RETURN_IF_ERROR(m.Read("secret_file", &a->secret_file));
  RETURN_IF_ERROR(m.Read("token_ttl", &a->token_ttl));
  RETURN_IF_ERROR(m.Read("first_user_id", &a->first_user_id));
  if (!m.Has("devices_per_user")) return absl::OkStatus();
  YAML::Node d = m.Get("devices_per_user");
  std::string path = m.PathOf("devices_per_user");
  if (!d.IsMap()) return Convert(d, path, &a->devices_per_user);
  // A map {devices: percent of users}.
  ASSIGN_OR_RETURN(MapView dist, MapView::Open(d, path, nullptr, marks));
  for (const auto& [key, value] : dist.entries()) {
    DeviceShare share;
    RETURN_IF_ERROR(Convert(YAML::Node(key), dist.PathOf(key), &share.devices));
    RETURN_IF_ERROR(Convert(value, dist.PathOf(key), &share.percent));
    a->devices_distribution.push_back(share);
  }
  return absl::OkStatus();
}

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

// Whole seconds needed to open `n` connections at `rate` per second, at least one.
absl::Duration RampTime(uint64_t n, double rate) {
  if (rate <= 0) return absl::Seconds(1);
  return absl::Seconds(std::max<double>(1, std::ceil(static_cast<double>(n) / rate - 1e-9)));
}

absl::Status ReadPhases(const YAML::Node& node, Marks* marks, Scenario* s) {
  uint64_t connected = 0;  // after the phases read so far, for the ramp defaults
  return ForEachElement(node, "phases", "phases", marks, [&](const YAML::Node& e, const std::string& path) {
    static const std::vector<absl::string_view> kAll = {"kind",    "name",    "duration", "target",
                                                        "clients", "percent", "drop",     "connect_rate"};
    ASSIGN_OR_RETURN(MapView m, MapView::Open(e, path, &kAll, marks));
    Phase p;
    if (!m.Has("kind")) {
      return FieldError(m.PathOf("kind"), absl::StrCat("required (", Choices(kPhaseKinds), ")"));
    }
    RETURN_IF_ERROR(m.Read("kind", &p.kind));
    const std::vector<absl::string_view>& allowed = PhaseKeys(p.kind);
    for (const auto& [key, value] : m.entries()) {
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        return FieldError(m.PathOf(key), absl::StrCat("not used by a ", PhaseKindName(p.kind), " phase (it takes ",
                                                      absl::StrJoin(allowed, ", "), ")"));
      }
    }
    RETURN_IF_ERROR(m.Read("name", &p.name));
    if (p.kind != PhaseKind::kRamp && !m.Has("duration")) {
      return FieldError(m.PathOf("duration"), "required (e.g. 30s)");
    }
    RETURN_IF_ERROR(m.Read("duration", &p.duration));
    switch (p.kind) {
      case PhaseKind::kRamp:
        p.target = s->clients;
        p.connect_rate = s->connect_rate;
        RETURN_IF_ERROR(m.Read("target", &p.target));
        RETURN_IF_ERROR(m.Read("connect_rate", &p.connect_rate));
        if (!m.Has("duration")) p.duration = RampTime(p.target > connected ? p.target - connected : 0, p.connect_rate);
        connected = p.target;
        break;
      case PhaseKind::kHold:
        break;
      case PhaseKind::kSpike:
        p.connect_rate = s->connect_rate;
        if (!m.Has("clients")) return FieldError(m.PathOf("clients"), "required (extra clients that connect)");
        RETURN_IF_ERROR(m.Read("clients", &p.clients));
        RETURN_IF_ERROR(m.Read("connect_rate", &p.connect_rate));
        break;
      case PhaseKind::kChurn:
      case PhaseKind::kStorm:
        p.drop = p.kind == PhaseKind::kChurn ? DropMode::kClose : DropMode::kReset;
        if (!m.Has("percent")) return FieldError(m.PathOf("percent"), "required (percent of connected clients)");
        RETURN_IF_ERROR(m.Read("percent", &p.percent));
        RETURN_IF_ERROR(m.Read("drop", &p.drop));
        break;
      case PhaseKind::kDrain:
        p.drop = DropMode::kLogout;
        RETURN_IF_ERROR(m.Read("target", &p.target));
        RETURN_IF_ERROR(m.Read("drop", &p.drop));
        connected = p.target;
        break;
    }
    s->phases.push_back(std::move(p));
    return absl::OkStatus();
  });
}

absl::Status ReadHeartbeat(const YAML::Node& node, Marks* marks, Heartbeat* h) {
  ASSIGN_OR_RETURN(MapView m,
                   OpenMap(node, "heartbeat",
                           {"mode", "initial", "max", "step", "backoff", "successes_per_step", "pong_timeout",
                            "background"},
                           marks));
  RETURN_IF_ERROR(m.Read("mode", &h->mode));
  if (h->mode != HeartbeatMode::kAdaptive) {
    for (absl::string_view key : {"initial", "max", "step", "backoff", "successes_per_step"}) {
      if (m.Has(key)) return FieldError(m.PathOf(key), "only used with mode: adaptive");
    }
  }
  RETURN_IF_ERROR(m.Read("initial", &h->initial));
  RETURN_IF_ERROR(m.Read("max", &h->max));
  RETURN_IF_ERROR(m.Read("step", &h->step));
  RETURN_IF_ERROR(m.Read("backoff", &h->backoff));
  RETURN_IF_ERROR(m.Read("successes_per_step", &h->successes_per_step));
  RETURN_IF_ERROR(m.Read("pong_timeout", &h->pong_timeout));
  ASSIGN_OR_RETURN(MapView b, OpenMap(m.Get("background"), m.PathOf("background"),
                                      {"fraction", "interval_multiplier", "switches_per_hour"}, marks));
  RETURN_IF_ERROR(b.Read("fraction", &h->background.fraction));
  RETURN_IF_ERROR(b.Read("interval_multiplier", &h->background.interval_multiplier));
  return b.Read("switches_per_hour", &h->background.switches_per_hour);
}

absl::Status ReadMessaging(const YAML::Node& node, Marks* marks, Messaging* msg) {
  ASSIGN_OR_RETURN(MapView m, OpenMap(node, "messaging",
                                      {"rate_per_client", "total_rate", "targets", "groups", "payload", "push_ack",
                                       "ack_delay", "sync_after_reconnect"},
                                      marks));
  // The default per-client rate gives way to a total rate.
  if (m.Has("total_rate")) msg->rate_per_client = 0;
  RETURN_IF_ERROR(m.Read("rate_per_client", &msg->rate_per_client));
  RETURN_IF_ERROR(m.Read("total_rate", &msg->total_rate));
  RETURN_IF_ERROR(m.Read("targets", &msg->targets));
  RETURN_IF_ERROR(m.Read("push_ack", &msg->push_ack));
  RETURN_IF_ERROR(m.Read("ack_delay", &msg->ack_delay));
  RETURN_IF_ERROR(m.Read("sync_after_reconnect", &msg->sync_after_reconnect));
  if (m.Has("groups") && msg->targets != TargetSelection::kGroups) {
    return FieldError(m.PathOf("groups"), "only used with targets: groups");
  }
  ASSIGN_OR_RETURN(MapView g, OpenMap(m.Get("groups"), m.PathOf("groups"), {"count", "size"}, marks));
  RETURN_IF_ERROR(g.Read("count", &msg->groups.count));
  RETURN_IF_ERROR(g.Read("size", &msg->groups.size));

  Payload& p = msg->payload;
  ASSIGN_OR_RETURN(MapView pm, OpenMap(m.Get("payload"), m.PathOf("payload"),
                                       {"distribution", "size", "min", "max", "median", "sigma"}, marks));
  RETURN_IF_ERROR(pm.Read("distribution", &p.distribution));
  std::vector<absl::string_view> used;
  switch (p.distribution) {
    case PayloadDistribution::kFixed:
      used = {"distribution", "size"};
      break;
    case PayloadDistribution::kUniform:
      used = {"distribution", "min", "max"};
      break;
    case PayloadDistribution::kLognormal:
      used = {"distribution", "median", "sigma", "min", "max"};
      break;
  }
  for (const auto& [key, value] : pm.entries()) {
    if (std::find(used.begin(), used.end(), key) == used.end()) {
      return FieldError(pm.PathOf(key),
                        absl::StrCat("not used by distribution ", NameOf(kDistributions, p.distribution), " (it takes ",
                                     absl::StrJoin(used, ", "), ")"));
    }
  }
  RETURN_IF_ERROR(pm.Read("size", &p.size));
  RETURN_IF_ERROR(pm.Read("min", &p.min));
  RETURN_IF_ERROR(pm.Read("max", &p.max));
  RETURN_IF_ERROR(pm.Read("median", &p.median));
  return pm.Read("sigma", &p.sigma);
}

absl::Status ReadReconnect(const YAML::Node& node, Marks* marks, Reconnect* r) {
  ASSIGN_OR_RETURN(MapView m, OpenMap(node, "reconnect", {"initial", "max", "multiplier", "max_attempts"}, marks));
  RETURN_IF_ERROR(m.Read("initial", &r->initial));
  RETURN_IF_ERROR(m.Read("max", &r->max));
  RETURN_IF_ERROR(m.Read("multiplier", &r->multiplier));
  return m.Read("max_attempts", &r->max_attempts);
}

// Profile parameters in file order; one table drives reading, writing and docs-visible names.
struct ProfileField {
  absl::string_view name;
  absl::Duration NetworkProfile::*duration;
  uint64_t NetworkProfile::*u64;
  uint32_t NetworkProfile::*u32;
  double NetworkProfile::*real;
};

constexpr ProfileField kProfileFields[] = {
    {"latency_up", &NetworkProfile::latency_up, nullptr, nullptr, nullptr},
    {"jitter_up", &NetworkProfile::jitter_up, nullptr, nullptr, nullptr},
    {"latency_down", &NetworkProfile::latency_down, nullptr, nullptr, nullptr},
    {"jitter_down", &NetworkProfile::jitter_down, nullptr, nullptr, nullptr},
    {"bandwidth_up", nullptr, &NetworkProfile::bandwidth_up, nullptr, nullptr},
    {"bandwidth_down", nullptr, &NetworkProfile::bandwidth_down, nullptr, nullptr},
    {"stall_probability", nullptr, nullptr, nullptr, &NetworkProfile::stall_probability},
    {"stall_duration", &NetworkProfile::stall_duration, nullptr, nullptr, nullptr},
    {"max_segment", nullptr, nullptr, &NetworkProfile::max_segment, nullptr},
    {"flaps_per_hour", nullptr, nullptr, nullptr, &NetworkProfile::flaps_per_hour},
    {"zombies_per_hour", nullptr, nullptr, nullptr, &NetworkProfile::zombies_per_hour},
    {"nat_idle_timeout", &NetworkProfile::nat_idle_timeout, nullptr, nullptr, nullptr},
};

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

absl::Status ReadField(const ProfileField& f, const YAML::Node& n, const std::string& path, NetworkProfile* p) {
  if (f.duration != nullptr) return Convert(n, path, &(p->*f.duration));
  if (f.u64 != nullptr) return Convert(n, path, &(p->*f.u64));
  if (f.u32 != nullptr) return Convert(n, path, &(p->*f.u32));
  return Convert(n, path, &(p->*f.real));
}

std::string KnownProfiles() { return absl::StrJoin(kProfileNames, ", "); }

absl::Status ReadNetwork(const YAML::Node& node, Marks* marks, Network* net) {
  ASSIGN_OR_RETURN(MapView m, OpenMap(node, "network", {"mix", "profiles"}, marks));
  ASSIGN_OR_RETURN(MapView mix, MapView::Open(m.Get("mix"), m.PathOf("mix"), nullptr, marks));
  std::optional<size_t> rest;
  double sum = 0;
  for (const auto& [name, value] : mix.entries()) {
    const NetworkProfile* base = FindBuiltinProfile(name);
    if (base == nullptr) {
      return FieldError(mix.PathOf(name), absl::StrCat("unknown profile (known: ", KnownProfiles(), ")"));
    }
    ProfileShare share{name, 0, *base};
    if (value.IsScalar() && value.Scalar() == "rest") {
      if (rest.has_value()) return FieldError(mix.PathOf(name), "only one profile may take the rest");
      rest = net->mix.size();
    } else {
      RETURN_IF_ERROR(Convert(value, mix.PathOf(name), &share.percent));
      sum += share.percent;
    }
    net->mix.push_back(std::move(share));
  }
  if (rest.has_value()) {
    if (sum >= 100) {
      return FieldError(mix.PathOf(net->mix[*rest].name),
                        absl::StrCat("nothing is left for rest: the others add up to ", FormatDouble(sum)));
    }
    net->mix[*rest].percent = 100 - sum;
  }

  ASSIGN_OR_RETURN(MapView profiles, MapView::Open(m.Get("profiles"), m.PathOf("profiles"), nullptr, marks));
  static const std::vector<absl::string_view> kFieldNames = ProfileFieldNames();
  for (const auto& [name, value] : profiles.entries()) {
    std::string path = profiles.PathOf(name);
    if (FindBuiltinProfile(name) == nullptr) {
      return FieldError(path, absl::StrCat("unknown profile (known: ", KnownProfiles(), ")"));
    }
    if (name == "none") return FieldError(path, "the none profile has no parameters to override");
    const std::string& profile = name;  // a structured binding cannot be captured before C++20 in clang 14
    auto share =
        std::find_if(net->mix.begin(), net->mix.end(), [&](const ProfileShare& s) { return s.name == profile; });
    if (share == net->mix.end()) return FieldError(path, "overrides a profile that network.mix does not use");
    ASSIGN_OR_RETURN(MapView params, MapView::Open(value, path, &kFieldNames, marks));
    for (const ProfileField& f : kProfileFields) {
      if (params.Has(f.name)) RETURN_IF_ERROR(ReadField(f, params.Get(f.name), params.PathOf(f.name), &share->params));
    }
  }
  return absl::OkStatus();
}

absl::Status ReadThresholds(const YAML::Node& node, Marks* marks, std::vector<Threshold>* out) {
  return ForEachElement(node, "thresholds", "conditions like \"e2e_p99_ms < 50\"", marks,
                        [&](const YAML::Node& e, const std::string& path) -> absl::Status {
                          std::string text;
                          RETURN_IF_ERROR(Convert(e, path, &text));
                          absl::StatusOr<Threshold> t = ParseThreshold(text);
                          if (!t.ok()) return FieldError(path, t.status().message());
                          out->push_back(*std::move(t));
                          return absl::OkStatus();
                        });
}

absl::Status ReadOutput(const YAML::Node& node, Marks* marks, Output* o) {
  ASSIGN_OR_RETURN(MapView m, OpenMap(node, "output", {"report_json", "metrics_port", "live_interval"}, marks));
  RETURN_IF_ERROR(m.Read("report_json", &o->report_json));
  RETURN_IF_ERROR(m.Read("metrics_port", &o->metrics_port));
  return m.Read("live_interval", &o->live_interval);
}

// The whole document. Defaults that depend on other fields are filled in here, so flag overrides (applied
// to the document before this runs) reach them.
absl::Status ReadScenario(const YAML::Node& root, Marks* marks, Scenario* s) {
  if (!root.IsNull() && root.IsDefined() && !root.IsMap()) {
    return FieldError("", absl::StrCat("expected a map of scenario fields at the top level, got ", Describe(root)));
  }
  ASSIGN_OR_RETURN(MapView m,
                   OpenMap(root, "",
                           {"name", "description", "target", "clients", "shards", "connect_rate", "duration", "seed",
                            "auth", "phases", "heartbeat", "messaging", "reconnect", "network", "thresholds", "output"},
                           marks));
  RETURN_IF_ERROR(m.Read("name", &s->name));
  RETURN_IF_ERROR(m.Read("description", &s->description));
  RETURN_IF_ERROR(ReadTarget(m.Get("target"), marks, &s->target));
  RETURN_IF_ERROR(m.Read("clients", &s->clients));
  RETURN_IF_ERROR(m.Read("shards", &s->shards));
  RETURN_IF_ERROR(m.Read("connect_rate", &s->connect_rate));
  RETURN_IF_ERROR(m.Read("seed", &s->seed));
  RETURN_IF_ERROR(ReadAuth(m.Get("auth"), marks, &s->auth));
  RETURN_IF_ERROR(ReadHeartbeat(m.Get("heartbeat"), marks, &s->heartbeat));
  RETURN_IF_ERROR(ReadMessaging(m.Get("messaging"), marks, &s->messaging));
  RETURN_IF_ERROR(ReadReconnect(m.Get("reconnect"), marks, &s->reconnect));
  RETURN_IF_ERROR(ReadNetwork(m.Get("network"), marks, &s->network));
  RETURN_IF_ERROR(ReadThresholds(m.Get("thresholds"), marks, &s->thresholds));
  RETURN_IF_ERROR(ReadOutput(m.Get("output"), marks, &s->output));

  RETURN_IF_ERROR(ReadPhases(m.Get("phases"), marks, s));
  if (m.Has("phases") && s->phases.empty()) return FieldError("phases", "must list at least one phase");
  absl::Duration phases_total = absl::ZeroDuration();
  for (const Phase& p : s->phases) phases_total += p.duration;
  RETURN_IF_ERROR(m.Read("duration", &s->duration));
  if (s->phases.empty()) {
    // The default plan: connect everyone at connect_rate, then hold until the end (a minute unless set).
    Phase ramp;
    ramp.kind = PhaseKind::kRamp;
    ramp.target = s->clients;
    ramp.connect_rate = s->connect_rate;
    ramp.duration = RampTime(s->clients, s->connect_rate);
    if (!m.Has("duration")) s->duration = ramp.duration + absl::Seconds(60);
    absl::Duration hold = s->duration - ramp.duration;
    s->phases.push_back(ramp);
    if (hold > absl::ZeroDuration()) {
      Phase h;
      h.kind = PhaseKind::kHold;
      h.duration = hold;
      s->phases.push_back(h);
    }
  } else if (!m.Has("duration")) {
    s->duration = phases_total;
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------------------
// Validation

absl::Status ValidateProfile(const NetworkProfile& p, const std::string& path) {
  for (const ProfileField& f : kProfileFields) {
    if (f.duration != nullptr && p.*f.duration > absl::Hours(24)) {
      return FieldError(absl::StrCat(path, ".", f.name), "must be at most 24h");
    }
    if (f.real != nullptr && !(p.*f.real >= 0)) return FieldError(absl::StrCat(path, ".", f.name), "must be >= 0");
  }
  if (p.jitter_up > p.latency_up) return FieldError(absl::StrCat(path, ".jitter_up"), "must be <= latency_up");
  if (p.jitter_down > p.latency_down) {
    return FieldError(absl::StrCat(path, ".jitter_down"), "must be <= latency_down");
  }
  if (p.stall_probability > 1) return FieldError(absl::StrCat(path, ".stall_probability"), "must be 0..1");
  if (p.stall_probability > 0 && p.stall_duration <= absl::ZeroDuration()) {
    return FieldError(absl::StrCat(path, ".stall_duration"), "must be > 0 when stall_probability is set");
  }
  if (p.flaps_per_hour > 3600) return FieldError(absl::StrCat(path, ".flaps_per_hour"), "must be at most 3600");
  if (p.zombies_per_hour > 3600) return FieldError(absl::StrCat(path, ".zombies_per_hour"), "must be at most 3600");
  if (p.nat_idle_timeout > absl::ZeroDuration() && p.nat_idle_timeout < absl::Seconds(1)) {
    return FieldError(absl::StrCat(path, ".nat_idle_timeout"), "must be 0 (none) or at least 1s");
  }
  return absl::OkStatus();
}

bool CloseTo(double a, double b) { return std::fabs(a - b) < 1e-6; }

absl::Status ValidatePhases(const Scenario& s) {
  if (s.phases.empty()) return FieldError("phases", "must list at least one phase");
  uint64_t connected = 0;
  for (size_t i = 0; i < s.phases.size(); ++i) {
    const Phase& p = s.phases[i];
    const std::string path = absl::StrCat("phases[", i, "]");
    auto field = [&](absl::string_view name) { return absl::StrCat(path, ".", name); };
    if (p.duration <= absl::ZeroDuration()) return FieldError(field("duration"), "must be > 0");
    if (p.duration > kMaxDuration) return FieldError(field("duration"), "must be at most 720h");
    switch (p.kind) {
      case PhaseKind::kRamp: {
        if (!(p.connect_rate > 0)) return FieldError(field("connect_rate"), "must be > 0");
        if (p.target > s.clients) {
          return FieldError(field("target"), absl::StrCat(p.target, " is more than clients (", s.clients, ")"));
        }
        if (p.target < connected) {
          return FieldError(field("target"), absl::StrCat(p.target, " is below the ", connected,
                                                          " clients already connected; shrink with a drain phase"));
        }
        const double needed = static_cast<double>(p.target - connected) / p.connect_rate;
        if (absl::ToDoubleSeconds(p.duration) + 1e-9 < needed) {
          return FieldError(field("duration"),
                            absl::StrCat(FormatScenarioDuration(p.duration), " is too short to connect ",
                                         p.target - connected, " clients at ", Count(p.connect_rate), "/s (needs ",
                                         FormatDouble(needed), "s); leave it out to have it computed"));
        }
        connected = p.target;
        break;
      }
      case PhaseKind::kHold:
        break;
      case PhaseKind::kSpike: {
        if (!(p.connect_rate > 0)) return FieldError(field("connect_rate"), "must be > 0");
        if (p.clients == 0) return FieldError(field("clients"), "must be >= 1");
        if (connected + p.clients > s.clients) {
          return FieldError(field("clients"), absl::StrCat("the spike needs ", p.clients, " clients on top of the ",
                                                           connected, " connected, but clients is ", s.clients,
                                                           " (ramp to a lower target to leave room)"));
        }
        const double needed = static_cast<double>(p.clients) / p.connect_rate;
        if (absl::ToDoubleSeconds(p.duration) + 1e-9 < needed) {
          return FieldError(
              field("duration"),
              absl::StrCat(FormatScenarioDuration(p.duration), " is too short to connect ", p.clients, " clients at ",
                           Count(p.connect_rate), "/s (needs ", FormatDouble(needed), "s)"));
        }
        break;
      }
      case PhaseKind::kChurn:
      case PhaseKind::kStorm:
        if (!(p.percent > 0 && p.percent <= 100)) return FieldError(field("percent"), "must be in (0, 100]");
        break;
      case PhaseKind::kDrain:
        if (p.target > connected) {
          return FieldError(field("target"),
                            absl::StrCat(p.target, " is more than the ", connected, " clients connected before it"));
        }
        connected = p.target;
        break;
    }
    // Fields the kind does not use must keep their defaults, or they would be dropped on the way to YAML.
    const std::vector<absl::string_view>& keys = PhaseKeys(p.kind);
    auto uses = [&](absl::string_view k) { return std::find(keys.begin(), keys.end(), k) != keys.end(); };
    if (!uses("target") && p.target != 0) return FieldError(field("target"), "not used by this kind of phase");
    if (!uses("connect_rate") && p.connect_rate != 0) {
      return FieldError(field("connect_rate"), "not used by this kind of phase");
    }
    if (!uses("clients") && p.clients != 0) return FieldError(field("clients"), "not used by this kind of phase");
    if (!uses("percent") && p.percent != 0) return FieldError(field("percent"), "not used by this kind of phase");
    if (!uses("drop") && p.drop != DropMode::kClose) {
      return FieldError(field("drop"), "not used by this kind of phase");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateMessaging(const Scenario& s) {
  const Messaging& m = s.messaging;
  if (!(m.rate_per_client >= 0)) return FieldError("messaging.rate_per_client", "must be >= 0");
  if (!(m.total_rate >= 0)) return FieldError("messaging.total_rate", "must be >= 0");
  if (m.rate_per_client > 0 && m.total_rate > 0) {
    return FieldError("messaging.total_rate", "set only one of rate_per_client and total_rate");
  }
  if (m.rate_per_client > 1000) return FieldError("messaging.rate_per_client", "must be at most 1000");
  if (m.ack_delay < absl::ZeroDuration() || m.ack_delay > absl::Seconds(60)) {
    return FieldError("messaging.ack_delay", "must be 0..60s");
  }
  if (m.ack_delay > absl::ZeroDuration() && !m.push_ack) {
    return FieldError("messaging.ack_delay", "only used with push_ack: true");
  }
  if (m.targets == TargetSelection::kGroups) {
    if (m.groups.count == 0) return FieldError("messaging.groups.count", "must be >= 1 with targets: groups");
    if (m.groups.size < 2) return FieldError("messaging.groups.size", "must be >= 2 with targets: groups");
    if (m.groups.size > s.clients) {
      return FieldError("messaging.groups.size", absl::StrCat("must be at most clients (", s.clients, ")"));
    }
  } else if (m.groups.count != 0 || m.groups.size != 0) {
    return FieldError("messaging.groups", "only used with targets: groups");
  }
  const Payload& p = m.payload;
  switch (p.distribution) {
    case PayloadDistribution::kFixed:
      if (p.size > kMaxPayload) {
        return FieldError("messaging.payload.size", absl::StrCat("must be at most ", kMaxPayload));
      }
      break;
    case PayloadDistribution::kUniform:
    case PayloadDistribution::kLognormal:
      if (p.max > kMaxPayload)
        return FieldError("messaging.payload.max", absl::StrCat("must be at most ", kMaxPayload));
      if (p.max < p.min) return FieldError("messaging.payload.max", "must be >= payload.min");
      if (p.distribution == PayloadDistribution::kLognormal) {
        if (!(p.median >= p.min && p.median <= p.max)) {
          return FieldError("messaging.payload.median", "must be between payload.min and payload.max");
        }
        if (!(p.sigma > 0 && p.sigma <= 5)) return FieldError("messaging.payload.sigma", "must be in (0, 5]");
      }
      break;
  }
  // Fields the distribution does not use keep their defaults, so they survive the trip through YAML.
  const Payload defaults;
  if (p.distribution != PayloadDistribution::kFixed && p.size != defaults.size) {
    return FieldError("messaging.payload.size", "only used with distribution: fixed");
  }
  if (p.distribution == PayloadDistribution::kFixed && (p.min != defaults.min || p.max != defaults.max)) {
    return FieldError("messaging.payload.max", "min and max are not used with distribution: fixed");
  }
  if (p.distribution != PayloadDistribution::kLognormal && (p.median != defaults.median || p.sigma != defaults.sigma)) {
    return FieldError("messaging.payload.median", "median and sigma are only used with distribution: lognormal");
  }
  return absl::OkStatus();
}

absl::Status ValidateAuth(const Auth& a) {
  if (a.mode == AuthMode::kToken) {
    if (a.secret.empty() && a.secret_file.empty()) {
      return FieldError("auth.secret", "mode token needs secret or secret_file (--auth-secret, --auth-secret-file)");
    }
    if (!a.secret.empty() && !a.secret_file.empty()) {
      return FieldError("auth.secret_file", "set only one of secret and secret_file");
    }
  } else if (!a.secret.empty() || !a.secret_file.empty()) {
    return FieldError(a.secret.empty() ? "auth.secret_file" : "auth.secret", "only used with mode: token");
  }
  if (a.token_ttl < absl::Seconds(1)) return FieldError("auth.token_ttl", "must be at least 1s");
  if (a.first_user_id == 0) return FieldError("auth.first_user_id", "must be >= 1");
  if (a.devices_per_user < 1 || a.devices_per_user > 1000) {
    return FieldError("auth.devices_per_user", "must be 1..1000");
  }
  if (!a.devices_distribution.empty()) {
    if (a.devices_per_user != 1) {
      return FieldError("auth.devices_per_user", "give either a number or a distribution, not both");
    }
    double sum = 0;
    for (size_t i = 0; i < a.devices_distribution.size(); ++i) {
      const DeviceShare& d = a.devices_distribution[i];
      const std::string path = absl::StrCat("auth.devices_per_user.", d.devices);
      if (d.devices < 1 || d.devices > 1000) return FieldError(path, "device counts must be 1..1000");
      if (!(d.percent > 0 && d.percent <= 100)) return FieldError(path, "must be in (0, 100]");
      for (size_t j = 0; j < i; ++j) {
        if (a.devices_distribution[j].devices == d.devices) return FieldError(path, "given twice");
      }
      sum += d.percent;
    }
    if (!CloseTo(sum, 100)) {
      return FieldError("auth.devices_per_user",
                        absl::StrCat("percentages add up to ", FormatDouble(sum), ", not 100"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateHeartbeat(const Heartbeat& h) {
  if (h.initial < absl::Seconds(1)) return FieldError("heartbeat.initial", "must be at least 1s");
  if (h.max < h.initial) return FieldError("heartbeat.max", "must be >= heartbeat.initial");
  if (h.max > absl::Hours(1)) return FieldError("heartbeat.max", "must be at most 1h");
  if (h.step <= absl::ZeroDuration()) return FieldError("heartbeat.step", "must be > 0");
  if (!(h.backoff > 0 && h.backoff < 1)) return FieldError("heartbeat.backoff", "must be in (0, 1)");
  if (h.successes_per_step < 1) return FieldError("heartbeat.successes_per_step", "must be >= 1");
  if (h.pong_timeout < absl::Milliseconds(100) || h.pong_timeout > absl::Hours(1)) {
    return FieldError("heartbeat.pong_timeout", "must be 100ms..1h");
  }
  const Heartbeat defaults;
  if (h.mode == HeartbeatMode::kFixed &&
      (h.initial != defaults.initial || h.max != defaults.max || h.step != defaults.step ||
       h.backoff != defaults.backoff || h.successes_per_step != defaults.successes_per_step)) {
    return FieldError("heartbeat.mode", "the adaptive parameters are only used with mode: adaptive");
  }
  const Background& b = h.background;
  if (!(b.fraction >= 0 && b.fraction <= 1)) return FieldError("heartbeat.background.fraction", "must be 0..1");
  if (!(b.interval_multiplier >= 1 && b.interval_multiplier <= 100)) {
    return FieldError("heartbeat.background.interval_multiplier", "must be 1..100");
  }
  if (!(b.switches_per_hour >= 0 && b.switches_per_hour <= 3600)) {
    return FieldError("heartbeat.background.switches_per_hour", "must be 0..3600");
  }
  return absl::OkStatus();
}

absl::Status ValidateNetwork(const Network& n) {
  double sum = 0;
  for (size_t i = 0; i < n.mix.size(); ++i) {
    const ProfileShare& share = n.mix[i];
    const std::string path = absl::StrCat("network.mix.", share.name);
    if (FindBuiltinProfile(share.name) == nullptr) {
      return FieldError(path, absl::StrCat("unknown profile (known: ", KnownProfiles(), ")"));
    }
    for (size_t j = 0; j < i; ++j) {
      if (n.mix[j].name == share.name) return FieldError(path, "given twice");
    }
    if (!(share.percent > 0 && share.percent <= 100)) return FieldError(path, "must be in (0, 100]");
    if (share.name == "none" && !(share.params == NetworkProfile{})) {
      return FieldError(absl::StrCat("network.profiles.none"), "the none profile has no parameters to override");
    }
    RETURN_IF_ERROR(ValidateProfile(share.params, absl::StrCat("network.profiles.", share.name)));
    sum += share.percent;
  }
  if (!n.mix.empty() && !CloseTo(sum, 100)) {
    return FieldError("network.mix", absl::StrCat("percentages add up to ", FormatDouble(sum),
                                                  ", not 100 (a profile may take the rest, e.g. none: rest)"));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------------------
// Writing YAML

void Put(YAML::Emitter& e, absl::string_view key, const std::string& value) {
  e << YAML::Key << std::string(key) << YAML::Value << value;
}
void Put(YAML::Emitter& e, absl::string_view key, absl::string_view value) { Put(e, key, std::string(value)); }
void Put(YAML::Emitter& e, absl::string_view key, const char* value) { Put(e, key, std::string(value)); }
void Put(YAML::Emitter& e, absl::string_view key, uint64_t value) { Put(e, key, absl::StrCat(value)); }
void Put(YAML::Emitter& e, absl::string_view key, uint32_t value) { Put(e, key, absl::StrCat(value)); }
void Put(YAML::Emitter& e, absl::string_view key, int32_t value) { Put(e, key, absl::StrCat(value)); }
void Put(YAML::Emitter& e, absl::string_view key, double value) { Put(e, key, FormatDouble(value)); }
void Put(YAML::Emitter& e, absl::string_view key, bool value) { Put(e, key, value ? "true" : "false"); }
void Put(YAML::Emitter& e, absl::string_view key, absl::Duration value) { Put(e, key, FormatScenarioDuration(value)); }

void BeginSection(YAML::Emitter& e, absl::string_view key) {
  e << YAML::Key << std::string(key) << YAML::Value << YAML::BeginMap;
}

// ---------------------------------------------------------------------------------------------------------
// Flags and messages

// Which document path each flag replaced, so an error about that value names the flag.
using FlagPaths = std::vector<std::pair<std::string, std::string>>;

// Errors come back as "<path>: <problem>"; prefix them with where the value came from.
absl::Status Locate(const absl::Status& status, absl::string_view origin, const Marks& marks, const FlagPaths& flags) {
  if (status.ok()) return status;
  absl::string_view msg = status.message();
  size_t sep = msg.find(": ");
  absl::string_view path = sep == absl::string_view::npos ? absl::string_view() : msg.substr(0, sep);
  const bool is_path = !path.empty() && std::all_of(path.begin(), path.end(), [](char c) {
    return absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '[' || c == ']' || c == '-';
  });
  if (is_path) {
    for (const auto& [flag_path, flag] : flags) {
      if (path == flag_path || absl::StartsWith(path, absl::StrCat(flag_path, ".")) ||
          absl::StartsWith(path, absl::StrCat(flag_path, "["))) {
        return absl::Status(status.code(), absl::StrCat("--", flag, ": ", msg));
      }
    }
    auto it = marks.find(std::string(path));
    if (it != marks.end() && !origin.empty()) {
      return absl::Status(status.code(),
                          absl::StrCat(origin, ":", it->second.line + 1, ":", it->second.column + 1, ": ", msg));
    }
  }
  if (origin.empty()) return status;
  return absl::Status(status.code(), absl::StrCat(origin, ": ", msg));
}

absl::StatusOr<YAML::Node> ParseDocument(absl::string_view text, absl::string_view origin) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(std::string(text));
  } catch (const YAML::ParserException& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ":", e.mark.line + 1, ":", e.mark.column + 1, ": YAML syntax error: ", e.msg));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": YAML error: ", e.what()));
  }
  if (docs.size() > 1) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": holds ", docs.size(), " YAML documents; expected one"));
  }
  return docs.empty() ? YAML::Node() : docs[0];
}

absl::StatusOr<Scenario> Build(const YAML::Node& root, absl::string_view origin, const FlagPaths& flags) {
  Marks marks;
  Scenario s;
  absl::Status st;
  try {
    st = ReadScenario(root, &marks, &s);
  } catch (const YAML::Exception& e) {
    st = absl::InvalidArgumentError(absl::StrCat("YAML error: ", e.what()));
  }
  RETURN_IF_ERROR(Locate(st, origin, marks, flags));
  RETURN_IF_ERROR(Locate(Validate(s), origin, marks, flags));
  return s;
}

// Sets root[a][b]... = value, creating maps on the way. A part of the path that the file holds as something
// other than a map is left alone: reading the document reports it.
void SetPath(YAML::Node root, const std::vector<const char*>& keys, const YAML::Node& value) {
  YAML::Node node = root;
  size_t i = 0;
  for (const char* key : keys) {
    if (++i == keys.size()) {
      node[key] = value;
      return;
    }
    if (!node[key].IsDefined() || node[key].IsNull()) node[key] = YAML::Node(YAML::NodeType::Map);
    if (!node[key].IsMap()) return;
    node.reset(node[key]);
  }
}

void RemovePath(YAML::Node root, absl::string_view section, absl::string_view key) {
  YAML::Node s = root[std::string(section)];
  if (s.IsMap()) s.remove(std::string(key));
}

YAML::Node CommaList(const std::string& text) {
  YAML::Node seq(YAML::NodeType::Sequence);
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    seq.push_back(std::string(absl::StripAsciiWhitespace(part)));
  }
  return seq;
}

// Writes the flags that were given over the document, recording which paths they replaced.
void ApplyFlags(YAML::Node& root, FlagPaths* paths) {
  if (root.IsNull() || !root.IsDefined()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap()) return;
  auto set = [&](const std::vector<const char*>& keys, const YAML::Node& value, const char* flag) {
    SetPath(root, keys, value);
    paths->emplace_back(absl::StrJoin(keys, "."), flag);
  };
  // Flag name (as documented, with dashes), its value, and the document path it replaces.
  struct Override {
    const char* flag;
    std::string value;
    std::vector<const char*> path;
  };
  const Override scalars[] = {
      {"clients", absl::GetFlag(FLAGS_clients), {"clients"}},
      {"shards", absl::GetFlag(FLAGS_shards), {"shards"}},
      {"connect-rate", absl::GetFlag(FLAGS_connect_rate), {"connect_rate"}},
      {"duration", absl::GetFlag(FLAGS_duration), {"duration"}},
      {"seed", absl::GetFlag(FLAGS_seed), {"seed"}},
      {"rate", absl::GetFlag(FLAGS_rate), {"messaging", "rate_per_client"}},
      {"auth", absl::GetFlag(FLAGS_auth), {"auth", "mode"}},
      {"auth-secret", absl::GetFlag(FLAGS_auth_secret), {"auth", "secret"}},
      {"auth-secret-file", absl::GetFlag(FLAGS_auth_secret_file), {"auth", "secret_file"}},
      {"report-json", absl::GetFlag(FLAGS_report_json), {"output", "report_json"}},
      {"metrics-port", absl::GetFlag(FLAGS_metrics_port), {"output", "metrics_port"}},
      {"live-interval", absl::GetFlag(FLAGS_live_interval), {"output", "live_interval"}},
      {"protocol", absl::GetFlag(FLAGS_protocol), {"target", "protocol"}},
      {"ws-path", absl::GetFlag(FLAGS_ws_path), {"target", "ws_path"}},
  };
  // A flag replaces the file's value and whatever in the file would contradict it.
  if (!absl::GetFlag(FLAGS_rate).empty()) RemovePath(root, "messaging", "total_rate");
  if (absl::GetFlag(FLAGS_auth) == "none") {
    RemovePath(root, "auth", "secret");
    RemovePath(root, "auth", "secret_file");
  }
  if (!absl::GetFlag(FLAGS_auth_secret).empty()) RemovePath(root, "auth", "secret_file");
  if (!absl::GetFlag(FLAGS_auth_secret_file).empty()) RemovePath(root, "auth", "secret");

  if (std::string v = absl::GetFlag(FLAGS_target); !v.empty()) set({"target", "addresses"}, CommaList(v), "target");
  if (std::string v = absl::GetFlag(FLAGS_source_addresses); !v.empty()) {
    set({"target", "source_addresses"}, CommaList(v), "source-addresses");
  }
  for (const Override& o : scalars) {
    if (!o.value.empty()) set(o.path, YAML::Node(std::string(absl::StripAsciiWhitespace(o.value))), o.flag);
  }
}

}  // namespace

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

absl::Status Validate(const Scenario& s) {
  if (s.target.addresses.empty()) {
    return FieldError("target.addresses", "at least one host:port is required (--target or target.addresses)");
  }
  for (size_t i = 0; i < s.target.addresses.size(); ++i) {
    const Endpoint& e = s.target.addresses[i];
    const std::string path = absl::StrCat("target.addresses[", i, "]");
    if (!IsIpLiteral(e.host)) {
      return FieldError(path, absl::StrCat("expected a numeric IPv4 or IPv6 address, got ", Quote(e.host)));
    }
    if (e.port == 0) return FieldError(path, "port must be 1..65535");
  }
  for (size_t i = 0; i < s.target.source_addresses.size(); ++i) {
    if (!IsIpLiteral(s.target.source_addresses[i])) {
      return FieldError(
          absl::StrCat("target.source_addresses[", i, "]"),
          absl::StrCat("expected a numeric IPv4 or IPv6 address, got ", Quote(s.target.source_addresses[i])));
    }
  }
  if (s.target.ws_path.empty() || s.target.ws_path[0] != '/' ||
      s.target.ws_path.find_first_of(" \t\r\n") != std::string::npos) {
    return FieldError("target.ws_path", absl::StrCat("expected a path starting with /, got ", Quote(s.target.ws_path)));
  }
  if (s.target.ws_ping_interval < absl::Milliseconds(100) || s.target.ws_ping_interval > absl::Hours(1)) {
    return FieldError("target.ws_ping_interval", "must be 100ms..1h");
  }
  if (s.clients < 1 || s.clients > kMaxClients) {
    return FieldError("clients", absl::StrCat("must be 1..", kMaxClients, ", got ", s.clients));
  }
  if (s.shards > kMaxShards) return FieldError("shards", absl::StrCat("must be 0..", kMaxShards));
  if (!(s.connect_rate > 0 && s.connect_rate <= 10'000'000)) {
    return FieldError("connect_rate", "must be > 0 and at most 10000000");
  }
  if (s.duration <= absl::ZeroDuration()) return FieldError("duration", "must be > 0");
  if (s.duration > kMaxDuration) return FieldError("duration", "must be at most 720h");
  if (s.duration % absl::Milliseconds(1) != absl::ZeroDuration()) {
    return FieldError("duration", "must be a whole number of milliseconds");
  }
  RETURN_IF_ERROR(ValidateAuth(s.auth));
  RETURN_IF_ERROR(ValidatePhases(s));
  RETURN_IF_ERROR(ValidateHeartbeat(s.heartbeat));
  RETURN_IF_ERROR(ValidateMessaging(s));
  const Reconnect& r = s.reconnect;
  if (r.initial < absl::Milliseconds(1)) return FieldError("reconnect.initial", "must be at least 1ms");
  if (r.max < r.initial) return FieldError("reconnect.max", "must be >= reconnect.initial");
  if (r.max > absl::Hours(1)) return FieldError("reconnect.max", "must be at most 1h");
  if (!(r.multiplier >= 1 && r.multiplier <= 100)) return FieldError("reconnect.multiplier", "must be 1..100");
  RETURN_IF_ERROR(ValidateNetwork(s.network));
  for (size_t i = 0; i < s.thresholds.size(); ++i) {
    const Threshold& t = s.thresholds[i];
    absl::StatusOr<Threshold> parsed = ParseThreshold(ThresholdText(t));
    if (!parsed.ok() || parsed->metric != t.metric) {
      return FieldError(absl::StrCat("thresholds[", i, "]"), parsed.ok()
                                                                 ? absl::StrCat("write the metric as ", parsed->metric)
                                                                 : std::string(parsed.status().message()));
    }
  }
  if (s.output.metrics_port < -1 || s.output.metrics_port > 65535) {
    return FieldError("output.metrics_port", "must be -1 (off) or 0..65535");
  }
  if (s.output.live_interval < absl::ZeroDuration()) return FieldError("output.live_interval", "must be >= 0");
  // Every duration is written back in whole milliseconds.
  for (const Phase& p : s.phases) {
    if (p.duration % absl::Milliseconds(1) != absl::ZeroDuration()) {
      return FieldError("phases", "durations must be whole milliseconds");
    }
  }
  return absl::OkStatus();
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

absl::StatusOr<Scenario> LoadScenario(absl::string_view yaml_text, absl::string_view origin) {
  ASSIGN_OR_RETURN(YAML::Node root, ParseDocument(yaml_text, origin));
  return Build(root, origin, {});
}

absl::StatusOr<Scenario> ScenarioFromFlags() {
  const std::string file = absl::GetFlag(FLAGS_scenario);
  YAML::Node root;
  if (!file.empty()) {
    std::ifstream in(file);
    if (!in)
      return absl::InvalidArgumentError(absl::StrCat("--scenario: cannot read ", file, ": ", std::strerror(errno)));
    std::stringstream ss;
    ss << in.rdbuf();
    ASSIGN_OR_RETURN(root, ParseDocument(ss.str(), file));
  }
  FlagPaths paths;
  try {
    ApplyFlags(root, &paths);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": YAML error: ", e.what()));
  }
  ASSIGN_OR_RETURN(Scenario s, Build(root, file, paths));
  if (s.auth.mode == AuthMode::kToken) {
    absl::StatusOr<std::string> secret = ReadAuthSecret(s.auth);
    if (!secret.ok()) return Locate(secret.status(), file, Marks(), paths);
  }
  return s;
}

std::string ScenarioToYaml(const Scenario& s, bool redact_secret) {
  YAML::Emitter e;
  e << YAML::BeginMap;
  if (!s.name.empty()) Put(e, "name", s.name);
  if (!s.description.empty()) Put(e, "description", s.description);

  BeginSection(e, "target");
  e << YAML::Key << "addresses" << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (const Endpoint& ep : s.target.addresses) e << EndpointText(ep);
  e << YAML::EndSeq;
  if (!s.target.source_addresses.empty()) {
    e << YAML::Key << "source_addresses" << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const std::string& a : s.target.source_addresses) e << a;
    e << YAML::EndSeq;
  }
  Put(e, "protocol", NameOf(kProtocols, s.target.protocol));
  Put(e, "ws_path", s.target.ws_path);
  Put(e, "ws_ping_interval", s.target.ws_ping_interval);
  e << YAML::EndMap;

  Put(e, "clients", s.clients);
  Put(e, "shards", s.shards);
  Put(e, "connect_rate", s.connect_rate);
  Put(e, "duration", s.duration);
  Put(e, "seed", s.seed);

  BeginSection(e, "auth");
  Put(e, "mode", NameOf(kAuthModes, s.auth.mode));
  if (!s.auth.secret.empty()) Put(e, "secret", redact_secret ? std::string("<redacted>") : s.auth.secret);
  if (!s.auth.secret_file.empty()) Put(e, "secret_file", s.auth.secret_file);
  Put(e, "token_ttl", s.auth.token_ttl);
  Put(e, "first_user_id", s.auth.first_user_id);
  if (s.auth.devices_distribution.empty()) {
    Put(e, "devices_per_user", s.auth.devices_per_user);
  } else {
    BeginSection(e, "devices_per_user");
    for (const DeviceShare& d : s.auth.devices_distribution) Put(e, absl::StrCat(d.devices), d.percent);
    e << YAML::EndMap;
  }
  e << YAML::EndMap;

  e << YAML::Key << "phases" << YAML::Value << YAML::BeginSeq;
  for (const Phase& p : s.phases) {
    e << YAML::BeginMap;
    Put(e, "kind", PhaseKindName(p.kind));
    if (!p.name.empty()) Put(e, "name", p.name);
    Put(e, "duration", p.duration);
    switch (p.kind) {
      case PhaseKind::kRamp:
        Put(e, "target", p.target);
        Put(e, "connect_rate", p.connect_rate);
        break;
      case PhaseKind::kHold:
        break;
      case PhaseKind::kSpike:
        Put(e, "clients", p.clients);
        Put(e, "connect_rate", p.connect_rate);
        break;
      case PhaseKind::kChurn:
      case PhaseKind::kStorm:
        Put(e, "percent", p.percent);
        Put(e, "drop", NameOf(kDropModes, p.drop));
        break;
      case PhaseKind::kDrain:
        Put(e, "target", p.target);
        Put(e, "drop", NameOf(kDropModes, p.drop));
        break;
    }
    e << YAML::EndMap;
  }
  e << YAML::EndSeq;

  const Heartbeat& h = s.heartbeat;
  BeginSection(e, "heartbeat");
  Put(e, "mode", NameOf(kHeartbeatModes, h.mode));
  if (h.mode == HeartbeatMode::kAdaptive) {
    Put(e, "initial", h.initial);
    Put(e, "max", h.max);
    Put(e, "step", h.step);
    Put(e, "backoff", h.backoff);
    Put(e, "successes_per_step", h.successes_per_step);
  }
  Put(e, "pong_timeout", h.pong_timeout);
  BeginSection(e, "background");
  Put(e, "fraction", h.background.fraction);
  Put(e, "interval_multiplier", h.background.interval_multiplier);
  Put(e, "switches_per_hour", h.background.switches_per_hour);
  e << YAML::EndMap << YAML::EndMap;

  const Messaging& m = s.messaging;
  BeginSection(e, "messaging");
  if (m.total_rate > 0) {
    Put(e, "total_rate", m.total_rate);
  } else {
    Put(e, "rate_per_client", m.rate_per_client);
  }
  Put(e, "targets", NameOf(kTargetSelections, m.targets));
  if (m.targets == TargetSelection::kGroups) {
    BeginSection(e, "groups");
    Put(e, "count", m.groups.count);
    Put(e, "size", m.groups.size);
    e << YAML::EndMap;
  }
  BeginSection(e, "payload");
  Put(e, "distribution", NameOf(kDistributions, m.payload.distribution));
  switch (m.payload.distribution) {
    case PayloadDistribution::kFixed:
      Put(e, "size", m.payload.size);
      break;
    case PayloadDistribution::kLognormal:
      Put(e, "median", m.payload.median);
      Put(e, "sigma", m.payload.sigma);
      [[fallthrough]];
    case PayloadDistribution::kUniform:
      Put(e, "min", m.payload.min);
      Put(e, "max", m.payload.max);
      break;
  }
  e << YAML::EndMap;
  Put(e, "push_ack", m.push_ack);
  Put(e, "ack_delay", m.ack_delay);
  Put(e, "sync_after_reconnect", m.sync_after_reconnect);
  e << YAML::EndMap;

  BeginSection(e, "reconnect");
  Put(e, "initial", s.reconnect.initial);
  Put(e, "max", s.reconnect.max);
  Put(e, "multiplier", s.reconnect.multiplier);
  Put(e, "max_attempts", s.reconnect.max_attempts);
  e << YAML::EndMap;

  if (!s.network.mix.empty()) {
    BeginSection(e, "network");
    BeginSection(e, "mix");
    for (const ProfileShare& p : s.network.mix) Put(e, p.name, p.percent);
    e << YAML::EndMap;
    bool any_override = false;
    for (const ProfileShare& p : s.network.mix) {
      const NetworkProfile* base = FindBuiltinProfile(p.name);
      if (base == nullptr || p.params == *base) continue;
      if (!any_override) BeginSection(e, "profiles");
      any_override = true;
      BeginSection(e, p.name);
      for (const ProfileField& f : kProfileFields) {
        if (!SameField(f, p.params, *base)) Put(e, f.name, FieldText(f, p.params));
      }
      e << YAML::EndMap;
    }
    if (any_override) e << YAML::EndMap;
    e << YAML::EndMap;
  }

  if (!s.thresholds.empty()) {
    e << YAML::Key << "thresholds" << YAML::Value << YAML::BeginSeq;
    for (const Threshold& t : s.thresholds) e << ThresholdText(t);
    e << YAML::EndSeq;
  }

  BeginSection(e, "output");
  if (!s.output.report_json.empty()) Put(e, "report_json", s.output.report_json);
  Put(e, "metrics_port", s.output.metrics_port);
  Put(e, "live_interval", s.output.live_interval);
  e << YAML::EndMap;

  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

}  // namespace longlink::loadgen
