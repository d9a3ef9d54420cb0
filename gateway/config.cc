#include "gateway/config.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "absl/flags/flag.h"
#include "core/shard_grid.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"

ABSL_FLAG(std::string, bind, "0.0.0.0", "Address the client listener binds to");
ABSL_FLAG(int32_t, port, 7000, "TCP port for longlink clients (0 picks a free port)");
ABSL_FLAG(int32_t, shards, 0, "Shard threads, each with its own io_uring (0 = number of cores)");
ABSL_FLAG(int32_t, max_conns_per_shard, 0,
          "Fixed-file table size per shard, i.e. connections one shard holds (0 = the open-files limit)");
ABSL_FLAG(std::string, metrics_bind, "0.0.0.0", "Address of the /metrics, /healthz and /readyz endpoint");
ABSL_FLAG(int32_t, metrics_port, 9100, "Port of the metrics endpoint (0 picks a free port, -1 disables it)");
ABSL_FLAG(std::string, auth, "token",
          "Authentication: token (HMAC-SHA256 tokens, the default; needs --auth-secret or --auth-secret-file) or "
          "none (trust the user id each LOGIN names: tests and closed networks only)");
ABSL_FLAG(std::string, auth_secret, "", "Secret for --auth=token");
ABSL_FLAG(std::string, auth_secret_file, "", "File holding the secret for --auth=token");
ABSL_FLAG(int32_t, max_login_failures, 10,
          "Failed logins a source address may make per minute (counted per shard) before its logins are refused "
          "for --login-block (0: no limit)");
ABSL_FLAG(absl::Duration, login_block, absl::Seconds(60), "How long an address over --max-login-failures is refused");
ABSL_FLAG(absl::Duration, token_grace, absl::Seconds(60),
          "--auth=token: a session outlives its token by this long, time for the client to send a fresh one (a "
          "second LOGIN); then it is kicked with AUTH_EXPIRED");
ABSL_FLAG(absl::Duration, login_timeout, absl::Seconds(10), "A connection must log in within this time");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::Seconds(30), "PING interval told to clients in LOGIN_ACK");
ABSL_FLAG(absl::Duration, heartbeat_timeout, absl::Seconds(90),
          "A logged-in connection silent for this long is closed (heartbeat_timeout)");
ABSL_FLAG(absl::Duration, write_timeout, absl::Seconds(15),
          "A send that makes no progress for this long closes the connection (write_timeout)");
ABSL_FLAG(int64_t, max_pending_bytes, 1 << 20,
          "Per-connection output queue limit; past it the connection is closed (slow_consumer)");
ABSL_FLAG(int64_t, max_frame_bytes, 64 * 1024, "Largest frame a client may send");
ABSL_FLAG(int32_t, drain_seconds, 10, "On SIGTERM, GOAWAY reconnect delays are spread over this many seconds");
ABSL_FLAG(int32_t, admin_port, -1, "Port of the admin HTTP API (0 picks a free port, -1 disables it)");
ABSL_FLAG(std::string, admin_bind, "127.0.0.1", "Address of the admin HTTP API");
ABSL_FLAG(std::string, admin_token, "", "Bearer token the admin API requires (empty: no token needed)");
ABSL_FLAG(std::string, web_root, "",
          "Directory of static files (the web chat page) served by the admin HTTP server at / without the "
          "bearer token (empty: off; needs --admin-port)");
ABSL_FLAG(int32_t, recv_buffer_size, 2048, "Bytes per receive buffer in each shard's buffer ring");
ABSL_FLAG(int32_t, recv_buffers, 4096,
          "Most receive buffers per shard (power of two, at most 32768); the ring starts with 64 and grows "
          "by 64 whenever receives find it empty");
ABSL_FLAG(int32_t, queue_capacity, 0,
          "Capacity of each of the shards x shards cross-shard queues (0: as many as fit 16 MiB in all, "
          "between 64 and 8192; a full queue spills into a local overflow list)");
