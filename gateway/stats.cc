#include "gateway/stats.h"

#include <string>

#include "core/ring.h"
#include "protocol/websocket.h"
#include "protocol/ws_upgrade.h"

namespace longlink::gateway {

std::string_view CloseReasonName(CloseReason r) {
  switch (r) {
#define LL_NAME_(n)        \
  case CloseReason::k_##n: \
    return #n;
    LONGLINK_CLOSE_REASONS(LL_NAME_)
#undef LL_NAME_
    case CloseReason::kCount:
      break;
  }
  return "unknown";
}

namespace {

// The `result` label of ws_upgrades_total for slot r, or empty for a slot no answer is counted in.
std::string WsUpgradeResultName(size_t r) {
  if (r < kWsUpgradeParseErrorBase) {
    static constexpr const char* kNames[] = {"ok", "echo", "bad_path", "bad_origin"};
    return kNames[r];
  }
  auto e = static_cast<protocol::ws::UpgradeError>(r - kWsUpgradeParseErrorBase);
  // Request-side parse errors only (those a server answers with an HTTP status); slots past the last
  // error have no name and are left out, so no two series share a label set.
  if (e == protocol::ws::UpgradeError::kNone || protocol::ws::HttpStatusFor(e) == 0) return {};
  std::string name(protocol::ws::UpgradeErrorName(e));
  return name == "unknown" ? std::string() : name;
}

}  // namespace

void ShardStats::Visit(metrics::StatsVisitor& v) const {
  LONGLINK_GATEWAY_COUNTERS(LL_STATS_COUNTER_VISIT_)
#define LL_SHARD_GAUGE_(name, help) v.ShardGauge(#name, help, name);
  LONGLINK_GATEWAY_SHARD_GAUGES(LL_SHARD_GAUGE_)
#undef LL_SHARD_GAUGE_
  LONGLINK_GATEWAY_HISTOGRAMS(LL_STATS_HISTOGRAM_VISIT_)

  auto by_transport = [](size_t i, metrics::Labels* l) {
    l->emplace_back("transport", std::string(TransportName(i)));
    return true;
  };
#define LL_TRANSPORT_COUNTER_(name, help) v.Counters(#name, help, name.data(), kTransports, by_transport);
  LONGLINK_GATEWAY_TRANSPORT_COUNTERS(LL_TRANSPORT_COUNTER_)
#undef LL_TRANSPORT_COUNTER_
#define LL_TRANSPORT_GAUGE_(name, help) v.ShardGauges(#name, help, name.data(), kTransports, by_transport);
  LONGLINK_GATEWAY_TRANSPORT_SHARD_GAUGES(LL_TRANSPORT_GAUGE_)
#undef LL_TRANSPORT_GAUGE_

  v.Counters("closes_total", "Connections closed, by reason", closes.data(), closes.size(),
             [](size_t i, metrics::Labels* l) {
               l->emplace_back("reason", std::string(CloseReasonName(static_cast<CloseReason>(i))));
               return true;
             });
  static constexpr size_t kOps = protocol::kMaxOpcode + 1;
  // One series per known opcode and transport, zero or not, so a dashboard finds every series from the
  // start; slot 0 ("unknown") counts opcode numbers the protocol does not define.
  auto frames = [&](const std::array<std::array<metrics::Counter, kOps>, kTransports>& cells, std::string_view name,
                    std::string_view help) {
    v.Counters(name, help, cells[0].data(), kTransports * kOps, [&cells](size_t i, metrics::Labels* l) {
      size_t t = i / kOps;
      auto op = static_cast<uint8_t>(i % kOps);
      if (op != 0 && !protocol::IsKnownOpcode(op)) return false;
      l->emplace_back("opcode", std::string(protocol::OpcodeName(op)));
      l->emplace_back("transport", std::string(TransportName(t)));
      return true;
    });
  };
  frames(frames_in, "frames_received_total", "Frames received from clients, by opcode and transport");
  frames(frames_out, "frames_sent_total", "Frames sent to clients, by opcode and transport");
  v.Counters("ws_upgrades_total", "WebSocket upgrade requests answered, by result", ws_upgrades.data(),
             ws_upgrades.size(), [](size_t i, metrics::Labels* l) {
               std::string name = WsUpgradeResultName(i);
               if (name.empty()) return false;
               l->emplace_back("result", std::move(name));
               return true;
             });
  v.Counters("ws_protocol_errors_total", "WebSocket connections closed for a framing violation, by error",
             ws_errors.data(), ws_errors.size(), [](size_t i, metrics::Labels* l) {
               if (i == 0 || i > static_cast<size_t>(protocol::ws::Error::kBadCloseCode)) return false;
               l->emplace_back("error", std::string(protocol::ws::ErrorName(static_cast<protocol::ws::Error>(i))));
               return true;
             });
  v.ShardGauges("ring_mode", "1 for the io_uring setup mode each shard runs with", ring_mode.data(), kRingModes,
                [this](size_t i, metrics::Labels* l) {
                  if (ring_mode[i].Get() == 0) return false;  // only the mode in use
                  l->emplace_back("mode", std::string(core::RingModeName(static_cast<core::RingMode>(i))));
                  return true;
                });
}

}  // namespace longlink::gateway
