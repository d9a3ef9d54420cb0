// JSON for the admin API, on nlohmann::json (Debian's nlohmann-json3-dev): request bodies parsed with the
// limits an HTTP-facing parser needs (size, nesting depth, array length) and errors a person can act on
// ("invalid JSON at line 1, column 9: ..."; "\"users\" must hold positive integer ids"), plus the few
// field readers the routes share. Exceptions stay inside this file: the admin threads are control plane,
// and every parse error becomes an absl::Status.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace longlink::gateway::admin {

using Json = nlohmann::json;

inline constexpr size_t kMaxBodyBytes = 2 << 20;    // a 1 MiB payload in base64 fits
inline constexpr size_t kMaxIdsPerRequest = 100000;  // "users" / "members" arrays
inline constexpr int kMaxDepth = 16;

// Parses a request body that must be one JSON object.
absl::StatusOr<Json> ParseObject(absl::string_view body);

// body[key] as a list of positive ids (absent: empty).
absl::StatusOr<std::vector<uint64_t>> IdList(const Json& body, const char* key);
// body[key] as a positive id no larger than `max`; absent: 0 (InvalidArgument for any other type or value).
absl::StatusOr<uint64_t> OptionalId(const Json& body, const char* key, uint64_t max = ~uint64_t{0});
// Standard or URL-safe base64, padding optional.
absl::StatusOr<std::string> Base64Decode(absl::string_view in);

// {"error": message}
std::string ErrorBody(absl::string_view message);
// Compact text; invalid UTF-8 in strings is replaced rather than thrown on.
std::string Dump(const Json& v);

}  // namespace longlink::gateway::admin
