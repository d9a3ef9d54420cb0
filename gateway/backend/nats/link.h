// The gateway's connection to NATS (nats.c from Debian, libnats 3.4): publishing, asynchronous requests
// whose replies or timeouts come back on the library's threads, and subscriptions. Every call is
// thread-safe; nothing here touches shard state. The backend turns each reply into work on a shard
// (ShardRunner::RunOnShard).
//
// Requests share one reply subscription ("_INBOX.<random>.*"); each request's reply subject ends in its
// token. A timer thread fails requests whose deadline passed. JetStream's API is JSON over such requests
// (publish acknowledgements, message gets, stream and consumer management), so every JetStream operation
// the shards start is asynchronous too.
//
// Publishes made while the connection is down fail at once (the reconnect buffer is one byte): a stale
// publish flushed after a reconnect could land behind a newer owner's writes.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"

typedef struct __natsConnection natsConnection;
typedef struct __natsSubscription natsSubscription;
typedef struct __natsMsg natsMsg;
typedef struct __natsOptions natsOptions;

namespace longlink::gateway::nats {

using Headers = std::vector<std::pair<std::string, std::string>>;

// A received message (or the reason there is none), owning the library's natsMsg.
class Reply {
 public:
  enum Kind : uint8_t { kOk, kNoResponders, kTimeout, kUnavailable };
  Reply() = default;
  Reply(Kind k, natsMsg* m);
  Reply(Reply&& o) noexcept : kind_(o.kind_), msg_(std::exchange(o.msg_, nullptr)) {}
  Reply& operator=(Reply&& o) noexcept;
  ~Reply();
  Kind kind() const { return kind_; }
  bool ok() const { return kind_ == kOk; }
  std::span<const uint8_t> data() const;
  std::string_view text() const;
  std::string_view subject() const;
  std::string_view reply_to() const;
  // A header's value, or empty.
  std::string header(const char* name) const;
  // The raw header block is not exposed by the library; status headers (e.g. 404) read through here.
  std::string status() const;
  natsMsg* release() { return std::exchange(msg_, nullptr); }

 private:
  Kind kind_ = kUnavailable;
  natsMsg* msg_ = nullptr;
};

struct LinkOptions {
  std::vector<std::string> urls;
  std::string user, password, token, creds_file;
  std::string name;  // shown by the servers (connz)
};

// The version and JetStream flag a server announces in its INFO line.
struct ServerInfo {
  std::string version;
  bool jetstream = false;
  std::string server_name;
};
// Connects a plain TCP socket to host:port of `url` and reads the server's INFO line.
absl::StatusOr<ServerInfo> ProbeServer(const std::string& url, int timeout_ms);
// "2.10.27" >= "2.10.0"
bool VersionAtLeast(std::string_view version, int major, int minor, int patch);

class NatsLink {
 public:
  using ReplyFn = absl::AnyInvocable<void(Reply) &&>;
  using MsgFn = std::function<void(Reply)>;

  // Connects (the library keeps reconnecting after that, forever). `on_state` runs on a library thread
  // with true when the connection is (re)established and false when it is lost.
  static absl::StatusOr<std::unique_ptr<NatsLink>> Connect(const LinkOptions& o, std::function<void(bool)> on_state);
  ~NatsLink();
  NatsLink(const NatsLink&) = delete;
  NatsLink& operator=(const NatsLink&) = delete;

  bool connected() const { return connected_.load(std::memory_order_acquire); }
  // The server currently connected to (its URL), for messages.
  std::string connected_url() const;

  // Fire-and-forget. False when not connected or the library refused it.
  bool Publish(std::string_view subject, std::span<const uint8_t> data, const Headers* headers = nullptr);
  // `fn` runs exactly once on a library or timer thread: with the reply, kNoResponders, kTimeout after
  // timeout_ms, or kUnavailable at once when not connected. Returns the request's token.
  uint64_t Request(std::string_view subject, std::span<const uint8_t> data, const Headers* headers,
                   uint64_t timeout_ms, ReplyFn fn);
  // Blocks the calling thread (never a shard): for start-up and the partition manager.
  Reply RequestSync(std::string_view subject, std::span<const uint8_t> data, const Headers* headers,
                    uint64_t timeout_ms);
  // `fn` runs on a library thread for every message. The subscription lives until Unsubscribe or the
  // link's end.
  natsSubscription* Subscribe(const std::string& subject, MsgFn fn, const std::string& queue_group = "");
  void Unsubscribe(natsSubscription* sub);
  // A subject nobody else uses, for replies or a consumer's deliveries.
  std::string NewInbox();
  // Waits until what was published so far reached the server (or timeout).
  bool Flush(int timeout_ms);

  // Counters for the metrics (any thread).
  uint64_t reconnects() const { return reconnects_.load(std::memory_order_relaxed); }
  uint64_t requests_pending() const;
  uint64_t slow_consumer_drops() const { return slow_consumer_.load(std::memory_order_relaxed); }

 private:
  NatsLink() = default;
  struct Pending {
    ReplyFn fn;
    uint64_t deadline_ms;
  };
  struct SubCtx {
    MsgFn fn;
  };
  friend struct LinkCallbacks;  // link.cc: the library's callbacks
  void TimerLoop();
  void Complete(uint64_t token, Reply r);

  natsOptions* opts_ = nullptr;
  natsConnection* nc_ = nullptr;
  natsSubscription* reply_sub_ = nullptr;
  std::string reply_prefix_;
  std::function<void(bool)> on_state_;
  std::atomic<bool> connected_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> next_token_{1};
  std::atomic<uint64_t> reconnects_{0};
  std::atomic<uint64_t> slow_consumer_{0};
  mutable std::mutex mu_;
  absl::flat_hash_map<uint64_t, Pending> pending_;
  std::multimap<uint64_t, uint64_t> deadlines_;  // deadline -> token
  std::mutex sub_mu_;
  std::map<natsSubscription*, std::unique_ptr<SubCtx>> subs_;
  std::vector<std::unique_ptr<SubCtx>> retired_;
  std::thread timer_;
  std::condition_variable timer_cv_;
};

}  // namespace longlink::gateway::nats
