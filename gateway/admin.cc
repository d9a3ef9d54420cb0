#include "gateway/admin.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <future>
#include <iterator>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gateway/backend/local/local_backend.h"
#include "gateway/backend/local/records.h"
#include "httplib.h"
#include "protocol/frame.h"

namespace longlink::gateway {
namespace {

namespace proto = longlink::protocol;
using local::LocalBackend;

constexpr auto kShardTimeout = std::chrono::seconds(10);
constexpr size_t kMaxUsersPerRequest = 100000;
constexpr off_t kMaxWebFileBytes = 4 << 20;

class JsonParser {
 public:
  explicit JsonParser(std::string_view s) : s_(s) {}

  absl::StatusOr<JsonValue> Parse() {
    JsonValue v;
    if (!Value(&v, 0)) return absl::InvalidArgumentError(absl::StrCat("invalid JSON at byte ", pos_, ": ", err_));
    Ws();
    if (pos_ != s_.size()) return absl::InvalidArgumentError(absl::StrCat("trailing bytes after JSON at byte ", pos_));
    return v;
  }

 private:
  bool Fail(const char* why) {
    err_ = why;
    return false;
  }
  void Ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\r' || s_[pos_] == '\t')) ++pos_;
  }
  bool Lit(std::string_view w) {
    if (s_.substr(pos_, w.size()) != w) return Fail("unexpected token");
    pos_ += w.size();
    return true;
  }
  bool Str(std::string* out) {
    if (pos_ >= s_.size() || s_[pos_] != '"') return Fail("expected a string");
    ++pos_;
    while (pos_ < s_.size()) {
      char c = s_[pos_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return Fail("control character in string");
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (pos_ >= s_.size()) break;
      char e = s_[pos_++];
      switch (e) {
        case '"': out->push_back('"'); break;
        case '\\': out->push_back('\\'); break;
        case '/': out->push_back('/'); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'u': {
          if (pos_ + 4 > s_.size()) return Fail("short \\u escape");
          uint32_t cp = 0;
          for (int i = 0; i < 4; ++i) {
            char h = s_[pos_++];
            cp <<= 4;
            if (h >= '0' && h <= '9') cp |= static_cast<uint32_t>(h - '0');
            else if (h >= 'a' && h <= 'f') cp |= static_cast<uint32_t>(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F') cp |= static_cast<uint32_t>(h - 'A' + 10);
            else return Fail("bad \\u escape");
          }
          // UTF-8 of the BMP code point (surrogate pairs are kept as two code points).
          if (cp < 0x80) {
            out->push_back(static_cast<char>(cp));
          } else if (cp < 0x800) {
            out->push_back(static_cast<char>(0xc0 | (cp >> 6)));
            out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
          } else {
            out->push_back(static_cast<char>(0xe0 | (cp >> 12)));
            out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
            out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
          }
          break;
        }
        default:
          return Fail("bad escape");
      }
    }
    return Fail("unterminated string");
  }
  bool Value(JsonValue* v, int depth) {
    if (depth > 16) return Fail("nested too deeply");
    Ws();
    if (pos_ >= s_.size()) return Fail("unexpected end");
    char c = s_[pos_];
    if (c == '{') {
      ++pos_;
      v->kind = JsonValue::kObject;
      Ws();
      if (pos_ < s_.size() && s_[pos_] == '}') {
        ++pos_;
        return true;
      }
      for (;;) {
        Ws();
        std::string key;
        if (!Str(&key)) return false;
        Ws();
        if (pos_ >= s_.size() || s_[pos_] != ':') return Fail("expected ':'");
        ++pos_;
        JsonValue item;
        if (!Value(&item, depth + 1)) return false;
        v->object[key] = std::move(item);
        Ws();
        if (pos_ < s_.size() && s_[pos_] == ',') {
          ++pos_;
          continue;
        }
        if (pos_ < s_.size() && s_[pos_] == '}') {
          ++pos_;
          return true;
        }
        return Fail("expected ',' or '}'");
      }
    }
    if (c == '[') {
      ++pos_;
      v->kind = JsonValue::kArray;
      Ws();
      if (pos_ < s_.size() && s_[pos_] == ']') {
        ++pos_;
        return true;
      }
      for (;;) {
        JsonValue item;
        if (!Value(&item, depth + 1)) return false;
        v->array.push_back(std::move(item));
        if (v->array.size() > kMaxUsersPerRequest) return Fail("array too long");
        Ws();
        if (pos_ < s_.size() && s_[pos_] == ',') {
          ++pos_;
          continue;
        }
        if (pos_ < s_.size() && s_[pos_] == ']') {
          ++pos_;
          return true;
        }
        return Fail("expected ',' or ']'");
      }
    }
    if (c == '"') {
      v->kind = JsonValue::kString;
      return Str(&v->string);
    }
    if (c == 't') {
      v->kind = JsonValue::kBool;
      v->boolean = true;
      return Lit("true");
    }
    if (c == 'f') {
      v->kind = JsonValue::kBool;
      return Lit("false");
    }
    if (c == 'n') return Lit("null");
    if (c >= '0' && c <= '9') {
      size_t start = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '.' || s_[pos_] == 'e' || s_[pos_] == 'E')) {
        return Fail("only unsigned integers are accepted");
      }
      v->kind = JsonValue::kNumber;
      if (!absl::SimpleAtoi(absl::string_view(s_.data() + start, pos_ - start), &v->number)) return Fail("number out of range");
      return true;
    }
    return Fail("unexpected character");
  }

