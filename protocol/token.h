// Signed login tokens for --auth=token.
//
// A token binds a user id, a device id and an expiry time, signed with HMAC-SHA256 under a shared secret,
// so any service holding the secret can mint tokens and the gateway verifies them without a lookup.
//
// Text form: "<user_id>.<device_id>.<expiry_unix_s>.<signature>", where the numbers are canonical
// decimal (no sign, no leading zeros, in range for uint64/uint32/uint64) and signature is the 64-char
// lowercase hex of HMAC-SHA256(secret, "<user_id>.<device_id>.<expiry_unix_s>"). Anything else is
// kMalformed, so each token has exactly one spelling.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace longlink::protocol {

// The signature is checked before any claim, so a forged token never learns whether its user, device or
// expiry would have passed.
enum class TokenResult : uint8_t { kOk, kMalformed, kBadSignature, kExpired, kWrongUser, kWrongDevice };
// snake_case name, usable as a metric label ("ok", "malformed", "bad_signature", ...).
std::string_view TokenResultName(TokenResult r);

std::string MintToken(std::string_view secret, uint64_t user_id, uint32_t device_id, uint64_t expiry_unix_s);

// Verifies signature (constant-time), expiry against now_unix_s, and that the token names user_id and
// device_id. Checks, first failure wins: malformed, bad signature, wrong user, wrong device, expired
// (now_unix_s > expiry; a token is still valid during its expiry second). On kOk, *expiry_unix_s (if given)
// is the token's expiry, which bounds the session it opens.
TokenResult VerifyToken(std::string_view secret, std::string_view token, uint64_t user_id, uint32_t device_id,
                        uint64_t now_unix_s, uint64_t* expiry_unix_s = nullptr);

}  // namespace longlink::protocol
