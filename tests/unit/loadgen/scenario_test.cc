#include "loadgen/scenario.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"

ABSL_DECLARE_FLAG(std::string, scenario);
ABSL_DECLARE_FLAG(std::string, target);
ABSL_DECLARE_FLAG(std::string, source_addresses);
ABSL_DECLARE_FLAG(std::string, clients);
ABSL_DECLARE_FLAG(std::string, shards);
ABSL_DECLARE_FLAG(std::string, connect_rate);
ABSL_DECLARE_FLAG(std::string, duration);
ABSL_DECLARE_FLAG(std::string, seed);
ABSL_DECLARE_FLAG(std::string, rate);
ABSL_DECLARE_FLAG(std::string, auth);
ABSL_DECLARE_FLAG(std::string, auth_secret);
ABSL_DECLARE_FLAG(std::string, auth_secret_file);
ABSL_DECLARE_FLAG(std::string, report_json);
ABSL_DECLARE_FLAG(std::string, metrics_port);
ABSL_DECLARE_FLAG(std::string, live_interval);

namespace longlink::loadgen {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string ExamplePath(const std::string& name) {
  return absl::StrCat(LONGLINK_SOURCE_DIR, "/loadgen/scenarios/", name);
}

// A valid scenario to which each error test adds or changes one thing.
constexpr char kBase[] = R"(target:
  addresses: [127.0.0.1:7000]
clients: 100
)";

std::string LoadError(const std::string& yaml) {
  absl::StatusOr<Scenario> s = LoadScenario(yaml, "t.yaml");
  if (s.ok()) return "(loaded without error)";
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(s.status().message());
}

std::string FlagsError() {
  absl::StatusOr<Scenario> s = ScenarioFromFlags();
  return s.ok() ? "(no error)" : std::string(s.status().message());
}

Scenario MustLoad(const std::string& yaml) {
  absl::StatusOr<Scenario> s = LoadScenario(yaml, "t.yaml");
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : Scenario{};
}

// ------------------------------------------------------------------------------------------------------
// Examples

class ExampleTest : public ::testing::TestWithParam<const char*> {};

TEST_P(ExampleTest, LoadsValidatesAndRoundTrips) {
  const std::string path = ExamplePath(GetParam());
  const std::string text = ReadFile(path);
  ASSERT_FALSE(text.empty()) << path;
  absl::StatusOr<Scenario> s = LoadScenario(text, path);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(Validate(*s).ok());
  EXPECT_FALSE(s->name.empty());
  EXPECT_FALSE(s->phases.empty());

  const std::string yaml = ScenarioToYaml(*s);
  absl::StatusOr<Scenario> again = LoadScenario(yaml, "roundtrip.yaml");
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << yaml;
  EXPECT_TRUE(*again == *s) << yaml;
  EXPECT_EQ(ScenarioToYaml(*again), yaml);
}

INSTANTIATE_TEST_SUITE_P(Scenarios, ExampleTest,
                         ::testing::Values("smoke.yaml", "mobile-mix.yaml", "storm.yaml", "churn.yaml", "zombies.yaml",
                                           "c1m.yaml"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string n = info.param;
                           std::string out;
                           for (char c : n.substr(0, n.find('.'))) out += (c == '-' ? '_' : c);
                           return out;
                         });

TEST(ScenarioExamples, SmokeIsSmallAndShort) {
  Scenario s = MustLoad(ReadFile(ExamplePath("smoke.yaml")));
  EXPECT_EQ(s.clients, 200u);
  EXPECT_EQ(s.duration, absl::Seconds(30));
  ASSERT_EQ(s.phases.size(), 2u);
  EXPECT_EQ(s.phases[0].kind, PhaseKind::kRamp);
  EXPECT_EQ(s.phases[0].target, 200u);
  EXPECT_EQ(s.phases[0].duration, absl::Seconds(2)) << "200 clients at 100/s";
  EXPECT_EQ(s.messaging.targets, TargetSelection::kSelf);
}

TEST(ScenarioExamples, MobileMixUsesEveryWeakProfile) {
  Scenario s = MustLoad(ReadFile(ExamplePath("mobile-mix.yaml")));
  EXPECT_EQ(s.clients, 10000u);
  EXPECT_EQ(s.duration, absl::Seconds(30));
  EXPECT_EQ(s.heartbeat.mode, HeartbeatMode::kAdaptive);
  EXPECT_GT(s.messaging.rate_per_client, 0);
  EXPECT_EQ(s.messaging.payload.distribution, PayloadDistribution::kLognormal);
  std::set<std::string> names;
  double sum = 0;
  for (const ProfileShare& p : s.network.mix) {
    names.insert(p.name);
    sum += p.percent;
    EXPECT_EQ(p.params, *FindBuiltinProfile(p.name)) << p.name;
  }
  EXPECT_EQ(names, (std::set<std::string>{"wifi", "4g", "3g", "edge", "gprs", "lossy"}));
  EXPECT_DOUBLE_EQ(sum, 100);
}