  std::string_view s_;
  size_t pos_ = 0;
  const char* err_ = "";
};

void Reply(httplib::Response& res, int status, const std::string& json) {
  res.status = status;
  res.set_content(json, "application/json");
}
void Error(httplib::Response& res, int status, absl::string_view message) {
  Reply(res, status, absl::StrCat("{\"error\":\"", JsonEscape(message), "\"}"));
}

// Waits for a shard's answer; false (and a 504 already set) on timeout.
template <class T>
bool Await(std::future<T>& f, httplib::Response& res) {
  if (f.wait_for(kShardTimeout) == std::future_status::ready) return true;
  Error(res, 504, "the shard did not answer in time");
  return false;
}

absl::StatusOr<std::vector<uint64_t>> IdList(const JsonValue& body, const char* key) {
  const JsonValue* v = body.Find(key);
  if (v == nullptr) return std::vector<uint64_t>{};
  if (v->kind != JsonValue::kArray) return absl::InvalidArgumentError(absl::StrCat("\"", key, "\" must be an array"));
  std::vector<uint64_t> out;
  for (const JsonValue& e : v->array) {
    if (e.kind != JsonValue::kNumber || e.number == 0) {
      return absl::InvalidArgumentError(absl::StrCat("\"", key, "\" must hold positive integer ids"));
    }
    out.push_back(e.number);
  }
  return out;
}

uint64_t Number(const JsonValue& body, const char* key) {
  const JsonValue* v = body.Find(key);
  return v != nullptr && v->kind == JsonValue::kNumber ? v->number : 0;
}

const char* SendStatusText(uint16_t s) {
  switch (static_cast<proto::SendStatus>(s)) {
    case proto::SendStatus::kNoSuchTarget: return "no such group";
    case proto::SendStatus::kRejected: return "rejected";
    case proto::SendStatus::kTooLarge: return "payload too large";
    case proto::SendStatus::kUnavailable: return "storage unavailable";
    default: return "failed";
  }
}

int GroupHttpStatus(uint16_t s) {
  switch (static_cast<proto::GroupStatus>(s)) {
    case proto::GroupStatus::kOk: return 200;
    case proto::GroupStatus::kNoSuchGroup: return 404;
    case proto::GroupStatus::kAlreadyExists: return 409;
    case proto::GroupStatus::kNotMember: return 404;
    case proto::GroupStatus::kBadRequest: return 400;
    default: return 503;
  }
}
const char* GroupStatusText(uint16_t s) {
  switch (static_cast<proto::GroupStatus>(s)) {
    case proto::GroupStatus::kNoSuchGroup: return "no such group";
    case proto::GroupStatus::kAlreadyExists: return "group already exists";
    case proto::GroupStatus::kNotMember: return "not a member";
    case proto::GroupStatus::kBadRequest: return "bad request";
    default: return "storage unavailable";
  }
}

}  // namespace

const JsonValue* JsonValue::Find(const std::string& key) const {
  if (kind != kObject) return nullptr;
  auto it = object.find(key);
  return it == object.end() ? nullptr : &it->second;
}

absl::StatusOr<JsonValue> ParseJson(std::string_view text) { return JsonParser(text).Parse(); }

std::string JsonEscape(absl::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(c);
        }
    }
  }
  return out;
}

