// The admin HTTP API (--admin-port): a control plane for operators and services, on its own threads
// (cpp-httplib), never touching shard data. Each request becomes a closure run on the shard that owns the
// data (LocalFactory::RunOnShard, drained once per shard tick) and the HTTP thread waits for its answer
// with a timeout. JSON in and out; errors are {"error": "..."} with a 4xx/5xx status. With --admin-token
// every request needs "Authorization: Bearer <token>".
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

class AdminServer {
 public:
  AdminServer(local::LocalFactory* factory, std::string token);
  ~AdminServer();

  absl::Status Start(const std::string& bind, uint16_t port);
  uint16_t port() const { return port_; }
  void Stop();

 private:
  local::LocalFactory* factory_;
  std::string token_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  uint16_t port_ = 0;
};

}  // namespace longlink::gateway
