// The NATS backend's process-wide part: start-up checks, streams and buckets, the gateway's own
// subscriptions, and the contract subjects other services use.
#include <cstdio>
#include <random>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/clock.h"
#include "gateway/backend/nats/admin_ops.h"
#include "gateway/backend/nats/manager.h"
#include "gateway/backend/nats/monitor.h"
#include "gateway/backend/nats/nats_backend.h"
#include "nlohmann/json.hpp"

namespace longlink::gateway::nats {
namespace {

namespace proto = longlink::protocol;

constexpr int kMinMajor = 2, kMinMinor = 10, kMinPatch = 0;

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

NatsFactory::NatsFactory(NatsOptions options)
    : options_(std::move(options)),
      subjects_(options_.prefix),
      lease_until_(new std::atomic<uint64_t>[options_.partitions]) {
  for (uint32_t p = 0; p < options_.partitions; ++p) lease_until_[p].store(0);
}

NatsFactory::~NatsFactory() { Close(); }

void NatsFactory::Close() {
  closing_.store(true);
  ready_.store(false);
  if (manager_) manager_->Stop(/*release=*/true);
  if (link_) link_->Flush(2000);
  // Requests still pending fail as the link goes; their callbacks find no runner and drop their answers.
  runner_.store(nullptr);
  monitor_.reset();
  manager_.reset();
  admin_.reset();
  link_.reset();
}

std::string NatsFactory::Describe() const {
  return Cat("nats=", absl::StrJoin(options_.urls, ","), " server=", server_version_, " gateway-id=",
                      options_.gateway_id, " partitions=", options_.partitions, " replicas=", options_.replicas);
}

AdminOps* NatsFactory::admin_ops() { return admin_.get(); }

std::unique_ptr<Backend> NatsFactory::ForShard(GatewayPort* port) { return std::make_unique<NatsBackend>(this, port); }

bool NatsFactory::OnShard(uint32_t shard, absl::AnyInvocable<void(NatsBackend&) &&> fn) {
  ShardRunner* runner = runner_.load();
  if (runner == nullptr) return false;
  return runner->RunOnShard(shard, [fn = std::move(fn)](Backend& b) mutable {
    std::move(fn)(static_cast<NatsBackend&>(b));
  });
}

void NatsFactory::Collect(std::vector<prometheus::MetricFamily>* out) {
  if (monitor_) monitor_->Collect(out);
}

void NatsFactory::OnConnectionState(bool connected) {
  if (closing_.load()) return;
  if (!connected) {
    std::fprintf(stderr, "longlink-gateway: nats: connection lost; SENDs are answered UNAVAILABLE until it is back\n");
    return;
  }
  std::fprintf(stderr, "longlink-gateway: nats: reconnected to %s\n", link_->connected_url().c_str());
  if (manager_) manager_->Wake();
  for (uint32_t s = 0; s < options_.shards; ++s) {
    OnShard(s, [](NatsBackend& b) { b.OnConnectionRestored(); });
  }
}

absl::Status NatsFactory::Open(ShardRunner* runner) {
  runner_.store(runner);
  // The version check: every seed that answers must run 2.10 or later with JetStream.
  std::string reached;
  std::vector<std::string> failures;
  for (const std::string& url : options_.urls) {
    absl::StatusOr<ServerInfo> info = ProbeServer(url, 2000);
    if (!info.ok()) {
      failures.push_back(std::string(info.status().message()));
      continue;
    }
    if (!VersionAtLeast(info->version, kMinMajor, kMinMinor, kMinPatch)) {
      return absl::FailedPreconditionError(Cat(
          "--nats-url: ", url, " runs nats-server ", info->version, "; --backend=nats needs ", kMinMajor, ".",
          kMinMinor, " or later (before 2.10 a replicated stream's expected-last-sequence check is not part of its "
          "consensus, and there is no sync_interval)"));
    }
    if (!info->jetstream) {
      return absl::FailedPreconditionError(
          Cat("--nats-url: ", url, " (nats-server ", info->version, ") has JetStream disabled"));
    }
    if (server_version_.empty()) server_version_ = info->version;
    reached = url;
  }
  if (reached.empty()) {
    return absl::UnavailableError(Cat("--nats-url: no NATS server reachable (", absl::StrJoin(failures, "; "),
                                               ")"));
  }
  LinkOptions lo;
  lo.urls = options_.urls;
  lo.user = options_.user;
  lo.password = options_.password;
  lo.token = options_.token;
  lo.creds_file = options_.creds_file;
  lo.name = Cat("longlink-gateway ", options_.gateway_id);
  absl::StatusOr<std::unique_ptr<NatsLink>> link =
      NatsLink::Connect(lo, [this](bool up) { OnConnectionState(up); });
  if (!link.ok()) return link.status();
  link_ = std::move(*link);
  absl::Status st = EnsureStreams();
  if (!st.ok()) return st;
  st = CheckPartitionCount();
  if (!st.ok()) return st;
  SubscribeGateway();
  // Owners drop what they routed to an earlier life of this gateway.
  OwnerAnnounce start;
  start.gateway = options_.gateway_id;
  link_->Publish(subjects_.Control("gwstart"), Encode(start));
  admin_ = std::make_unique<NatsAdminOps>(this);
  if (!options_.monitor_urls.empty()) monitor_ = std::make_unique<ServerMonitor>(options_.monitor_urls);
  manager_ = std::make_unique<PartitionManager>(this);
  manager_->Start();
  ready_.store(true, std::memory_order_release);
  return absl::OkStatus();
}

absl::Status NatsFactory::EnsureStreams() {
  struct Want {
    std::string name;
    std::string config;
  };
  std::vector<Want> want;
  const MessagingOptions& m = options_.messaging;
  for (uint32_t p = 0; p < options_.partitions; ++p) {
    // Dedup ids are kept for two minutes: a publish retried after a timeout lands inside that.
    // JetStream wants the window within max_age, so a retention shorter than two minutes shortens it.
    uint64_t window = m.retention_ms == 0 ? 120000 : std::min<uint64_t>(120000, m.retention_ms);
    want.push_back({subjects_.InboxStream(p), InboxStreamConfig(subjects_, p, options_.replicas, m.retention_ms,
                                                                 m.max_inbox, window)});
  }
  auto bucket = [&](const char* what, uint64_t max_age_ms) {
    std::string b = subjects_.Bucket(what);
    want.push_back({Cat("KV_", b), BucketStreamConfig(b, options_.replicas, max_age_ms, 1)});
  };
  bucket("meta", 0);
  bucket("owners", options_.lease_ms);
  bucket("gateways", options_.lease_ms);
  bucket("groups", 0);
  bucket("cursors", m.retention_ms);
  // Each user's last inbox seq, written as the user goes idle on its owner: kept forever, so that an inbox
  // whose messages all expired carries on from there (seqs are never reused).
  bucket("seqs", 0);
  uint64_t deadline = core::MonoMillis() + options_.start_timeout_ms;
  std::string last_error;
  for (const Want& w : want) {
    while (true) {
      Reply r = link_->RequestSync(Cat("$JS.API.STREAM.CREATE.", w.name), Bytes(w.config), nullptr,
                                   options_.request_timeout_ms);
      std::string error;
      if (r.ok()) {
        nlohmann::json j = nlohmann::json::parse(r.text(), nullptr, false);
        if (j.is_object() && !j.contains("error")) break;
        int code = j.is_object() ? j["error"].value("err_code", 0) : 0;
        if (code == 10058) {
          // The stream exists with another configuration (retention, inbox size, ...): bring it up to date.
          Reply u = link_->RequestSync(Cat("$JS.API.STREAM.UPDATE.", w.name), Bytes(w.config), nullptr,
                                       options_.request_timeout_ms);
          nlohmann::json uj = nlohmann::json::parse(u.text(), nullptr, false);
          if (u.ok() && uj.is_object() && !uj.contains("error")) break;
          error = Cat("updating ", w.name, ": ", u.ok() ? std::string(u.text()) : "no answer");
        } else {
          error = Cat("creating ", w.name, ": ", std::string(r.text()));
        }
      } else {
        error = Cat("creating ", w.name, ": ",
                             r.kind() == Reply::kNoResponders ? "JetStream is not enabled for this account"
                                                              : "no answer from JetStream");
      }
      last_error = error;
      if (core::MonoMillis() >= deadline) {
        return absl::UnavailableError(Cat("NATS JetStream did not take the streams within --nats-start-timeout: ",
                                                   last_error));
      }
      // A cluster that just started elects its JetStream leader first.
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  }
  return absl::OkStatus();
}

absl::Status NatsFactory::CheckPartitionCount() {
  std::string meta = subjects_.Bucket("meta");
  std::string want = Cat(options_.partitions);
  for (int attempt = 0; attempt < 10; ++attempt) {
    std::optional<PartitionManager::KvEntry> e =
        PartitionManager::KvGet(*link_, meta, "partitions", options_.request_timeout_ms);
    if (!e) continue;
    if (e->found && !e->deleted) {
      if (e->value != want) {
        return absl::FailedPreconditionError(Cat("--nats-partitions: the cluster's data is laid out in ",
                                                          e->value, " partitions, not ", want));
      }
      return absl::OkStatus();
    }
    bool conflict = false;
    if (PartitionManager::KvPut(*link_, meta, "partitions", want, e->found ? e->revision : 0, false, &conflict,
                                options_.request_timeout_ms) != 0) {
      return absl::OkStatus();
    }
  }
  return absl::UnavailableError("cannot read or record the partition count in NATS");
}

void NatsFactory::SubscribeGateway() {
  // Frames for this gateway's users go to the user's shard.
  link_->Subscribe(subjects_.Gateway(options_.gateway_id), [this](Reply r) {
        if (closing_.load()) return;
    std::span<const uint8_t> d = r.data();
    if (d.size() < 8) return;
    uint64_t user = 0;
    for (int i = 0; i < 8; ++i) user = user << 8 | d[i];
    uint32_t shard = core::OwnerShardOf(user, options_.shards);
    auto msg = std::make_shared<Reply>(std::move(r));
    OnShard(shard, [msg](NatsBackend& b) { b.OnDelivery(std::move(*msg)); });
  });
  link_->Subscribe(subjects_.ControlWildcard(), [this](Reply r) {
        if (closing_.load()) return;
    std::string_view subject = r.subject();
    std::string_view what = subject.substr(subject.rfind('.') + 1);  // "owner" or "gwstart"
    OwnerAnnounce a;
    if (!Decode(r.data(), &a)) return;
    for (uint32_t s = 0; s < options_.shards; ++s) {
      if (what == "owner") {
        OnShard(s, [a](NatsBackend& b) { b.OnOwnerAnnounce(a); });
      } else if (what == "gwstart" && a.gateway != options_.gateway_id) {
        OnShard(s, [g = a.gateway](NatsBackend& b) { b.ForgetGateway(g); });
      }
    }
  });
  // The contract for other services (docs/nats-contract.md): any one gateway relays each request.
  std::string queue = Cat(options_.prefix, "-gateways");
  link_->Subscribe(
      subjects_.ServiceSend(),
      [this](Reply r) {
        if (closing_.load()) return;
        std::string reply(r.reply_to());
        SendRequest req;
        if (!Decode(r.data(), &req)) {
          if (!reply.empty()) {
            SendReply bad;
            bad.status = static_cast<uint16_t>(proto::SendStatus::kRejected);
            link_->Publish(reply, Encode(bad));
          }
          return;
        }
        // The checks a client's SEND gets (session.cc OnSend; the payload as large as a SEND frame of
        // --max-frame-bytes carries: 12 header + 21 body bytes around it).
        uint16_t refused = 0;
        bool known_kind = req.target_kind == static_cast<uint8_t>(proto::TargetKind::kUser) ||
                          req.target_kind == static_cast<uint8_t>(proto::TargetKind::kGroup);
        if (req.sender == 0) {
          refused = static_cast<uint16_t>(proto::SendStatus::kRejected);
        } else if (req.target == 0 || !known_kind) {
          refused = static_cast<uint16_t>(proto::SendStatus::kNoSuchTarget);
        } else if (proto::kHeaderSize + 21 + req.payload.size() > options_.max_frame_bytes) {
          refused = static_cast<uint16_t>(proto::SendStatus::kTooLarge);
        }
        if (refused != 0) {
          if (!reply.empty()) {
            SendReply no;
            no.status = refused;
            no.server_time_ms = core::UnixMillis();
            link_->Publish(reply, Encode(no));
          }
          return;
        }
        std::vector<uint8_t> body(r.data().begin(), r.data().end());
        link_->Request(subjects_.Partition(Partition(req.sender), "send"), body, nullptr, options_.send_timeout_ms,
                       [this, reply](Reply answer) {
                         // (Pending requests fail while the link is destroyed at Close.)
                         if (reply.empty() || closing_.load()) return;
                         // Only a SendReply goes back: an owner that no longer holds the partition (or no
                         // answer at all) is UNAVAILABLE to the service, as to a client.
                         SendReply sr;
                         if (!answer.ok() || !Decode(answer.data(), &sr)) {
                           sr = SendReply{};
                           sr.status = static_cast<uint16_t>(proto::SendStatus::kUnavailable);
                           sr.server_time_ms = core::UnixMillis();
                         }
                         link_->Publish(reply, Encode(sr));
                       });
      },
      queue);
  link_->Subscribe(
      subjects_.ServicePush(),
      [this](Reply r) {
        if (closing_.load()) return;
        // user u64, device u32, payload bytes: a PUSH with seq 0 (not stored) from user 0.
        Reader rd(r.data());
        uint64_t user = 0;
        uint32_t device = 0;
        std::span<const uint8_t> payload;
        std::string reply(r.reply_to());
        bool ok = rd.U64(&user) && rd.U32(&device) && rd.Bytes(&payload) && rd.done() && user != 0 &&
                  proto::kHeaderSize + 21 + payload.size() <= options_.max_frame_bytes;
        if (ok) {
          proto::PushBody push;
          static thread_local std::mt19937_64 rng(std::random_device{}());
          push.server_msg_id = rng() & ~(uint64_t{1} << 63);
          push.conv_kind = static_cast<uint8_t>(proto::TargetKind::kUser);
          push.server_time_ms = core::UnixMillis();
          push.payload = payload;
          std::vector<uint8_t> frame(proto::FrameSize(push));
          frame.resize(proto::Encode(0, push, frame));
          Forward f{user, device, frame};
          ok = link_->Publish(subjects_.Partition(Partition(user), "fwd"), Encode(f));
        }
        if (!reply.empty()) link_->Publish(reply, Bytes(ok ? "OK" : "ERR"));
      },
      queue);
}

}  // namespace longlink::gateway::nats
