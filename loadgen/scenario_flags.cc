// The command-line flags of longlink-loadgen and how they override a scenario: each flag given is written
// into the YAML document (or an empty one) at the path it replaces, along with removing what in the file
// would contradict it, before the document is read. So a flag's value goes through the same reading and
// checks as the file's, and an error about it names the flag (Locate()).
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/status.h"
#include "loadgen/scenario.h"
#include "loadgen/scenario_yaml.h"
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
ABSL_FLAG(std::string, report_html, "", "Write the final report as one self-contained HTML page to this file");
ABSL_FLAG(std::string, run_id, "", "The run_id label on the generator's metrics (default: <scenario name>-<UTC start>)");
ABSL_FLAG(std::string, metrics_linger, "",
          "Keep serving /metrics this long after the run, so a scraper catches the final figures (lost, ...)");
ABSL_FLAG(std::string, metrics_port, "", "Generator's Prometheus port (-1 off, 0 any)");
ABSL_FLAG(std::string, live_interval, "", "Print a status line this often (0s: never)");
ABSL_FLAG(std::string, protocol, "",
          "longlink (TCP), ws (longlink over WebSocket) or ws-echo (any WebSocket echo server)");
ABSL_FLAG(std::string, ws_path, "", "Request path of the WebSocket upgrade");

namespace longlink::loadgen {
namespace {

using scenario_internal::BuildScenario;
using scenario_internal::FlagPaths;
using scenario_internal::Locate;
using scenario_internal::Marks;
using scenario_internal::ParseDocument;

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
      {"report-html", absl::GetFlag(FLAGS_report_html), {"output", "report_html"}},
      {"metrics-linger", absl::GetFlag(FLAGS_metrics_linger), {"output", "metrics_linger"}},
      {"run-id", absl::GetFlag(FLAGS_run_id), {"output", "run_id"}},
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
  ASSIGN_OR_RETURN(Scenario s, BuildScenario(root, file, paths));
  if (s.auth.mode == AuthMode::kToken) {
    absl::StatusOr<std::string> secret = ReadAuthSecret(s.auth);
    if (!secret.ok()) return Locate(secret.status(), file, Marks(), paths);
  }
  return s;
}

}  // namespace longlink::loadgen
