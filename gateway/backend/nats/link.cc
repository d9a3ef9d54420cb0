#include "gateway/backend/nats/link.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/clock.h"
#include "gateway/backend/nats/wire.h"
#include "nats/nats.h"
#include "nlohmann/json.hpp"

namespace longlink::gateway::nats {

// ---- Reply ----

Reply::Reply(Kind k, natsMsg* m) : kind_(k), msg_(m) {}
Reply& Reply::operator=(Reply&& o) noexcept {
  if (this != &o) {
    if (msg_ != nullptr) natsMsg_Destroy(msg_);
    kind_ = o.kind_;
    msg_ = std::exchange(o.msg_, nullptr);
  }
  return *this;
}
Reply::~Reply() {
  if (msg_ != nullptr) natsMsg_Destroy(msg_);
}
std::span<const uint8_t> Reply::data() const {
  if (msg_ == nullptr) return {};
  return {reinterpret_cast<const uint8_t*>(natsMsg_GetData(msg_)), static_cast<size_t>(natsMsg_GetDataLength(msg_))};
}
std::string_view Reply::text() const {
  if (msg_ == nullptr) return {};
  return {natsMsg_GetData(msg_), static_cast<size_t>(natsMsg_GetDataLength(msg_))};
}
std::string_view Reply::subject() const {
  if (msg_ == nullptr) return {};
  const char* s = natsMsg_GetSubject(msg_);
  return s == nullptr ? std::string_view() : std::string_view(s);
}
std::string_view Reply::reply_to() const {
  if (msg_ == nullptr) return {};
  const char* s = natsMsg_GetReply(msg_);
  return s == nullptr ? std::string_view() : std::string_view(s);
}
std::string Reply::header(const char* name) const {
  if (msg_ == nullptr) return {};
  const char* v = nullptr;
  if (natsMsgHeader_Get(msg_, name, &v) != NATS_OK || v == nullptr) return {};
  return v;
}
std::string Reply::status() const { return header("Status"); }

// ---- server probe ----

namespace {

// "nats://user:pass@host:4222" -> host, port
bool SplitUrl(const std::string& url, std::string* host, std::string* port) {
  absl::string_view u = url;
  size_t scheme = u.find("://");
  if (scheme != absl::string_view::npos) u.remove_prefix(scheme + 3);
  size_t at = u.rfind('@');
  if (at != absl::string_view::npos) u.remove_prefix(at + 1);
  size_t slash = u.find('/');
  if (slash != absl::string_view::npos) u = u.substr(0, slash);
  if (!u.empty() && u.front() == '[') {
    size_t close = u.find(']');
    if (close == absl::string_view::npos) return false;
    *host = std::string(u.substr(1, close - 1));
    u.remove_prefix(close + 1);
    *port = absl::ConsumePrefix(&u, ":") ? std::string(u) : "4222";
    return true;
  }
  size_t colon = u.rfind(':');
  if (colon == absl::string_view::npos) {
    *host = std::string(u);
    *port = "4222";
  } else {
    *host = std::string(u.substr(0, colon));
    *port = std::string(u.substr(colon + 1));
  }
  return !host->empty();
}

}  // namespace

absl::StatusOr<ServerInfo> ProbeServer(const std::string& url, int timeout_ms) {
  std::string host, port;
  if (!SplitUrl(url, &host, &port)) return absl::InvalidArgumentError(Cat("bad NATS URL '", url, "'"));
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) {
    return absl::UnavailableError(Cat("cannot resolve ", host));
  }
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    freeaddrinfo(res);
    return absl::UnavailableError("socket failed");
  }
  int rc = connect(fd, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  uint64_t deadline = core::MonoMillis() + static_cast<uint64_t>(timeout_ms);
  if (rc != 0 && errno != EINPROGRESS) {
    close(fd);
    return absl::UnavailableError(Cat("cannot connect to ", url, ": ", strerror(errno)));
  }
  std::string line;
  char buf[4096];
  while (line.find("\r\n") == std::string::npos && line.size() < 65536) {
    uint64_t now = core::MonoMillis();
    if (now >= deadline) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(deadline - now)) <= 0) break;
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    line.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  if (!absl::StartsWith(line, "INFO ")) {
    return absl::UnavailableError(Cat("no INFO from ", url, " (not a NATS server, or not reachable)"));
  }
  std::string_view json = std::string_view(line).substr(5);
  json = json.substr(0, json.find("\r\n"));
  nlohmann::json j = nlohmann::json::parse(json, nullptr, false);
  if (!j.is_object()) return absl::UnavailableError(Cat("unparsable INFO from ", url));
  ServerInfo info;
  info.version = j.value("version", std::string());
  info.jetstream = j.value("jetstream", false);
  info.server_name = j.value("server_name", std::string());
  return info;
}

