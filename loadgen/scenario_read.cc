// Reading a scenario file: each section of the YAML into its part of the Scenario, then the defaults that
// depend on other fields (a ramp's target and duration, the run's duration, the default ramp-then-hold
// plan), then validation. Built on the typed reading of scenario_yaml.h.
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status.h"
#include "loadgen/scenario.h"
#include "loadgen/scenario_internal.h"
#include "loadgen/scenario_yaml.h"

namespace longlink::loadgen {
namespace scenario_internal {
namespace {

absl::Status ReadTarget(const YAML::Node& node, Marks* marks, Target* t) {
  ASSIGN_OR_RETURN(
      MapView m,
      OpenMap(node, "target", {"addresses", "source_addresses", "protocol", "ws_path", "ws_ping_interval"}, marks));
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
        p.drop = p.kind == PhaseKind::kChurn ? Leave::kClose : Leave::kReset;
        if (!m.Has("percent")) return FieldError(m.PathOf("percent"), "required (percent of connected clients)");
        RETURN_IF_ERROR(m.Read("percent", &p.percent));
        RETURN_IF_ERROR(m.Read("drop", &p.drop));
        break;
      case PhaseKind::kDrain:
        p.drop = Leave::kLogout;
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
  ASSIGN_OR_RETURN(MapView m, OpenMap(node, "heartbeat",
                                      {"mode", "initial", "max", "step", "backoff", "successes_per_step",
                                       "pong_timeout", "background"},
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

absl::Status ReadField(const ProfileField& f, const YAML::Node& n, const std::string& path, NetworkProfile* p) {
  if (f.duration != nullptr) return Convert(n, path, &(p->*f.duration));
  if (f.u64 != nullptr) return Convert(n, path, &(p->*f.u64));
  if (f.u32 != nullptr) return Convert(n, path, &(p->*f.u32));
  return Convert(n, path, &(p->*f.real));
}

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
  ASSIGN_OR_RETURN(MapView m, OpenMap(node, "output",
                                      {"report_json", "report_html", "run_id", "metrics_port", "metrics_linger",
                                       "live_interval"},
                                      marks));
  RETURN_IF_ERROR(m.Read("report_json", &o->report_json));
  RETURN_IF_ERROR(m.Read("report_html", &o->report_html));
  RETURN_IF_ERROR(m.Read("run_id", &o->run_id));
  RETURN_IF_ERROR(m.Read("metrics_port", &o->metrics_port));
  RETURN_IF_ERROR(m.Read("metrics_linger", &o->metrics_linger));
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
                           {"name", "description", "target", "clients", "shards", "connect_rate", "duration", "grace", "seed",
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
  RETURN_IF_ERROR(m.Read("grace", &s->grace));
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

}  // namespace

absl::StatusOr<Scenario> BuildScenario(const YAML::Node& root, absl::string_view origin, const FlagPaths& flags) {
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

}  // namespace scenario_internal

absl::StatusOr<Scenario> LoadScenario(absl::string_view yaml_text, absl::string_view origin) {
  ASSIGN_OR_RETURN(YAML::Node root, scenario_internal::ParseDocument(yaml_text, origin));
  return scenario_internal::BuildScenario(root, origin, {});
}

}  // namespace longlink::loadgen
