// Checking a complete Scenario, read from a file or built in code: ranges, fields that contradict each other,
// phases that cannot do what they say with the clients connected before them, and fields a kind does not use
// left at their defaults (so that ScenarioToYaml() loses nothing). Errors start with the field path.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "loadgen/scenario.h"
#include "loadgen/scenario_internal.h"

namespace longlink::loadgen {
namespace {

using scenario_internal::Count;
using scenario_internal::FieldError;
using scenario_internal::FormatDouble;
using scenario_internal::IsIpLiteral;
using scenario_internal::kMaxClients;
using scenario_internal::kMaxDuration;
using scenario_internal::kMaxPayload;
using scenario_internal::kMaxShards;
using scenario_internal::KnownProfiles;
using scenario_internal::kProfileFields;
using scenario_internal::PhaseKeys;
using scenario_internal::ProfileField;
using scenario_internal::Quote;

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
    if (!uses("drop") && p.drop != Leave::kClose) {
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

}  // namespace

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
  if (s.grace < absl::ZeroDuration() || s.grace > absl::Minutes(10)) {
    return FieldError("grace", "must be from 0s to 10m");
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
  if (s.output.run_id.size() > 64 ||
      !std::all_of(s.output.run_id.begin(), s.output.run_id.end(),
                   [](char c) { return absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == ':'; })) {
    return FieldError("output.run_id", "must be at most 64 of A-Z a-z 0-9 - _ . :");
  }
  if (s.output.metrics_linger < absl::ZeroDuration() || s.output.metrics_linger > absl::Hours(1)) {
    return FieldError("output.metrics_linger", "must be 0s..1h");
  }
  // Every duration is written back in whole milliseconds.
  for (const Phase& p : s.phases) {
    if (p.duration % absl::Milliseconds(1) != absl::ZeroDuration()) {
      return FieldError("phases", "durations must be whole milliseconds");
    }
  }
  return absl::OkStatus();
}

}  // namespace longlink::loadgen
