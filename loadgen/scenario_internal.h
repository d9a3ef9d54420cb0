// What the scenario's source files share and nothing else uses: how each enum value is spelled in the file,
// the limits the checks enforce, field-path errors and number formatting, the keys each kind of phase takes,
// and the table of network profile parameters. One copy, so that reading (scenario_read.cc), writing
// (scenario_write.cc), checking (scenario_validate.cc) and the flags (scenario_flags.cc) cannot disagree on
// a name or a limit. Internal to loadgen/scenario*.cc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "loadgen/scenario.h"

namespace longlink::loadgen::scenario_internal {

// ---------------------------------------------------------------------------------------------------------
// Names: the spelling of every enum value in YAML and flags

template <typename E>
struct Named {
  E value;
  absl::string_view name;
};

inline constexpr Named<Transport> kTransports[] = {
    {Transport::kTcp, "longlink"}, {Transport::kWebSocket, "ws"}, {Transport::kWebSocketEcho, "ws-echo"}};
inline constexpr Named<AuthMode> kAuthModes[] = {{AuthMode::kNone, "none"}, {AuthMode::kToken, "token"}};
inline constexpr Named<PhaseKind> kPhaseKinds[] = {{PhaseKind::kRamp, "ramp"},   {PhaseKind::kHold, "hold"},
                                                   {PhaseKind::kSpike, "spike"}, {PhaseKind::kChurn, "churn"},
                                                   {PhaseKind::kStorm, "storm"}, {PhaseKind::kDrain, "drain"}};
inline constexpr Named<Leave> kLeaves[] = {
    {Leave::kLogout, "logout"}, {Leave::kClose, "close"}, {Leave::kReset, "reset"}};
inline constexpr Named<HeartbeatMode> kHeartbeatModes[] = {{HeartbeatMode::kFixed, "fixed"},
                                                           {HeartbeatMode::kAdaptive, "adaptive"}};
inline constexpr Named<TargetSelection> kTargetSelections[] = {{TargetSelection::kSelf, "self"},
                                                               {TargetSelection::kRandomUser, "random_user"},
                                                               {TargetSelection::kGroups, "groups"}};
inline constexpr Named<PayloadDistribution> kDistributions[] = {{PayloadDistribution::kFixed, "fixed"},
                                                                {PayloadDistribution::kUniform, "uniform"},
                                                                {PayloadDistribution::kLognormal, "lognormal"}};
// Two-character operators first so "<=" is not read as "<" followed by "=".
inline constexpr Named<Comparison> kComparisons[] = {{Comparison::kLessEqual, "<="}, {Comparison::kGreaterEqual, ">="},
                                                     {Comparison::kEqual, "=="},     {Comparison::kNotEqual, "!="},
                                                     {Comparison::kLess, "<"},       {Comparison::kGreater, ">"}};

template <typename E, size_t N>
absl::string_view NameOf(const Named<E> (&table)[N], E value) {
  for (const Named<E>& n : table) {
    if (n.value == value) return n.name;
  }
  return "?";
}

// "a, b or c", for error messages.
template <typename E, size_t N>
std::string Choices(const Named<E> (&table)[N]) {
  std::string out;
  for (size_t i = 0; i < N; ++i) {
    absl::StrAppend(&out, i == 0 ? "" : (i + 1 == N ? " or " : ", "), table[i].name);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Limits

inline constexpr uint64_t kMaxClients = 100'000'000;
inline constexpr uint32_t kMaxShards = 1024;
// A SEND frame is 33 bytes plus the payload, and the gateway's --max-frame-bytes is at most 16 MiB.
inline constexpr uint32_t kMaxPayload = (16u << 20) - 33;
inline constexpr absl::Duration kMaxDuration = absl::Hours(24 * 30);

// ---------------------------------------------------------------------------------------------------------
// Scalars and messages

// The shortest text that reads back as the same double.
std::string FormatDouble(double v);
// A value as quoted in a message, C-escaped and cut after 60 characters.
std::string Quote(absl::string_view s);
// "<path>: <problem>"; Locate() (scenario_yaml.h) later prefixes the file, line and column or the flag.
absl::Status FieldError(absl::string_view path, absl::string_view problem);
// "1000 clients" reads better than "1e+03 clients" in messages.
std::string Count(double v);
bool ParseDurationText(absl::string_view text, absl::Duration* out, std::string* problem);
// Splits "host:port" or "[v6]:port".
absl::Status ParseEndpoint(absl::string_view text, absl::string_view path, Endpoint* out);
std::string EndpointText(const Endpoint& e);
bool IsIpLiteral(const std::string& host);

// ---------------------------------------------------------------------------------------------------------
// Phases

// The keys a phase of `kind` takes in the file.
const std::vector<absl::string_view>& PhaseKeys(PhaseKind kind);
// Whole seconds needed to open `n` connections at `rate` per second, at least one.
absl::Duration RampTime(uint64_t n, double rate);

// ---------------------------------------------------------------------------------------------------------
// Network profile parameters, in file order; one table drives reading, writing and checking them.

struct ProfileField {
  absl::string_view name;
  absl::Duration NetworkProfile::*duration;
  uint64_t NetworkProfile::*u64;
  uint32_t NetworkProfile::*u32;
  double NetworkProfile::*real;
};

inline constexpr ProfileField kProfileFields[] = {
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

std::vector<absl::string_view> ProfileFieldNames();
bool SameField(const ProfileField& f, const NetworkProfile& a, const NetworkProfile& b);
std::string FieldText(const ProfileField& f, const NetworkProfile& p);
// "none, wifi, ...", for error messages.
std::string KnownProfiles();

}  // namespace longlink::loadgen::scenario_internal