TEST(ScenarioExamples, C1mHoldsAMillionOverManyAddressPairs) {
  Scenario s = MustLoad(ReadFile(ExamplePath("c1m.yaml")));
  EXPECT_EQ(s.clients, 1'000'000u);
  EXPECT_EQ(s.target.addresses.size(), 8u);
  EXPECT_EQ(s.target.source_addresses.size(), 8u);
  EXPECT_EQ(s.messaging.rate_per_client, 0);
  ASSERT_EQ(s.phases.size(), 2u);
  EXPECT_EQ(s.phases[0].duration, absl::Seconds(50));
  EXPECT_EQ(s.phases[1].duration, absl::Seconds(60));
  EXPECT_EQ(s.duration, absl::Seconds(110)) << "the sum of the phases";
}

TEST(ScenarioExamples, ZombiesOverridesOneProfileParameterSet) {
  Scenario s = MustLoad(ReadFile(ExamplePath("zombies.yaml")));
  ASSERT_EQ(s.network.mix.size(), 1u);
  const NetworkProfile& p = s.network.mix[0].params;
  EXPECT_EQ(p.zombies_per_hour, 1);
  EXPECT_EQ(p.flaps_per_hour, 0);
  EXPECT_EQ(p.nat_idle_timeout, absl::ZeroDuration());
  EXPECT_EQ(p.latency_up, FindBuiltinProfile("wifi")->latency_up) << "parameters not overridden keep defaults";
}

// ------------------------------------------------------------------------------------------------------
// Defaults, formats, round trip

TEST(ScenarioLoad, MinimalFileGetsRampThenHold) {
  Scenario s = MustLoad(absl::StrCat(kBase, "connect_rate: 50\n"));
  ASSERT_EQ(s.phases.size(), 2u);
  EXPECT_EQ(s.phases[0].kind, PhaseKind::kRamp);
  EXPECT_EQ(s.phases[0].target, 100u);
  EXPECT_EQ(s.phases[0].connect_rate, 50);
  EXPECT_EQ(s.phases[0].duration, absl::Seconds(2));
  EXPECT_EQ(s.phases[1].kind, PhaseKind::kHold);
  EXPECT_EQ(s.phases[1].duration, absl::Seconds(60));
  EXPECT_EQ(s.duration, absl::Seconds(62));
  EXPECT_EQ(s.auth.mode, AuthMode::kNone);
  EXPECT_EQ(s.heartbeat.mode, HeartbeatMode::kFixed);
  EXPECT_GT(s.messaging.rate_per_client, 0) << "light messaging by default";
  EXPECT_TRUE(s.messaging.push_ack);
  EXPECT_TRUE(s.messaging.sync_after_reconnect);
  EXPECT_EQ(s.output.metrics_port, -1);
}

TEST(ScenarioLoad, DurationBoundsTheDefaultPlan) {
  Scenario s = MustLoad(absl::StrCat(kBase, "connect_rate: 10\nduration: 1m\n"));
  ASSERT_EQ(s.phases.size(), 2u);
  EXPECT_EQ(s.phases[0].duration, absl::Seconds(10));
  EXPECT_EQ(s.phases[1].duration, absl::Seconds(50));
  EXPECT_EQ(s.duration, absl::Minutes(1));
}

TEST(ScenarioLoad, DurationForms) {
  struct Case {
    const char* text;
    absl::Duration want;
  } cases[] = {{"500ms", absl::Milliseconds(500)}, {"30s", absl::Seconds(30)},
               {"2m", absl::Minutes(2)},           {"1h", absl::Hours(1)},
               {"1.5s", absl::Milliseconds(1500)}, {"1m30s", absl::Seconds(90)}};
  for (const Case& c : cases) {
    Scenario s = MustLoad(absl::StrCat(kBase, "duration: ", c.text, "\n"));
    EXPECT_EQ(s.duration, c.want) << c.text;
  }
  EXPECT_EQ(FormatScenarioDuration(absl::Milliseconds(500)), "500ms");
  EXPECT_EQ(FormatScenarioDuration(absl::Seconds(90)), "90s");
  EXPECT_EQ(FormatScenarioDuration(absl::Minutes(2)), "2m");
  EXPECT_EQ(FormatScenarioDuration(absl::Hours(3)), "3h");
  EXPECT_EQ(FormatScenarioDuration(absl::ZeroDuration()), "0s");
}

