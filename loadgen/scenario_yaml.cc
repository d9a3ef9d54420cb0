// Typed, located reading of the scenario's YAML document (scenario_yaml.h): conversions of scalars and
// enum names, MapView, and turning a "<path>: <problem>" error into one that names the file position or
// the flag.
#include "loadgen/scenario_yaml.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "yaml-cpp/eventhandler.h"

namespace longlink::loadgen::scenario_internal {

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

namespace {

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

}  // namespace

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

namespace {

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

}  // namespace

absl::Status Convert(const YAML::Node& n, const std::string& path, Transport* out) {
  return ConvertEnum(n, path, kTransports, out);
}
absl::Status Convert(const YAML::Node& n, const std::string& path, AuthMode* out) {
  return ConvertEnum(n, path, kAuthModes, out);
}
absl::Status Convert(const YAML::Node& n, const std::string& path, PhaseKind* out) {
  return ConvertEnum(n, path, kPhaseKinds, out);
}
absl::Status Convert(const YAML::Node& n, const std::string& path, Leave* out) {
  return ConvertEnum(n, path, kLeaves, out);
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

absl::StatusOr<MapView> MapView::Open(const YAML::Node& node, std::string path,
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

namespace {

// Counts documents and ignores their content.
class DocumentCounter final : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

}  // namespace

absl::StatusOr<YAML::Node> ParseDocument(absl::string_view text, absl::string_view origin) {
  std::string copy(text);
  YAML::Node doc;
  try {
    // Documents are counted with the event parser, stopping at the second: yaml-cpp 0.7's LoadAll never
    // ends on some inputs (a lone "," yields empty documents until memory runs out; found by scenario_fuzz).
    std::istringstream in(copy);
    YAML::Parser parser(in);
    DocumentCounter counter;
    int docs = 0;
    while (docs < 2 && parser.HandleNextDocument(counter)) ++docs;
    if (docs > 1) {
      return absl::InvalidArgumentError(absl::StrCat(origin, ": holds more than one YAML document; expected one"));
    }
    doc = YAML::Load(copy);
  } catch (const YAML::ParserException& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ":", e.mark.line + 1, ":", e.mark.column + 1, ": YAML syntax error: ", e.msg));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": YAML error: ", e.what()));
  }
  return doc;
}

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

}  // namespace longlink::loadgen::scenario_internal
