// Fuzz target for the WebSocket handshake parsers (the server's request parser and the client's response
// parser), fed the bytes a peer sent before any frame.
//
// The input is parsed three ways: as a request under the default limits, as a request under tight limits
// (512 bytes, 8 headers) so the limit paths are reached by small inputs, and as the response to a fixed
// client key. Untrusted input must never crash a parser; beyond that the target traps when a promise is
// broken: every view an accepted request returns lies inside its head, a proper prefix of an accepted head
// is kNeedMore, the server's 101 answer to an accepted request passes the client's own checks, a request
// rebuilt by the client writer from the parsed fields parses to the same fields, and every request error
// has an answer the server can write.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "protocol/ws_upgrade.h"

namespace {

namespace ws = longlink::protocol::ws;

constexpr std::string_view kClientKey = "dGhlIHNhbXBsZSBub25jZQ==";
constexpr std::string_view kOffered = "chat, longlink.v1";

uint8_t g_out[16 * 1024];

void Check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

bool Inside(std::string_view view, std::span<const uint8_t> head) {
  const auto* begin = reinterpret_cast<const char*>(head.data());
  return view.empty() || (view.data() >= begin && view.data() + view.size() <= begin + head.size());
}

void CheckRequest(std::span<const uint8_t> in, const ws::UpgradeOptions& options) {
  const ws::UpgradeRequestResult r = ws::ParseUpgradeRequest(in, options);
  Check(ws::UpgradeErrorName(r.error) != "unknown");
  if (r.status == ws::UpgradeStatus::kNeedMore) {
    Check(r.error == ws::UpgradeError::kNone && in.size() < options.max_header_bytes);
    return;
  }
  if (r.status == ws::UpgradeStatus::kError) {
    const uint16_t status = ws::HttpStatusFor(r.error);
    Check(status == 400 || status == 426 || status == 431);
    Check(ws::WriteRejectResponse(status, g_out) != 0);
    return;
  }
  const ws::UpgradeRequest& req = r.request;
  Check(req.header_size <= in.size() && req.header_size <= options.max_header_bytes);
  const std::span<const uint8_t> head = in.first(req.header_size);
  Check(Inside(req.path, head) && Inside(req.host, head) && Inside(req.origin, head) && Inside(req.key, head));
  Check(!req.path.empty() && req.path.front() == '/' && !req.host.empty() && req.key.size() == ws::kKeySize);
  Check(req.subprotocol.empty() || req.subprotocol == options.subprotocol);
  Check(req.has_origin || req.origin.empty());
  Check(ws::ParseUpgradeRequest(head.first(head.size() - 1), options).status == ws::UpgradeStatus::kNeedMore);

  // The server's answer must satisfy a client that offered exactly what was selected.
  const size_t n = ws::WriteAcceptResponse(req, g_out);
  Check(n != 0 && n <= ws::kMaxResponseSize);
  const ws::UpgradeResponseResult resp =
      ws::ParseUpgradeResponse(std::span<const uint8_t>(g_out, n), req.key, req.subprotocol);
  Check(resp.status == ws::UpgradeStatus::kOk && resp.response.status_code == 101 &&
        resp.response.subprotocol == req.subprotocol && resp.response.header_size == n);

  // Rebuilt by the client writer (which refuses some values the server tolerates, e.g. a space in Host),
  // the request must parse back to the same fields.
  const ws::ClientUpgrade rebuilt{
      .host = req.host, .path = req.path, .key = req.key, .origin = req.origin, .subprotocols = req.subprotocol};
  const size_t m = ws::WriteUpgradeRequest(rebuilt, g_out);
  if (m != 0) {
    const ws::UpgradeRequestResult again = ws::ParseUpgradeRequest(std::span<const uint8_t>(g_out, m), options);
    Check(again.status == ws::UpgradeStatus::kOk || again.error == ws::UpgradeError::kHeaderTooLarge);
    if (again.status == ws::UpgradeStatus::kOk) {
      Check(again.request.host == req.host && again.request.path == req.path && again.request.key == req.key &&
            again.request.subprotocol == req.subprotocol && again.request.header_size == m);
      // An empty Origin header is not written back, so only a non-empty one must survive.
      Check(req.origin.empty() || again.request.origin == req.origin);
    }
  }
}

void CheckResponse(std::span<const uint8_t> in) {
  const ws::UpgradeResponseResult r = ws::ParseUpgradeResponse(in, kClientKey, kOffered);
  Check(ws::UpgradeErrorName(r.error) != "unknown");
  if (r.status == ws::UpgradeStatus::kNeedMore) {
    Check(r.error == ws::UpgradeError::kNone);
    return;
  }
  if (r.error == ws::UpgradeError::kNotSwitching) {
    Check(r.response.status_code != 101 && r.response.header_size <= in.size());
  }
  if (r.status == ws::UpgradeStatus::kOk) {
    Check(r.response.status_code == 101 && r.response.header_size <= in.size());
    Check(r.response.subprotocol.empty() || r.response.subprotocol == "chat" ||
          r.response.subprotocol == "longlink.v1");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);
  CheckRequest(in, ws::UpgradeOptions{});
  CheckRequest(in, ws::UpgradeOptions{.max_header_bytes = 512, .max_headers = 8, .subprotocol = "chat"});
  CheckResponse(in);
  return 0;
}