TEST(ScenarioLoad, PhasesKeepTheirKindsAndDefaults) {
  Scenario s = MustLoad(absl::StrCat(kBase, R"(connect_rate: 100
phases:
  - {kind: ramp, target: 80, connect_rate: 40}
  - {kind: spike, clients: 20, duration: 5s}
  - {kind: churn, percent: 2, duration: 10s}
  - {kind: storm, percent: 30, duration: 10s, name: outage}
  - {kind: drain, duration: 5s}
)"));
  ASSERT_EQ(s.phases.size(), 5u);
  EXPECT_EQ(s.phases[0].duration, absl::Seconds(2));
  EXPECT_EQ(s.phases[1].connect_rate, 100) << "the scenario's rate";
  EXPECT_EQ(s.phases[2].drop, Leave::kClose);
  EXPECT_EQ(s.phases[3].drop, Leave::kReset);
  EXPECT_EQ(s.phases[3].name, "outage");
  EXPECT_EQ(s.phases[4].drop, Leave::kLogout);
  EXPECT_EQ(s.phases[4].target, 0u);
  EXPECT_EQ(s.duration, absl::Seconds(32));
}

TEST(ScenarioLoad, RestFillsTheMixAndOverridesApply) {
  Scenario s = MustLoad(absl::StrCat(kBase, R"(network:
  mix: {3g: 25, edge: 10, none: rest}
  profiles:
    3g: {latency_down: 300ms, bandwidth_down: 100000}
)"));
  ASSERT_EQ(s.network.mix.size(), 3u);
  EXPECT_EQ(s.network.mix[2].name, "none");
  EXPECT_DOUBLE_EQ(s.network.mix[2].percent, 65);
  EXPECT_EQ(s.network.mix[0].params.latency_down, absl::Milliseconds(300));
  EXPECT_EQ(s.network.mix[0].params.bandwidth_down, 100000u);
  EXPECT_EQ(s.network.mix[0].params.latency_up, FindBuiltinProfile("3g")->latency_up);
  EXPECT_EQ(s.network.mix[1].params, *FindBuiltinProfile("edge"));
}

TEST(ScenarioLoad, DevicesPerUserNumberOrDistribution) {
  Scenario a = MustLoad(absl::StrCat(kBase, "auth: {devices_per_user: 3}\n"));
  EXPECT_EQ(a.auth.devices_per_user, 3u);
  Scenario b = MustLoad(absl::StrCat(kBase, "auth: {devices_per_user: {1: 70, 2: 25, 3: 5}}\n"));
  ASSERT_EQ(b.auth.devices_distribution.size(), 3u);
  EXPECT_EQ(b.auth.devices_distribution[1].devices, 2u);
  EXPECT_EQ(b.auth.devices_distribution[1].percent, 25);
}

Scenario Everything() {
  Scenario s;
  s.name = "everything";
  s.description = "every field: away from its default, with: colons # and \"quotes\"";
  s.target.addresses = {{"127.0.0.2", 7000}, {"::1", 7001}};
  s.target.source_addresses = {"127.0.1.1", "fe80::1"};
  s.clients = 5000;
  s.shards = 3;
  s.connect_rate = 1234.5;
  s.grace = absl::Seconds(7);
  s.duration = absl::Milliseconds(125'250);
  s.seed = 18446744073709551615ull;
  s.auth.mode = AuthMode::kToken;
  s.auth.secret = "s3cret: with # odd 'chars'";
  s.auth.token_ttl = absl::Hours(2);
  s.auth.first_user_id = 1'000'000;
  s.auth.devices_distribution = {{1, 60.5}, {2, 39.5}};
  Phase ramp{PhaseKind::kRamp, "up", absl::Seconds(10), 3000, 400};
  Phase hold{PhaseKind::kHold, "", absl::Milliseconds(1500)};
  Phase spike{PhaseKind::kSpike, "", absl::Seconds(20), 0, 500, 1500};
  Phase churn{PhaseKind::kChurn, "", absl::Seconds(30), 0, 0, 0, 0.5, Leave::kReset};
  Phase storm{PhaseKind::kStorm, "", absl::Seconds(30), 0, 0, 0, 30, Leave::kLogout};
  Phase drain{PhaseKind::kDrain, "down", absl::Seconds(10), 100, 0, 0, 0, Leave::kClose};
  s.phases = {ramp, hold, spike, churn, storm, drain};
  s.heartbeat.mode = HeartbeatMode::kAdaptive;
  s.heartbeat.initial = absl::Seconds(15);
  s.heartbeat.max = absl::Minutes(4);
  s.heartbeat.step = absl::Milliseconds(7500);
  s.heartbeat.backoff = 0.25;
  s.heartbeat.successes_per_step = 5;
  s.heartbeat.background = {0.35, 3, 12};
  s.messaging.rate_per_client = 0;
  s.messaging.total_rate = 333.3;
  s.messaging.targets = TargetSelection::kGroups;
  s.messaging.groups = {50, 20};
  s.messaging.payload.distribution = PayloadDistribution::kLognormal;
  s.messaging.payload.median = 120.5;
  s.messaging.payload.sigma = 0.8;
  s.messaging.payload.min = 8;
  s.messaging.payload.max = 65503;
  s.messaging.push_ack = false;
  s.messaging.sync_after_reconnect = false;
  s.reconnect = {absl::Milliseconds(250), absl::Seconds(45), 1.5, 7};
  ProfileShare g{"gprs", 12.5, *FindBuiltinProfile("gprs")};
  g.params.stall_probability = 0.125;
  g.params.nat_idle_timeout = absl::Minutes(4);
  g.params.max_segment = 100;
  s.network.mix = {{"wifi", 50, *FindBuiltinProfile("wifi")}, g, {"none", 37.5, NetworkProfile{}}};
  s.thresholds = {{"e2e_p99_ms", Comparison::kLess, 50},
                  {"lost", Comparison::kEqual, 0},
                  {"connect_errors_pct", Comparison::kLessEqual, 0.5},
                  {"connected_peak", Comparison::kGreaterEqual, 5000},
                  {"kicks", Comparison::kNotEqual, 1},
                  {"sent", Comparison::kGreater, 1e6}};
  s.output.report_json = "/tmp/report.json";
  s.output.report_html = "/tmp/report.html";
  s.output.run_id = "nightly-42";
  s.output.metrics_port = 0;
  s.output.metrics_linger = absl::Seconds(15);
  s.output.live_interval = absl::Milliseconds(2500);
  return s;
}

TEST(ScenarioYaml, RoundTripsEveryField) {
  const Scenario s = Everything();
  ASSERT_TRUE(Validate(s).ok()) << Validate(s);
  const std::string yaml = ScenarioToYaml(s);
  absl::StatusOr<Scenario> back = LoadScenario(yaml, "everything.yaml");
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << yaml;
  EXPECT_TRUE(*back == s) << yaml;
  // Parameters left at the profile's defaults are not repeated.
  EXPECT_THAT(yaml, HasSubstr("stall_probability: 0.125"));
  EXPECT_THAT(yaml, Not(HasSubstr("latency_up")));

  Scenario delayed = s;  // ack_delay needs push_ack, which Everything() turns off
  delayed.messaging.push_ack = true;
  delayed.messaging.ack_delay = absl::Milliseconds(250);
  ASSERT_TRUE(Validate(delayed).ok()) << Validate(delayed);
  absl::StatusOr<Scenario> back2 = LoadScenario(ScenarioToYaml(delayed), "delayed.yaml");
  ASSERT_TRUE(back2.ok()) << back2.status();
  EXPECT_EQ(back2->messaging.ack_delay, absl::Milliseconds(250));
  EXPECT_TRUE(*back2 == delayed);
}

TEST(ScenarioYaml, RedactsTheSecretOnRequest) {
  const std::string yaml = ScenarioToYaml(Everything(), /*redact_secret=*/true);
  EXPECT_THAT(yaml, Not(HasSubstr("s3cret")));
  EXPECT_THAT(yaml, HasSubstr("<redacted>"));
}

TEST(ScenarioYaml, ValidateRejectsWhatCannotBeWrittenBack) {
  Scenario s = Everything();
  s.phases[1].percent = 5;  // a hold has no percent
  absl::Status st = Validate(s);
  EXPECT_THAT(std::string(st.message()), StartsWith("phases[1].percent: "));
  Scenario g = Everything();
  g.grace = absl::Minutes(11);
  EXPECT_THAT(std::string(Validate(g).message()), StartsWith("grace: must be from 0s to 10m"));
}

// ------------------------------------------------------------------------------------------------------
// Thresholds

TEST(ScenarioThresholds, ParsesEveryOperatorAndAlias) {
  struct Case {
    const char* text;
    const char* metric;
    Comparison op;
    double value;
  } cases[] = {
      {"p99_e2e_ms < 50", "e2e_p99_ms", Comparison::kLess, 50},
      {"lost == 0", "lost", Comparison::kEqual, 0},
      {"duplicates==0", "duplicates", Comparison::kEqual, 0},
      {"connect_errors_pct < 1", "connect_errors_pct", Comparison::kLess, 1},
      {"  login_p99_ms   <=  200.5 ", "login_p99_ms", Comparison::kLessEqual, 200.5},
      {"connected_peak >= 1e6", "connected_peak", Comparison::kGreaterEqual, 1e6},
      {"sent > 10", "sent", Comparison::kGreater, 10},
      {"kicks != 3", "kicks", Comparison::kNotEqual, 3},
  };
  for (const Case& c : cases) {
    absl::StatusOr<Threshold> t = ParseThreshold(c.text);
    ASSERT_TRUE(t.ok()) << c.text << ": " << t.status();
    EXPECT_EQ(t->metric, c.metric) << c.text;
    EXPECT_EQ(t->op, c.op) << c.text;
    EXPECT_EQ(t->value, c.value) << c.text;
  }
  EXPECT_EQ(ThresholdText(*ParseThreshold("p99_e2e_ms<50")), "e2e_p99_ms < 50");
}

TEST(ScenarioThresholds, Holds) {
  EXPECT_TRUE(ThresholdHolds({"lost", Comparison::kEqual, 0}, 0));
  EXPECT_FALSE(ThresholdHolds({"lost", Comparison::kEqual, 0}, 1));
  EXPECT_TRUE(ThresholdHolds({"e2e_p99_ms", Comparison::kLess, 50}, 49.9));
  EXPECT_FALSE(ThresholdHolds({"e2e_p99_ms", Comparison::kLess, 50}, 50));
  EXPECT_TRUE(ThresholdHolds({"e2e_p99_ms", Comparison::kLessEqual, 50}, 50));
  EXPECT_TRUE(ThresholdHolds({"sent", Comparison::kGreater, 1}, 2));
  EXPECT_TRUE(ThresholdHolds({"sent", Comparison::kGreaterEqual, 2}, 2));
  EXPECT_TRUE(ThresholdHolds({"kicks", Comparison::kNotEqual, 0}, 1));
}

TEST(ScenarioThresholds, MetricNamesAreUniqueAndParse) {
  std::set<std::string> seen;
  for (const ThresholdMetric& m : ThresholdMetrics()) {
    EXPECT_TRUE(seen.insert(std::string(m.name)).second) << m.name;
    EXPECT_FALSE(m.meaning.empty()) << m.name;
    EXPECT_TRUE(ParseThreshold(absl::StrCat(m.name, " >= 0")).ok()) << m.name;
  }
  for (const char* needed : {"e2e_p99_ms", "lost", "duplicates", "connect_errors_pct", "login_p99_ms"}) {
    EXPECT_TRUE(seen.count(needed)) << needed;
  }
}

TEST(ScenarioProfiles, BuiltinsAreValidAndOrderedByQuality) {
  for (absl::string_view name : BuiltinProfileNames()) {
    ASSERT_NE(FindBuiltinProfile(name), nullptr) << name;
    Scenario s = MustLoad(absl::StrCat(kBase, "network: {mix: {", name, ": 100}}\n"));
    EXPECT_TRUE(Validate(s).ok()) << name;
  }
  EXPECT_EQ(FindBuiltinProfile("5g"), nullptr);
  EXPECT_EQ(*FindBuiltinProfile("none"), NetworkProfile{});
  const char* worse[] = {"wifi", "4g", "3g", "edge", "gprs"};
  for (size_t i = 1; i < std::size(worse); ++i) {
    const NetworkProfile& better = *FindBuiltinProfile(worse[i - 1]);
    const NetworkProfile& p = *FindBuiltinProfile(worse[i]);
    EXPECT_GT(p.latency_down, better.latency_down) << worse[i];
    EXPECT_LT(p.bandwidth_down, better.bandwidth_down) << worse[i];
  }
  // GPRS: about 40 kbit/s down and 500-2000 ms round trips.
  const NetworkProfile& gprs = *FindBuiltinProfile("gprs");
  EXPECT_EQ(gprs.bandwidth_down * 8, 40'000u);
  EXPECT_GE(gprs.latency_up + gprs.latency_down, absl::Milliseconds(500));
  EXPECT_LE(gprs.latency_up + gprs.latency_down, absl::Milliseconds(2000));
}

// ------------------------------------------------------------------------------------------------------
// Errors: each names the file, the line and column where the value is, and the field path

TEST(ScenarioErrors, UnknownKeys) {
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "clinets: 5\n")), StartsWith("t.yaml:4:10: clinets: unknown field"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "heartbeat:\n  mdoe: fixed\n")),
              StartsWith("t.yaml:5:9: heartbeat.mdoe: unknown field (expected one of: mode,"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "messaging: {payload: {distribution: fixed, sise: 10}}\n")),
              HasSubstr("messaging.payload.sise: unknown field"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "network: {mix: {wifi: 100}, profiles: {wifi: {latency: 5ms}}}\n")),
              HasSubstr("network.profiles.wifi.latency: unknown field"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "phases:\n  - {kind: hold, duration: 1s}\n  - {kind: ramp, percent: 5}\n")),
              HasSubstr("phases[1].percent: not used by a ramp phase"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "heartbeat: {mode: fixed, initial: 5s}\n")),
              HasSubstr("heartbeat.initial: only used with mode: adaptive"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "messaging: {payload: {distribution: fixed, max: 10}}\n")),
              HasSubstr("messaging.payload.max: not used by distribution fixed"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "clients: 5\n")), HasSubstr("clients: given twice"));
}

