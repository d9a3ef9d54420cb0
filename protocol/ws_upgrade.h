// The HTTP/1.1 handshake that opens a WebSocket (RFC 6455 section 4), both sides of it: the gateway parses
// the client's upgrade request and answers 101 or an error status; the loadgen writes the request and
// checks the server's 101 response, Sec-WebSocket-Accept included.
//
// A small hand-written parser rather than a general HTTP library: a handshake is one GET with a dozen
// headers and no body, and the parser has to be strict, bounded and fuzzed more than it has to be complete.
// It is pure like the frame codecs: it parses the bytes received so far, answering kNeedMore until the
// blank line that ends the head is there, and returns views into the caller's buffer. Writers fill a
// caller buffer. Only SHA-1 (OpenSSL) is borrowed; base64 is a few lines here.
//
// Policy stays with the caller: the parser returns the path and the Origin, and the gateway decides
// whether they are allowed (answering 404 / 403 through WriteRejectResponse).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace longlink::protocol::ws {

// The subprotocol name of longlink frames over WebSocket (docs/protocol.md section 5.2).
inline constexpr std::string_view kSubprotocol = "longlink.v1";
// RFC 6455 section 1.3: appended to the client's key before hashing.
inline constexpr std::string_view kAcceptGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
inline constexpr size_t kKeySize = 24;  // base64 of the 16-byte nonce
inline constexpr size_t kNonceSize = 16;
inline constexpr size_t kAcceptSize = 28;  // base64 of a 20-byte SHA-1
// Upper bound of what WriteAcceptResponse and WriteRejectResponse produce.
inline constexpr size_t kMaxResponseSize = 256;

struct UpgradeOptions {
  size_t max_header_bytes = 8 * 1024;  // the whole head: start line, headers and the blank line
  size_t max_headers = 64;
  std::string_view subprotocol = kSubprotocol;  // server: selected when offered
};

enum class UpgradeStatus : uint8_t {
  kOk,        // head complete and acceptable
  kNeedMore,  // the blank line ending the head has not arrived yet (and nothing so far is wrong)
  kError,
};

// Why a handshake failed. Names are stable metric label values.
enum class UpgradeError : uint8_t {
  kNone,
  // Request (server side); HttpStatusFor gives the answer to send.
  kHeaderTooLarge,       // 431: no end of head within max_header_bytes
  kTooManyHeaders,       // 431
  kMalformed,            // 400: bad start line or header line syntax, bare CR or LF, control characters
  kBadMethod,            // 400: not GET
  kBadHttpVersion,       // 400: not HTTP/1.1
  kBadTarget,            // 400: request-target not a path (origin-form)
  kMissingHost,          // 400
  kDuplicateHeader,      // 400: Host, Origin, Sec-WebSocket-Key or Sec-WebSocket-Version twice
  kNotUpgrade,           // 400: no Upgrade: websocket
  kNoConnectionUpgrade,  // 400: Connection without the upgrade token
  kUnsupportedVersion,   // 426: Sec-WebSocket-Version missing or not 13
  kBadKey,               // 400: Sec-WebSocket-Key missing or not base64 of 16 bytes
  kHasBody,              // 400: Content-Length other than 0, or Transfer-Encoding
  // Response (client side).
  kNotSwitching,         // status other than 101 (status_code says which)
  kBadAccept,            // Sec-WebSocket-Accept missing or wrong
  kBadSubprotocol,       // the server selected a subprotocol that was not offered
  kUnexpectedExtension,  // Sec-WebSocket-Extensions, though none was offered
};
std::string_view UpgradeErrorName(UpgradeError e);
// The HTTP status a server answers a request error with (400, 426 or 431); 0 for kNone and the
// response-side errors.
uint16_t HttpStatusFor(UpgradeError e);

// ---- server side ----

struct UpgradeRequest {
  std::string_view path;  // request-target as sent (starts with '/', query included)
  std::string_view host;
  std::string_view origin;  // empty when has_origin is false
  bool has_origin = false;
  std::string_view key;          // Sec-WebSocket-Key, checked
  std::string_view subprotocol;  // options.subprotocol when the client offered it, else empty
  size_t header_size = 0;        // bytes of the head; whatever follows already belongs to WebSocket
};

struct UpgradeRequestResult {
  UpgradeStatus status = UpgradeStatus::kNeedMore;
  UpgradeError error = UpgradeError::kNone;
  UpgradeRequest request;  // complete when status == kOk; views into the parsed buffer
};

// Parses an upgrade request from the front of in (everything received so far). Input whose first bytes
// cannot begin "GET " is refused at once; otherwise kNeedMore until "\r\n\r\n", or kHeaderTooLarge once
// max_header_bytes have arrived without it. Header names are case-insensitive; Upgrade, Connection and
// Sec-WebSocket-Protocol are comma-separated lists and may repeat.
UpgradeRequestResult ParseUpgradeRequest(std::span<const uint8_t> in, const UpgradeOptions& options = {});

using AcceptKey = std::array<char, kAcceptSize>;
// base64(SHA-1(key + kAcceptGuid)). Empty unless key is kKeySize characters long.
std::optional<AcceptKey> ComputeAccept(std::string_view key);

// 101 Switching Protocols for a request ParseUpgradeRequest accepted, selecting request.subprotocol if
// set. Returns the bytes written, or 0 if out is too small or the key is not kKeySize characters.
size_t WriteAcceptResponse(const UpgradeRequest& request, std::span<uint8_t> out);
// An error answer with "Connection: close" and no body; 426 also carries "Sec-WebSocket-Version: 13".
// http_status is one of 400, 403, 404, 426, 431, 503; returns 0 for others or if out is too small.
size_t WriteRejectResponse(uint16_t http_status, std::span<uint8_t> out);

// ---- client side ----

using ClientKey = std::array<char, kKeySize>;
// The Sec-WebSocket-Key for a 16-byte random nonce.
ClientKey MakeClientKey(std::span<const uint8_t, kNonceSize> nonce);

struct ClientUpgrade {
  std::string_view host;  // Host header, with ":port" unless the default
  std::string_view path = "/";
  std::string_view key;           // from MakeClientKey
  std::string_view origin;        // sent when not empty
  std::string_view subprotocols;  // Sec-WebSocket-Protocol list, sent when not empty
};
// Writes the GET request. Returns the bytes written, or 0 if out is too small, the key is not a valid key,
// the path does not start with '/', the host is empty, or a field holds a space (path) or control
// character.
size_t WriteUpgradeRequest(const ClientUpgrade& upgrade, std::span<uint8_t> out);

struct UpgradeResponse {
  uint16_t status_code = 0;
  std::string_view subprotocol;  // selected by the server, empty if none
  size_t header_size = 0;        // bytes of the head; whatever follows already belongs to WebSocket
};

struct UpgradeResponseResult {
  UpgradeStatus status = UpgradeStatus::kNeedMore;
  UpgradeError error = UpgradeError::kNone;
  UpgradeResponse response;  // status_code and header_size are set for kNotSwitching too
};

// Parses the server's answer to a request sent with key and offering subprotocols (the same comma list
// that was sent; empty if none). kOk only for a 101 with Upgrade: websocket, Connection: upgrade, the right
// Sec-WebSocket-Accept, no extension, and a subprotocol that is absent or one of those offered. Uses the
// same size limits as the request parser.
UpgradeResponseResult ParseUpgradeResponse(std::span<const uint8_t> in, std::string_view key,
                                           std::string_view subprotocols, const UpgradeOptions& options = {});

}  // namespace longlink::protocol::ws
