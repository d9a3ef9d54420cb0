#include "gateway/admin/admin_server.h"

#include <chrono>
#include <future>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gateway/admin/json.h"
#include "gateway/admin/web_files.h"
#include "httplib.h"
#include "metrics/stats.h"

namespace longlink::gateway::admin {
namespace {

constexpr auto kShardTimeout = std::chrono::seconds(10);
constexpr size_t kMaxPayloadBytes = 1 << 20;

void Reply(httplib::Response& res, int status, const Json& body) {
  res.status = status;
  res.set_content(Dump(body), "application/json");
}
void Error(httplib::Response& res, int status, absl::string_view message) {
  res.status = status;
  res.set_content(ErrorBody(message), "application/json");
}

int HttpStatus(AdminCode c) {
  switch (c) {
    case AdminCode::kOk:
      return 200;
    case AdminCode::kNotFound:
      return 404;
    case AdminCode::kConflict:
      return 409;
    case AdminCode::kBadRequest:
      return 400;
    case AdminCode::kRejected:
      return 403;
    case AdminCode::kUnsupported:
      return 501;
    case AdminCode::kUnavailable:
      break;
  }
  return 503;
}

template <class T>
struct Answer {
  AdminResult result;
  T value;
};

// Starts an operation with a `done` that fills a future and waits for it. Null (and the error already
// answered) when the operation failed, timed out, or was dropped because the gateway is stopping.
template <class T, class Start>
std::optional<T> Ask(httplib::Response& res, Start&& start) {
  auto promise = std::make_shared<std::promise<Answer<T>>>();
  std::future<Answer<T>> f = promise->get_future();
  start(AdminDone<T>([promise](AdminResult r, T v) { promise->set_value(Answer<T>{std::move(r), std::move(v)}); }));
  if (f.wait_for(kShardTimeout) != std::future_status::ready) {
    Error(res, 504, "the shard did not answer in time");
    return std::nullopt;
  }
  Answer<T> a;
  try {
    a = f.get();
  } catch (const std::future_error&) {
    // The call was dropped unanswered: its shard stopped.
    Error(res, 503, "the gateway is stopping");
    return std::nullopt;
  }
  if (a.result.code != AdminCode::kOk) {
    Error(res, HttpStatus(a.result.code), a.result.message);
    return std::nullopt;
  }
  return std::move(a.value);
}

bool ParseId(const std::string& text, uint64_t* out) { return absl::SimpleAtoi(text, out) && *out != 0; }

// A browser sends Origin (and Sec-Fetch-Site) with cross-site requests; a page from elsewhere must not be
// able to drive the API, whatever it can make a browser send. Non-browser clients send neither.
bool CrossSite(const httplib::Request& req) {
  std::string site = req.get_header_value("Sec-Fetch-Site");
  if (!site.empty() && site != "same-origin" && site != "none") return true;
  if (!req.has_header("Origin")) return false;
  std::string origin = req.get_header_value("Origin");
  return origin != absl::StrCat("http://", req.get_header_value("Host"));
}

bool JsonContentType(const httplib::Request& req) {
  std::string type = req.get_header_value("Content-Type");
  absl::string_view media(type);
  media = media.substr(0, media.find(';'));
  return absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(media), "application/json");
}

Json UserJson(const AdminUser& u) {
  Json devices = Json::array();
  for (const AdminDevice& d : u.devices) {
    devices.push_back({{"device", d.device}, {"platform", d.platform}, {"since_ms", d.since_ms}, {"cursor", d.cursor}});
  }
  return {{"user", u.user},         {"shard", u.shard},       {"online", u.online},
          {"devices", devices},     {"last_seq", u.last_seq}, {"inbox_size", u.inbox_size}};
}

}  // namespace

AdminServer::AdminServer(AdminOps* ops, ShardRunner* runner, AdminOptions options)
    : ops_(ops), runner_(runner), options_(std::move(options)) {}

AdminServer::~AdminServer() { Stop(); }