TEST(ScenarioErrors, WrongTypes) {
  EXPECT_THAT(LoadError("target:\n  addresses: [127.0.0.1:7000]\nclients: lots\n"),
              StartsWith("t.yaml:3:10: clients: expected a whole number, got \"lots\""));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "phases: {kind: ramp}\n")), HasSubstr("phases: expected a list of phases"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "connect_rate: [1, 2]\n")),
              HasSubstr("connect_rate: expected a number, got a list"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "messaging: {push_ack: maybe}\n")),
              HasSubstr("messaging.push_ack: expected true or false, got \"maybe\""));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "messaging: {ack_delay: 61s}\n")),
              HasSubstr("messaging.ack_delay: must be 0..60s"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "messaging: {push_ack: false, ack_delay: 1s}\n")),
              HasSubstr("messaging.ack_delay: only used with push_ack: true"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "heartbeat: {mode: smart}\n")),
              HasSubstr("heartbeat.mode: expected fixed or adaptive, got \"smart\""));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "auth: 5\n")), HasSubstr("auth: expected a map of fields, got \"5\""));
  EXPECT_THAT(LoadError("- 1\n- 2\n"), HasSubstr("t.yaml: expected a map of scenario fields at the top level"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "target: {addresses: [127.0.0.1:7000], protocol: ws}\n")),
              HasSubstr("given twice"));
  EXPECT_THAT(LoadError("target: {addresses: [127.0.0.1:7000], protocol: ws, ws_path: chat}\n"),
              HasSubstr("target.ws_path: expected a path starting with /, got \"chat\""));
  EXPECT_THAT(LoadError("target: {addresses: [127.0.0.1:7000], protocol: wss}\n"), HasSubstr("target.protocol"));
  EXPECT_THAT(LoadError("target: {addresses: [127.0.0.1:7000], protocol: quic}\n"),
              HasSubstr("target.protocol: expected longlink, ws or ws-echo, got \"quic\""));
}

