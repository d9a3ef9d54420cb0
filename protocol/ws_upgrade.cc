#include "protocol/ws_upgrade.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstring>

namespace longlink::protocol::ws {
namespace {

constexpr std::string_view kRequestPrefix = "GET ";
constexpr std::string_view kResponsePrefix = "HTTP/1.1 ";
constexpr std::string_view kEndOfHead = "\r\n\r\n";
constexpr std::string_view kCrlf = "\r\n";
constexpr char kBase64Alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr size_t kSha1Size = 20;

std::string_view AsText(std::span<const uint8_t> in) { return {reinterpret_cast<const char*>(in.data()), in.size()}; }

// RFC 9110 token characters: what header names and list elements like "websocket" are made of.
bool IsTchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
    return true;
  }
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Control characters other than horizontal tab: never allowed in a start line or a field value. Bare CR
// and LF are among them, which keeps request smuggling tricks out.
bool HasControl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char ch) {
    const auto c = static_cast<uint8_t>(ch);
    return (c < 0x20 && c != '\t') || c == 0x7f;
  });
}

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return Lower(x) == Lower(y); });
}

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

// True if a comma-separated header list has an element equal to token (empty elements are skipped).
bool ListContains(std::string_view list, std::string_view token, bool ignore_case) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    const std::string_view element = TrimOws(list.substr(0, comma));
    if (ignore_case ? EqualsIgnoreCase(element, token) : element == token) {
      return true;
    }
    if (comma == std::string_view::npos) {
      break;
    }
    list.remove_prefix(comma + 1);
  }
  return false;
}

int Base64Value(char c) {
  const char* p = std::strchr(kBase64Alphabet, c);
  return c != '\0' && p != nullptr ? static_cast<int>(p - kBase64Alphabet) : -1;
}

// out must hold 4 * ceil(n / 3) characters.
void Base64Encode(const uint8_t* in, size_t n, char* out) {
  for (; n >= 3; n -= 3, in += 3) {
    const uint32_t v = (uint32_t{in[0]} << 16) | (uint32_t{in[1]} << 8) | in[2];
    *out++ = kBase64Alphabet[(v >> 18) & 63];
    *out++ = kBase64Alphabet[(v >> 12) & 63];
    *out++ = kBase64Alphabet[(v >> 6) & 63];
    *out++ = kBase64Alphabet[v & 63];
  }
  if (n > 0) {
    const uint32_t v = (uint32_t{in[0]} << 16) | (n == 2 ? uint32_t{in[1]} << 8 : 0);
    *out++ = kBase64Alphabet[(v >> 18) & 63];
    *out++ = kBase64Alphabet[(v >> 12) & 63];
    *out++ = n == 2 ? kBase64Alphabet[(v >> 6) & 63] : '=';
    *out++ = '=';
  }
}

// A key is the canonical base64 of exactly 16 bytes: 22 alphabet characters, the last of which carries
// only 2 data bits (so its low 4 bits are zero), then "==".
bool IsValidKey(std::string_view key) {
  if (key.size() != kKeySize || key[22] != '=' || key[23] != '=') {
    return false;
  }
  for (size_t i = 0; i < 22; ++i) {
    if (Base64Value(key[i]) < 0) {
      return false;
    }
  }
  return (Base64Value(key[21]) & 0xf) == 0;
}

struct HeadScan {
  UpgradeStatus status = UpgradeStatus::kNeedMore;
  UpgradeError error = UpgradeError::kNone;
  std::string_view head;  // through the blank line, when kOk
};