ABSL_FLAG(int32_t, ring_entries, 4096, "Submission queue entries per shard ring");
ABSL_FLAG(int32_t, ws_port, -1, "WebSocket port for browser and SDK clients (-1 disables it, 0 picks a free port)");
ABSL_FLAG(std::string, ws_path, "/", "Request path of the WebSocket upgrade; other paths get 404");
ABSL_FLAG(std::string, ws_allowed_origins, "",
          "Comma-separated Origin values allowed to upgrade, or * for any (empty: an Origin whose host is the "
          "Host header's host, any scheme and port); a mismatch gets 403. Clients that send no Origin (not "
          "browsers) are not affected");
ABSL_FLAG(int64_t, ws_max_message_bytes, 0,
          "Largest WebSocket message (all fragments together) a client may send (0: --max-frame-bytes)");
ABSL_FLAG(int64_t, ws_max_header_bytes, 8192, "Largest HTTP upgrade request head; past it the answer is 431");
ABSL_FLAG(bool, ws_accept_text, false,
          "Accept text messages (valid UTF-8, handled like binary) instead of closing with 1003");
ABSL_FLAG(std::string, ws_echo_path, "",
          "Benchmark only: a path on which the gateway echoes every message back, without login (empty: off)");
ABSL_FLAG(bool, force_plain_ring, false, "Do not ask for SINGLE_ISSUER/DEFER_TASKRUN or COOP_TASKRUN (testing)");

