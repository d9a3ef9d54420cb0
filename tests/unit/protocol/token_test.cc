#include "protocol/token.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

namespace longlink::protocol {
namespace {

constexpr std::string_view kSecret = "correct horse battery staple";
constexpr uint64_t kUser = 1234567890123ull;
constexpr uint32_t kDevice = 42;
constexpr uint64_t kExpiry = 1'700'000'000;
constexpr uint64_t kNow = kExpiry - 60;

TokenResult Verify(const std::string& token, uint64_t now = kNow) {
  return VerifyToken(kSecret, token, kUser, kDevice, now);
}

TEST(TokenTest, MintHasExpectedShape) {
  const std::string t = MintToken(kSecret, kUser, kDevice, kExpiry);
  const std::string prefix = "1234567890123.42.1700000000.";
  ASSERT_EQ(t.substr(0, prefix.size()), prefix);
  const std::string sig = t.substr(prefix.size());
  ASSERT_EQ(sig.size(), 64u);
  for (const char c : sig) {
    EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << c;
  }
  EXPECT_EQ(t, MintToken(kSecret, kUser, kDevice, kExpiry)) << "deterministic";
}

TEST(TokenTest, KnownVector) {
  // HMAC-SHA256("key", "1.2.3"), from `printf 1.2.3 | openssl dgst -sha256 -hmac key`.
  EXPECT_EQ(MintToken("key", 1, 2, 3), "1.2.3.fdd9cca0781e88dd483c471bf289dbdb4b5754b7c3c058d5b640fcc0dd8d25c9");
}

TEST(TokenTest, RoundTrip) {
  EXPECT_EQ(Verify(MintToken(kSecret, kUser, kDevice, kExpiry)), TokenResult::kOk);
  EXPECT_EQ(VerifyToken(kSecret, MintToken(kSecret, 0, 0, 0), 0, 0, 0), TokenResult::kOk);
  EXPECT_EQ(
      VerifyToken(kSecret, MintToken(kSecret, UINT64_MAX, UINT32_MAX, UINT64_MAX), UINT64_MAX, UINT32_MAX, UINT64_MAX),
      TokenResult::kOk);
  EXPECT_EQ(VerifyToken("", MintToken("", 5, 6, 7), 5, 6, 7), TokenResult::kOk);
  EXPECT_EQ(VerifyToken({}, MintToken({}, 5, 6, 7), 5, 6, 7), TokenResult::kOk);
}

TEST(TokenTest, EachFailureResult) {
  const std::string t = MintToken(kSecret, kUser, kDevice, kExpiry);
  EXPECT_EQ(VerifyToken(kSecret, t, kUser + 1, kDevice, kNow), TokenResult::kWrongUser);
  EXPECT_EQ(VerifyToken(kSecret, t, kUser, kDevice + 1, kNow), TokenResult::kWrongDevice);
  EXPECT_EQ(VerifyToken(kSecret, t, kUser, kDevice, kExpiry + 1), TokenResult::kExpired);
  EXPECT_EQ(VerifyToken("other secret", t, kUser, kDevice, kNow), TokenResult::kBadSignature);
  EXPECT_EQ(VerifyToken(kSecret, "x", kUser, kDevice, kNow), TokenResult::kMalformed);
}

TEST(TokenTest, CheckOrder) {
  const std::string t = MintToken(kSecret, kUser, kDevice, kExpiry);
  // Everything wrong: malformed wins, then signature, then user, then device, then expiry.
  EXPECT_EQ(VerifyToken("other", "1.2.x." + std::string(64, 'a'), kUser + 1, kDevice + 1, kExpiry + 1),
            TokenResult::kMalformed);
  EXPECT_EQ(VerifyToken("other", t, kUser + 1, kDevice + 1, kExpiry + 1), TokenResult::kBadSignature);
  EXPECT_EQ(VerifyToken(kSecret, t, kUser + 1, kDevice + 1, kExpiry + 1), TokenResult::kWrongUser);
  EXPECT_EQ(VerifyToken(kSecret, t, kUser, kDevice + 1, kExpiry + 1), TokenResult::kWrongDevice);
  EXPECT_EQ(VerifyToken(kSecret, t, kUser, kDevice, kExpiry + 1), TokenResult::kExpired);
}

TEST(TokenTest, ExpiryBoundary) {
  const std::string t = MintToken(kSecret, kUser, kDevice, kExpiry);
  EXPECT_EQ(Verify(t, 0), TokenResult::kOk);
  EXPECT_EQ(Verify(t, kExpiry - 1), TokenResult::kOk);
  EXPECT_EQ(Verify(t, kExpiry), TokenResult::kOk);
  EXPECT_EQ(Verify(t, kExpiry + 1), TokenResult::kExpired);
  EXPECT_EQ(Verify(t, UINT64_MAX), TokenResult::kExpired);
}

TEST(TokenTest, TamperedFieldsFailSignature) {
  const std::string sig = MintToken(kSecret, kUser, kDevice, kExpiry).substr(28);
  ASSERT_EQ(sig.size(), 64u);
  // Claims changed, old signature kept.
  EXPECT_EQ(Verify("1234567890124.42.1700000000." + sig), TokenResult::kBadSignature);
  EXPECT_EQ(Verify("1234567890123.43.1700000000." + sig), TokenResult::kBadSignature);
  EXPECT_EQ(Verify("1234567890123.42.1700000001." + sig), TokenResult::kBadSignature);
  EXPECT_EQ(Verify("1234567890123.42.9999999999." + sig), TokenResult::kBadSignature);
  // Device and expiry swapped.
  EXPECT_EQ(VerifyToken(kSecret, "1234567890123.1700000000.42." + sig, kUser, 1700000000, 0),
            TokenResult::kBadSignature);
}

TEST(TokenTest, TamperedSignature) {
  const std::string t = MintToken(kSecret, kUser, kDevice, kExpiry);
  for (size_t i = t.size() - 64; i < t.size(); ++i) {
    std::string bad = t;
    bad[i] = bad[i] == '0' ? '1' : '0';
    EXPECT_EQ(Verify(bad), TokenResult::kBadSignature) << "position " << i;
  }
  std::string zeros = t.substr(0, t.size() - 64) + std::string(64, '0');
  EXPECT_EQ(Verify(zeros), TokenResult::kBadSignature);
}

TEST(TokenTest, WrongSecret) {
  const std::string t = MintToken("secret-a", kUser, kDevice, kExpiry);
  EXPECT_EQ(VerifyToken("secret-b", t, kUser, kDevice, kNow), TokenResult::kBadSignature);
  EXPECT_EQ(VerifyToken("secret-", t, kUser, kDevice, kNow), TokenResult::kBadSignature);
  EXPECT_EQ(VerifyToken("", t, kUser, kDevice, kNow), TokenResult::kBadSignature);
  EXPECT_EQ(VerifyToken("secret-a", t, kUser, kDevice, kNow), TokenResult::kOk);
}

TEST(TokenTest, MalformedInputs) {
  const std::string good = MintToken(kSecret, kUser, kDevice, kExpiry);
  const std::string sig = good.substr(good.size() - 64);
  const std::string claims = "1234567890123.42.1700000000";
  const std::string cases[] = {
      "",
      ".",
      "...",
      "1234567890123",
      "1234567890123.42",
      "1234567890123.42.1700000000",
      claims + ".",
      ".42.1700000000." + sig,                                       // empty user
      "1234567890123..1700000000." + sig,                            // empty device
      "1234567890123.42.." + sig,                                    // empty expiry
      "+1234567890123.42.1700000000." + sig,                         // sign
      "-1.42.1700000000." + sig,                                     // sign
      " 1234567890123.42.1700000000." + sig,                         // leading space
      "01234567890123.42.1700000000." + sig,                         // leading zero
      "1234567890123.042.1700000000." + sig,                         // leading zero
      "1234567890123.4x.1700000000." + sig,                          // non-digit
      "1234567890123.42.17e8." + sig,                                // non-digit
      "0x1.42.1700000000." + sig,                                    // hex number
      "18446744073709551616.42.1700000000." + sig,                   // user = 2^64
      "99999999999999999999.42.1700000000." + sig,                   // 20 digits, overflows
      "1234567890123.4294967296.1700000000." + sig,                  // device = 2^32
      "1234567890123.42.18446744073709551616." + sig,                // expiry = 2^64
      "1234567890123.42.1700000000000000000000000000000000." + sig,  // very long number
      claims + "." + sig.substr(1),                                  // 63 hex chars
      claims + "." + sig + "0",                                      // 65 hex chars
      claims + "." + sig + ".",                                      // trailing dot
      claims + "." + sig + "." + sig,                                // extra field
      claims + ".." + sig,                                           // extra empty field
      claims + "." + std::string(64, 'g'),                           // not hex
      claims + "." + std::string(63, 'a') + "A",                     // uppercase hex is not the canonical form
      claims + "." + std::string(64, ' '),
      claims + "." + std::string(1 << 20, 'a'),  // huge
      std::string("1234567890123.42.1700000000.\0", 29) + sig.substr(1),  // NUL byte
  };
  for (const std::string& c : cases) {
    EXPECT_EQ(Verify(c), TokenResult::kMalformed) << "token: " << c.substr(0, 100);
  }
  EXPECT_EQ(Verify(good), TokenResult::kOk);
}

TEST(TokenTest, LargestValuesParse) {
  // Boundary values that fit exactly are not malformed (the signature is just wrong).
  const std::string sig(64, 'a');
  EXPECT_EQ(VerifyToken(kSecret, "18446744073709551615.4294967295.18446744073709551615." + sig, 0, 0, 0),
            TokenResult::kBadSignature);
  EXPECT_EQ(VerifyToken(kSecret, "0.0.0." + sig, 0, 0, 0), TokenResult::kBadSignature);
}

TEST(TokenTest, ResultNames) {
  EXPECT_EQ(TokenResultName(TokenResult::kOk), "ok");
  EXPECT_EQ(TokenResultName(TokenResult::kMalformed), "malformed");
  EXPECT_EQ(TokenResultName(TokenResult::kBadSignature), "bad_signature");
  EXPECT_EQ(TokenResultName(TokenResult::kExpired), "expired");
  EXPECT_EQ(TokenResultName(TokenResult::kWrongUser), "wrong_user");
  EXPECT_EQ(TokenResultName(TokenResult::kWrongDevice), "wrong_device");
}

}  // namespace
}  // namespace longlink::protocol