// Finds the end of the head at the front of in. Input that cannot begin with prefix is refused at once,
// so a peer speaking something else entirely (TLS, a longlink TCP frame) is not kept waiting for a blank
// line.
HeadScan FindHead(std::span<const uint8_t> in, std::string_view prefix, UpgradeError prefix_error, size_t max_bytes) {
  HeadScan scan;
  const std::string_view text = AsText(in);
  if (text.substr(0, prefix.size()) != prefix.substr(0, std::min(text.size(), prefix.size()))) {
    scan.status = UpgradeStatus::kError;
    scan.error = prefix_error;
    return scan;
  }
  const std::string_view scanned = text.substr(0, max_bytes);
  const size_t end = scanned.find(kEndOfHead);
  // Lines end with CRLF only. A bare LF or CR is refused as soon as it arrives: a peer that ends its lines
  // with LF alone would otherwise wait for a CRLF CRLF that never comes (until the login timeout).
  const std::string_view upto = end == std::string_view::npos ? scanned : scanned.substr(0, end + kEndOfHead.size());
  for (size_t i = 0; i < upto.size(); ++i) {
    const bool bare_lf = upto[i] == '\n' && (i == 0 || upto[i - 1] != '\r');
    const bool bare_cr = upto[i] == '\r' && i + 1 < upto.size() && upto[i + 1] != '\n';
    if (bare_lf || bare_cr) {
      scan.status = UpgradeStatus::kError;
      scan.error = UpgradeError::kMalformed;
      return scan;
    }
  }
  if (end == std::string_view::npos) {
    if (text.size() >= max_bytes) {
      scan.status = UpgradeStatus::kError;
      scan.error = UpgradeError::kHeaderTooLarge;
    }
    return scan;
  }
  scan.status = UpgradeStatus::kOk;
  scan.head = text.substr(0, end + kEndOfHead.size());
  return scan;
}

// Splits a complete head into its start line and header fields and calls on_header(name, value) for each
// field, value trimmed; stops at the first error, its own or one on_header returns.
template <typename OnHeader>
UpgradeError SplitHead(std::string_view head, size_t max_headers, std::string_view* start_line, OnHeader on_header) {
  size_t pos = head.find(kCrlf);
  *start_line = head.substr(0, pos);
  if (HasControl(*start_line)) {
    return UpgradeError::kMalformed;
  }
  pos += kCrlf.size();
  size_t count = 0;
  for (;;) {
    // Always found: the head ends with an empty line.
    const size_t eol = head.find(kCrlf, pos);
    if (eol == pos) {
      return UpgradeError::kNone;
    }
    const std::string_view line = head.substr(pos, eol - pos);
    pos = eol + kCrlf.size();
    if (++count > max_headers) {
      return UpgradeError::kTooManyHeaders;
    }
    // The name must be a non-empty token right up to the colon: this also refuses whitespace before the
    // colon and obsolete line folding (a line starting with whitespace), as RFC 9112 asks of servers.
    const size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos) {
      return UpgradeError::kMalformed;
    }
    const std::string_view name = line.substr(0, colon);
    const std::string_view value = TrimOws(line.substr(colon + 1));
    if (!std::all_of(name.begin(), name.end(), IsTchar) || HasControl(value)) {
      return UpgradeError::kMalformed;
    }
    if (UpgradeError e = on_header(name, value); e != UpgradeError::kNone) {
      return e;
    }
  }
}

// Fills a caller buffer; the first append that does not fit makes the whole write fail.
class Out {
 public:
  explicit Out(std::span<uint8_t> out) : out_(out) {}

  Out& operator<<(std::string_view s) {
    if (!ok_ || s.size() > out_.size() - pos_) {
      ok_ = false;
      return *this;
    }
    if (!s.empty()) {
      std::memcpy(out_.data() + pos_, s.data(), s.size());
      pos_ += s.size();
    }
    return *this;
  }
  size_t Done() const { return ok_ ? pos_ : 0; }

 private:
  std::span<uint8_t> out_;
  size_t pos_ = 0;
  bool ok_ = true;
};

std::string_view ReasonPhrase(uint16_t status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 426:
      return "Upgrade Required";
    case 431:
      return "Request Header Fields Too Large";
    case 503:
      return "Service Unavailable";
    default:
      return {};
  }
}

}  // namespace

