// What a longlink-loadgen run does, as one immutable, validated value.
//
// A run is described by a YAML scenario file (docs/loadgen-scenarios.md, examples in loadgen/scenarios/)
// whose values command-line flags may override; with no file the flags alone build a default scenario (a
// ramp, then a hold, with heartbeats and light messaging). Everything is read and checked once, before the
// first connection: the generator's shards get a const Scenario and never look at a flag or a file again.
//
// Every default that depends on another field (a ramp's target is all clients, its duration is the time
// its connections take at its rate, the run's duration is the sum of its phases) is resolved when the
// scenario is loaded, after the flag overrides, so the struct the generator sees is fully explicit and
// ScenarioToYaml() writes it back in a form that loads into an equal struct.
//
// Errors name the file, the line and column when known, the field path and the problem:
//   scenario.yaml:12:15: phases[2].duration: expected a duration like 30s, got "fast"
// A value that came from a flag names the flag instead of the file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "loadgen/vocabulary.h"

namespace longlink::loadgen {

// Process exit codes of longlink-loadgen.
enum ExitCode : int {
  kExitOk = 0,
  kExitThresholdsViolated = 1,  // the run completed but at least one threshold failed
  kExitBadScenario = 2,         // bad flags or scenario; nothing was run
  kExitSaturated = 3,           // the generator itself fell behind, so its figures say nothing about the gateway
};

// Transport, Leave, TargetSelection and PayloadDistribution, which the engine shares, are in vocabulary.h.
enum class AuthMode : uint8_t { kNone, kToken };
enum class PhaseKind : uint8_t { kRamp, kHold, kSpike, kChurn, kStorm, kDrain };
enum class HeartbeatMode : uint8_t { kFixed, kAdaptive };
enum class Comparison : uint8_t { kLess, kLessEqual, kGreater, kGreaterEqual, kEqual, kNotEqual };

struct Endpoint {
  std::string host;  // numeric IPv4 or IPv6 address (no brackets)
  uint16_t port = 0;
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

struct Target {
  std::vector<Endpoint> addresses;            // connections are spread over these, round robin
  std::vector<std::string> source_addresses;  // numeric; bound with IP_BIND_ADDRESS_NO_PORT; empty: kernel picks
  Transport protocol = Transport::kTcp;       // spelled longlink, ws or ws-echo
  std::string ws_path = "/";                  // ws, ws-echo: the request path of the upgrade
  absl::Duration ws_ping_interval = absl::Seconds(30);  // ws-echo: WebSocket pings this often
  friend bool operator==(const Target&, const Target&) = default;
};

// devices_distribution entry: `percent` of the users have `devices` devices (one connection each).
struct DeviceShare {
  uint32_t devices = 1;
  double percent = 100;
  friend bool operator==(const DeviceShare&, const DeviceShare&) = default;
};

struct Auth {
  AuthMode mode = AuthMode::kNone;
  std::string secret;       // for kToken, exactly one of secret and secret_file
  std::string secret_file;  // read by ReadAuthSecret(), trailing whitespace stripped (as the gateway does)
  absl::Duration token_ttl = absl::Hours(24);
  uint64_t first_user_id = 1;  // users are first_user_id, first_user_id + 1, ...
  uint32_t devices_per_user = 1;
  std::vector<DeviceShare> devices_distribution;  // when set, replaces devices_per_user; percents sum to 100
  friend bool operator==(const Auth&, const Auth&) = default;
};

// One step of the run. Fields a kind does not use keep their defaults (and are rejected in the file).
struct Phase {
  PhaseKind kind = PhaseKind::kHold;
  std::string name;  // optional label for live lines and the report
  absl::Duration duration = absl::ZeroDuration();
  uint64_t target = 0;         // ramp: clients connected at the end; drain: clients left connected at the end
  double connect_rate = 0;     // ramp, spike: new connections per second
  uint64_t clients = 0;        // spike: clients that connect on top of those connected, and leave at the end
  double percent = 0;          // churn: % of connected clients dropped and reconnected per second;
                               // storm: % of connected clients dropped at once at the start of the phase
  Leave drop = Leave::kClose;  // churn (default close), storm (default reset), drain (default logout)
  friend bool operator==(const Phase&, const Phase&) = default;
};

struct Background {
  double fraction = 0;             // share of clients in the background state, 0..1
  double interval_multiplier = 2;  // background heartbeat interval = foreground interval x this
  double switches_per_hour = 6;    // average foreground/background switches per client per hour
  friend bool operator==(const Background&, const Background&) = default;
};

struct Heartbeat {
  HeartbeatMode mode = HeartbeatMode::kFixed;  // fixed: the interval from LOGIN_ACK
  // Adaptive: start at `initial`; after `successes_per_step` answered PINGs in a row grow by `step` up to
  // `max`; on a missed PONG multiply by `backoff` (never below `initial`).
  absl::Duration initial = absl::Seconds(20);
  absl::Duration max = absl::Seconds(80);
  absl::Duration step = absl::Seconds(10);
  double backoff = 0.5;
  uint32_t successes_per_step = 3;
  // Any mode: a PING unanswered this long means the connection is dead; the client closes and reconnects.
  absl::Duration pong_timeout = absl::Seconds(10);
  Background background;
  friend bool operator==(const Heartbeat&, const Heartbeat&) = default;
};

struct Payload {
  PayloadDistribution distribution = PayloadDistribution::kFixed;
  uint32_t size = 64;   // fixed
  uint32_t min = 0;     // uniform, lognormal (lower clamp)
  uint32_t max = 4096;  // uniform, lognormal (upper clamp)
  double median = 64;   // lognormal
  double sigma = 1.0;   // lognormal, of the underlying normal
  friend bool operator==(const Payload&, const Payload&) = default;
};

struct Groups {
  uint32_t count = 0;
  uint32_t size = 0;  // members per group
  friend bool operator==(const Groups&, const Groups&) = default;
};

// An open model: send times are a Poisson process that does not wait for acknowledgements.
struct Messaging {
  double rate_per_client = 0.01;  // messages per second per connected client; at most one of the two rates
  double total_rate = 0;          // messages per second over all connected clients
  TargetSelection targets = TargetSelection::kRandomUser;
  Groups groups;  // for kGroups
  Payload payload;
  bool push_ack = true;              // answer every PUSH with a PUSH_ACK
  // 0: acknowledge at once; otherwise one cumulative PUSH_ACK rides with the client's next frame, or goes
  // alone this long after the first push it covers.
  absl::Duration ack_delay = absl::ZeroDuration();
  bool sync_after_reconnect = true;  // SYNC after every reconnect
  friend bool operator==(const Messaging&, const Messaging&) = default;
};

// Exponential backoff with full jitter: attempt n waits uniform(0, min(max, initial x multiplier^n)).
struct Reconnect {
  absl::Duration initial = absl::Seconds(1);
  absl::Duration max = absl::Seconds(60);
  double multiplier = 2;
  uint32_t max_attempts = 0;  // 0: unbounded within the run
  friend bool operator==(const Reconnect&, const Reconnect&) = default;
};

// Impairments applied to one simulated client's connection. Zero means "none" for every field.
struct NetworkProfile {
  absl::Duration latency_up = absl::ZeroDuration();  // one-way delay, client to gateway
  absl::Duration jitter_up = absl::ZeroDuration();   // uniform +- around latency_up
  absl::Duration latency_down = absl::ZeroDuration();
  absl::Duration jitter_down = absl::ZeroDuration();
  uint64_t bandwidth_up = 0;     // bytes per second, token bucket; 0: unlimited
  uint64_t bandwidth_down = 0;   // bytes per second, token bucket; 0: unlimited
  double stall_probability = 0;  // chance per second that the connection stalls (nothing moves either way)
  absl::Duration stall_duration = absl::ZeroDuration();
  uint32_t max_segment = 0;     // writes are cut into pieces of at most this many bytes; 0: whole
  double flaps_per_hour = 0;    // abrupt closes or RSTs per connection per hour
  double zombies_per_hour = 0;  // per connection per hour: it stops reading and writing without closing
  absl::Duration nat_idle_timeout = absl::ZeroDuration();  // silently black-holed after this much idle
  friend bool operator==(const NetworkProfile&, const NetworkProfile&) = default;
};

// `percent` of the clients use the named built-in profile with `params` (its defaults plus overrides).
struct ProfileShare {
  std::string name;
  double percent = 0;
  NetworkProfile params;
  friend bool operator==(const ProfileShare&, const ProfileShare&) = default;
};

struct Network {
  std::vector<ProfileShare> mix;  // percents sum to 100; empty: every client on "none"
  friend bool operator==(const Network&, const Network&) = default;
};

// "<metric> <op> <value>"; the run fails (exit 1) when a threshold does not hold for the final report.
struct Threshold {
  std::string metric;  // one of ThresholdMetrics(), canonical spelling
  Comparison op = Comparison::kLess;
  double value = 0;
  friend bool operator==(const Threshold&, const Threshold&) = default;
};

struct Output {
  std::string report_json;                          // empty: no JSON report
  std::string report_html;                          // empty: no HTML report
  std::string run_id;                               // the run_id label of the metrics; empty: <name>-<UTC start>
  int32_t metrics_port = -1;                        // Prometheus endpoint of the generator; -1: off, 0: any free port
  absl::Duration metrics_linger = absl::ZeroDuration();  // keep serving the final figures this long after
  absl::Duration live_interval = absl::Seconds(1);  // one status line this often; 0: none
  friend bool operator==(const Output&, const Output&) = default;
};

struct Scenario {
  std::string name;
  std::string description;
  Target target;
  uint64_t clients = 1000;     // simulated client connections (devices) in the population
  uint32_t shards = 0;         // generator threads; resolved to the number of cores by the generator when 0
  double connect_rate = 1000;  // new connections per second, for phases that do not set their own
  absl::Duration duration = absl::Seconds(60);  // the run ends after this, whatever the phases say
  absl::Duration grace = absl::Seconds(3);      // then this long for outstanding acks, pushes and SYNCs to settle
  uint64_t seed = 1;
  Auth auth;
  std::vector<Phase> phases;
  Heartbeat heartbeat;
  Messaging messaging;
  Reconnect reconnect;
  Network network;
  std::vector<Threshold> thresholds;
  Output output;
  friend bool operator==(const Scenario&, const Scenario&) = default;
};

// Parses, completes and validates a scenario. `origin` (usually the file name) starts every message.
absl::StatusOr<Scenario> LoadScenario(absl::string_view yaml_text, absl::string_view origin);

// Reads --scenario if set, applies the other flags over it (or over the built-in defaults), then completes
// and validates the result, and checks that auth.secret_file is readable.
absl::StatusOr<Scenario> ScenarioFromFlags();

// YAML that LoadScenario() turns back into an equal Scenario. With redact_secret the auth secret is
// replaced by "<redacted>", for reports that others may read.
std::string ScenarioToYaml(const Scenario& scenario, bool redact_secret = false);

// Checks a complete Scenario (also one built in code); errors start with the field path.
absl::Status Validate(const Scenario& scenario);

// The token secret: auth.secret, or the contents of auth.secret_file without trailing whitespace.
absl::StatusOr<std::string> ReadAuthSecret(const Auth& auth);

// Built-in network profiles: "none", "wifi", "4g", "3g", "edge", "gprs", "lossy". Null when unknown.
const NetworkProfile* FindBuiltinProfile(absl::string_view name);
absl::Span<const absl::string_view> BuiltinProfileNames();

// The metric names thresholds may use (docs/loadgen-scenarios.md explains each).
struct ThresholdMetric {
  absl::string_view name;
  absl::string_view meaning;
};
absl::Span<const ThresholdMetric> ThresholdMetrics();

// "p99_e2e_ms < 50" -> {e2e_p99_ms, kLess, 50}. Errors do not carry a field path.
absl::StatusOr<Threshold> ParseThreshold(absl::string_view text);
std::string ThresholdText(const Threshold& threshold);
bool ThresholdHolds(const Threshold& threshold, double observed);

absl::string_view PhaseKindName(PhaseKind kind);
absl::string_view ComparisonSymbol(Comparison op);

// "1h", "2m", "30s", "250ms": the largest unit that represents `d` exactly (d is a whole number of ms).
std::string FormatScenarioDuration(absl::Duration d);

}  // namespace longlink::loadgen
