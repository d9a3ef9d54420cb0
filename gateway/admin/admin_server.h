// The admin HTTP API (--admin-port): a control plane for operators and services, on cpp-httplib's own
// threads, never touching shard data. Each route validates its JSON, asks the backend's AdminOps (or, for
// /v1/stats, every shard through the runtime's mailbox) and waits for the answer with a timeout. JSON in
// and out; errors are {"error": "..."} with a 4xx/5xx status. With --admin-token every /v1 request needs
// "Authorization: Bearer <token>". Requests with a body must say Content-Type: application/json, and a
// browser request from another origin is refused, so a web page cannot drive the API cross-site.
//
//   POST   /v1/push                  {"users":[1,2]} or {"group":7}, plus "payload" (text) or
//                                    "payload_base64"; stored and pushed like a message from user 0
//   POST   /v1/kick                  {"user":1} or {"user":1,"device":2}
//   GET    /v1/users/<id>            online?, devices (platform, since, cursor), last seq
//   POST   /v1/groups                {"group":7} or {"group":7,"members":[1,2]}
//   GET    /v1/groups/<id>           members
//   POST   /v1/groups/<id>/members   {"users":[1,2]}
//   DELETE /v1/groups/<id>/members   {"users":[1,2]}
//   GET    /v1/stats                 per-shard backend statistics (the same as its /metrics scope)
//
// With --web-root the same server hands out the web chat page (web_files.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "gateway/backend/admin_ops.h"
#include "gateway/backend/backend.h"

namespace httplib {
class Server;
}

namespace longlink::gateway::admin {

struct AdminOptions {
  std::string token;     // empty: no token needed
  std::string web_root;  // absolute and resolved, or empty for no static files
  std::string backend;   // the backend's name, for /v1/stats
};

class AdminServer {
 public:
  // `ops` may be null (the backend offers no admin operations: those routes answer 501).
  AdminServer(AdminOps* ops, ShardRunner* runner, AdminOptions options);
  ~AdminServer();

  absl::Status Start(const std::string& bind, uint16_t port);
  uint16_t port() const { return port_; }
  void Stop();

 private:
  void Routes();

  AdminOps* ops_;
  ShardRunner* runner_;
  AdminOptions options_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  uint16_t port_ = 0;
};

}  // namespace longlink::gateway::admin