namespace longlink::gateway {
namespace {

absl::Status Bad(absl::string_view flag, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", why));
}

absl::StatusOr<uint32_t> Millis(absl::string_view flag, absl::Duration d, absl::Duration min) {
  if (d < min) return Bad(flag, absl::StrCat("must be at least ", absl::FormatDuration(min)));
  if (d > absl::Hours(24 * 30)) return Bad(flag, "must be at most 720h");
  return static_cast<uint32_t>(absl::ToInt64Milliseconds(d));
}

}  // namespace

absl::StatusOr<Config> ConfigFromFlags() {
  Config c;
  c.bind = absl::GetFlag(FLAGS_bind);
  int32_t port = absl::GetFlag(FLAGS_port);
  if (port < 0 || port > 65535) return Bad("port", "must be 0..65535");
  c.port = static_cast<uint16_t>(port);

  int32_t shards = absl::GetFlag(FLAGS_shards);
  if (shards < 0 || shards > 1024) return Bad("shards", "must be 0..1024");
  c.shards = shards == 0 ? std::max(1u, std::thread::hardware_concurrency()) : static_cast<uint32_t>(shards);

  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  uint64_t nofile = rl.rlim_cur == RLIM_INFINITY ? (1u << 20) : rl.rlim_cur;
  int32_t mc = absl::GetFlag(FLAGS_max_conns_per_shard);
  if (mc < 0) return Bad("max-conns-per-shard", "must be >= 0");
  if (mc == 0) {
    c.max_conns_per_shard = static_cast<uint32_t>(std::min<uint64_t>(nofile, 1u << 20));
  } else {
    if (static_cast<uint64_t>(mc) > nofile) {
      return Bad("max-conns-per-shard",
                 absl::StrCat(mc, " exceeds the open-files limit (", nofile,
                              "), which also bounds each io_uring fixed-file table; use more shards instead"));
    }
    c.max_conns_per_shard = static_cast<uint32_t>(mc);
  }
  // io_uring's fixed-file table limit (IORING_MAX_FIXED_FILES); Conn keeps slots in 24 bits.
  if (c.max_conns_per_shard > (1u << 20)) return Bad("max-conns-per-shard", "must be at most 1048576 per shard");

  c.metrics_bind = absl::GetFlag(FLAGS_metrics_bind);
  c.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  if (c.metrics_port < -1 || c.metrics_port > 65535) return Bad("metrics-port", "must be -1..65535");

  std::string auth = absl::GetFlag(FLAGS_auth);
  if (auth == "none") {
    c.auth = AuthMode::kNone;
  } else if (auth == "token") {
    c.auth = AuthMode::kToken;
    c.auth_secret = absl::GetFlag(FLAGS_auth_secret);
    std::string file = absl::GetFlag(FLAGS_auth_secret_file);
    if (!file.empty()) {
      std::ifstream in(file);
      if (!in) return Bad("auth-secret-file", absl::StrCat("cannot read ", file));
      std::stringstream ss;
      ss << in.rdbuf();
      c.auth_secret = std::string(absl::StripTrailingAsciiWhitespace(ss.str()));
    }
    if (c.auth_secret.empty()) {
      return Bad("auth", "token (the default) needs --auth-secret or --auth-secret-file; --auth=none trusts the "
                         "user id each client sends (tests and closed networks)");
    }
  } else {
    return Bad("auth", absl::StrCat("unknown mode '", auth, "' (expected none or token)"));
  }

  int32_t mlf = absl::GetFlag(FLAGS_max_login_failures);
  if (mlf < 0 || mlf > 1000000) return Bad("max-login-failures", "must be 0..1000000");
  c.max_login_failures = static_cast<uint32_t>(mlf);
  absl::Duration block = absl::GetFlag(FLAGS_login_block);
  if (block < absl::Seconds(1) || block > absl::Hours(24)) return Bad("login-block", "must be 1s..24h");
  c.login_block_ms = static_cast<uint32_t>(absl::ToInt64Milliseconds(block));
  absl::Duration grace = absl::GetFlag(FLAGS_token_grace);
  if (grace < absl::ZeroDuration() || grace > absl::Hours(24)) return Bad("token-grace", "must be 0s..24h");
  c.token_grace_ms = static_cast<uint32_t>(absl::ToInt64Milliseconds(grace));

  absl::StatusOr<uint32_t> ms = Millis("login-timeout", absl::GetFlag(FLAGS_login_timeout), absl::Milliseconds(50));
  if (!ms.ok()) return ms.status();
  c.login_timeout_ms = *ms;
  ms = Millis("heartbeat-interval", absl::GetFlag(FLAGS_heartbeat_interval), absl::Milliseconds(50));
  if (!ms.ok()) return ms.status();
  c.heartbeat_interval_ms = *ms;
  ms = Millis("heartbeat-timeout", absl::GetFlag(FLAGS_heartbeat_timeout), absl::Milliseconds(50));
  if (!ms.ok()) return ms.status();
  c.heartbeat_timeout_ms = *ms;
  if (c.heartbeat_timeout_ms <= c.heartbeat_interval_ms) {
    return Bad("heartbeat-timeout", "must be longer than --heartbeat-interval");
  }
  ms = Millis("write-timeout", absl::GetFlag(FLAGS_write_timeout), absl::Milliseconds(50));
  if (!ms.ok()) return ms.status();
  c.write_timeout_ms = *ms;

  int64_t mfb = absl::GetFlag(FLAGS_max_frame_bytes);
  if (mfb < 64 || mfb > (16 << 20)) return Bad("max-frame-bytes", "must be 64..16777216");
  c.max_frame_bytes = static_cast<uint32_t>(mfb);
  int64_t mpb = absl::GetFlag(FLAGS_max_pending_bytes);
  if (mpb < 1024 || mpb > (1ll << 31)) return Bad("max-pending-bytes", "must be 1024..2147483648");
  if (mpb < mfb) return Bad("max-pending-bytes", "must be at least --max-frame-bytes");
  c.max_pending_bytes = static_cast<uint32_t>(mpb);

  int32_t ds = absl::GetFlag(FLAGS_drain_seconds);
  if (ds < 0 || ds > 3600) return Bad("drain-seconds", "must be 0..3600");
  c.drain_seconds = static_cast<uint32_t>(ds);

  c.admin_port = absl::GetFlag(FLAGS_admin_port);
  if (c.admin_port < -1 || c.admin_port > 65535) return Bad("admin-port", "must be -1..65535");
  c.admin_bind = absl::GetFlag(FLAGS_admin_bind);
  c.admin_token = absl::GetFlag(FLAGS_admin_token);
  std::string web_root = absl::GetFlag(FLAGS_web_root);
  if (!web_root.empty()) {
    if (c.admin_port < 0) return Bad("web-root", "the static files are served by the admin server: set --admin-port");
    // Resolved once, so that a symlink inside the root cannot lead a request outside it (admin.cc).
    char resolved[PATH_MAX];
    struct stat st {};
    if (realpath(web_root.c_str(), resolved) == nullptr || stat(resolved, &st) != 0 || !S_ISDIR(st.st_mode)) {
      return Bad("web-root", absl::StrCat("'", web_root, "' is not a directory"));
    }
    c.web_root = resolved;
  }

  int32_t rbs = absl::GetFlag(FLAGS_recv_buffer_size);
  if (rbs < 512 || rbs > (1 << 20)) return Bad("recv-buffer-size", "must be 512..1048576");
  c.recv_buffer_size = static_cast<uint32_t>(rbs);
  int32_t rb = absl::GetFlag(FLAGS_recv_buffers);
  if (rb < 1 || rb > 32768 || (rb & (rb - 1)) != 0) return Bad("recv-buffers", "must be a power of two, 1..32768");
  c.recv_buffers = static_cast<uint32_t>(rb);
  int32_t qc = absl::GetFlag(FLAGS_queue_capacity);
  if (qc != 0 && (qc < 16 || qc > (1 << 22))) return Bad("queue-capacity", "must be 0 (auto) or 16..4194304");
  c.queue_capacity = qc != 0 ? static_cast<uint32_t>(qc) : core::DefaultQueueCapacity(c.shards);
  int32_t re = absl::GetFlag(FLAGS_ring_entries);
  if (re < 64 || re > 32768) return Bad("ring-entries", "must be 64..32768");
  c.ring_entries = static_cast<uint32_t>(re);
  c.force_plain_ring = absl::GetFlag(FLAGS_force_plain_ring);

  c.ws_port = absl::GetFlag(FLAGS_ws_port);
  if (c.ws_port < -1 || c.ws_port > 65535) return Bad("ws-port", "must be -1..65535");
  c.ws_path = absl::GetFlag(FLAGS_ws_path);
  if (c.ws_path.empty() || c.ws_path[0] != '/') return Bad("ws-path", "must start with '/'");
  for (absl::string_view o : absl::StrSplit(absl::GetFlag(FLAGS_ws_allowed_origins), ',', absl::SkipWhitespace())) {
    o = absl::StripAsciiWhitespace(o);
    if (o == "*") {
      c.ws_any_origin = true;
    } else {
      c.ws_allowed_origins.emplace_back(o);
    }
  }
  if (c.ws_any_origin && !c.ws_allowed_origins.empty()) {
    return Bad("ws-allowed-origins", "* (any origin) cannot be combined with a list");
  }
  int64_t wmm = absl::GetFlag(FLAGS_ws_max_message_bytes);
  if (wmm == 0) wmm = mfb;
  if (wmm < 64 || wmm > (16 << 20)) return Bad("ws-max-message-bytes", "must be 0 or 64..16777216");
  c.ws_max_message_bytes = static_cast<uint32_t>(wmm);
  int64_t wmh = absl::GetFlag(FLAGS_ws_max_header_bytes);
  if (wmh < 256 || wmh > (1 << 20)) return Bad("ws-max-header-bytes", "must be 256..1048576");
  c.ws_max_header_bytes = static_cast<uint32_t>(wmh);
  c.ws_accept_text = absl::GetFlag(FLAGS_ws_accept_text);
  c.ws_echo_path = absl::GetFlag(FLAGS_ws_echo_path);
  if (!c.ws_echo_path.empty() && c.ws_echo_path[0] != '/') return Bad("ws-echo-path", "must start with '/'");
  if (!c.ws_echo_path.empty() && c.ws_echo_path == c.ws_path) return Bad("ws-echo-path", "must differ from --ws-path");
  return c;
}

}  // namespace longlink::gateway