TEST(ScenarioErrors, BadDuration) {
  const std::string yaml = absl::StrCat(kBase, R"(phases:
  - kind: ramp
  - kind: hold
    duration: 10s
  - kind: hold
    duration: fast
)");
  EXPECT_EQ(LoadError(yaml), "t.yaml:9:15: phases[2].duration: expected a duration like 30s, got \"fast\"");
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "duration: 30\n")),
              HasSubstr("duration: expected a duration like 30s, got \"30\""));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "duration: -5s\n")), HasSubstr("duration: must not be negative"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "reconnect: {initial: 10us}\n")),
              HasSubstr("reconnect.initial: must be a whole number of milliseconds"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "phases: [{kind: hold}]\n")), HasSubstr("phases[0].duration: required"));
}

TEST(ScenarioErrors, NegativeOrZeroClients) {
  EXPECT_EQ(LoadError("target: {addresses: [127.0.0.1:7000]}\nclients: -5\n"),
            "t.yaml:2:10: clients: must not be negative, got \"-5\"");
  EXPECT_EQ(LoadError("target: {addresses: [127.0.0.1:7000]}\nclients: 0\n"),
            "t.yaml:2:10: clients: must be 1..100000000, got 0");
}

TEST(ScenarioErrors, PercentagesNotSummingTo100) {
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "network:\n  mix: {wifi: 50, 4g: 40}\n")),
              StartsWith("t.yaml:5:8: network.mix: percentages add up to 90, not 100"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "network:\n  mix: {wifi: 70, 4g: 40}\n")),
              HasSubstr("network.mix: percentages add up to 110, not 100"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "network:\n  mix: {wifi: 100, none: rest}\n")),
              HasSubstr("network.mix.none: nothing is left for rest"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "auth: {devices_per_user: {1: 50, 2: 20}}\n")),
              HasSubstr("auth.devices_per_user: percentages add up to 70, not 100"));
}