absl::StatusOr<std::string> Base64Decode(std::string_view in) {
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

absl::StatusOr<std::string> WebFilePath(absl::string_view url_path) {
  if (url_path == "/") return std::string("chat.html");
  if (url_path.empty() || url_path[0] != '/' || url_path.size() > 256) {
    return absl::InvalidArgumentError("bad path");
  }
  url_path.remove_prefix(1);
  for (absl::string_view part : absl::StrSplit(url_path, '/')) {
    // Empty parts cover "//x" (absolute once joined) and "a//b"; a leading '.' covers ".", ".." and dotfiles.
    if (part.empty() || part[0] == '.') return absl::InvalidArgumentError("bad path");
    for (char c : part) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                c == '_' || c == '-';
      if (!ok) return absl::InvalidArgumentError("bad path");
    }
  }
  if (WebContentType(url_path) == nullptr) return absl::NotFoundError("not found");
  return std::string(url_path);
}

const char* WebContentType(absl::string_view name) {
  static constexpr std::pair<const char*, const char*> kTypes[] = {
      {".html", "text/html; charset=utf-8"},   {".js", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},     {".json", "application/json"},
      {".txt", "text/plain; charset=utf-8"},   {".png", "image/png"},
      {".svg", "image/svg+xml"},               {".ico", "image/x-icon"},
  };
  for (const auto& [ext, type] : kTypes) {
    if (absl::EndsWith(name, ext) && name.size() > strlen(ext)) return type;
  }
  return nullptr;
}

AdminServer::AdminServer(local::LocalFactory* factory, std::string token, std::string web_root)
    : factory_(factory), token_(std::move(token)), web_root_(std::move(web_root)) {}

void AdminServer::ServeWebFile(const std::string& url_path, httplib::Response& res) const {
  absl::StatusOr<std::string> rel = WebFilePath(url_path);
  if (!rel.ok()) return Error(res, absl::IsNotFound(rel.status()) ? 404 : 400, rel.status().message());
  // The name is already confined to the root; resolving it as well keeps a symlink placed inside the root
  // from pointing a request elsewhere.
  std::string full = absl::StrCat(web_root_, "/", *rel);
  char resolved[PATH_MAX];
  struct stat st {};
  if (realpath(full.c_str(), resolved) == nullptr || !absl::StartsWith(resolved, absl::StrCat(web_root_, "/")) ||
      stat(resolved, &st) != 0 || !S_ISREG(st.st_mode)) {
    return Error(res, 404, "not found");
  }
  if (st.st_size > kMaxWebFileBytes) return Error(res, 404, "not found");
  std::ifstream in(resolved, std::ios::binary);
  std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) return Error(res, 500, "cannot read the file");
  res.status = 200;
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("Cache-Control", "no-cache");
  res.set_header("Content-Security-Policy",
                 "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'");
  res.set_content(body, WebContentType(*rel));
}

AdminServer::~AdminServer() { Stop(); }

