#include "gateway/backend/common/messaging_options.h"

#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"

ABSL_FLAG(std::string, idempotency_window, "5m",
          "How long a SEND's client message id is remembered at least: a retry within it gets the first "
          "SEND_ACK and is not stored again (memory grows with the SENDs of one window)");
ABSL_FLAG(std::string, retention, "14d", "How long stored messages are kept, e.g. 14d, 36h, 3600s");
ABSL_FLAG(int64_t, max_inbox, 10000, "Most messages kept per user inbox");
ABSL_FLAG(int64_t, max_sends_per_second, 200,
          "SENDs one device may make per second; more are answered RATE_LIMITED (0: no limit)");
ABSL_FLAG(int64_t, max_group_ops_per_second, 10,
          "Group creations, joins and leaves one device may make per second (0: no limit)");
ABSL_FLAG(int64_t, max_presence_subscriptions, 1000,
          "Users one device may watch at once (PRESENCE_SUBSCRIBE); more are refused");
ABSL_FLAG(int64_t, max_group_members, 10000, "Most members a group may have");

namespace longlink::gateway {
namespace {

absl::Status Bad(absl::string_view flag, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", why));
}

}  // namespace

absl::StatusOr<uint64_t> ParseRetention(absl::string_view text) {
  // absl::ParseDuration has no unit for days; retention is naturally said in days.
  absl::Duration d;
  if (absl::ConsumeSuffix(&text, "d")) {
    int64_t days;
    if (!absl::SimpleAtoi(text, &days) || days < 0) {
      return absl::InvalidArgumentError("expected a duration such as 14d, 36h or 3600s");
    }
    d = absl::Hours(24 * days);
  } else if (!absl::ParseDuration(text, &d)) {
    return absl::InvalidArgumentError("expected a duration such as 14d, 36h or 3600s");
  }
  if (d < absl::Seconds(1)) return absl::InvalidArgumentError("must be at least 1s");
  if (d > absl::Hours(24 * 3650)) return absl::InvalidArgumentError("must be at most 3650d");
  return static_cast<uint64_t>(absl::ToInt64Milliseconds(d));
}

absl::StatusOr<MessagingOptions> MessagingOptionsFromFlags() {
  MessagingOptions o;
  absl::StatusOr<uint64_t> ret = ParseRetention(absl::GetFlag(FLAGS_retention));
  if (!ret.ok()) return Bad("retention", ret.status().message());
  o.retention_ms = *ret;
  absl::Duration iw;
  if (!absl::ParseDuration(absl::GetFlag(FLAGS_idempotency_window), &iw) || iw < absl::Seconds(1) ||
      iw > absl::Hours(24)) {
    return Bad("idempotency-window", "expected a duration from 1s to 24h, such as 5m");
  }
  o.idempotency_window_ms = static_cast<uint64_t>(absl::ToInt64Milliseconds(iw));
  int64_t mi = absl::GetFlag(FLAGS_max_inbox);
  if (mi < 1 || mi > 100000000) return Bad("max-inbox", "must be 1..100000000");
  o.max_inbox = static_cast<uint32_t>(mi);
  struct Limit {
    const char* flag;
    int64_t value;
    int64_t min;
    uint32_t* out;
  };
  for (const Limit& l : {Limit{"max-sends-per-second", absl::GetFlag(FLAGS_max_sends_per_second), 0, &o.max_sends_per_second},
                         Limit{"max-group-ops-per-second", absl::GetFlag(FLAGS_max_group_ops_per_second), 0,
                               &o.max_group_ops_per_second},
                         Limit{"max-presence-subscriptions", absl::GetFlag(FLAGS_max_presence_subscriptions), 1,
                               &o.max_presence_subscriptions},
                         Limit{"max-group-members", absl::GetFlag(FLAGS_max_group_members), 1, &o.max_group_members}}) {
    if (l.value < l.min || l.value > 1000000) return Bad(l.flag, absl::StrCat("must be ", l.min, "..1000000"));
    *l.out = static_cast<uint32_t>(l.value);
  }
  return o;
}

}  // namespace longlink::gateway