TEST(ScenarioErrors, UnknownProfile) {
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "network:\n  mix:\n    5g: 100\n")),
              StartsWith("t.yaml:6:9: network.mix.5g: unknown profile (known: none, wifi, 4g, 3g, edge, gprs, lossy)"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "network: {mix: {wifi: 100}, profiles: {lte: {}}}\n")),
              HasSubstr("network.profiles.lte: unknown profile"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "network: {mix: {wifi: 100}, profiles: {3g: {max_segment: 10}}}\n")),
              HasSubstr("network.profiles.3g: overrides a profile that network.mix does not use"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "network: {mix: {3g: 100}, profiles: {3g: {stall_probability: 2}}}\n")),
              HasSubstr("network.profiles.3g.stall_probability: must be 0..1"));
}

TEST(ScenarioErrors, BadThresholdSyntax) {
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "thresholds:\n  - lost == 0\n  - e2e_p99_ms <<< 5\n")),
              StartsWith("t.yaml:6:5: thresholds[1]: expected \"<metric> <op> <number>\""));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "thresholds: [\"lost = 0\"]\n")), HasSubstr("thresholds[0]: expected"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "thresholds: [\"lost == none\"]\n")), HasSubstr("thresholds[0]: expected"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "thresholds: [\"< 5\"]\n")), HasSubstr("thresholds[0]: expected"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "thresholds: lost == 0\n")),
              HasSubstr("thresholds: expected a list of conditions"));
}

TEST(ScenarioErrors, UnknownThresholdMetric) {
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "thresholds:\n  - p98_e2e_ms < 50\n")),
              StartsWith("t.yaml:5:5: thresholds[0]: unknown metric \"p98_e2e_ms\""));
}

TEST(ScenarioErrors, MissingTarget) {
  EXPECT_EQ(LoadError("clients: 10\n"),
            "t.yaml: target.addresses: at least one host:port is required (--target or target.addresses)");
  EXPECT_THAT(LoadError("target: {addresses: []}\n"), HasSubstr("target.addresses: at least one host:port"));
  EXPECT_THAT(LoadError(""), HasSubstr("target.addresses: at least one host:port"));
}

TEST(ScenarioErrors, MalformedHostPort) {
  EXPECT_EQ(LoadError("target:\n  addresses: [127.0.0.1:7000, 127.0.0.1]\n"),
            "t.yaml:2:31: target.addresses[1]: expected host:port (IPv6 as [addr]:port), got \"127.0.0.1\"");
  EXPECT_THAT(LoadError("target: {addresses: [\"127.0.0.1:70000\"]}\n"),
              HasSubstr("target.addresses[0]: port must be 1..65535, got \"70000\""));
  EXPECT_THAT(LoadError("target: {addresses: [\"127.0.0.1:http\"]}\n"), HasSubstr("target.addresses[0]: expected"));
  EXPECT_THAT(LoadError("target: {addresses: [\"::1:7000\"]}\n"),
              HasSubstr("target.addresses[0]: write IPv6 addresses in brackets"));
  EXPECT_THAT(LoadError("target: {addresses: [\"gateway.local:7000\"]}\n"),
              HasSubstr("target.addresses[0]: expected a numeric IPv4 or IPv6 address, got \"gateway.local\""));
  EXPECT_THAT(LoadError("target: {addresses: [\"127.0.0.1:7000\"], source_addresses: [10.0.0.300]}\n"),
              HasSubstr("target.source_addresses[0]: expected a numeric"));
  Scenario s = MustLoad("target: {addresses: [\"[::1]:7000\"]}\n");
  ASSERT_EQ(s.target.addresses.size(), 1u);
  EXPECT_EQ(s.target.addresses[0], (Endpoint{"::1", 7000}));
}