void AdminServer::Routes() {
  server_->set_payload_max_length(kMaxBodyBytes);
  // Answers are written as headers then body: without TCP_NODELAY the body waits for the client's delayed
  // ACK (40 ms on Linux) on every keep-alive request.
  server_->set_tcp_nodelay(true);
  server_->set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    bool api = req.path == "/v1" || absl::StartsWith(req.path, "/v1/");
    if (!api && !options_.web_root.empty() && (req.method == "GET" || req.method == "HEAD")) {
      ServeWebFile(options_.web_root, req.path, res);
      return httplib::Server::HandlerResponse::Handled;
    }
    if (!options_.token.empty() && req.get_header_value("Authorization") != "Bearer " + options_.token) {
      Error(res, 401, "missing or wrong bearer token");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (CrossSite(req)) {
      Error(res, 403, "cross-origin requests are refused");
      return httplib::Server::HandlerResponse::Handled;
    }
    if ((req.method == "POST" || req.method == "PUT" || req.method == "DELETE") && !JsonContentType(req)) {
      Error(res, 415, "the body must be sent as Content-Type: application/json");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (api && ops_ == nullptr && req.path != "/v1/stats") {
      Error(res, 501, "this backend offers no admin operations");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  auto body_of = [](const httplib::Request& req, httplib::Response& res) -> std::optional<Json> {
    absl::StatusOr<Json> v = ParseObject(req.body);
    if (!v.ok()) {
      Error(res, 400, v.status().message());
      return std::nullopt;
    }
    return std::move(*v);
  };

  server_->Post("/v1/push", [this, body_of](const httplib::Request& req, httplib::Response& res) {
    std::optional<Json> body = body_of(req, res);
    if (!body) return;
    absl::StatusOr<std::vector<uint64_t>> users = IdList(*body, "users");
    if (!users.ok()) return Error(res, 400, users.status().message());
    absl::StatusOr<uint64_t> group = OptionalId(*body, "group");
    if (!group.ok()) return Error(res, 400, group.status().message());
    if (users->empty() == (*group == 0)) return Error(res, 400, "give either \"users\" or \"group\"");
    AdminPush push;
    push.users = std::move(*users);
    push.group = *group;
    auto text = body->find("payload");
    auto b64 = body->find("payload_base64");
    if (text != body->end() && text->is_string()) {
      const std::string& s = text->get_ref<const std::string&>();
      push.payload.assign(s.begin(), s.end());
    } else if (b64 != body->end() && b64->is_string()) {
      absl::StatusOr<std::string> d = Base64Decode(b64->get_ref<const std::string&>());
      if (!d.ok()) return Error(res, 400, d.status().message());
      push.payload.assign(d->begin(), d->end());
    } else {
      return Error(res, 400, "give \"payload\" (text) or \"payload_base64\"");
    }
    if (push.payload.size() > kMaxPayloadBytes) return Error(res, 413, "payload larger than 1 MiB");
    std::optional<uint64_t> id =
        Ask<uint64_t>(res, [&](AdminDone<uint64_t> done) { ops_->Push(std::move(push), std::move(done)); });
    if (id) Reply(res, 200, {{"server_msg_id", *id}});
  });

  server_->Post("/v1/kick", [this, body_of](const httplib::Request& req, httplib::Response& res) {
    std::optional<Json> body = body_of(req, res);
    if (!body) return;
    absl::StatusOr<uint64_t> user = OptionalId(*body, "user");
    if (!user.ok()) return Error(res, 400, user.status().message());
    if (*user == 0) return Error(res, 400, "\"user\" is required");
    absl::StatusOr<uint64_t> device = OptionalId(*body, "device", 0xffffffffu);
    if (!device.ok()) return Error(res, 400, device.status().message());
    std::optional<uint64_t> n = Ask<uint64_t>(res, [&](AdminDone<uint64_t> done) {
      ops_->Kick(*user, static_cast<uint32_t>(*device), std::move(done));
    });
    if (n) Reply(res, 200, {{"user", *user}, {"kicked", *n}});
  });

  server_->Get(R"(/v1/users/(\d+))", [this](const httplib::Request& req, httplib::Response& res) {
    uint64_t user;
    if (!ParseId(req.matches[1].str(), &user)) return Error(res, 400, "bad user id");
    std::optional<AdminUser> u =
        Ask<AdminUser>(res, [&](AdminDone<AdminUser> done) { ops_->User(user, std::move(done)); });
    if (u) Reply(res, 200, UserJson(*u));
  });

  server_->Post("/v1/groups", [this, body_of](const httplib::Request& req, httplib::Response& res) {
    std::optional<Json> body = body_of(req, res);
    if (!body) return;
    absl::StatusOr<uint64_t> group = OptionalId(*body, "group");
    if (!group.ok()) return Error(res, 400, group.status().message());
    if (*group == 0) return Error(res, 400, "\"group\" (a positive id) is required");
    absl::StatusOr<std::vector<uint64_t>> members = IdList(*body, "members");
    if (!members.ok()) return Error(res, 400, members.status().message());
    std::optional<bool> ok = Ask<bool>(
        res, [&](AdminDone<bool> done) { ops_->CreateGroup(*group, std::move(*members), std::move(done)); });
    if (ok) Reply(res, 201, {{"group", *group}});
  });
  for (bool add : {true, false}) {
    auto handler = [this, body_of, add](const httplib::Request& req, httplib::Response& res) {
      uint64_t group;
      if (!ParseId(req.matches[1].str(), &group)) return Error(res, 400, "bad group id");
      std::optional<Json> body = body_of(req, res);
      if (!body) return;
      absl::StatusOr<std::vector<uint64_t>> users = IdList(*body, "users");
      if (!users.ok()) return Error(res, 400, users.status().message());
      if (users->empty()) return Error(res, 400, "\"users\" is required");
      std::optional<bool> ok = Ask<bool>(
          res, [&](AdminDone<bool> done) { ops_->ChangeMembers(group, add, std::move(*users), std::move(done)); });
      if (ok) Reply(res, 200, {{"group", group}});
    };
    if (add) {
      server_->Post(R"(/v1/groups/(\d+)/members)", handler);
    } else {
      server_->Delete(R"(/v1/groups/(\d+)/members)", handler);
    }
  }
  server_->Get(R"(/v1/groups/(\d+))", [this](const httplib::Request& req, httplib::Response& res) {
    uint64_t group;
    if (!ParseId(req.matches[1].str(), &group)) return Error(res, 400, "bad group id");
    std::optional<std::vector<uint64_t>> members = Ask<std::vector<uint64_t>>(
        res, [&](AdminDone<std::vector<uint64_t>> done) { ops_->Members(group, std::move(done)); });
    if (members) Reply(res, 200, {{"group", group}, {"count", members->size()}, {"members", *members}});
  });

  // Backend-neutral: every shard's backend statistics, read on the shard (its gauges refreshed first).
  server_->Get("/v1/stats", [this](const httplib::Request&, httplib::Response& res) {
    Json shards = Json::array();
    for (uint32_t s = 0; s < runner_->shard_count(); ++s) {
      std::optional<Json> one = Ask<Json>(res, [&](AdminDone<Json> done) {
        auto d = std::make_shared<AdminDone<Json>>(std::move(done));
        bool queued = runner_->RunOnShard(s, [d, s](Backend& b) {
          b.RefreshStats();
          metrics::FlatStats flat;
          b.VisitStats(flat);
          Json j = {{"shard", s}};
          for (const auto& [name, value] : flat.values) j[name] = static_cast<uint64_t>(value);
          std::move(*d)(AdminResult::Ok(), std::move(j));
        });
        if (!queued) std::move(*d)({AdminCode::kUnavailable, "the gateway is stopping"}, Json());
      });
      if (!one) return;
      shards.push_back(std::move(*one));
    }
    Reply(res, 200, {{"backend", options_.backend}, {"shards", std::move(shards)}});
  });
}

absl::Status AdminServer::Start(const std::string& bind, uint16_t port) {
  server_ = std::make_unique<httplib::Server>();
  Routes();
  int bound = port;
  if (port == 0) {
    bound = server_->bind_to_any_port(bind);
  } else if (!server_->bind_to_port(bind, port)) {
    bound = -1;
  }
  if (bound <= 0) return absl::UnavailableError(absl::StrCat("cannot bind the admin API to ", bind, ":", port));
  port_ = static_cast<uint16_t>(bound);
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  // httplib ignores stop() until its accept loop runs.
  while (!server_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return absl::OkStatus();
}

void AdminServer::Stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace longlink::gateway::admin