bool VersionAtLeast(std::string_view version, int major, int minor, int patch) {
  std::vector<absl::string_view> parts = absl::StrSplit(AV(version), absl::ByAnyChar(".-+"));
  int v[3] = {0, 0, 0};
  for (size_t i = 0; i < 3 && i < parts.size(); ++i) {
    if (!absl::SimpleAtoi(parts[i], &v[i])) return false;
  }
  if (v[0] != major) return v[0] > major;
  if (v[1] != minor) return v[1] > minor;
  return v[2] >= patch;
}

// ---- callbacks ----

struct LinkCallbacks {
  static void OnReplyMsg(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
    auto* link = static_cast<NatsLink*>(closure);
    const char* subj = natsMsg_GetSubject(msg);
    std::string_view s = subj == nullptr ? "" : subj;
    size_t dot = s.rfind('.');
    uint64_t token = 0;
    if (dot == std::string_view::npos || !absl::SimpleAtoi(AV(s.substr(dot + 1)), &token)) {
      natsMsg_Destroy(msg);
      return;
    }
    Reply::Kind kind = natsMsg_IsNoResponders(msg) ? Reply::kNoResponders : Reply::kOk;
    link->Complete(token, Reply(kind, msg));
  }
  static void OnSubMsg(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
    auto* ctx = static_cast<NatsLink::SubCtx*>(closure);
    ctx->fn(Reply(Reply::kOk, msg));
  }
  static void OnDisconnected(natsConnection*, void* closure) {
    auto* link = static_cast<NatsLink*>(closure);
    link->connected_.store(false, std::memory_order_release);
    if (!link->stopping_.load() && link->on_state_) link->on_state_(false);
  }
  static void OnReconnected(natsConnection*, void* closure) {
    auto* link = static_cast<NatsLink*>(closure);
    link->reconnects_.fetch_add(1, std::memory_order_relaxed);
    link->connected_.store(true, std::memory_order_release);
    if (!link->stopping_.load() && link->on_state_) link->on_state_(true);
  }
  static void OnError(natsConnection*, natsSubscription*, natsStatus err, void* closure) {
    auto* link = static_cast<NatsLink*>(closure);
    if (err == NATS_SLOW_CONSUMER) {
      link->slow_consumer_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    std::fprintf(stderr, "longlink-gateway: nats: %s\n", natsStatus_GetText(err));
  }
};

// ---- NatsLink ----

absl::StatusOr<std::unique_ptr<NatsLink>> NatsLink::Connect(const LinkOptions& o, std::function<void(bool)> on_state) {
  if (nats_Open(-1) != NATS_OK) return absl::InternalError("cannot initialise the NATS library");
  std::unique_ptr<NatsLink> link(new NatsLink());
  link->on_state_ = std::move(on_state);
  natsOptions* opts = nullptr;
  if (natsOptions_Create(&opts) != NATS_OK) return absl::InternalError("natsOptions_Create failed");
  link->opts_ = opts;
  std::vector<const char*> servers;
  for (const std::string& u : o.urls) servers.push_back(u.c_str());
  natsStatus s = natsOptions_SetServers(opts, servers.data(), static_cast<int>(servers.size()));
  if (s == NATS_OK) s = natsOptions_SetNoRandomize(opts, false);
  if (s == NATS_OK && !o.name.empty()) s = natsOptions_SetName(opts, o.name.c_str());
  if (s == NATS_OK && !o.user.empty()) s = natsOptions_SetUserInfo(opts, o.user.c_str(), o.password.c_str());
  if (s == NATS_OK && !o.token.empty()) s = natsOptions_SetToken(opts, o.token.c_str());
  if (s == NATS_OK && !o.creds_file.empty()) {
    s = natsOptions_SetUserCredentialsFromFiles(opts, o.creds_file.c_str(), nullptr);
  }
  if (s == NATS_OK) s = natsOptions_SetTimeout(opts, 2000);
  if (s == NATS_OK) s = natsOptions_SetAllowReconnect(opts, true);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(opts, 250);
  if (s == NATS_OK) s = natsOptions_SetReconnectJitter(opts, 250, 1000);
  // A publish while reconnecting fails instead of waiting in a buffer (see link.h).
  if (s == NATS_OK) s = natsOptions_SetReconnectBufSize(opts, 1);
  if (s == NATS_OK) s = natsOptions_SetPingInterval(opts, 2000);
  if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(opts, 2);
  if (s == NATS_OK) s = natsOptions_SetMaxPendingMsgs(opts, 1 << 20);  // the library derives 1 KiB per message in an int;
  if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(opts, LinkCallbacks::OnDisconnected, link.get());
  if (s == NATS_OK) s = natsOptions_SetReconnectedCB(opts, LinkCallbacks::OnReconnected, link.get());
  if (s == NATS_OK) s = natsOptions_SetErrorHandler(opts, LinkCallbacks::OnError, link.get());
  if (s != NATS_OK) return absl::InvalidArgumentError(Cat("NATS options: ", natsStatus_GetText(s)));
  s = natsConnection_Connect(&link->nc_, opts);
  if (s != NATS_OK) {
    return absl::UnavailableError(Cat("cannot connect to NATS (", absl::StrJoin(o.urls, ","),
                                               "): ", nats_GetLastError(nullptr)));
  }
  link->connected_.store(true, std::memory_order_release);
  std::random_device rd;
  {
    char hex[17];
    std::snprintf(hex, sizeof(hex), "%016llx",
                  static_cast<unsigned long long>(static_cast<uint64_t>(rd()) << 32 | rd()));
    link->reply_prefix_ = Cat("_INBOX.", std::string_view(hex), ".");
  }
  s = natsConnection_Subscribe(&link->reply_sub_, link->nc_, Cat(link->reply_prefix_, "*").c_str(),
                               LinkCallbacks::OnReplyMsg, link.get());
  if (s == NATS_OK) s = natsSubscription_SetPendingLimits(link->reply_sub_, 1 << 22, 1 << 30);
  if (s != NATS_OK) return absl::UnavailableError(Cat("NATS subscribe: ", nats_GetLastError(nullptr)));
  link->timer_ = std::thread([l = link.get()] { l->TimerLoop(); });
  return link;
}

NatsLink::~NatsLink() {
  stopping_.store(true);
  {
    std::lock_guard<std::mutex> lock(mu_);
    timer_cv_.notify_all();
  }
  if (timer_.joinable()) timer_.join();
  if (nc_ != nullptr) {
    natsConnection_Close(nc_);
  }
  {
    std::lock_guard<std::mutex> lock(sub_mu_);
    for (auto& [sub, ctx] : subs_) natsSubscription_Destroy(sub);
    subs_.clear();
  }
  if (reply_sub_ != nullptr) natsSubscription_Destroy(reply_sub_);
  if (nc_ != nullptr) natsConnection_Destroy(nc_);
  if (opts_ != nullptr) natsOptions_Destroy(opts_);
  // Requests still pending are failed so their callers can let go of their state.
  absl::flat_hash_map<uint64_t, Pending> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    left.swap(pending_);
  }
  for (auto& [token, p] : left) std::move(p.fn)(Reply(Reply::kUnavailable, nullptr));
}

