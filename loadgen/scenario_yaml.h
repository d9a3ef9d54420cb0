// Typed, located reading of the scenario's YAML document: each value is converted to its field's type,
// every error starts with the field's path ("phases[2].duration: ..."), and the line and column of every
// path read are kept so that Locate() can point at the file (or name the flag that set the value). The
// sections of the scenario (scenario_read.cc) are written on top of MapView and Convert; the flag overrides
// (scenario_flags.cc) edit the document before it is read. Internal to loadgen/scenario*.cc.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/status.h"
#include "loadgen/scenario.h"
#include "loadgen/scenario_internal.h"
#include "yaml-cpp/yaml.h"

namespace longlink::loadgen::scenario_internal {

// Where each field path was read from in the file.
using Marks = std::map<std::string, YAML::Mark>;
// Which document path each flag replaced, so an error about that value names the flag.
using FlagPaths = std::vector<std::pair<std::string, std::string>>;

// A node as a message shows it: its quoted scalar, "a list", "a map" or "nothing".
std::string Describe(const YAML::Node& n);

// Converts a node into a field of each type the scenario uses; `path` starts every error.
absl::Status Convert(const YAML::Node& n, const std::string& path, std::string* out);
absl::Status Convert(const YAML::Node& n, const std::string& path, uint64_t* out);
absl::Status Convert(const YAML::Node& n, const std::string& path, uint32_t* out);
absl::Status Convert(const YAML::Node& n, const std::string& path, int32_t* out);
absl::Status Convert(const YAML::Node& n, const std::string& path, double* out);
absl::Status Convert(const YAML::Node& n, const std::string& path, absl::Duration* out);
absl::Status Convert(const YAML::Node& n, const std::string& path, bool* out);
absl::Status Convert(const YAML::Node& n, const std::string& path, Transport* out);
absl::Status Convert(const YAML::Node& n, const std::string& path, AuthMode* out);
absl::Status Convert(const YAML::Node& n, const std::string& path, PhaseKind* out);
absl::Status Convert(const YAML::Node& n, const std::string& path, Leave* out);
absl::Status Convert(const YAML::Node& n, const std::string& path, HeartbeatMode* out);
absl::Status Convert(const YAML::Node& n, const std::string& path, TargetSelection* out);
absl::Status Convert(const YAML::Node& n, const std::string& path, PayloadDistribution* out);

// Keeps the position of `value` (or of its key, when the value has none) under `path`.
void RecordMark(Marks* marks, const std::string& path, const YAML::Node& value, const YAML::Node& key);

// The entries of one YAML map, checked against the keys its section allows.
class MapView {
 public:
  // `keys` null: any key is allowed (profile names, device counts). A null node reads as an empty map.
  static absl::StatusOr<MapView> Open(const YAML::Node& node, std::string path,
                                      const std::vector<absl::string_view>* keys, Marks* marks);

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

inline absl::StatusOr<MapView> OpenMap(const YAML::Node& node, std::string path, std::vector<absl::string_view> keys,
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

// The one document of `text`; syntax errors carry origin:line:column.
absl::StatusOr<YAML::Node> ParseDocument(absl::string_view text, absl::string_view origin);

// Errors come back as "<path>: <problem>"; prefixes them with where the value came from: the flag that set
// it, or origin:line:column from `marks`, or just origin.
absl::Status Locate(const absl::Status& status, absl::string_view origin, const Marks& marks, const FlagPaths& flags);

// Reads the document into a Scenario, completes its defaults and validates it, with errors located
// (scenario_read.cc).
absl::StatusOr<Scenario> BuildScenario(const YAML::Node& root, absl::string_view origin, const FlagPaths& flags);

}  // namespace longlink::loadgen::scenario_internal
