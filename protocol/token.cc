#include "protocol/token.h"

#include <climits>
#include <cstddef>

#include "absl/strings/str_cat.h"
#include "openssl/crypto.h"
#include "openssl/evp.h"
#include "openssl/hmac.h"

namespace longlink::protocol {

namespace {

constexpr size_t kDigestBytes = 32;
constexpr size_t kSignatureChars = 2 * kDigestBytes;
// "18446744073709551615.4294967295.18446744073709551615": the longest signed part.
constexpr size_t kMaxPayloadChars = 20 + 1 + 10 + 1 + 20;
constexpr size_t kMaxTokenChars = kMaxPayloadChars + 1 + kSignatureChars;
constexpr char kHexDigits[] = "0123456789abcdef";

// Signs payload into digest. False only if OpenSSL fails internally (allocation), which callers treat as
// a failed signature rather than crash the shard.
bool Sign(std::string_view secret, std::string_view payload, unsigned char (&digest)[kDigestBytes]) {
  if (secret.size() > static_cast<size_t>(INT_MAX)) {
    return false;
  }
  // A default-constructed string_view has a null data(); hand OpenSSL a real (empty) key instead.
  const void* key = secret.data() != nullptr ? static_cast<const void*>(secret.data()) : "";
  unsigned int len = 0;
  const unsigned char* out = HMAC(EVP_sha256(), key, static_cast<int>(secret.size()),
                                  reinterpret_cast<const unsigned char*>(payload.data()), payload.size(), digest, &len);
  return out != nullptr && len == kDigestBytes;
}

// Canonical unsigned decimal only: the signature covers the text, and refusing "+7", "07" or " 7" keeps
// one spelling per token so nothing downstream has to normalise.
bool ParseDecimal(std::string_view s, uint64_t max, uint64_t* out) {
  if (s.empty() || (s.size() > 1 && s[0] == '0')) {
    return false;
  }
  uint64_t v = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') {
      return false;
    }
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (v > (max - digit) / 10) {
      return false;
    }
    v = v * 10 + digit;
  }
  *out = v;
  return true;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  return -1;
}

// Lowercase only, matching what MintToken writes.
bool DecodeSignature(std::string_view hex, unsigned char (&bytes)[kDigestBytes]) {
  if (hex.size() != kSignatureChars) {
    return false;
  }
  for (size_t i = 0; i < kDigestBytes; ++i) {
    const int hi = HexValue(hex[2 * i]);
    const int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return false;
    }
    bytes[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  return true;
}

}  // namespace

std::string_view TokenResultName(TokenResult r) {
  switch (r) {
    case TokenResult::kOk:
      return "ok";
    case TokenResult::kMalformed:
      return "malformed";
    case TokenResult::kBadSignature:
      return "bad_signature";
    case TokenResult::kExpired:
      return "expired";
    case TokenResult::kWrongUser:
      return "wrong_user";
    case TokenResult::kWrongDevice:
      return "wrong_device";
  }
  return "unknown";
}

std::string MintToken(std::string_view secret, uint64_t user_id, uint32_t device_id, uint64_t expiry_unix_s) {
  std::string token = absl::StrCat(user_id, ".", device_id, ".", expiry_unix_s);
  unsigned char digest[kDigestBytes];
  if (!Sign(secret, token, digest)) {
    // An empty string never verifies, so a failed mint cannot grant access.
    return {};
  }
  token.reserve(token.size() + 1 + kSignatureChars);
  token.push_back('.');
  for (const unsigned char b : digest) {
    token.push_back(kHexDigits[b >> 4]);
    token.push_back(kHexDigits[b & 0xf]);
  }
  return token;
}

TokenResult VerifyToken(std::string_view secret, std::string_view token, uint64_t user_id, uint32_t device_id,
                        uint64_t now_unix_s, uint64_t* expiry_unix_s) {
  // Bounds the work an attacker can ask for before anything is parsed.
  if (token.size() > kMaxTokenChars) {
    return TokenResult::kMalformed;
  }
  const size_t dot1 = token.find('.');
  if (dot1 == std::string_view::npos) {
    return TokenResult::kMalformed;
  }
  const size_t dot2 = token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos) {
    return TokenResult::kMalformed;
  }
  const size_t dot3 = token.find('.', dot2 + 1);
  if (dot3 == std::string_view::npos) {
    return TokenResult::kMalformed;
  }
  uint64_t token_user = 0;
  uint64_t token_device = 0;
  uint64_t token_expiry = 0;
  unsigned char claimed[kDigestBytes];
  // A fourth dot, if any, lands in the signature field and fails the hex check.
  if (!ParseDecimal(token.substr(0, dot1), UINT64_MAX, &token_user) ||
      !ParseDecimal(token.substr(dot1 + 1, dot2 - dot1 - 1), UINT32_MAX, &token_device) ||
      !ParseDecimal(token.substr(dot2 + 1, dot3 - dot2 - 1), UINT64_MAX, &token_expiry) ||
      !DecodeSignature(token.substr(dot3 + 1), claimed)) {
    return TokenResult::kMalformed;
  }

  unsigned char expected[kDigestBytes];
  // CRYPTO_memcmp takes time independent of where the bytes differ, so response timing does not leak
  // how much of a forged signature was right.
  if (!Sign(secret, token.substr(0, dot3), expected) || CRYPTO_memcmp(expected, claimed, kDigestBytes) != 0) {
    return TokenResult::kBadSignature;
  }
  if (token_user != user_id) {
    return TokenResult::kWrongUser;
  }
  if (token_device != device_id) {
    return TokenResult::kWrongDevice;
  }
  if (now_unix_s > token_expiry) {
    return TokenResult::kExpired;
  }
  if (expiry_unix_s != nullptr) *expiry_unix_s = token_expiry;
  return TokenResult::kOk;
}

}  // namespace longlink::protocol