std::string NatsLink::connected_url() const {
  char buf[512] = "";
  if (nc_ == nullptr || natsConnection_GetConnectedUrl(nc_, buf, sizeof(buf)) != NATS_OK) return "";
  return buf;
}

namespace {

natsMsg* MakeMsg(std::string_view subject, const char* reply, std::span<const uint8_t> data, const Headers* headers) {
  std::string subj(subject);
  natsMsg* m = nullptr;
  if (natsMsg_Create(&m, subj.c_str(), reply, reinterpret_cast<const char*>(data.data()),
                     static_cast<int>(data.size())) != NATS_OK) {
    return nullptr;
  }
  if (headers != nullptr) {
    for (const auto& [k, v] : *headers) natsMsgHeader_Set(m, k.c_str(), v.c_str());
  }
  return m;
}

}  // namespace

bool NatsLink::Publish(std::string_view subject, std::span<const uint8_t> data, const Headers* headers) {
  if (!connected()) return false;
  natsMsg* m = MakeMsg(subject, nullptr, data, headers);
  if (m == nullptr) return false;
  natsStatus s = natsConnection_PublishMsg(nc_, m);
  natsMsg_Destroy(m);
  return s == NATS_OK;
}

uint64_t NatsLink::Request(std::string_view subject, std::span<const uint8_t> data, const Headers* headers,
                           uint64_t timeout_ms, ReplyFn fn) {
  uint64_t token = next_token_.fetch_add(1, std::memory_order_relaxed);
  if (!connected()) {
    std::move(fn)(Reply(Reply::kUnavailable, nullptr));
    return token;
  }
  uint64_t deadline = core::MonoMillis() + timeout_ms;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.emplace(token, Pending{std::move(fn), deadline});
    bool first = deadlines_.empty() || deadline < deadlines_.begin()->first;
    deadlines_.emplace(deadline, token);
    if (first) timer_cv_.notify_all();
  }
  std::string reply = Cat(reply_prefix_, token);
  natsMsg* m = MakeMsg(subject, reply.c_str(), data, headers);
  natsStatus s = m == nullptr ? NATS_NO_MEMORY : natsConnection_PublishMsg(nc_, m);
  if (m != nullptr) natsMsg_Destroy(m);
  if (s != NATS_OK) Complete(token, Reply(Reply::kUnavailable, nullptr));
  return token;
}

