// The admin HTTP API (--admin-port): a control plane for operators and services, on its own threads
// (cpp-httplib), never touching shard data. Each request becomes a closure run on the shard that owns the
// data (LocalFactory::RunOnShard, drained once per shard tick) and the HTTP thread waits for its answer
// with a timeout. JSON in and out; errors are {"error": "..."} with a 4xx/5xx status. With --admin-token
// every request needs "Authorization: Bearer <token>".
//
// With --web-root the same server also hands out the static files of the web chat page (web/): GET and
// HEAD of any path outside /v1, without the token (the page holds no secret; the API keeps its token).
// "/" is chat.html. Only plain names under the root with a known extension are served (WebFilePath).
//
//   POST   /v1/push                  {"users":[1,2]} or {"group":7}, plus "payload" (text) or
//                                    "payload_base64"; stored and pushed like a message from user 0
//   POST   /v1/kick                  {"user":1} or {"user":1,"device":2}
//   GET    /v1/users/<id>            online?, devices (platform, since, cursor), last seq
//   POST   /v1/groups                {"group":7} or {"group":7,"members":[1,2]}
//   GET    /v1/groups/<id>           members
//   POST   /v1/groups/<id>/members   {"users":[1,2]}
//   DELETE /v1/groups/<id>/members   {"users":[1,2]}
//   GET    /v1/stats                 per-shard and total backend counters
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace httplib {
class Server;
struct Response;
}

namespace longlink::gateway {

namespace local {
class LocalFactory;
}

// A parsed JSON value of the small request bodies the API takes: objects, arrays, strings, unsigned
// integers, booleans and null (no floats, no negative numbers).
struct JsonValue {
  enum Kind { kNull, kBool, kNumber, kString, kArray, kObject } kind = kNull;
  bool boolean = false;
  uint64_t number = 0;
  std::string string;
  std::vector<JsonValue> array;
  std::map<std::string, JsonValue> object;
  const JsonValue* Find(const std::string& key) const;
};
absl::StatusOr<JsonValue> ParseJson(std::string_view text);
std::string JsonEscape(absl::string_view s);
absl::StatusOr<std::string> Base64Decode(std::string_view in);

// The file under the web root that a request path names, relative to the root: "/" is "chat.html";
// otherwise components of [A-Za-z0-9._-] separated by single '/', none "." or ".." and none starting
// with '.', so neither "..", an absolute path ("//etc/passwd") nor a hidden file gets through
// (InvalidArgument). A name whose extension has no WebContentType is NotFound.
absl::StatusOr<std::string> WebFilePath(absl::string_view url_path);
// The Content-Type served for a file name, or nullptr when files of that extension are not served.
const char* WebContentType(absl::string_view name);

class AdminServer {
 public:
  // web_root: an absolute, resolved directory (Config::web_root), or empty for no static files.
  AdminServer(local::LocalFactory* factory, std::string token, std::string web_root = "");
  ~AdminServer();

  absl::Status Start(const std::string& bind, uint16_t port);
  uint16_t port() const { return port_; }
  void Stop();

 private:
  void ServeWebFile(const std::string& url_path, httplib::Response& res) const;

  local::LocalFactory* factory_;
  std::string token_;
  std::string web_root_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  uint16_t port_ = 0;
};

}  // namespace longlink::gateway
