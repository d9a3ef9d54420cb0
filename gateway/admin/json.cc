#include "gateway/admin/json.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace longlink::gateway::admin {
namespace {

struct TooDeep {};

// nlohmann's messages start with "[json.exception.parse_error.101] parse error at line 1, column 9: ...";
// the bracketed tag means nothing to a caller.
std::string Clean(const char* what) {
  absl::string_view s(what);
  if (absl::StartsWith(s, "[json.exception.")) {
    size_t close = s.find("] ");
    if (close != absl::string_view::npos) s.remove_prefix(close + 2);
  }
  return std::string(s);
}

}  // namespace

absl::StatusOr<Json> ParseObject(absl::string_view body) {
  if (body.size() > kMaxBodyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("the body is larger than ", kMaxBodyBytes, " bytes"));
  }
  Json v;
  try {
    // The callback sees every nesting level as it opens; deeper than kMaxDepth is refused before it is built.
    v = Json::parse(body, [](int depth, Json::parse_event_t, Json&) {
      if (depth > kMaxDepth) throw TooDeep{};
      return true;
    });
  } catch (const Json::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid JSON: ", Clean(e.what())));
  } catch (const TooDeep&) {
    return absl::InvalidArgumentError(absl::StrCat("invalid JSON: nested deeper than ", kMaxDepth, " levels"));
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid JSON: ", Clean(e.what())));
  }
  if (!v.is_object()) return absl::InvalidArgumentError("the body must be a JSON object");
  return v;
}

absl::StatusOr<std::vector<uint64_t>> IdList(const Json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end()) return std::vector<uint64_t>{};
  if (!it->is_array()) return absl::InvalidArgumentError(absl::StrCat("\"", key, "\" must be an array"));
  if (it->size() > kMaxIdsPerRequest) {
    return absl::InvalidArgumentError(absl::StrCat("\"", key, "\" holds more than ", kMaxIdsPerRequest, " ids"));
  }
  std::vector<uint64_t> out;
  out.reserve(it->size());
  for (const Json& e : *it) {
    // is_number_unsigned: nlohmann keeps non-negative integers as unsigned; floats and negatives fail.
    if (!e.is_number_unsigned() || e.get<uint64_t>() == 0) {
      return absl::InvalidArgumentError(absl::StrCat("\"", key, "\" must hold positive integer ids"));
    }
    out.push_back(e.get<uint64_t>());
  }
  return out;
}

absl::StatusOr<uint64_t> OptionalId(const Json& body, const char* key, uint64_t max) {
  auto it = body.find(key);
  if (it == body.end()) return uint64_t{0};
  if (!it->is_number_unsigned() || it->get<uint64_t>() == 0 || it->get<uint64_t>() > max) {
    return absl::InvalidArgumentError(absl::StrCat("\"", key, "\" must be a positive integer",
                                                   max != ~uint64_t{0} ? absl::StrCat(" up to ", max) : ""));
  }
  return it->get<uint64_t>();
}

absl::StatusOr<std::string> Base64Decode(absl::string_view in) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = val(c);
    if (v < 0) return absl::InvalidArgumentError("payload_base64 is not base64");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  if (bits >= 6) return absl::InvalidArgumentError("payload_base64 has a dangling character");
  return out;
}

std::string ErrorBody(absl::string_view message) { return Dump(Json{{"error", message}}); }

std::string Dump(const Json& v) { return v.dump(-1, ' ', false, Json::error_handler_t::replace); }

}  // namespace longlink::gateway::admin