void NatsLink::Complete(uint64_t token, Reply r) {
  ReplyFn fn;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = pending_.find(token);
    if (it == pending_.end()) return;  // timed out already: r is dropped
    fn = std::move(it->second.fn);
    auto range = deadlines_.equal_range(it->second.deadline_ms);
    for (auto d = range.first; d != range.second; ++d) {
      if (d->second == token) {
        deadlines_.erase(d);
        break;
      }
    }
    pending_.erase(it);
  }
  std::move(fn)(std::move(r));
}

void NatsLink::TimerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_.load()) {
    uint64_t now = core::MonoMillis();
    std::vector<ReplyFn> expired;
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
      uint64_t token = deadlines_.begin()->second;
      deadlines_.erase(deadlines_.begin());
      auto it = pending_.find(token);
      if (it != pending_.end()) {
        expired.push_back(std::move(it->second.fn));
        pending_.erase(it);
      }
    }
    if (!expired.empty()) {
      lock.unlock();
      for (ReplyFn& fn : expired) std::move(fn)(Reply(Reply::kTimeout, nullptr));
      lock.lock();
      continue;
    }
    uint64_t wait = deadlines_.empty() ? 100 : std::min<uint64_t>(100, deadlines_.begin()->first - now);
    timer_cv_.wait_for(lock, std::chrono::milliseconds(std::max<uint64_t>(1, wait)));
  }
}

Reply NatsLink::RequestSync(std::string_view subject, std::span<const uint8_t> data, const Headers* headers,
                            uint64_t timeout_ms) {
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  Reply out;
  Request(subject, data, headers, timeout_ms, [&](Reply r) {
    std::lock_guard<std::mutex> lock(m);
    out = std::move(r);
    done = true;
    cv.notify_all();
  });
  std::unique_lock<std::mutex> lock(m);
  cv.wait(lock, [&] { return done; });
  return out;
}

natsSubscription* NatsLink::Subscribe(const std::string& subject, MsgFn fn, const std::string& queue_group) {
  auto ctx = std::make_unique<SubCtx>(SubCtx{std::move(fn)});
  natsSubscription* sub = nullptr;
  natsStatus s = queue_group.empty()
                     ? natsConnection_Subscribe(&sub, nc_, subject.c_str(), LinkCallbacks::OnSubMsg, ctx.get())
                     : natsConnection_QueueSubscribe(&sub, nc_, subject.c_str(), queue_group.c_str(),
                                                     LinkCallbacks::OnSubMsg, ctx.get());
  if (s != NATS_OK) return nullptr;
  natsSubscription_SetPendingLimits(sub, 1 << 22, 1 << 30);
  std::lock_guard<std::mutex> lock(sub_mu_);
  subs_.emplace(sub, std::move(ctx));
  return sub;
}

void NatsLink::Unsubscribe(natsSubscription* sub) {
  if (sub == nullptr) return;
  natsSubscription_Unsubscribe(sub);
  {
    std::lock_guard<std::mutex> lock(sub_mu_);
    auto it = subs_.find(sub);
    if (it == subs_.end()) return;
    // A callback may still be running on the subscription's delivery thread: its context is kept until the
    // link ends (a few bytes per partition hand-over).
    retired_.push_back(std::move(it->second));
    subs_.erase(it);
  }
  natsSubscription_Destroy(sub);
}

std::string NatsLink::NewInbox() {
  return Cat(reply_prefix_.substr(0, reply_prefix_.size() - 1), "x", next_token_.fetch_add(1));
}

bool NatsLink::Flush(int timeout_ms) { return natsConnection_FlushTimeout(nc_, timeout_ms) == NATS_OK; }

uint64_t NatsLink::requests_pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_.size();
}

}  // namespace longlink::gateway::nats