absl::Status AdminServer::Start(const std::string& bind, uint16_t port) {
  server_ = std::make_unique<httplib::Server>();
  local::LocalFactory* f = factory_;
  const uint32_t shards = f->shards();
  auto owner = [shards](uint64_t id) { return OwnerShardOf(id, shards); };

  server_->set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    bool api = req.path == "/v1" || absl::StartsWith(req.path, "/v1/");
    if (!api && !web_root_.empty() && (req.method == "GET" || req.method == "HEAD")) {
      ServeWebFile(req.path, res);
      return httplib::Server::HandlerResponse::Handled;
    }
    if (token_.empty() || req.get_header_value("Authorization") == "Bearer " + token_) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    Error(res, 401, "missing or wrong bearer token");
    return httplib::Server::HandlerResponse::Handled;
  });
  auto parse_body = [](const httplib::Request& req, httplib::Response& res, JsonValue* out) {
    absl::StatusOr<JsonValue> v = ParseJson(req.body);
    if (!v.ok()) {
      Error(res, 400, v.status().message());
      return false;
    }
    if (v->kind != JsonValue::kObject) {
      Error(res, 400, "the body must be a JSON object");
      return false;
    }
    *out = std::move(*v);
    return true;
  };

  server_->Post("/v1/push", [=](const httplib::Request& req, httplib::Response& res) {
    JsonValue body;
    if (!parse_body(req, res, &body)) return;
    absl::StatusOr<std::vector<uint64_t>> users = IdList(body, "users");
    if (!users.ok()) return Error(res, 400, users.status().message());
    uint64_t group = Number(body, "group");
    if (users->empty() == (group == 0)) return Error(res, 400, "give either \"users\" or \"group\"");
    std::string payload;
    if (const JsonValue* p = body.Find("payload"); p != nullptr && p->kind == JsonValue::kString) {
      payload = p->string;
    } else if (const JsonValue* b = body.Find("payload_base64"); b != nullptr && b->kind == JsonValue::kString) {
      absl::StatusOr<std::string> d = Base64Decode(b->string);
      if (!d.ok()) return Error(res, 400, d.status().message());
      payload = std::move(*d);
    } else {
      return Error(res, 400, "give \"payload\" (text) or \"payload_base64\"");
    }
    if (payload.size() > (1u << 20)) return Error(res, 413, "payload larger than 1 MiB");
    auto done = std::make_shared<std::promise<std::pair<uint16_t, uint64_t>>>();
    std::future<std::pair<uint16_t, uint64_t>> fut = done->get_future();
    uint32_t shard = group != 0 ? owner(group) : owner((*users)[0]);
    f->RunOnShard(shard, [users = std::move(*users), group, payload = std::move(payload), done](LocalBackend& b) mutable {
      b.AdminPush(std::move(users), group, std::vector<uint8_t>(payload.begin(), payload.end()),
                  [done](uint16_t status, uint64_t id) { done->set_value({status, id}); });
    });
    if (!Await(fut, res)) return;
    auto [status, id] = fut.get();
    if (status != 0) {
      int code = status == static_cast<uint16_t>(proto::SendStatus::kNoSuchTarget) ? 404 : 503;
      return Error(res, code, SendStatusText(status));
    }
    Reply(res, 200, absl::StrCat("{\"server_msg_id\":", id, "}"));
  });

  server_->Post("/v1/kick", [=](const httplib::Request& req, httplib::Response& res) {
    JsonValue body;
    if (!parse_body(req, res, &body)) return;
    uint64_t user = Number(body, "user");
    uint64_t device = Number(body, "device");
    if (user == 0) return Error(res, 400, "\"user\" is required");
    if (device > 0xffffffffu) return Error(res, 400, "\"device\" out of range");
    auto done = std::make_shared<std::promise<size_t>>();
    std::future<size_t> fut = done->get_future();
    f->RunOnShard(owner(user), [=](LocalBackend& b) {
      done->set_value(b.AdminKick(user, static_cast<uint32_t>(device)));
    });
    if (!Await(fut, res)) return;
    Reply(res, 200, absl::StrCat("{\"user\":", user, ",\"kicked\":", fut.get(), "}"));
  });

  server_->Get(R"(/v1/users/(\d+))", [=](const httplib::Request& req, httplib::Response& res) {
    uint64_t user;
    if (!absl::SimpleAtoi(req.matches[1].str(), &user) || user == 0) return Error(res, 400, "bad user id");
    auto done = std::make_shared<std::promise<std::string>>();
    std::future<std::string> fut = done->get_future();
    f->RunOnShard(owner(user), [=](LocalBackend& b) { done->set_value(b.AdminUserJson(user)); });
    if (!Await(fut, res)) return;
    Reply(res, 200, fut.get());
  });

  auto group_op = [=](uint8_t op, uint64_t group, std::vector<uint64_t> users, httplib::Response& res,
                      int ok_status) {
    auto done = std::make_shared<std::promise<uint16_t>>();
    std::future<uint16_t> fut = done->get_future();
    f->RunOnShard(owner(group), [=](LocalBackend& b) {
      // Several records, one answer: the last callback (after all are durable) reports the first failure.
      auto first_error = std::make_shared<uint16_t>(0);
      auto left = std::make_shared<size_t>(users.size() + (op == local::kGroupCreate ? 1 : 0));
      auto one = [=](uint16_t s) {
        if (s != 0 && *first_error == 0) *first_error = s;
        if (--*left == 0) done->set_value(*first_error);
      };
      if (*left == 0) {
        done->set_value(0);
        return;
      }
      if (op == local::kGroupCreate) {
        b.AdminGroupOp(local::kGroupCreate, group, 0, one);
        for (uint64_t u : users) b.AdminGroupOp(local::kGroupAdd, group, u, one);
      } else {
        for (uint64_t u : users) b.AdminGroupOp(op, group, u, one);
      }
    });
    if (!Await(fut, res)) return;
    uint16_t s = fut.get();
    if (s != 0) return Error(res, GroupHttpStatus(s), GroupStatusText(s));
    Reply(res, ok_status, absl::StrCat("{\"group\":", group, "}"));
  };

  server_->Post("/v1/groups", [=](const httplib::Request& req, httplib::Response& res) {
    JsonValue body;
    if (!parse_body(req, res, &body)) return;
    uint64_t group = Number(body, "group");
    if (group == 0) return Error(res, 400, "\"group\" (a positive id) is required");
    absl::StatusOr<std::vector<uint64_t>> members = IdList(body, "members");
    if (!members.ok()) return Error(res, 400, members.status().message());
    group_op(local::kGroupCreate, group, std::move(*members), res, 201);
  });
  for (bool add : {true, false}) {
    auto handler = [=](const httplib::Request& req, httplib::Response& res) {
      uint64_t group;
      if (!absl::SimpleAtoi(req.matches[1].str(), &group) || group == 0) return Error(res, 400, "bad group id");
      JsonValue body;
      if (!parse_body(req, res, &body)) return;
      absl::StatusOr<std::vector<uint64_t>> users = IdList(body, "users");
      if (!users.ok()) return Error(res, 400, users.status().message());
      if (users->empty()) return Error(res, 400, "\"users\" is required");
      group_op(add ? local::kGroupAdd : local::kGroupRemove, group, std::move(*users), res, 200);
    };
    if (add) {
      server_->Post(R"(/v1/groups/(\d+)/members)", handler);
    } else {
      server_->Delete(R"(/v1/groups/(\d+)/members)", handler);
    }
  }
  server_->Get(R"(/v1/groups/(\d+))", [=](const httplib::Request& req, httplib::Response& res) {
    uint64_t group;
    if (!absl::SimpleAtoi(req.matches[1].str(), &group) || group == 0) return Error(res, 400, "bad group id");
    auto done = std::make_shared<std::promise<std::pair<uint16_t, std::vector<uint64_t>>>>();
    auto fut = done->get_future();
    f->RunOnShard(owner(group), [=](LocalBackend& b) {
      b.AdminGroupMembers(group, [=](uint16_t s, std::vector<uint64_t> m) { done->set_value({s, std::move(m)}); });
    });
    if (!Await(fut, res)) return;
    auto [s, members] = fut.get();
    if (s != 0) return Error(res, GroupHttpStatus(s), GroupStatusText(s));
    std::string out = absl::StrCat("{\"group\":", group, ",\"count\":", members.size(), ",\"members\":[");
    for (size_t i = 0; i < members.size(); ++i) absl::StrAppend(&out, i ? "," : "", members[i]);
    out += "]}";
    Reply(res, 200, out);
  });

  server_->Get("/v1/stats", [=](const httplib::Request&, httplib::Response& res) {
    std::vector<std::future<std::string>> futs;
    for (uint32_t s = 0; s < shards; ++s) {
      auto done = std::make_shared<std::promise<std::string>>();
      futs.push_back(done->get_future());
      f->RunOnShard(s, [=](LocalBackend& b) {
        const local::LocalStats& st = b.stats();
        const local::LocalStore& store = b.store();
        done->set_value(absl::StrCat(
            "{\"shard\":", s, ",\"online_users\":", b.online_users(), ",\"users\":", store.user_count(),
            ",\"groups\":", store.group_count(), ",\"sends\":", st.sends, ",\"duplicate_sends\":", st.duplicate_sends,
            ",\"records\":", st.records, ",\"inbox_entries\":", st.inbox_entries, ",\"pushes\":", st.pushes,
            ",\"sync_pushes\":", st.sync_pushes, ",\"syncs\":", st.syncs, ",\"fsyncs\":", st.fsyncs,
            ",\"fsync_waits\":", st.fsync_waits,
            ",\"redriven\":", st.redriven, ",\"presence_events\":", st.presence_events,
            ",\"segments\":", store.log().Segments().size(), ",\"segments_deleted\":", store.stats().segments_deleted,
            ",\"entries_expired\":", store.stats().entries_expired, ",\"entries_evicted\":",
            store.stats().entries_evicted, "}"));
      });
    }
    std::string out = absl::StrCat("{\"shards\":[");
    for (uint32_t s = 0; s < shards; ++s) {
      if (!Await(futs[s], res)) return;
      absl::StrAppend(&out, s ? "," : "", futs[s].get());
    }
    out += "]}";
    Reply(res, 200, out);
  });

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

}  // namespace longlink::gateway