std::string_view UpgradeErrorName(UpgradeError e) {
  switch (e) {
    case UpgradeError::kNone:
      return "none";
    case UpgradeError::kHeaderTooLarge:
      return "header_too_large";
    case UpgradeError::kTooManyHeaders:
      return "too_many_headers";
    case UpgradeError::kMalformed:
      return "malformed";
    case UpgradeError::kBadMethod:
      return "bad_method";
    case UpgradeError::kBadHttpVersion:
      return "bad_http_version";
    case UpgradeError::kBadTarget:
      return "bad_target";
    case UpgradeError::kMissingHost:
      return "missing_host";
    case UpgradeError::kDuplicateHeader:
      return "duplicate_header";
    case UpgradeError::kNotUpgrade:
      return "not_upgrade";
    case UpgradeError::kNoConnectionUpgrade:
      return "no_connection_upgrade";
    case UpgradeError::kUnsupportedVersion:
      return "unsupported_version";
    case UpgradeError::kBadKey:
      return "bad_key";
    case UpgradeError::kHasBody:
      return "has_body";
    case UpgradeError::kNotSwitching:
      return "not_switching";
    case UpgradeError::kBadAccept:
      return "bad_accept";
    case UpgradeError::kBadSubprotocol:
      return "bad_subprotocol";
    case UpgradeError::kUnexpectedExtension:
      return "unexpected_extension";
  }
  return "unknown";
}

uint16_t HttpStatusFor(UpgradeError e) {
  switch (e) {
    case UpgradeError::kNone:
    case UpgradeError::kNotSwitching:
    case UpgradeError::kBadAccept:
    case UpgradeError::kBadSubprotocol:
    case UpgradeError::kUnexpectedExtension:
      return 0;
    case UpgradeError::kHeaderTooLarge:
    case UpgradeError::kTooManyHeaders:
      return 431;
    case UpgradeError::kUnsupportedVersion:
      return 426;
    default:
      return 400;
  }
}

UpgradeRequestResult ParseUpgradeRequest(std::span<const uint8_t> in, const UpgradeOptions& options) {
  UpgradeRequestResult r;
  const HeadScan scan = FindHead(in, kRequestPrefix, UpgradeError::kBadMethod, options.max_header_bytes);
  if (scan.status != UpgradeStatus::kOk) {
    r.status = scan.status;
    r.error = scan.error;
    return r;
  }
  auto fail = [&r](UpgradeError e) {
    r.status = UpgradeStatus::kError;
    r.error = e;
    r.request = {};
    return r;
  };

  UpgradeRequest& req = r.request;
  int hosts = 0;
  int origins = 0;
  int keys = 0;
  int versions = 0;
  bool upgrade = false;
  bool connection_upgrade = false;
  bool version_13 = false;
  std::string_view start_line;
  const UpgradeError e =
      SplitHead(scan.head, options.max_headers, &start_line, [&](std::string_view name, std::string_view value) {
        if (EqualsIgnoreCase(name, "host")) {
          req.host = value;
          return ++hosts > 1 ? UpgradeError::kDuplicateHeader : UpgradeError::kNone;
        }
        if (EqualsIgnoreCase(name, "upgrade")) {
          upgrade = upgrade || ListContains(value, "websocket", true);
        } else if (EqualsIgnoreCase(name, "connection")) {
          connection_upgrade = connection_upgrade || ListContains(value, "upgrade", true);
        } else if (EqualsIgnoreCase(name, "sec-websocket-key")) {
          req.key = value;
          return ++keys > 1 ? UpgradeError::kDuplicateHeader : UpgradeError::kNone;
        } else if (EqualsIgnoreCase(name, "sec-websocket-version")) {
          version_13 = value == "13";
          return ++versions > 1 ? UpgradeError::kDuplicateHeader : UpgradeError::kNone;
        } else if (EqualsIgnoreCase(name, "sec-websocket-protocol")) {
          // Subprotocol names are compared exactly (RFC 6455 section 4.1).
          if (!options.subprotocol.empty() && ListContains(value, options.subprotocol, false)) {
            req.subprotocol = options.subprotocol;
          }
        } else if (EqualsIgnoreCase(name, "origin")) {
          req.origin = value;
          req.has_origin = true;
          return ++origins > 1 ? UpgradeError::kDuplicateHeader : UpgradeError::kNone;
        } else if (EqualsIgnoreCase(name, "content-length")) {
          // A handshake has no body; bytes after the head are WebSocket frames, never a request body.
          return value == "0" ? UpgradeError::kNone : UpgradeError::kHasBody;
        } else if (EqualsIgnoreCase(name, "transfer-encoding")) {
          return UpgradeError::kHasBody;
        }
        return UpgradeError::kNone;
      });
  if (e != UpgradeError::kNone) {
    return fail(e);
  }

  // Request line: exactly "GET SP request-target SP HTTP/1.1".
  const size_t sp1 = start_line.find(' ');
  const size_t sp2 = start_line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos) {
    return fail(UpgradeError::kMalformed);
  }
  if (start_line.substr(0, sp1) != "GET") {
    return fail(UpgradeError::kBadMethod);
  }
  req.path = start_line.substr(sp1 + 1, sp2 - sp1 - 1);
  if (req.path.empty() || req.path.front() != '/') {
    return fail(UpgradeError::kBadTarget);
  }
  if (start_line.substr(sp2 + 1) != "HTTP/1.1") {
    return fail(UpgradeError::kBadHttpVersion);
  }

  if (hosts == 0 || req.host.empty()) {
    return fail(UpgradeError::kMissingHost);
  }
  if (!upgrade) {
    return fail(UpgradeError::kNotUpgrade);
  }
  if (!connection_upgrade) {
    return fail(UpgradeError::kNoConnectionUpgrade);
  }
  if (!version_13) {
    return fail(UpgradeError::kUnsupportedVersion);
  }
  if (!IsValidKey(req.key)) {
    return fail(UpgradeError::kBadKey);
  }
  req.header_size = scan.head.size();
  r.status = UpgradeStatus::kOk;
  return r;
}