TEST(ScenarioErrors, CrossFieldChecks) {
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "messaging:\n  payload: {distribution: uniform, min: 100, max: 10}\n")),
              StartsWith("t.yaml:5:51: messaging.payload.max: must be >= payload.min"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "messaging: {rate_per_client: 1, total_rate: 10}\n")),
              HasSubstr("messaging.total_rate: set only one of rate_per_client and total_rate"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "connect_rate: 10\nphases: [{kind: ramp, duration: 5s}]\n")),
              HasSubstr("phases[0].duration: 5s is too short to connect 100 clients at 10/s (needs 10s)"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "phases: [{kind: ramp}, {kind: spike, clients: 1, duration: 5s}]\n")),
              HasSubstr("phases[1].clients: the spike needs 1 clients on top of the 100 connected"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "phases: [{kind: ramp, target: 500}]\n")),
              HasSubstr("phases[0].target: 500 is more than clients (100)"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase,
                                     "phases: [{kind: ramp, target: 50}, {kind: drain, target: 60, "
                                     "duration: 1s}]\n")),
              HasSubstr("phases[1].target: 60 is more than the 50 clients connected before it"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "phases: [{kind: storm, duration: 1s}]\n")),
              HasSubstr("phases[0].percent: required"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "auth: {mode: token}\n")),
              HasSubstr("auth.secret: mode token needs secret or secret_file"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "auth: {secret: x}\n")),
              HasSubstr("auth.secret: only used with mode: token"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "heartbeat: {mode: adaptive, initial: 30s, max: 10s}\n")),
              HasSubstr("heartbeat.max: must be >= heartbeat.initial"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "messaging: {targets: groups, groups: {count: 5, size: 1}}\n")),
              HasSubstr("messaging.groups.size: must be >= 2"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "messaging: {groups: {count: 5, size: 10}}\n")),
              HasSubstr("messaging.groups: only used with targets: groups"));
  EXPECT_THAT(LoadError(absl::StrCat(kBase, "output: {metrics_port: 70000}\n")),
              HasSubstr("output.metrics_port: must be -1 (off) or 0..65535"));
}

TEST(ScenarioErrors, YamlSyntaxWithLineAndColumn) {
  const std::string msg = LoadError("target:\n  addresses: [127.0.0.1:7000\nclients: 5\n");
  EXPECT_THAT(msg, StartsWith("t.yaml:"));
  EXPECT_THAT(msg, HasSubstr("YAML syntax error"));
  EXPECT_THAT(LoadError("clients: 1\n  bad indent: 2\n"), StartsWith("t.yaml:2:"));
  EXPECT_THAT(LoadError("a: 1\n---\nb: 2\n"), HasSubstr("holds more than one YAML document"));
  // A lone comma once made the YAML library produce empty documents until memory ran out (scenario_fuzz).
  EXPECT_THAT(LoadError(","), HasSubstr("holds more than one YAML document"));
}

// ------------------------------------------------------------------------------------------------------
// Flags

class ScenarioFlagsTest : public ::testing::Test {
 protected:
  // Back to "not given" for every flag (absl::FlagSaver would too, but it logs every restore).
  void TearDown() override {
    for (const std::string& f : files_) unlink(f.c_str());
    for (auto* flag : {&FLAGS_scenario, &FLAGS_target, &FLAGS_source_addresses, &FLAGS_clients, &FLAGS_shards,
                       &FLAGS_connect_rate, &FLAGS_duration, &FLAGS_seed, &FLAGS_rate, &FLAGS_auth, &FLAGS_auth_secret,
                       &FLAGS_auth_secret_file, &FLAGS_report_json, &FLAGS_metrics_port, &FLAGS_live_interval}) {
      absl::SetFlag(flag, "");
    }
  }
  std::string WriteTemp(const std::string& text) {
    char path[] = "/tmp/scenario_test_XXXXXX";
    int fd = mkstemp(path);
    EXPECT_GE(fd, 0);
    close(fd);
    std::ofstream(path) << text;
    files_.push_back(path);
    return path;
  }

  std::vector<std::string> files_;
};

TEST_F(ScenarioFlagsTest, FlagsOverrideTheFile) {
  const std::string file = WriteTemp(R"(target: {addresses: [127.0.0.1:7000]}
clients: 10000
connect_rate: 1000
messaging: {total_rate: 50}
phases:
  - kind: ramp
  - kind: hold
    duration: 30s
output: {metrics_port: 9200}
)");
  absl::SetFlag(&FLAGS_scenario, file);
  absl::SetFlag(&FLAGS_target, "127.0.0.2:7001, 127.0.0.3:7001");
  absl::SetFlag(&FLAGS_clients, "500");
  absl::SetFlag(&FLAGS_connect_rate, "100");
  absl::SetFlag(&FLAGS_shards, "4");
  absl::SetFlag(&FLAGS_seed, "99");
  absl::SetFlag(&FLAGS_rate, "0.5");
  absl::SetFlag(&FLAGS_report_json, "/tmp/r.json");
  absl::SetFlag(&FLAGS_metrics_port, "-1");
  absl::StatusOr<Scenario> s = ScenarioFromFlags();
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->target.addresses.size(), 2u);
  EXPECT_EQ(s->target.addresses[1], (Endpoint{"127.0.0.3", 7001}));
  EXPECT_EQ(s->clients, 500u);
  EXPECT_EQ(s->shards, 4u);
  EXPECT_EQ(s->seed, 99u);
  EXPECT_EQ(s->connect_rate, 100);
  // Defaults that depend on overridden fields follow the flags.
  EXPECT_EQ(s->phases[0].target, 500u);
  EXPECT_EQ(s->phases[0].connect_rate, 100);
  EXPECT_EQ(s->phases[0].duration, absl::Seconds(5));
  EXPECT_EQ(s->duration, absl::Seconds(35));
  EXPECT_EQ(s->messaging.rate_per_client, 0.5);
  EXPECT_EQ(s->messaging.total_rate, 0) << "--rate replaces the file's total_rate";
  EXPECT_EQ(s->output.report_json, "/tmp/r.json");
  EXPECT_EQ(s->output.metrics_port, -1);
}

