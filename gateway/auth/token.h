// Signed login tokens for --auth=token. Interface contract; implementation to be completed.
//
// A token binds a user id, a device id and an expiry time, signed with HMAC-SHA256 under a shared secret,
// so any service holding the secret can mint tokens and the gateway verifies them without a lookup.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace longlink::auth {

enum class TokenResult : uint8_t { kOk, kMalformed, kBadSignature, kExpired, kWrongUser, kWrongDevice };
std::string_view TokenResultName(TokenResult r);

std::string MintToken(std::string_view secret, uint64_t user_id, uint32_t device_id, uint64_t expiry_unix_s);

// Verifies signature (constant-time), expiry against now_unix_s, and that the token names user_id and
// device_id.
TokenResult VerifyToken(std::string_view secret, std::string_view token, uint64_t user_id, uint32_t device_id,
                        uint64_t now_unix_s);

}  // namespace longlink::auth