std::optional<AcceptKey> ComputeAccept(std::string_view key) {
  if (key.size() != kKeySize) {
    return std::nullopt;
  }
  char input[kKeySize + kAcceptGuid.size()];
  std::memcpy(input, key.data(), kKeySize);
  std::memcpy(input + kKeySize, kAcceptGuid.data(), kAcceptGuid.size());
  uint8_t digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  if (EVP_Digest(input, sizeof(input), digest, &digest_size, EVP_sha1(), nullptr) != 1 || digest_size != kSha1Size) {
    return std::nullopt;
  }
  AcceptKey accept;
  Base64Encode(digest, kSha1Size, accept.data());
  return accept;
}

size_t WriteAcceptResponse(const UpgradeRequest& request, std::span<uint8_t> out) {
  const std::optional<AcceptKey> accept = ComputeAccept(request.key);
  if (!accept.has_value() || HasControl(request.subprotocol)) {
    return 0;
  }
  Out o(out);
  o << "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
    << std::string_view(accept->data(), accept->size()) << kCrlf;
  if (!request.subprotocol.empty()) {
    o << "Sec-WebSocket-Protocol: " << request.subprotocol << kCrlf;
  }
  o << kCrlf;
  return o.Done();
}

size_t WriteRejectResponse(uint16_t http_status, std::span<uint8_t> out) {
  const std::string_view reason = ReasonPhrase(http_status);
  if (reason.empty()) {
    return 0;
  }
  const char code[3] = {static_cast<char>('0' + http_status / 100), static_cast<char>('0' + http_status / 10 % 10),
                        static_cast<char>('0' + http_status % 10)};
  Out o(out);
  o << "HTTP/1.1 " << std::string_view(code, 3) << " " << reason << kCrlf;
  if (http_status == 426) {
    // RFC 6455 section 4.4: name the version we do speak; RFC 9110: a 426 names the protocol to upgrade to.
    o << "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n";
  }
  o << "Connection: close\r\nContent-Length: 0\r\n\r\n";
  return o.Done();
}

ClientKey MakeClientKey(std::span<const uint8_t, kNonceSize> nonce) {
  ClientKey key;
  Base64Encode(nonce.data(), nonce.size(), key.data());
  return key;
}

size_t WriteUpgradeRequest(const ClientUpgrade& upgrade, std::span<uint8_t> out) {
  if (!IsValidKey(upgrade.key) || upgrade.path.empty() || upgrade.path.front() != '/' ||
      upgrade.path.find(' ') != std::string_view::npos || upgrade.host.empty() ||
      upgrade.host.find(' ') != std::string_view::npos || HasControl(upgrade.path) || HasControl(upgrade.host) ||
      HasControl(upgrade.origin) || HasControl(upgrade.subprotocols)) {
    return 0;
  }
  Out o(out);
  o << "GET " << upgrade.path << " HTTP/1.1\r\nHost: " << upgrade.host
    << "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " << upgrade.key
    << "\r\nSec-WebSocket-Version: 13\r\n";
  if (!upgrade.origin.empty()) {
    o << "Origin: " << upgrade.origin << kCrlf;
  }
  if (!upgrade.subprotocols.empty()) {
    o << "Sec-WebSocket-Protocol: " << upgrade.subprotocols << kCrlf;
  }
  o << kCrlf;
  return o.Done();
}

