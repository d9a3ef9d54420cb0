// Fuzz target for login tokens (protocol/token.h), the string a client puts in LOGIN: VerifyToken must give
// an answer for any bytes, never crash, and accept only a token it could have minted. The first 8 bytes of
// the input choose the claimed user and device; the rest is the token.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "protocol/token.h"

namespace {

namespace proto = longlink::protocol;
constexpr std::string_view kSecret = "fuzz-secret";

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 8) return 0;
  uint32_t user32;
  uint32_t device;
  std::memcpy(&user32, data, 4);
  std::memcpy(&device, data + 4, 4);
  uint64_t user = user32;
  std::string_view token(reinterpret_cast<const char*>(data + 8), size - 8);
  uint64_t expiry = 0;
  proto::TokenResult r = proto::VerifyToken(kSecret, token, user, device, 1'700'000'000, &expiry);
  Check(!proto::TokenResultName(r).empty());
  if (r == proto::TokenResult::kOk) {
    // Only the one spelling MintToken produces passes: a forged token would need the HMAC.
    Check(proto::MintToken(kSecret, user, device, expiry) == token);
    Check(expiry >= 1'700'000'000);
  }
  // The same bytes with the right claims, whatever they were.
  (void)proto::VerifyToken(kSecret, token, 0, 0, 0);
  return 0;
}