TEST_F(ScenarioFlagsTest, DurationFlagBoundsTheRun) {
  absl::SetFlag(&FLAGS_scenario, ExamplePath("smoke.yaml"));
  absl::SetFlag(&FLAGS_duration, "10s");
  absl::StatusOr<Scenario> s = ScenarioFromFlags();
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->duration, absl::Seconds(10));
  EXPECT_EQ(s->phases.size(), 2u) << "the phases stay; the run stops at --duration";
}

TEST_F(ScenarioFlagsTest, FlagsAloneBuildADefaultScenario) {
  absl::SetFlag(&FLAGS_target, "127.0.0.1:7000");
  absl::SetFlag(&FLAGS_clients, "300");
  absl::SetFlag(&FLAGS_connect_rate, "100");
  absl::SetFlag(&FLAGS_duration, "30s");
  absl::StatusOr<Scenario> s = ScenarioFromFlags();
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->phases.size(), 2u);
  EXPECT_EQ(s->phases[0].kind, PhaseKind::kRamp);
  EXPECT_EQ(s->phases[0].duration, absl::Seconds(3));
  EXPECT_EQ(s->phases[1].kind, PhaseKind::kHold);
  EXPECT_EQ(s->phases[1].duration, absl::Seconds(27));
  EXPECT_GT(s->messaging.rate_per_client, 0);
  EXPECT_EQ(s->heartbeat.mode, HeartbeatMode::kFixed);
}

TEST_F(ScenarioFlagsTest, ErrorsNameTheFlag) {
  absl::SetFlag(&FLAGS_target, "127.0.0.1:7000,127.0.0.1");
  EXPECT_EQ(FlagsError(), "--target: target.addresses[1]: expected host:port (IPv6 as [addr]:port), got \"127.0.0.1\"");
  absl::SetFlag(&FLAGS_target, "127.0.0.1:7000");
  absl::SetFlag(&FLAGS_clients, "-1");
  EXPECT_EQ(FlagsError(), "--clients: clients: must not be negative, got \"-1\"");
  absl::SetFlag(&FLAGS_clients, "");
  absl::SetFlag(&FLAGS_connect_rate, "fast");
  EXPECT_EQ(FlagsError(), "--connect-rate: connect_rate: expected a number, got \"fast\"");
  absl::SetFlag(&FLAGS_connect_rate, "");
  absl::SetFlag(&FLAGS_metrics_port, "http");
  EXPECT_EQ(FlagsError(), "--metrics-port: output.metrics_port: expected a whole number, got \"http\"");
  absl::SetFlag(&FLAGS_metrics_port, "");
  absl::SetFlag(&FLAGS_duration, "soon");
  EXPECT_THAT(FlagsError(), StartsWith("--duration: duration: expected a duration like 30s"));
  absl::SetFlag(&FLAGS_duration, "");
  absl::SetFlag(&FLAGS_auth, "hmac");
  EXPECT_THAT(FlagsError(), StartsWith("--auth: auth.mode: expected none or token"));
  absl::SetFlag(&FLAGS_auth, "token");
  EXPECT_THAT(FlagsError(), HasSubstr("auth.secret: mode token needs secret"));
  absl::SetFlag(&FLAGS_auth_secret_file, "/nonexistent/secret");
  EXPECT_THAT(FlagsError(), StartsWith("--auth-secret-file: auth.secret_file: cannot read /nonexistent/secret"));
}

TEST_F(ScenarioFlagsTest, MissingTargetAndMissingFile) {
  EXPECT_THAT(FlagsError(), StartsWith("target.addresses: at least one host:port"));
  absl::SetFlag(&FLAGS_scenario, "/nonexistent/scenario.yaml");
  EXPECT_THAT(FlagsError(), StartsWith("--scenario: cannot read /nonexistent/scenario.yaml"));
}

TEST_F(ScenarioFlagsTest, FileErrorsNameTheFileAndLine) {
  const std::string file = WriteTemp("target: {addresses: [127.0.0.1:7000]}\nclients: 5\nbogus: 1\n");
  absl::SetFlag(&FLAGS_scenario, file);
  EXPECT_THAT(FlagsError(), StartsWith(absl::StrCat(file, ":3:8: bogus: unknown field")));
}

TEST_F(ScenarioFlagsTest, TokenAuthFromFlags) {
  const std::string secret = WriteTemp("topsecret\n");
  absl::SetFlag(&FLAGS_target, "127.0.0.1:7000");
  absl::SetFlag(&FLAGS_auth, "token");
  absl::SetFlag(&FLAGS_auth_secret_file, secret);
  absl::StatusOr<Scenario> s = ScenarioFromFlags();
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->auth.mode, AuthMode::kToken);
  EXPECT_EQ(s->auth.secret_file, secret);
  absl::StatusOr<std::string> read = ReadAuthSecret(s->auth);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, "topsecret");

  absl::SetFlag(&FLAGS_auth_secret_file, "");
  absl::SetFlag(&FLAGS_auth_secret, "inline");
  s = ScenarioFromFlags();
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(*ReadAuthSecret(s->auth), "inline");
}

}  // namespace
}  // namespace longlink::loadgen
