#include "gateway/backend/local/local_config.h"

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "gateway/backend/common/messaging_options.h"
#include "gateway/backend/local/local_backend.h"

ABSL_FLAG(std::string, data_dir, "./longlink-data", "--backend=local: directory of the message log");
ABSL_FLAG(std::string, fsync, "batch",
          "--backend=local: always (fdatasync before every acknowledgement), batch (group commit every "
          "--fsync-interval-ms) or none (acknowledge once written to the page cache)");
ABSL_FLAG(double, fsync_interval_ms, 2,
          "--fsync=batch: a shard starts at most one fdatasync per this interval, the process at most one per "
          "interval per core");
ABSL_FLAG(int64_t, segment_bytes, 64ll << 20, "--backend=local: size at which a log segment is closed");

namespace longlink::gateway::local {
namespace {

absl::Status Bad(absl::string_view flag, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", why));
}

}  // namespace

const char* FsyncPolicyName(FsyncPolicy p) {
  switch (p) {
    case FsyncPolicy::kAlways:
      return "always";
    case FsyncPolicy::kBatch:
      return "batch";
    case FsyncPolicy::kNone:
      return "none";
  }
  return "?";
}

absl::StatusOr<LocalOptions> LocalOptionsFromFlags(const GatewayInfo& gateway) {
  LocalOptions o;
  o.shards = gateway.shards;
  o.max_pending_bytes = gateway.max_pending_bytes;
  // Users are placed by hash % shards and server_msg_ids carry the shard in 8 bits.
  if (o.shards > 256) return Bad("shards", "--backend=local supports at most 256 shards");
  o.data_dir = absl::GetFlag(FLAGS_data_dir);
  if (o.data_dir.empty()) return Bad("data-dir", "must not be empty");
  std::string fsync = absl::GetFlag(FLAGS_fsync);
  if (fsync == "always") {
    o.fsync = FsyncPolicy::kAlways;
  } else if (fsync == "batch") {
    o.fsync = FsyncPolicy::kBatch;
  } else if (fsync == "none") {
    o.fsync = FsyncPolicy::kNone;
  } else {
    return Bad("fsync", absl::StrCat("unknown policy '", fsync, "' (expected always, batch or none)"));
  }
  double fi = absl::GetFlag(FLAGS_fsync_interval_ms);
  if (!(fi >= 0 && fi <= 1000)) return Bad("fsync-interval-ms", "must be 0..1000");
  o.fsync_interval_us = static_cast<uint32_t>(fi * 1000);
  absl::StatusOr<MessagingOptions> m = MessagingOptionsFromFlags();
  if (!m.ok()) return m.status();
  o.retention_ms = m->retention_ms;
  o.idempotency_window_ms = m->idempotency_window_ms;
  o.max_inbox = m->max_inbox;
  o.max_sends_per_second = m->max_sends_per_second;
  o.max_group_ops_per_second = m->max_group_ops_per_second;
  o.max_presence_subscriptions = m->max_presence_subscriptions;
  o.max_group_members = m->max_group_members;
  int64_t sb = absl::GetFlag(FLAGS_segment_bytes);
  if (sb < 4096 || sb > (1ll << 32)) return Bad("segment-bytes", "must be 4096..4294967296");
  o.segment_bytes = static_cast<uint64_t>(sb);
  return o;
}

absl::StatusOr<std::unique_ptr<BackendFactory>> ConfigureLocalBackend(const GatewayInfo& gateway) {
  absl::StatusOr<LocalOptions> o = LocalOptionsFromFlags(gateway);
  if (!o.ok()) return o.status();
  return std::unique_ptr<BackendFactory>(new LocalFactory(*o));
}

}  // namespace longlink::gateway::local
