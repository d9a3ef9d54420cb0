// Writing a Scenario back as YAML, in the form LoadScenario() reads into an equal struct: every field
// explicit, only the fields a kind or distribution uses, profile parameters only where they differ from the
// built-in profile. Reports embed it, with the secret redacted.
#include <string>

#include "absl/strings/str_cat.h"
#include "loadgen/scenario.h"
#include "loadgen/scenario_internal.h"
#include "yaml-cpp/yaml.h"

namespace longlink::loadgen {
namespace {

using scenario_internal::EndpointText;
using scenario_internal::FieldText;
using scenario_internal::FormatDouble;
using scenario_internal::kAuthModes;
using scenario_internal::kDistributions;
using scenario_internal::kHeartbeatModes;
using scenario_internal::kLeaves;
using scenario_internal::kProfileFields;
using scenario_internal::kTargetSelections;
using scenario_internal::kTransports;
using scenario_internal::NameOf;
using scenario_internal::ProfileField;
using scenario_internal::SameField;

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

}  // namespace

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
  Put(e, "protocol", NameOf(kTransports, s.target.protocol));
  Put(e, "ws_path", s.target.ws_path);
  Put(e, "ws_ping_interval", s.target.ws_ping_interval);
  e << YAML::EndMap;

  Put(e, "clients", s.clients);
  Put(e, "shards", s.shards);
  Put(e, "connect_rate", s.connect_rate);
  Put(e, "duration", s.duration);
  Put(e, "grace", s.grace);
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
        Put(e, "drop", NameOf(kLeaves, p.drop));
        break;
      case PhaseKind::kDrain:
        Put(e, "target", p.target);
        Put(e, "drop", NameOf(kLeaves, p.drop));
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
  if (!s.output.report_html.empty()) Put(e, "report_html", s.output.report_html);
  if (!s.output.run_id.empty()) Put(e, "run_id", s.output.run_id);
  Put(e, "metrics_port", s.output.metrics_port);
  if (s.output.metrics_linger > absl::ZeroDuration()) Put(e, "metrics_linger", s.output.metrics_linger);
  Put(e, "live_interval", s.output.live_interval);
  e << YAML::EndMap;

  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

}  // namespace longlink::loadgen