UpgradeResponseResult ParseUpgradeResponse(std::span<const uint8_t> in, std::string_view key,
                                           std::string_view subprotocols, const UpgradeOptions& options) {
  UpgradeResponseResult r;
  const HeadScan scan = FindHead(in, kResponsePrefix, UpgradeError::kBadHttpVersion, options.max_header_bytes);
  if (scan.status != UpgradeStatus::kOk) {
    r.status = scan.status;
    r.error = scan.error;
    return r;
  }
  auto fail = [&r](UpgradeError e) {
    r.status = UpgradeStatus::kError;
    r.error = e;
    return r;
  };

  UpgradeResponse& resp = r.response;
  bool upgrade = false;
  bool connection_upgrade = false;
  bool extension = false;
  int accepts = 0;
  int protocols = 0;
  std::string_view accept;
  std::string_view start_line;
  const UpgradeError e =
      SplitHead(scan.head, options.max_headers, &start_line, [&](std::string_view name, std::string_view value) {
        if (EqualsIgnoreCase(name, "upgrade")) {
          upgrade = upgrade || ListContains(value, "websocket", true);
        } else if (EqualsIgnoreCase(name, "connection")) {
          connection_upgrade = connection_upgrade || ListContains(value, "upgrade", true);
        } else if (EqualsIgnoreCase(name, "sec-websocket-accept")) {
          accept = value;
          return ++accepts > 1 ? UpgradeError::kDuplicateHeader : UpgradeError::kNone;
        } else if (EqualsIgnoreCase(name, "sec-websocket-protocol")) {
          resp.subprotocol = value;
          return ++protocols > 1 ? UpgradeError::kDuplicateHeader : UpgradeError::kNone;
        } else if (EqualsIgnoreCase(name, "sec-websocket-extensions")) {
          extension = true;
        }
        return UpgradeError::kNone;
      });
  if (e != UpgradeError::kNone) {
    resp = {};
    return fail(e);
  }

  // Status line: "HTTP/1.1 SP 3DIGIT [SP reason-phrase]".
  const std::string_view status = start_line.substr(kResponsePrefix.size());
  if (status.size() < 3 ||
      !std::all_of(status.begin(), status.begin() + 3, [](char c) { return c >= '0' && c <= '9'; }) ||
      (status.size() > 3 && status[3] != ' ')) {
    resp = {};
    return fail(UpgradeError::kMalformed);
  }
  resp.status_code = static_cast<uint16_t>((status[0] - '0') * 100 + (status[1] - '0') * 10 + (status[2] - '0'));
  resp.header_size = scan.head.size();
  if (resp.status_code != 101) {
    resp.subprotocol = {};
    return fail(UpgradeError::kNotSwitching);
  }
  if (!upgrade) {
    return fail(UpgradeError::kNotUpgrade);
  }
  if (!connection_upgrade) {
    return fail(UpgradeError::kNoConnectionUpgrade);
  }
  const std::optional<AcceptKey> expected = ComputeAccept(key);
  if (!expected.has_value() || accept != std::string_view(expected->data(), expected->size())) {
    return fail(UpgradeError::kBadAccept);
  }
  if (extension) {
    return fail(UpgradeError::kUnexpectedExtension);
  }
  if (protocols != 0) {
    // The server picks one of the offered names, exactly; an empty or listed value is not a choice.
    if (resp.subprotocol.empty() || resp.subprotocol.find(',') != std::string_view::npos ||
        !ListContains(subprotocols, resp.subprotocol, false)) {
      return fail(UpgradeError::kBadSubprotocol);
    }
  }
  r.status = UpgradeStatus::kOk;
  return r;
}

}  // namespace longlink::protocol::ws
