#include "gateway/backend/nats/nats_config.h"

#include <unistd.h>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gateway/backend/nats/nats_backend.h"

ABSL_FLAG(std::string, nats_url, "nats://127.0.0.1:4222",
          "--backend=nats: NATS servers to start from, comma-separated (nats://host:port,...)");
ABSL_FLAG(std::string, nats_user, "", "--backend=nats: user name for the NATS connection");
ABSL_FLAG(std::string, nats_password, "", "--backend=nats: password for --nats-user");
ABSL_FLAG(std::string, nats_token, "", "--backend=nats: authentication token for the NATS connection");
ABSL_FLAG(std::string, nats_creds, "", "--backend=nats: a NATS credentials file (JWT and NKey seed)");
ABSL_FLAG(std::string, gateway_id, "",
          "--backend=nats: this gateway's identity in the cluster (letters, digits, - and _); keep it across "
          "restarts (default: <hostname>-<port>)");
ABSL_FLAG(std::string, nats_prefix, "ll", "--backend=nats: prefix of every subject, stream and bucket");
ABSL_FLAG(int64_t, nats_partitions, 16,
          "--backend=nats: inbox partitions (one stream and one owner each); fixed once the cluster has data");
ABSL_FLAG(int64_t, nats_replicas, 3, "--backend=nats: replicas of every stream (1 for a single server)");
ABSL_FLAG(std::string, nats_lease, "6s",
          "--backend=nats: partition ownership lease; a dead gateway's partitions move after about this long");
ABSL_FLAG(std::string, nats_timeout, "3s", "--backend=nats: one request to NATS, before it counts as failed");
ABSL_FLAG(std::string, nats_send_timeout, "8s",
          "--backend=nats: a SEND stored across partitions, before it is answered UNAVAILABLE");
ABSL_FLAG(std::string, nats_start_timeout, "30s",
          "--backend=nats: how long to wait at start for the cluster's JetStream to take the streams");
ABSL_FLAG(std::string, nats_monitor_urls, "",
          "--backend=nats: nats-server monitoring endpoints (http://host:8222,...) whose /varz and /jsz are "
          "re-exported on /metrics as longlink_nats_server_*");

namespace longlink::gateway::nats {
namespace {

absl::Status Bad(absl::string_view flag, absl::string_view why) {
  return absl::InvalidArgumentError(Cat("--", flag, ": ", why));
}

absl::StatusOr<uint64_t> Millis(absl::string_view flag, const std::string& text, absl::Duration lo, absl::Duration hi) {
  absl::Duration d;
  if (!absl::ParseDuration(text, &d) || d < lo || d > hi) {
    return Bad(flag, Cat("expected a duration from ", absl::FormatDuration(lo), " to ",
                                  absl::FormatDuration(hi)));
  }
  return static_cast<uint64_t>(absl::ToInt64Milliseconds(d));
}

bool NameChars(absl::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_') return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<NatsOptions> NatsOptionsFromFlags(const GatewayInfo& gateway) {
  NatsOptions o;
  o.shards = gateway.shards;
  for (absl::string_view u : absl::StrSplit(absl::GetFlag(FLAGS_nats_url), ',', absl::SkipWhitespace())) {
    o.urls.emplace_back(absl::StripAsciiWhitespace(u));
  }
  if (o.urls.empty()) return Bad("nats-url", "give at least one server, e.g. nats://127.0.0.1:4222");
  o.user = absl::GetFlag(FLAGS_nats_user);
  o.password = absl::GetFlag(FLAGS_nats_password);
  o.token = absl::GetFlag(FLAGS_nats_token);
  o.creds_file = absl::GetFlag(FLAGS_nats_creds);
  if (!o.creds_file.empty() && access(o.creds_file.c_str(), R_OK) != 0) {
    return Bad("nats-creds", Cat("cannot read ", o.creds_file));
  }
  o.gateway_id = absl::GetFlag(FLAGS_gateway_id);
  if (o.gateway_id.empty()) {
    char host[256] = "gateway";
    gethostname(host, sizeof(host) - 1);
    std::string h;
    for (char c : std::string(host)) h += absl::ascii_isalnum(c) ? c : '-';
    o.gateway_id = Cat(h.substr(0, 40), "-", gateway.port);
  }
  if (!NameChars(o.gateway_id)) return Bad("gateway-id", "1 to 64 of A-Z a-z 0-9 - _");
  o.prefix = absl::GetFlag(FLAGS_nats_prefix);
  if (!NameChars(o.prefix) || o.prefix.find('-') != std::string::npos) {
    return Bad("nats-prefix", "1 to 64 of A-Z a-z 0-9 _");
  }
  int64_t parts = absl::GetFlag(FLAGS_nats_partitions);
  if (parts < 1 || parts > 1024) return Bad("nats-partitions", "must be 1..1024");
  o.partitions = static_cast<uint32_t>(parts);
  int64_t rep = absl::GetFlag(FLAGS_nats_replicas);
  if (rep < 1 || rep > 5) return Bad("nats-replicas", "must be 1..5");
  o.replicas = static_cast<uint32_t>(rep);
  absl::StatusOr<uint64_t> ms = Millis("nats-lease", absl::GetFlag(FLAGS_nats_lease), absl::Seconds(2), absl::Minutes(5));
  if (!ms.ok()) return ms.status();
  o.lease_ms = *ms;
  ms = Millis("nats-timeout", absl::GetFlag(FLAGS_nats_timeout), absl::Milliseconds(100), absl::Minutes(1));
  if (!ms.ok()) return ms.status();
  o.request_timeout_ms = *ms;
  ms = Millis("nats-send-timeout", absl::GetFlag(FLAGS_nats_send_timeout), absl::Milliseconds(500), absl::Minutes(5));
  if (!ms.ok()) return ms.status();
  o.send_timeout_ms = *ms;
  ms = Millis("nats-start-timeout", absl::GetFlag(FLAGS_nats_start_timeout), absl::Seconds(1), absl::Hours(1));
  if (!ms.ok()) return ms.status();
  o.start_timeout_ms = *ms;
  for (absl::string_view u : absl::StrSplit(absl::GetFlag(FLAGS_nats_monitor_urls), ',', absl::SkipWhitespace())) {
    std::string url(absl::StripAsciiWhitespace(u));
    if (!absl::StartsWith(url, "http://")) return Bad("nats-monitor-urls", "expected http://host:port,...");
    o.monitor_urls.push_back(url);
  }
  absl::StatusOr<MessagingOptions> m = MessagingOptionsFromFlags();
  if (!m.ok()) return m.status();
  o.messaging = *m;
  o.max_frame_bytes = gateway.max_frame_bytes;
  return o;
}

absl::StatusOr<std::unique_ptr<BackendFactory>> ConfigureNatsBackend(const GatewayInfo& gateway) {
  absl::StatusOr<NatsOptions> o = NatsOptionsFromFlags(gateway);
  if (!o.ok()) return o.status();
  return std::unique_ptr<BackendFactory>(new NatsFactory(*o));
}

}  // namespace longlink::gateway::nats
