#include "protocol/ws_upgrade.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace longlink::protocol::ws {
namespace {

std::span<const uint8_t> Bytes(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

// RFC 6455 section 1.3.
constexpr std::string_view kRfcKey = "dGhlIHNhbXBsZSBub25jZQ==";
constexpr std::string_view kRfcAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

// What Chromium sends, give or take the User-Agent.
const std::string kBrowserRequest =
    "GET /ws?token=abc HTTP/1.1\r\n"
    "Host: chat.example.com:8080\r\n"
    "Connection: Upgrade\r\n"
    "Pragma: no-cache\r\n"
    "Cache-Control: no-cache\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n"
    "Upgrade: websocket\r\n"
    "Origin: https://chat.example.com\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    "Sec-WebSocket-Protocol: chat, longlink.v1\r\n"
    "\r\n";

// A minimal valid request with one header line replaced (or removed when replacement is empty) or added.
std::string Request(std::string_view name, std::string_view line) {
  std::vector<std::pair<std::string, std::string>> headers = {
      {"host", "Host: gw.local\r\n"},
      {"upgrade", "Upgrade: websocket\r\n"},
      {"connection", "Connection: Upgrade\r\n"},
      {"version", "Sec-WebSocket-Version: 13\r\n"},
      {"key", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"},
  };
  std::string out = "GET / HTTP/1.1\r\n";
  bool replaced = false;
  for (const auto& [n, l] : headers) {
    if (n == name) {
      out += line;
      replaced = true;
    } else {
      out += l;
    }
  }
  if (!replaced) {
    out += line;
  }
  return out + "\r\n";
}

TEST(WsAccept, RfcExample) {
  const auto accept = ComputeAccept(kRfcKey);
  ASSERT_TRUE(accept.has_value());
  EXPECT_EQ(std::string_view(accept->data(), accept->size()), kRfcAccept);
  EXPECT_FALSE(ComputeAccept("short").has_value());
  EXPECT_FALSE(ComputeAccept(std::string(kRfcKey) + "x").has_value());
}

TEST(WsAccept, ClientKeyFromNonce) {
  // The RFC's sample key is the base64 of the 16 bytes "the sample nonce".
  const std::string_view nonce = "the sample nonce";
  const ClientKey key = MakeClientKey(std::span<const uint8_t, kNonceSize>(Bytes(nonce).data(), kNonceSize));
  EXPECT_EQ(std::string_view(key.data(), key.size()), kRfcKey);
  const uint8_t zeros[kNonceSize] = {};
  const ClientKey zero_key = MakeClientKey(zeros);
  EXPECT_EQ(std::string_view(zero_key.data(), zero_key.size()), "AAAAAAAAAAAAAAAAAAAAAA==");
  const uint8_t ones[kNonceSize] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  const ClientKey ones_key = MakeClientKey(ones);
  EXPECT_EQ(std::string_view(ones_key.data(), ones_key.size()), "/////////////////////w==");
}

TEST(WsUpgradeRequest, BrowserRequest) {
  const std::string input = kBrowserRequest + "\x82\x85trailing frame bytes";
  const UpgradeRequestResult r = ParseUpgradeRequest(Bytes(input));
  ASSERT_EQ(r.status, UpgradeStatus::kOk) << UpgradeErrorName(r.error);
  EXPECT_EQ(r.request.path, "/ws?token=abc");
  EXPECT_EQ(r.request.host, "chat.example.com:8080");
  EXPECT_TRUE(r.request.has_origin);
  EXPECT_EQ(r.request.origin, "https://chat.example.com");
  EXPECT_EQ(r.request.key, kRfcKey);
  EXPECT_EQ(r.request.subprotocol, kSubprotocol);
  EXPECT_EQ(r.request.header_size, kBrowserRequest.size());
}

TEST(WsUpgradeRequest, ByteAtATime) {
  for (size_t n = 0; n < kBrowserRequest.size(); ++n) {
    const UpgradeRequestResult r = ParseUpgradeRequest(Bytes(std::string_view(kBrowserRequest).substr(0, n)));
    ASSERT_EQ(r.status, UpgradeStatus::kNeedMore) << n << " " << UpgradeErrorName(r.error);
  }
  EXPECT_EQ(ParseUpgradeRequest(Bytes(kBrowserRequest)).status, UpgradeStatus::kOk);
}

TEST(WsUpgradeRequest, CaseAndListHandling) {
  // Firefox sends "Connection: keep-alive, Upgrade"; names and these values are case-insensitive; lists may
  // be split over several header lines.
  const std::string request =
      "GET /chat HTTP/1.1\r\n"
      "HOST: gw.local\r\n"
      "upgrade: WebSocket\r\n"
      "connection: keep-alive, UPGRADE\r\n"
      "sec-websocket-version:13\r\n"
      "SEC-WEBSOCKET-KEY:   dGhlIHNhbXBsZSBub25jZQ==  \t\r\n"
      "Sec-WebSocket-Protocol: chat\r\n"
      "Sec-WebSocket-Protocol: superchat,longlink.v1 \r\n"
      "\r\n";
  const UpgradeRequestResult r = ParseUpgradeRequest(Bytes(request));
  ASSERT_EQ(r.status, UpgradeStatus::kOk) << UpgradeErrorName(r.error);
  EXPECT_EQ(r.request.path, "/chat");
  EXPECT_EQ(r.request.key, kRfcKey);
  EXPECT_EQ(r.request.subprotocol, "longlink.v1");
  EXPECT_FALSE(r.request.has_origin);
  EXPECT_EQ(r.request.origin, "");
}

TEST(WsUpgradeRequest, SubprotocolSelection) {
  auto selected = [](std::string_view line, std::string_view wanted = kSubprotocol) {
    const std::string req = Request("", line);
    UpgradeOptions options;
    options.subprotocol = wanted;
    const UpgradeRequestResult r = ParseUpgradeRequest(Bytes(req), options);
    EXPECT_EQ(r.status, UpgradeStatus::kOk);
    return std::string(r.request.subprotocol);
  };
  EXPECT_EQ(selected("Sec-WebSocket-Protocol: longlink.v1\r\n"), "longlink.v1");
  EXPECT_EQ(selected("Sec-WebSocket-Protocol: chat, longlink.v1\r\n"), "longlink.v1");
  EXPECT_EQ(selected("Sec-WebSocket-Protocol: chat\r\n"), "");
  EXPECT_EQ(selected("Sec-WebSocket-Protocol: LONGLINK.V1\r\n"), "");  // names compare exactly
  EXPECT_EQ(selected("Sec-WebSocket-Protocol: longlink.v10\r\n"), "");
  EXPECT_EQ(selected("X-Other: 1\r\n"), "");
  EXPECT_EQ(selected("Sec-WebSocket-Protocol: echo\r\n", "echo"), "echo");
  EXPECT_EQ(selected("Sec-WebSocket-Protocol: longlink.v1\r\n", ""), "");
}

struct BadRequest {
  const char* name;
  std::string input;
  UpgradeError error;
};

TEST(WsUpgradeRequest, EveryErrorAndItsStatus) {
  const std::string ok = Request("", "");
  ASSERT_EQ(ParseUpgradeRequest(Bytes(ok)).status, UpgradeStatus::kOk);
  auto replace_start = [&](std::string_view start_line) {
    return std::string(start_line) + ok.substr(ok.find("\r\n"));
  };
  const std::vector<BadRequest> cases = {
      {"post", replace_start("POST / HTTP/1.1"), UpgradeError::kBadMethod},
      {"lower_get", replace_start("get / HTTP/1.1"), UpgradeError::kBadMethod},
      {"tls_hello", std::string("\x16\x03\x01\x02\x00", 5), UpgradeError::kBadMethod},
      {"longlink_frame", std::string("\x00\x00\x00\x0c\x01\x0d", 6), UpgradeError::kBadMethod},
      {"http10", replace_start("GET / HTTP/1.0"), UpgradeError::kBadHttpVersion},
      {"http2", replace_start("GET / HTTP/2.0"), UpgradeError::kBadHttpVersion},
      {"version_lower", replace_start("GET / http/1.1"), UpgradeError::kBadHttpVersion},
      {"extra_field", replace_start("GET / HTTP/1.1 x"), UpgradeError::kBadHttpVersion},
      {"no_version", replace_start("GET /"), UpgradeError::kMalformed},
      {"absolute_target", replace_start("GET http://gw.local/ HTTP/1.1"), UpgradeError::kBadTarget},
      {"star_target", replace_start("GET * HTTP/1.1"), UpgradeError::kBadTarget},
      {"empty_target", replace_start("GET  HTTP/1.1"), UpgradeError::kBadTarget},
      {"control_in_target", replace_start("GET /\x01 HTTP/1.1"), UpgradeError::kMalformed},
      {"no_host", Request("host", ""), UpgradeError::kMissingHost},
      {"empty_host", Request("host", "Host: \r\n"), UpgradeError::kMissingHost},
      {"two_hosts", Request("", "Host: other\r\n"), UpgradeError::kDuplicateHeader},
      {"two_keys", Request("", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"), UpgradeError::kDuplicateHeader},
      {"two_versions", Request("", "Sec-WebSocket-Version: 13\r\n"), UpgradeError::kDuplicateHeader},
      {"two_origins", Request("", "Origin: a\r\nOrigin: b\r\n"), UpgradeError::kDuplicateHeader},
      {"no_upgrade", Request("upgrade", ""), UpgradeError::kNotUpgrade},
      {"upgrade_h2c", Request("upgrade", "Upgrade: h2c\r\n"), UpgradeError::kNotUpgrade},
      {"upgrade_prefix", Request("upgrade", "Upgrade: websockets\r\n"), UpgradeError::kNotUpgrade},
      {"no_connection", Request("connection", ""), UpgradeError::kNoConnectionUpgrade},
      {"connection_keepalive", Request("connection", "Connection: keep-alive\r\n"), UpgradeError::kNoConnectionUpgrade},
      {"version_8", Request("version", "Sec-WebSocket-Version: 8\r\n"), UpgradeError::kUnsupportedVersion},
      {"version_list", Request("version", "Sec-WebSocket-Version: 13, 8\r\n"), UpgradeError::kUnsupportedVersion},
      {"no_version_header", Request("version", ""), UpgradeError::kUnsupportedVersion},
      {"no_key", Request("key", ""), UpgradeError::kBadKey},
      {"short_key", Request("key", "Sec-WebSocket-Key: dGhlIHNhbXBsZQ==\r\n"), UpgradeError::kBadKey},
      {"key_no_padding", Request("key", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n"), UpgradeError::kBadKey},
      {"key_bad_char", Request("key", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j*Q==\r\n"), UpgradeError::kBadKey},
      {"key_noncanonical", Request("key", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\r\n"), UpgradeError::kBadKey},
      {"key_17_bytes", Request("key", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZXg=\r\n"), UpgradeError::kBadKey},
      {"content_length", Request("", "Content-Length: 5\r\n"), UpgradeError::kHasBody},
      {"transfer_encoding", Request("", "Transfer-Encoding: chunked\r\n"), UpgradeError::kHasBody},
      {"obs_fold", Request("", "X-A: 1\r\n  folded\r\n"), UpgradeError::kMalformed},
      {"space_before_colon", Request("", "X-A : 1\r\n"), UpgradeError::kMalformed},
      {"no_colon", Request("", "X-A 1\r\n"), UpgradeError::kMalformed},
      {"empty_name", Request("", ": 1\r\n"), UpgradeError::kMalformed},
      {"bad_name_char", Request("", "X(A): 1\r\n"), UpgradeError::kMalformed},
      {"bare_lf", Request("", "X-A: 1\nX-B: 2\r\n"), UpgradeError::kMalformed},
      {"bare_cr", Request("", "X-A: 1\rX-B: 2\r\n"), UpgradeError::kMalformed},
      {"nul_in_value", Request("", std::string("X-A: a\0b\r\n", 10)), UpgradeError::kMalformed},
      {"del_in_value", Request("", "X-A: a\x7f\r\n"), UpgradeError::kMalformed},
      {"empty_request", "\r\n\r\n", UpgradeError::kBadMethod},
  };
  std::set<std::string> names;
  for (const BadRequest& c : cases) {
    EXPECT_TRUE(names.insert(c.name).second) << c.name;
    const UpgradeRequestResult r = ParseUpgradeRequest(Bytes(c.input));
    EXPECT_EQ(r.status, UpgradeStatus::kError) << c.name;
    EXPECT_EQ(r.error, c.error) << c.name << ": got " << UpgradeErrorName(r.error);
    EXPECT_EQ(HttpStatusFor(r.error), c.error == UpgradeError::kUnsupportedVersion ? 426 : 400) << c.name;
  }
  // Obviously-not-HTTP input is refused from its first byte, without waiting for a blank line.
  EXPECT_EQ(ParseUpgradeRequest(Bytes("\x16")).error, UpgradeError::kBadMethod);
  EXPECT_EQ(ParseUpgradeRequest(Bytes("GEX")).error, UpgradeError::kBadMethod);
  EXPECT_EQ(ParseUpgradeRequest(Bytes("GE")).status, UpgradeStatus::kNeedMore);
  EXPECT_EQ(ParseUpgradeRequest(Bytes("")).status, UpgradeStatus::kNeedMore);
}

TEST(WsUpgradeRequest, BareLineEndingsAreRefusedAsSoonAsTheyArrive) {
  // A head with LF-only line endings never has a CRLF CRLF: it is refused at its first bare LF, not left
  // waiting (the gateway would hold the connection until its login timeout).
  for (std::string_view head : {"GET / HTTP/1.1\nHost: gw\n", "GET / HTTP/1.1\r\nHost: gw\n",
                                "GET / HTTP/1.1\r\nHost: gw\rX"}) {
    UpgradeRequestResult r = ParseUpgradeRequest(Bytes(head));
    EXPECT_EQ(r.status, UpgradeStatus::kError) << head;
    EXPECT_EQ(r.error, UpgradeError::kMalformed) << head;
    EXPECT_EQ(HttpStatusFor(r.error), 400);
  }
  // A CR at the very end may be the start of a CRLF still on its way.
  EXPECT_EQ(ParseUpgradeRequest(Bytes("GET / HTTP/1.1\r")).status, UpgradeStatus::kNeedMore);
}

TEST(WsUpgradeRequest, HeaderBytesLimit) {
  const std::string ok = Request("", "");
  UpgradeOptions options;
  options.max_header_bytes = ok.size();
  EXPECT_EQ(ParseUpgradeRequest(Bytes(ok), options).status, UpgradeStatus::kOk);
  // Bytes after the head do not count against the limit.
  EXPECT_EQ(ParseUpgradeRequest(Bytes(ok + "xyz"), options).status, UpgradeStatus::kOk);
  options.max_header_bytes = ok.size() - 1;
  UpgradeRequestResult r = ParseUpgradeRequest(Bytes(ok), options);
  EXPECT_EQ(r.status, UpgradeStatus::kError);
  EXPECT_EQ(r.error, UpgradeError::kHeaderTooLarge);
  EXPECT_EQ(HttpStatusFor(r.error), 431);
  EXPECT_EQ(ParseUpgradeRequest(Bytes(std::string_view(ok).substr(0, ok.size() - 2)), options).status,
            UpgradeStatus::kNeedMore);

  // The default 8 KiB: a never-ending header is cut off once 8 KiB have arrived.
  std::string endless = "GET / HTTP/1.1\r\nX-Big: " + std::string(8192, 'a');
  r = ParseUpgradeRequest(Bytes(std::string_view(endless).substr(0, 8191)));
  EXPECT_EQ(r.status, UpgradeStatus::kNeedMore);
  r = ParseUpgradeRequest(Bytes(std::string_view(endless).substr(0, 8192)));
  EXPECT_EQ(r.error, UpgradeError::kHeaderTooLarge);
}

TEST(WsUpgradeRequest, HeaderCountLimit) {
  std::string extra;
  for (int i = 0; i < 59; ++i) {
    extra += "X-" + std::to_string(i) + ": v\r\n";
  }
  // 5 required + 59 = 64 headers: at the default limit.
  EXPECT_EQ(ParseUpgradeRequest(Bytes(Request("", extra))).status, UpgradeStatus::kOk);
  const UpgradeRequestResult r = ParseUpgradeRequest(Bytes(Request("", extra + "X-last: v\r\n")));
  EXPECT_EQ(r.error, UpgradeError::kTooManyHeaders);
  EXPECT_EQ(HttpStatusFor(r.error), 431);
}

TEST(WsUpgradeResponse, AcceptExactBytes) {
  UpgradeRequest req;
  req.key = kRfcKey;
  uint8_t out[kMaxResponseSize];
  size_t n = WriteAcceptResponse(req, out);
  EXPECT_EQ(std::string_view(reinterpret_cast<char*>(out), n),
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            "\r\n");
  req.subprotocol = kSubprotocol;
  n = WriteAcceptResponse(req, out);
  EXPECT_EQ(std::string_view(reinterpret_cast<char*>(out), n),
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            "Sec-WebSocket-Protocol: longlink.v1\r\n"
            "\r\n");
  for (size_t small = 0; small < n; ++small) {
    EXPECT_EQ(WriteAcceptResponse(req, std::span(out, small)), 0u) << small;
  }
  req.key = "nope";
  EXPECT_EQ(WriteAcceptResponse(req, out), 0u);
}

TEST(WsUpgradeResponse, Rejections) {
  uint8_t out[kMaxResponseSize];
  auto reject = [&](uint16_t status) {
    return std::string(reinterpret_cast<char*>(out), WriteRejectResponse(status, out));
  };
  EXPECT_EQ(reject(400), "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(reject(403), "HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(reject(404), "HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(reject(426),
            "HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
            "Connection: close\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(reject(431),
            "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(reject(503), "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(reject(418), "");
  EXPECT_EQ(reject(200), "");
  EXPECT_EQ(WriteRejectResponse(400, std::span(out, 20)), 0u);
}

TEST(WsUpgradeErrors, NamesAndStatuses) {
  std::set<std::string_view> names;
  const int last = static_cast<int>(UpgradeError::kUnexpectedExtension);
  for (int i = 0; i <= last; ++i) {
    const auto e = static_cast<UpgradeError>(i);
    EXPECT_NE(UpgradeErrorName(e), "unknown");
    names.insert(UpgradeErrorName(e));
    const uint16_t status = HttpStatusFor(e);
    EXPECT_TRUE(status == 0 || status == 400 || status == 426 || status == 431) << i;
    // Every status a request error maps to can be written.
    if (status != 0) {
      uint8_t out[kMaxResponseSize];
      EXPECT_GT(WriteRejectResponse(status, out), 0u);
    }
  }
  EXPECT_EQ(names.size(), static_cast<size_t>(last) + 1);
  EXPECT_EQ(HttpStatusFor(UpgradeError::kNone), 0);
  EXPECT_EQ(HttpStatusFor(UpgradeError::kBadAccept), 0);
}

// ---- client side ----

TEST(WsClient, RequestRoundTripsThroughTheServerParser) {
  const ClientUpgrade upgrade{.host = "gw.local:7001",
                              .path = "/ws",
                              .key = kRfcKey,
                              .origin = "http://localhost",
                              .subprotocols = "longlink.v1"};
  uint8_t out[512];
  const size_t n = WriteUpgradeRequest(upgrade, out);
  ASSERT_GT(n, 0u);
  EXPECT_EQ(std::string_view(reinterpret_cast<char*>(out), n),
            "GET /ws HTTP/1.1\r\n"
            "Host: gw.local:7001\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "Origin: http://localhost\r\n"
            "Sec-WebSocket-Protocol: longlink.v1\r\n"
            "\r\n");
  const UpgradeRequestResult r = ParseUpgradeRequest(std::span<const uint8_t>(out, n));
  ASSERT_EQ(r.status, UpgradeStatus::kOk);
  EXPECT_EQ(r.request.path, "/ws");
  EXPECT_EQ(r.request.host, "gw.local:7001");
  EXPECT_EQ(r.request.origin, "http://localhost");
  EXPECT_EQ(r.request.key, kRfcKey);
  EXPECT_EQ(r.request.subprotocol, kSubprotocol);
  EXPECT_EQ(r.request.header_size, n);
  for (size_t small = 0; small < n; ++small) {
    EXPECT_EQ(WriteUpgradeRequest(upgrade, std::span(out, small)), 0u) << small;
  }

  // Optional headers left out.
  const size_t m =
      WriteUpgradeRequest({.host = "h", .path = "/", .key = kRfcKey, .origin = "", .subprotocols = ""}, out);
  const std::string_view minimal(reinterpret_cast<char*>(out), m);
  EXPECT_EQ(minimal.find("Origin"), std::string_view::npos);
  EXPECT_EQ(minimal.find("Protocol"), std::string_view::npos);
  EXPECT_EQ(ParseUpgradeRequest(Bytes(minimal)).request.path, "/");
}

TEST(WsClient, RequestRefusesBadFields) {
  uint8_t out[512];
  const ClientUpgrade good{.host = "h", .path = "/", .key = kRfcKey, .origin = "", .subprotocols = ""};
  ASSERT_GT(WriteUpgradeRequest(good, out), 0u);
  auto with = [&](auto change) {
    ClientUpgrade u = good;
    change(u);
    return WriteUpgradeRequest(u, out);
  };
  EXPECT_EQ(with([](ClientUpgrade& u) { u.host = ""; }), 0u);
  EXPECT_EQ(with([](ClientUpgrade& u) { u.host = "a b"; }), 0u);
  EXPECT_EQ(with([](ClientUpgrade& u) { u.path = "x"; }), 0u);
  EXPECT_EQ(with([](ClientUpgrade& u) { u.path = ""; }), 0u);
  EXPECT_EQ(with([](ClientUpgrade& u) { u.path = "/a b"; }), 0u);
  EXPECT_EQ(with([](ClientUpgrade& u) { u.path = "/\r\nX-Injected: 1"; }), 0u);
  EXPECT_EQ(with([](ClientUpgrade& u) { u.origin = "o\r\n"; }), 0u);
  EXPECT_EQ(with([](ClientUpgrade& u) { u.subprotocols = "p\n"; }), 0u);
  EXPECT_EQ(with([](ClientUpgrade& u) { u.key = "short"; }), 0u);
}

std::string AcceptFor(std::string_view key, std::string_view extra_headers = "") {
  const auto accept = ComputeAccept(key);
  return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
         std::string(accept->data(), accept->size()) + "\r\n" + std::string(extra_headers) + "\r\n";
}

TEST(WsClient, ResponseFromTheServerWriter) {
  UpgradeRequest req;
  req.key = kRfcKey;
  req.subprotocol = kSubprotocol;
  uint8_t out[kMaxResponseSize];
  const size_t n = WriteAcceptResponse(req, out);
  std::string response(reinterpret_cast<char*>(out), n);
  response += "\x82\x02hi";  // the server's first frame in the same read

  for (size_t k = 0; k < n; ++k) {
    ASSERT_EQ(ParseUpgradeResponse(Bytes(std::string_view(response).substr(0, k)), kRfcKey, "longlink.v1").status,
              UpgradeStatus::kNeedMore)
        << k;
  }
  const UpgradeResponseResult r = ParseUpgradeResponse(Bytes(response), kRfcKey, "chat, longlink.v1");
  ASSERT_EQ(r.status, UpgradeStatus::kOk) << UpgradeErrorName(r.error);
  EXPECT_EQ(r.response.status_code, 101);
  EXPECT_EQ(r.response.subprotocol, "longlink.v1");
  EXPECT_EQ(r.response.header_size, n);
}

TEST(WsClient, ResponseErrors) {
  const std::string other_key = "AAAAAAAAAAAAAAAAAAAAAA==";
  struct Case {
    const char* name;
    std::string input;
    std::string_view offered;
    UpgradeError error;
  };
  const std::vector<Case> cases = {
      {"forbidden", "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", "", UpgradeError::kNotSwitching},
      {"http10", "HTTP/1.0 101 Switching Protocols\r\n\r\n", "", UpgradeError::kBadHttpVersion},
      {"garbage", "\x82\x05hello", "", UpgradeError::kBadHttpVersion},
      {"status_short", "HTTP/1.1 10\r\n\r\n", "", UpgradeError::kMalformed},
      {"status_letters", "HTTP/1.1 1x1 Switching\r\n\r\n", "", UpgradeError::kMalformed},
      {"status_no_space", "HTTP/1.1 1011\r\n\r\n", "", UpgradeError::kMalformed},
      {"wrong_accept", AcceptFor(other_key), "", UpgradeError::kBadAccept},
      {"no_accept", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "",
       UpgradeError::kBadAccept},
      {"two_accepts", AcceptFor(kRfcKey, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "",
       UpgradeError::kDuplicateHeader},
      {"no_upgrade",
       "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
       "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
       "", UpgradeError::kNotUpgrade},
      {"no_connection",
       "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: "
       "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
       "", UpgradeError::kNoConnectionUpgrade},
      {"extension", AcceptFor(kRfcKey, "Sec-WebSocket-Extensions: permessage-deflate\r\n"), "",
       UpgradeError::kUnexpectedExtension},
      {"unoffered_protocol", AcceptFor(kRfcKey, "Sec-WebSocket-Protocol: chat\r\n"), "longlink.v1",
       UpgradeError::kBadSubprotocol},
      {"protocol_none_offered", AcceptFor(kRfcKey, "Sec-WebSocket-Protocol: longlink.v1\r\n"), "",
       UpgradeError::kBadSubprotocol},
      {"protocol_list", AcceptFor(kRfcKey, "Sec-WebSocket-Protocol: chat, longlink.v1\r\n"), "chat, longlink.v1",
       UpgradeError::kBadSubprotocol},
      {"protocol_empty", AcceptFor(kRfcKey, "Sec-WebSocket-Protocol: \r\n"), "longlink.v1",
       UpgradeError::kBadSubprotocol},
      {"malformed_header", AcceptFor(kRfcKey, "Bad Header: x\r\n"), "", UpgradeError::kMalformed},
  };
  for (const Case& c : cases) {
    const UpgradeResponseResult r = ParseUpgradeResponse(Bytes(c.input), kRfcKey, c.offered);
    EXPECT_EQ(r.status, UpgradeStatus::kError) << c.name;
    EXPECT_EQ(r.error, c.error) << c.name << ": got " << UpgradeErrorName(r.error);
  }
  const UpgradeResponseResult forbidden = ParseUpgradeResponse(Bytes("HTTP/1.1 403 Forbidden\r\n\r\n"), kRfcKey, "");
  EXPECT_EQ(forbidden.response.status_code, 403);
  EXPECT_EQ(forbidden.response.header_size, 26u);

  // Accepted variants: no reason phrase, no subprotocol chosen although one was offered, case-insensitive.
  EXPECT_EQ(ParseUpgradeResponse(Bytes(AcceptFor(kRfcKey)), kRfcKey, "longlink.v1").status, UpgradeStatus::kOk);
  const std::string lower =
      "HTTP/1.1 101\r\nupgrade: WEBSOCKET\r\nconnection: upgrade\r\nsec-websocket-accept: "
      "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
  EXPECT_EQ(ParseUpgradeResponse(Bytes(lower), kRfcKey, "").status, UpgradeStatus::kOk);
  // A key the client never could have sent matches nothing.
  EXPECT_EQ(ParseUpgradeResponse(Bytes(AcceptFor(kRfcKey)), "bogus", "").error, UpgradeError::kBadAccept);
}

}  // namespace
}  // namespace longlink::protocol::ws
