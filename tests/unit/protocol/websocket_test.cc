#include "protocol/websocket.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace longlink::protocol::ws {
namespace {

using Bytes = std::vector<uint8_t>;

constexpr uint64_t kNoLimit = UINT64_MAX >> 1;

Bytes B(std::string_view s) { return Bytes(s.begin(), s.end()); }
Bytes Cat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
std::string_view Text(std::span<const uint8_t> b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

HeaderResult Parse(const Bytes& in, Role role, uint64_t max_payload = kNoLimit) {
  return ParseFrameHeader(in, role, max_payload);
}

// Encodes a frame into a vector sized exactly by FrameHeaderSize.
Bytes Encode(Opcode op, bool fin, const Bytes& payload, std::optional<MaskKey> key = std::nullopt) {
  Bytes out(FrameHeaderSize(payload.size(), key.has_value()) + payload.size());
  const size_t n = key ? EncodeMaskedFrame(op, fin, payload, *key, out) : EncodeFrame(op, fin, payload, out);
  EXPECT_EQ(n, out.size());
  return out;
}

// ---- RFC 6455 section 5.7 examples ----

constexpr MaskKey kRfcKey = {0x37, 0xfa, 0x21, 0x3d};

TEST(WebSocketRfcExamples, UnmaskedTextHello) {
  const Bytes wire = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
  const HeaderResult r = Parse(wire, Role::kClient);
  ASSERT_EQ(r.status, ParseStatus::kOk);
  EXPECT_TRUE(r.header.fin);
  EXPECT_EQ(r.header.rsv, 0);
  EXPECT_EQ(r.header.opcode, static_cast<uint8_t>(Opcode::kText));
  EXPECT_FALSE(r.header.masked);
  EXPECT_EQ(r.header.payload_length, 5u);
  EXPECT_EQ(r.header.header_size, 2);
  EXPECT_EQ(Text(std::span(wire).subspan(2)), "Hello");
  EXPECT_EQ(Encode(Opcode::kText, true, B("Hello")), wire);
}

TEST(WebSocketRfcExamples, MaskedTextHello) {
  Bytes wire = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
  EXPECT_EQ(Encode(Opcode::kText, true, B("Hello"), kRfcKey), wire);
  const HeaderResult r = Parse(wire, Role::kServer);
  ASSERT_EQ(r.status, ParseStatus::kOk);
  EXPECT_TRUE(r.header.masked);
  EXPECT_EQ(r.header.mask_key, kRfcKey);
  EXPECT_EQ(r.header.payload_length, 5u);
  EXPECT_EQ(r.header.header_size, 6);
  std::span<uint8_t> payload = std::span(wire).subspan(r.header.header_size);
  Unmask(payload, r.header.mask_key);
  EXPECT_EQ(Text(payload), "Hello");
}

TEST(WebSocketRfcExamples, FragmentedTextHello) {
  const Bytes first = {0x01, 0x03, 0x48, 0x65, 0x6c};
  const Bytes second = {0x80, 0x02, 0x6c, 0x6f};
  EXPECT_EQ(Encode(Opcode::kText, false, B("Hel")), first);
  EXPECT_EQ(Encode(Opcode::kContinuation, true, B("lo")), second);

  MessageAssembler assembler(1024, /*accept_text=*/true);
  std::string message;
  const HeaderResult r1 = Parse(first, Role::kClient);
  ASSERT_EQ(r1.status, ParseStatus::kOk);
  EXPECT_FALSE(r1.header.fin);
  const auto p1 = std::span(first).subspan(r1.header.header_size);
  EXPECT_EQ(assembler.OnFrame(r1.header, p1), MessageAssembler::Action::kFragment);
  message += Text(p1);
  const HeaderResult r2 = Parse(second, Role::kClient);
  ASSERT_EQ(r2.status, ParseStatus::kOk);
  EXPECT_EQ(r2.header.opcode, static_cast<uint8_t>(Opcode::kContinuation));
  const auto p2 = std::span(second).subspan(r2.header.header_size);
  EXPECT_EQ(assembler.OnFrame(r2.header, p2), MessageAssembler::Action::kFinalFragment);
  message += Text(p2);
  EXPECT_EQ(message, "Hello");
  EXPECT_EQ(assembler.message_opcode(), Opcode::kText);
  EXPECT_EQ(assembler.message_size(), 5u);
}

TEST(WebSocketRfcExamples, PingAndMaskedPong) {
  const Bytes ping = {0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
  EXPECT_EQ(Encode(Opcode::kPing, true, B("Hello")), ping);
  const HeaderResult r = Parse(ping, Role::kClient);
  ASSERT_EQ(r.status, ParseStatus::kOk);
  EXPECT_EQ(r.header.opcode, static_cast<uint8_t>(Opcode::kPing));

  const Bytes pong = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
  EXPECT_EQ(Encode(Opcode::kPong, true, B("Hello"), kRfcKey), pong);
  const HeaderResult rp = Parse(pong, Role::kServer);
  ASSERT_EQ(rp.status, ParseStatus::kOk);
  EXPECT_EQ(rp.header.opcode, static_cast<uint8_t>(Opcode::kPong));
}

TEST(WebSocketRfcExamples, Binary256And64KiB) {
  const Bytes payload256(256, 0xab);
  const Bytes frame256 = Encode(Opcode::kBinary, true, payload256);
  EXPECT_EQ(Bytes(frame256.begin(), frame256.begin() + 4), (Bytes{0x82, 0x7e, 0x01, 0x00}));
  HeaderResult r = Parse(frame256, Role::kClient);
  ASSERT_EQ(r.status, ParseStatus::kOk);
  EXPECT_EQ(r.header.payload_length, 256u);
  EXPECT_EQ(r.header.header_size, 4);

  const Bytes payload64k(65536, 0xcd);
  const Bytes frame64k = Encode(Opcode::kBinary, true, payload64k);
  EXPECT_EQ(Bytes(frame64k.begin(), frame64k.begin() + 10),
            (Bytes{0x82, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00}));
  r = Parse(frame64k, Role::kClient);
  ASSERT_EQ(r.status, ParseStatus::kOk);
  EXPECT_EQ(r.header.payload_length, 65536u);
  EXPECT_EQ(r.header.header_size, 10);
}

// ---- header parsing ----

TEST(WebSocketParse, LengthEncodingBoundaries) {
  struct Case {
    uint64_t length;
    size_t header_size;
  };
  for (const Case& c :
       {Case{0, 2}, Case{125, 2}, Case{126, 4}, Case{65535, 4}, Case{65536, 10}, Case{(uint64_t{1} << 63) - 1, 10}}) {
    EXPECT_EQ(FrameHeaderSize(c.length, false), c.header_size);
    EXPECT_EQ(FrameHeaderSize(c.length, true), c.header_size + 4);
    for (bool masked : {false, true}) {
      Bytes out(kMaxHeaderSize);
      const size_t n = EncodeFrameHeader(Opcode::kBinary, true, c.length,
                                         masked ? std::optional<MaskKey>(kRfcKey) : std::nullopt, out);
      ASSERT_EQ(n, FrameHeaderSize(c.length, masked)) << c.length;
      out.resize(n);
      const HeaderResult r = Parse(out, masked ? Role::kServer : Role::kClient);
      ASSERT_EQ(r.status, ParseStatus::kOk) << c.length;
      EXPECT_EQ(r.header.payload_length, c.length);
      EXPECT_EQ(r.header.header_size, n);
      EXPECT_EQ(r.header.masked, masked);
    }
  }
}

TEST(WebSocketParse, NonMinimalLengthsAccepted) {
  HeaderResult r = Parse({0x82, 0x7e, 0x00, 0x05}, Role::kClient);
  ASSERT_EQ(r.status, ParseStatus::kOk);
  EXPECT_EQ(r.header.payload_length, 5u);
  EXPECT_EQ(r.header.header_size, 4);
  r = Parse({0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0x05}, Role::kClient);
  ASSERT_EQ(r.status, ParseStatus::kOk);
  EXPECT_EQ(r.header.payload_length, 5u);
  EXPECT_EQ(r.header.header_size, 10);
  r = Parse({0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0x01, 0x00}, Role::kClient);
  ASSERT_EQ(r.status, ParseStatus::kOk);
  EXPECT_EQ(r.header.payload_length, 256u);
}

TEST(WebSocketParse, ByteAtATime) {
  // Every frame shape: short, 16-bit and 64-bit lengths, masked and not. Each proper prefix of the header
  // must be kNeedMore; the payload need not be present for kOk.
  for (uint64_t length : {0ull, 5ull, 125ull, 126ull, 300ull, 65535ull, 65536ull, 1ull << 40}) {
    for (bool masked : {false, true}) {
      Bytes header(kMaxHeaderSize);
      header.resize(EncodeFrameHeader(Opcode::kBinary, true, length,
                                      masked ? std::optional<MaskKey>(kRfcKey) : std::nullopt, header));
      ASSERT_FALSE(header.empty());
      const Role role = masked ? Role::kServer : Role::kClient;
      for (size_t n = 0; n < header.size(); ++n) {
        const Bytes prefix(header.begin(), header.begin() + static_cast<ptrdiff_t>(n));
        EXPECT_EQ(Parse(prefix, role).status, ParseStatus::kNeedMore) << length << " " << masked << " " << n;
      }
      const HeaderResult r = Parse(header, role);
      ASSERT_EQ(r.status, ParseStatus::kOk);
      EXPECT_EQ(r.header.payload_length, length);
      EXPECT_EQ(r.header.header_size, header.size());
      if (masked) {
        EXPECT_EQ(r.header.mask_key, kRfcKey);
      }
    }
  }
}

struct ErrorCase {
  const char* name;
  Bytes bytes;
  Role role;
  uint64_t max_payload;
  Error error;
};

TEST(WebSocketParse, EveryErrorAndItsCloseCode) {
  const std::vector<ErrorCase> cases = {
      {"rsv1", {0xc2, 0x80}, Role::kServer, kNoLimit, Error::kReservedBits},
      {"rsv2", {0xa2, 0x80}, Role::kServer, kNoLimit, Error::kReservedBits},
      {"rsv3", {0x92, 0x80}, Role::kServer, kNoLimit, Error::kReservedBits},
      {"rsv_on_client", {0xf2, 0x00}, Role::kClient, kNoLimit, Error::kReservedBits},
      {"op3", {0x83, 0x80}, Role::kServer, kNoLimit, Error::kUnknownOpcode},
      {"op7", {0x87, 0x80}, Role::kServer, kNoLimit, Error::kUnknownOpcode},
      {"opb", {0x8b, 0x80}, Role::kServer, kNoLimit, Error::kUnknownOpcode},
      {"opf", {0x8f, 0x00}, Role::kClient, kNoLimit, Error::kUnknownOpcode},
      {"close_no_fin", {0x08, 0x80}, Role::kServer, kNoLimit, Error::kFragmentedControl},
      {"ping_no_fin", {0x09, 0x80}, Role::kServer, kNoLimit, Error::kFragmentedControl},
      {"pong_no_fin", {0x0a, 0x00}, Role::kClient, kNoLimit, Error::kFragmentedControl},
      {"ping_126", {0x89, 0xfe}, Role::kServer, kNoLimit, Error::kControlTooLong},
      {"close_127", {0x88, 0x7f}, Role::kClient, kNoLimit, Error::kControlTooLong},
      {"length_msb", {0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0}, Role::kClient, kNoLimit, Error::kLengthHighBit},
      {"length_msb_max",
       {0x82, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
       Role::kServer,
       UINT64_MAX,
       Error::kLengthHighBit},
      {"unmasked_to_server", {0x82, 0x00}, Role::kServer, kNoLimit, Error::kUnmasked},
      {"masked_to_client", {0x82, 0x80}, Role::kClient, kNoLimit, Error::kMasked},
      {"too_large_7bit", {0x82, 0x85}, Role::kServer, 4, Error::kFrameTooLarge},
      {"too_large_16bit", {0x82, 0xfe, 0x01, 0x00}, Role::kServer, 255, Error::kFrameTooLarge},
      {"too_large_64bit", {0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0}, Role::kServer, 65536, Error::kFrameTooLarge},
  };
  for (const ErrorCase& c : cases) {
    const HeaderResult r = Parse(c.bytes, c.role, c.max_payload);
    EXPECT_EQ(r.status, ParseStatus::kError) << c.name;
    EXPECT_EQ(r.error, c.error) << c.name << ": " << ErrorName(r.error);
    // An error is decided by the bytes it needs; whatever follows cannot change it.
    Bytes more = Cat(c.bytes, Bytes(20, 0));
    EXPECT_EQ(Parse(more, c.role, c.max_payload).error, c.error) << c.name;
  }
  // At the limit is fine.
  EXPECT_EQ(Parse({0x82, 0x85}, Role::kServer, 5).status, ParseStatus::kNeedMore);
  EXPECT_EQ(Parse({0x82, 0x85, 1, 2, 3, 4}, Role::kServer, 5).status, ParseStatus::kOk);
  EXPECT_EQ(Parse({0x82, 0xfe, 0x01, 0x00, 1, 2, 3, 4}, Role::kServer, 256).status, ParseStatus::kOk);
  // Control frames at the 125-byte limit.
  EXPECT_EQ(Parse({0x89, 0x7d}, Role::kClient).status, ParseStatus::kOk);
}

TEST(WebSocketParse, ErrorsDecidedFromTheFirstTwoBytes) {
  // A violation visible in the first two bytes is reported without waiting for the rest of the header.
  EXPECT_EQ(Parse({0xc2, 0xfe}, Role::kServer).error, Error::kReservedBits);
  EXPECT_EQ(Parse({0x82, 0x7f}, Role::kServer).error, Error::kUnmasked);
  EXPECT_EQ(Parse({0x82}, Role::kServer).status, ParseStatus::kNeedMore);
  EXPECT_EQ(Parse({}, Role::kServer).status, ParseStatus::kNeedMore);
}

TEST(WebSocketErrors, NamesAndCloseCodes) {
  std::set<std::string_view> names;
  for (int i = 0; i <= static_cast<int>(Error::kBadCloseCode); ++i) {
    const auto e = static_cast<Error>(i);
    EXPECT_NE(ErrorName(e), "unknown") << i;
    names.insert(ErrorName(e));
    const CloseCode code = CloseCodeFor(e);
    if (e == Error::kNone) {
      EXPECT_EQ(code, CloseCode::kNormal);
    } else {
      EXPECT_TRUE(IsValidCloseCode(static_cast<uint16_t>(code))) << ErrorName(e);
    }
  }
  EXPECT_EQ(names.size(), static_cast<size_t>(Error::kBadCloseCode) + 1);
  EXPECT_EQ(ErrorName(static_cast<Error>(200)), "unknown");
  EXPECT_EQ(CloseCodeFor(Error::kFrameTooLarge), CloseCode::kMessageTooBig);
  EXPECT_EQ(CloseCodeFor(Error::kMessageTooLarge), CloseCode::kMessageTooBig);
  EXPECT_EQ(CloseCodeFor(Error::kTextNotAccepted), CloseCode::kUnsupportedData);
  EXPECT_EQ(CloseCodeFor(Error::kInvalidUtf8), CloseCode::kInvalidPayload);
  for (Error e : {Error::kReservedBits, Error::kUnknownOpcode, Error::kFragmentedControl, Error::kControlTooLong,
                  Error::kLengthHighBit, Error::kUnmasked, Error::kMasked, Error::kUnexpectedContinuation,
                  Error::kExpectedContinuation, Error::kBadCloseLength, Error::kBadCloseCode}) {
    EXPECT_EQ(CloseCodeFor(e), CloseCode::kProtocolError) << ErrorName(e);
  }
}

TEST(WebSocketOpcodes, KnownAndControl) {
  for (int op = 0; op < 16; ++op) {
    const bool known = op == 0 || op == 1 || op == 2 || op == 8 || op == 9 || op == 10;
    EXPECT_EQ(IsKnownOpcode(static_cast<uint8_t>(op)), known) << op;
    EXPECT_EQ(IsControl(static_cast<uint8_t>(op)), op >= 8) << op;
  }
}

// ---- unmasking ----

void NaiveMask(std::span<uint8_t> data, MaskKey key, uint64_t offset) {
  for (size_t i = 0; i < data.size(); ++i) {
    data[i] ^= key[(offset + i) % 4];
  }
}

TEST(WebSocketUnmask, MatchesNaiveForEveryLengthAndOffset) {
  const MaskKey key = {0x01, 0x80, 0xfe, 0x5a};
  for (size_t length = 0; length <= 70; ++length) {
    for (uint64_t offset = 0; offset < 9; ++offset) {
      Bytes data(length);
      for (size_t i = 0; i < length; ++i) {
        data[i] = static_cast<uint8_t>(i * 37 + 11);
      }
      Bytes expected = data;
      NaiveMask(expected, key, offset);
      Unmask(data, key, offset);
      EXPECT_EQ(data, expected) << length << " " << offset;
    }
  }
}

TEST(WebSocketUnmask, PiecewiseEqualsWholeAndIsAnInvolution) {
  Bytes original(1031);
  for (size_t i = 0; i < original.size(); ++i) {
    original[i] = static_cast<uint8_t>(i ^ (i >> 3));
  }
  Bytes whole = original;
  Unmask(whole, kRfcKey);
  for (size_t split : {size_t{0}, size_t{1}, size_t{3}, size_t{7}, size_t{8}, size_t{9}, size_t{513}, size_t{1030}}) {
    Bytes pieces = original;
    std::span<uint8_t> s(pieces);
    Unmask(s.first(split), kRfcKey, 0);
    Unmask(s.subspan(split), kRfcKey, split);
    EXPECT_EQ(pieces, whole) << split;
  }
  Unmask(whole, kRfcKey);
  EXPECT_EQ(whole, original);
  Unmask({}, kRfcKey, 3);  // empty is fine
}

TEST(WebSocketUnmask, UnalignedStart) {
  Bytes buf(64 + 3, 0x55);
  std::span<uint8_t> unaligned = std::span(buf).subspan(3);
  Bytes expected(unaligned.begin(), unaligned.end());
  NaiveMask(expected, kRfcKey, 2);
  Unmask(unaligned, kRfcKey, 2);
  EXPECT_EQ(Bytes(unaligned.begin(), unaligned.end()), expected);
}

// ---- encoding ----

TEST(WebSocketEncode, RoundTripsThroughTheParser) {
  const MaskKey key = {0xde, 0xad, 0xbe, 0xef};
  for (size_t length :
       {size_t{0}, size_t{1}, size_t{125}, size_t{126}, size_t{1000}, size_t{65535}, size_t{65536}, size_t{70000}}) {
    Bytes payload(length);
    for (size_t i = 0; i < length; ++i) {
      payload[i] = static_cast<uint8_t>(i * 7);
    }
    for (Opcode op : {Opcode::kBinary, Opcode::kText, Opcode::kContinuation, Opcode::kPing}) {
      if (IsControl(static_cast<uint8_t>(op)) && length > kMaxControlPayload) {
        continue;
      }
      for (bool fin : {true, false}) {
        if (IsControl(static_cast<uint8_t>(op)) && !fin) {
          continue;
        }
        for (bool masked : {false, true}) {
          Bytes frame = masked ? Encode(op, fin, payload, key) : Encode(op, fin, payload);
          const HeaderResult r = Parse(frame, masked ? Role::kServer : Role::kClient);
          ASSERT_EQ(r.status, ParseStatus::kOk);
          EXPECT_EQ(r.header.fin, fin);
          EXPECT_EQ(r.header.opcode, static_cast<uint8_t>(op));
          EXPECT_EQ(r.header.payload_length, length);
          ASSERT_EQ(frame.size(), r.header.header_size + length);
          std::span<uint8_t> body = std::span(frame).subspan(r.header.header_size);
          if (masked) {
            EXPECT_EQ(r.header.mask_key, key);
            Unmask(body, r.header.mask_key);
          }
          EXPECT_TRUE(std::ranges::equal(body, payload));
        }
      }
    }
  }
}

TEST(WebSocketEncode, RefusesSmallBuffersAndInvalidFrames) {
  const Bytes payload(300, 1);
  const size_t size = FrameHeaderSize(payload.size(), true) + payload.size();
  Bytes out(size);
  for (size_t n = 0; n < size; ++n) {
    EXPECT_EQ(EncodeMaskedFrame(Opcode::kBinary, true, payload, kRfcKey, std::span(out).first(n)), 0u) << n;
  }
  EXPECT_EQ(EncodeMaskedFrame(Opcode::kBinary, true, payload, kRfcKey, out), size);
  for (size_t n = 0; n < 4; ++n) {
    EXPECT_EQ(EncodeFrameHeader(Opcode::kBinary, true, 300, std::nullopt, std::span(out).first(n)), 0u);
  }

  Bytes big(kMaxHeaderSize + 200);
  EXPECT_EQ(EncodeFrame(Opcode::kPing, false, {}, big), 0u);  // control without fin
  EXPECT_EQ(EncodeFrame(Opcode::kClose, true, Bytes(126), big), 0u);
  EXPECT_EQ(EncodeFrame(Opcode::kPong, true, Bytes(125), big), 127u);
  EXPECT_EQ(EncodeFrame(static_cast<Opcode>(3), true, {}, big), 0u);
  EXPECT_EQ(EncodeFrame(static_cast<Opcode>(0xb), true, {}, big), 0u);
  EXPECT_EQ(EncodeFrameHeader(Opcode::kBinary, true, uint64_t{1} << 63, std::nullopt, big), 0u);
}

TEST(WebSocketEncode, HeaderOnlyLeavesRoomForAPayloadWrittenInPlace) {
  // The send path can write the header in front of a payload already in the buffer.
  Bytes buf(FrameHeaderSize(5, false) + 5);
  const size_t h = EncodeFrameHeader(Opcode::kBinary, true, 5, std::nullopt, buf);
  ASSERT_EQ(h, 2u);
  std::copy_n("hello", 5, buf.begin() + 2);
  EXPECT_EQ(buf, (Bytes{0x82, 0x05, 'h', 'e', 'l', 'l', 'o'}));
}

// ---- close frames ----

TEST(WebSocketClose, EncodeExactBytes) {
  Bytes out(200);
  size_t n = EncodeCloseFrame(1000, "bye", std::nullopt, out);
  EXPECT_EQ(Bytes(out.begin(), out.begin() + static_cast<ptrdiff_t>(n)),
            (Bytes{0x88, 0x05, 0x03, 0xe8, 'b', 'y', 'e'}));
  EXPECT_EQ(n, CloseFrameSize(1000, "bye", false));

  n = EncodeCloseFrame(static_cast<uint16_t>(CloseCode::kNoStatus), "", std::nullopt, out);
  EXPECT_EQ(Bytes(out.begin(), out.begin() + static_cast<ptrdiff_t>(n)), (Bytes{0x88, 0x00}));
  EXPECT_EQ(n, CloseFrameSize(1005, "", false));

  n = EncodeCloseFrame(1002, "", kRfcKey, out);
  EXPECT_EQ(n, CloseFrameSize(1002, "", true));
  ASSERT_EQ(n, 8u);
  Bytes payload(out.begin() + 6, out.begin() + 8);
  Unmask(payload, kRfcKey);
  EXPECT_EQ(payload, (Bytes{0x03, 0xea}));
}

TEST(WebSocketClose, EncodeRefusesInvalidArguments) {
  Bytes out(200);
  const std::string reason123(kMaxCloseReason, 'r');
  EXPECT_EQ(EncodeCloseFrame(1000, reason123, std::nullopt, out), 2u + 125u);
  EXPECT_EQ(EncodeCloseFrame(1000, reason123 + "r", std::nullopt, out), 0u);
  EXPECT_EQ(EncodeCloseFrame(1005, "x", std::nullopt, out), 0u);  // no status means no reason either
  EXPECT_EQ(EncodeCloseFrame(1006, "", std::nullopt, out), 0u);
  EXPECT_EQ(EncodeCloseFrame(999, "", std::nullopt, out), 0u);
  EXPECT_EQ(EncodeCloseFrame(5000, "", std::nullopt, out), 0u);
  EXPECT_EQ(EncodeCloseFrame(1000, "\xff", std::nullopt, out), 0u);
  EXPECT_EQ(EncodeCloseFrame(1000, "bye", std::nullopt, std::span(out).first(6)), 0u);
  EXPECT_EQ(EncodeCloseFrame(4000, "\xce\xba", kRfcKey, out), 10u);
}

TEST(WebSocketClose, ParsePayload) {
  ClosePayload close;
  ASSERT_EQ(ParseClosePayload({}, &close), Error::kNone);
  EXPECT_EQ(close.code, 1005);
  EXPECT_EQ(close.reason, "");

  const Bytes ok = {0x03, 0xe9, 'g', 'o', 'n', 'e'};
  ASSERT_EQ(ParseClosePayload(ok, &close), Error::kNone);
  EXPECT_EQ(close.code, 1001);
  EXPECT_EQ(close.reason, "gone");

  close = {};
  EXPECT_EQ(ParseClosePayload(Bytes{0x03}, &close), Error::kBadCloseLength);
  EXPECT_EQ(ParseClosePayload(Bytes{0x03, 0xed}, &close), Error::kBadCloseCode);  // 1005
  EXPECT_EQ(ParseClosePayload(Bytes{0x00, 0x00}, &close), Error::kBadCloseCode);
  EXPECT_EQ(ParseClosePayload(Bytes{0x03, 0xe8, 0xc0, 0x80}, &close), Error::kInvalidUtf8);
  EXPECT_EQ(ParseClosePayload(Bytes{0x03, 0xe8, 0xe2, 0x82}, &close), Error::kInvalidUtf8);  // truncated
  EXPECT_EQ(close.code, 1005);  // untouched by the failures
}

TEST(WebSocketClose, CodeTable) {
  // RFC 6455 section 7.4: the codes a close frame may carry.
  for (uint32_t code = 0; code <= 65535; ++code) {
    const bool valid =
        (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) || (code >= 3000 && code <= 4999);
    EXPECT_EQ(IsValidCloseCode(static_cast<uint16_t>(code)), valid) << code;
    const Bytes payload = {static_cast<uint8_t>(code >> 8), static_cast<uint8_t>(code)};
    ClosePayload close;
    EXPECT_EQ(ParseClosePayload(payload, &close) == Error::kNone, valid) << code;
  }
  for (uint16_t code : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999}) {
    EXPECT_TRUE(IsValidCloseCode(code)) << code;
  }
  for (uint16_t code : {0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535}) {
    EXPECT_FALSE(IsValidCloseCode(code)) << code;
  }
}

// ---- UTF-8 ----

struct Utf8Case {
  const char* name;
  std::string bytes;
  bool valid;
};

std::vector<Utf8Case> Utf8Table() {
  return {
      {"empty", "", true},
      {"ascii", "Hello, world", true},
      {"nul", std::string("a\0b", 3), true},
      {"greek", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", true},
      {"u0080", "\xc2\x80", true},
      {"u07ff", "\xdf\xbf", true},
      {"u0800", "\xe0\xa0\x80", true},
      {"ud7ff", "\xed\x9f\xbf", true},
      {"ue000", "\xee\x80\x80", true},
      {"ufffd", "\xef\xbf\xbd", true},
      {"uffff", "\xef\xbf\xbf", true},
      {"u10000", "\xf0\x90\x80\x80", true},
      {"u10ffff", "\xf4\x8f\xbf\xbf", true},
      {"emoji", "\xf0\x9f\x98\x80", true},
      {"lone_continuation_80", "\x80", false},
      {"lone_continuation_bf", "\xbf", false},
      {"continuation_after_ascii", "a\x80", false},
      {"overlong_nul_c0", "\xc0\x80", false},
      {"overlong_c1", "\xc1\xbf", false},
      {"overlong_3byte_e0_80", "\xe0\x80\x80", false},
      {"overlong_3byte_e0_9f", "\xe0\x9f\xbf", false},
      {"overlong_4byte_f0_80", "\xf0\x80\x80\x80", false},
      {"overlong_4byte_f0_8f", "\xf0\x8f\xbf\xbf", false},
      {"surrogate_d800", "\xed\xa0\x80", false},
      {"surrogate_dbff", "\xed\xaf\xbf", false},
      {"surrogate_dc00", "\xed\xb0\x80", false},
      {"surrogate_dfff", "\xed\xbf\xbf", false},
      {"surrogate_pair", "\xed\xa0\x80\xed\xb0\x80", false},
      {"above_10ffff_f4_90", "\xf4\x90\x80\x80", false},
      {"lead_f5", "\xf5\x80\x80\x80", false},
      {"lead_f7", "\xf7\xbf\xbf\xbf", false},
      {"lead_f8_5byte", "\xf8\x88\x80\x80\x80", false},
      {"lead_fe", "\xfe", false},
      {"lead_ff", "\xff", false},
      {"truncated_2", "\xc2", false},
      {"truncated_3_of_1", "\xe2", false},
      {"truncated_3_of_2", "\xe2\x82", false},
      {"truncated_4_of_3", "\xf0\x9f\x98", false},
      {"truncated_then_ascii", "\xc2\x41", false},
      {"truncated_3_then_ascii", "\xe0\xa0\x41", false},
      {"too_many_continuations", "\xc2\x80\x80", false},
      {"valid_then_invalid",
       "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
       "edited",
       false},
  };
}

bool FeedInPieces(std::string_view text, size_t piece) {
  Utf8Validator v;
  for (size_t i = 0; i < text.size(); i += piece) {
    const std::string_view s = text.substr(i, piece);
    if (!v.Feed(std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size()))) {
      EXPECT_TRUE(v.Failed());
      EXPECT_FALSE(v.Complete());
      return false;
    }
  }
  return v.Complete();
}

TEST(Utf8Validator, Table) {
  for (const Utf8Case& c : Utf8Table()) {
    EXPECT_EQ(IsValidUtf8(c.bytes), c.valid) << c.name;
    // Around 13 bytes of ASCII on each side, so the word-at-a-time fast path runs into and out of it.
    const std::string padded = "0123456789abc" + c.bytes + "0123456789abc";
    EXPECT_EQ(IsValidUtf8(padded), c.valid) << c.name << " padded";
    for (size_t piece : {1, 2, 3, 5, 8}) {
      EXPECT_EQ(FeedInPieces(c.bytes, piece), c.valid) << c.name << " pieces of " << piece;
      EXPECT_EQ(FeedInPieces(padded, piece), c.valid) << c.name << " padded, pieces of " << piece;
    }
    // Every split point, to cross every possible character boundary.
    for (size_t split = 0; split <= padded.size(); ++split) {
      Utf8Validator v;
      const auto* p = reinterpret_cast<const uint8_t*>(padded.data());
      const bool ok = v.Feed({p, split}) && v.Feed({p + split, padded.size() - split}) && v.Complete();
      EXPECT_EQ(ok, c.valid) << c.name << " split " << split;
    }
  }
}

TEST(Utf8Validator, FailsFastAndLatches) {
  Utf8Validator v;
  const Bytes lead = {0xed};
  const Bytes surrogate_second = {0xa0};
  EXPECT_TRUE(v.Feed(lead));
  EXPECT_FALSE(v.Complete());
  EXPECT_FALSE(v.Feed(surrogate_second));
  EXPECT_TRUE(v.Failed());
  EXPECT_FALSE(v.Feed(B("plain ascii")));  // stays failed
  v.Reset();
  EXPECT_TRUE(v.Feed(B("plain ascii")));
  EXPECT_TRUE(v.Complete());
}

TEST(Utf8Validator, EveryTwoByteSequence) {
  // Exhaustive over 2-byte inputs against the definition: a lead C2..DF then one continuation, or ASCII.
  for (int a = 0; a < 256; ++a) {
    for (int b = 0; b < 256; ++b) {
      const Bytes s = {static_cast<uint8_t>(a), static_cast<uint8_t>(b)};
      const bool cont_b = b >= 0x80 && b <= 0xbf;
      const bool expected = (a < 0x80 && b < 0x80) || (a >= 0xc2 && a <= 0xdf && cont_b);
      ASSERT_EQ(IsValidUtf8(s), expected) << a << " " << b;
    }
  }
}

// ---- message assembly ----

FrameHeader Header(Opcode op, bool fin, size_t length) {
  return FrameHeader{.fin = fin, .opcode = static_cast<uint8_t>(op), .payload_length = length};
}

using Action = MessageAssembler::Action;

TEST(MessageAssembler, UnfragmentedBinary) {
  MessageAssembler a(100, false);
  const Bytes payload(100, 7);
  EXPECT_EQ(a.OnFrame(Header(Opcode::kBinary, true, 100), payload), Action::kMessage);
  EXPECT_EQ(a.message_opcode(), Opcode::kBinary);
  EXPECT_EQ(a.message_size(), 100u);
  EXPECT_FALSE(a.InMessage());
  EXPECT_EQ(a.OnFrame(Header(Opcode::kBinary, true, 0), {}), Action::kMessage);  // empty message
}

TEST(MessageAssembler, FragmentsWithControlFramesInBetween) {
  MessageAssembler a(1000, false);
  EXPECT_EQ(a.OnFrame(Header(Opcode::kBinary, false, 3), B("abc")), Action::kFragment);
  EXPECT_TRUE(a.InMessage());
  EXPECT_EQ(a.OnFrame(Header(Opcode::kPing, true, 2), B("hi")), Action::kControl);
  EXPECT_EQ(a.OnFrame(Header(Opcode::kPong, true, 0), {}), Action::kControl);
  EXPECT_TRUE(a.InMessage());
  EXPECT_EQ(a.OnFrame(Header(Opcode::kContinuation, false, 0), {}), Action::kFragment);
  EXPECT_EQ(a.OnFrame(Header(Opcode::kContinuation, false, 2), B("de")), Action::kFragment);
  const Bytes close = {0x03, 0xe8};
  EXPECT_EQ(a.OnFrame(Header(Opcode::kClose, true, 2), close), Action::kControl);
  EXPECT_EQ(a.OnFrame(Header(Opcode::kContinuation, true, 1), B("f")), Action::kFinalFragment);
  EXPECT_EQ(a.message_size(), 6u);
  EXPECT_EQ(a.message_opcode(), Opcode::kBinary);
  EXPECT_FALSE(a.InMessage());
  // And the next message starts cleanly.
  EXPECT_EQ(a.OnFrame(Header(Opcode::kBinary, true, 1), B("g")), Action::kMessage);
  EXPECT_EQ(a.message_size(), 1u);
}

TEST(MessageAssembler, SequenceErrors) {
  {
    MessageAssembler a(1000, false);
    EXPECT_EQ(a.OnFrame(Header(Opcode::kContinuation, true, 1), B("x")), Action::kError);
    EXPECT_EQ(a.error(), Error::kUnexpectedContinuation);
  }
  {
    MessageAssembler a(1000, true);
    EXPECT_EQ(a.OnFrame(Header(Opcode::kBinary, false, 1), B("x")), Action::kFragment);
    EXPECT_EQ(a.OnFrame(Header(Opcode::kText, true, 1), B("y")), Action::kError);
    EXPECT_EQ(a.error(), Error::kExpectedContinuation);
    // Failed for good: even a valid frame is refused now.
    EXPECT_EQ(a.OnFrame(Header(Opcode::kPing, true, 0), {}), Action::kError);
    EXPECT_EQ(a.Precheck(Header(Opcode::kBinary, true, 0)), Error::kExpectedContinuation);
    a.Reset();
    EXPECT_EQ(a.OnFrame(Header(Opcode::kText, true, 1), B("y")), Action::kMessage);
  }
  {
    MessageAssembler a(1000, false);
    EXPECT_EQ(a.OnFrame(Header(Opcode::kBinary, false, 1), B("x")), Action::kFragment);
    EXPECT_EQ(a.OnFrame(Header(Opcode::kBinary, false, 1), B("y")), Action::kError);
    EXPECT_EQ(a.error(), Error::kExpectedContinuation);
  }
  {
    // Header rules are enforced here too, for headers that did not come from ParseFrameHeader.
    MessageAssembler a(1000, false);
    FrameHeader h = Header(Opcode::kBinary, true, 0);
    h.rsv = 4;
    EXPECT_EQ(a.Precheck(h), Error::kReservedBits);
    EXPECT_EQ(a.Precheck(Header(static_cast<Opcode>(5), true, 0)), Error::kUnknownOpcode);
    EXPECT_EQ(a.Precheck(Header(Opcode::kPing, false, 0)), Error::kFragmentedControl);
    EXPECT_EQ(a.Precheck(Header(Opcode::kPing, true, 126)), Error::kControlTooLong);
    EXPECT_EQ(a.error(), Error::kNone);  // Precheck never changes state
  }
}

TEST(MessageAssembler, SizeLimit) {
  {
    MessageAssembler a(10, false);
    EXPECT_EQ(a.Precheck(Header(Opcode::kBinary, true, 11)), Error::kMessageTooLarge);
    EXPECT_EQ(a.Precheck(Header(Opcode::kBinary, true, 10)), Error::kNone);
    EXPECT_EQ(a.OnFrame(Header(Opcode::kBinary, true, 10), Bytes(10)), Action::kMessage);
    EXPECT_EQ(a.OnFrame(Header(Opcode::kBinary, true, 11), Bytes(11)), Action::kError);
    EXPECT_EQ(a.error(), Error::kMessageTooLarge);
    EXPECT_EQ(CloseCodeFor(a.error()), CloseCode::kMessageTooBig);
  }
  {
    MessageAssembler a(10, false);
    EXPECT_EQ(a.OnFrame(Header(Opcode::kBinary, false, 6), Bytes(6)), Action::kFragment);
    EXPECT_EQ(a.Precheck(Header(Opcode::kContinuation, true, 5)), Error::kMessageTooLarge);
    EXPECT_EQ(a.Precheck(Header(Opcode::kContinuation, true, UINT64_MAX)), Error::kMessageTooLarge);
    EXPECT_EQ(a.OnFrame(Header(Opcode::kContinuation, false, 4), Bytes(4)), Action::kFragment);
    EXPECT_EQ(a.OnFrame(Header(Opcode::kContinuation, true, 0), {}), Action::kFinalFragment);
    EXPECT_EQ(a.message_size(), 10u);
  }
  {
    // Control frames do not count towards the message.
    MessageAssembler a(10, false);
    EXPECT_EQ(a.OnFrame(Header(Opcode::kBinary, false, 10), Bytes(10)), Action::kFragment);
    EXPECT_EQ(a.OnFrame(Header(Opcode::kPing, true, 100), Bytes(100)), Action::kControl);
    EXPECT_EQ(a.OnFrame(Header(Opcode::kContinuation, false, 1), Bytes(1)), Action::kError);
    EXPECT_EQ(a.error(), Error::kMessageTooLarge);
  }
  {
    // The payload handed over counts, whatever the header claims.
    MessageAssembler a(10, false);
    EXPECT_EQ(a.OnFrame(Header(Opcode::kBinary, true, 1), Bytes(11)), Action::kError);
    EXPECT_EQ(a.error(), Error::kMessageTooLarge);
  }
}

TEST(MessageAssembler, TextPolicyAndUtf8) {
  {
    MessageAssembler a(100, /*accept_text=*/false);
    EXPECT_EQ(a.OnFrame(Header(Opcode::kText, true, 2), B("hi")), Action::kError);
    EXPECT_EQ(a.error(), Error::kTextNotAccepted);
    EXPECT_EQ(CloseCodeFor(a.error()), CloseCode::kUnsupportedData);
  }
  {
    // A four-byte character split 1 | 2 | 1 across fragments is fine.
    MessageAssembler a(100, true);
    EXPECT_EQ(a.OnFrame(Header(Opcode::kText, false, 2), B("a\xf0")), Action::kFragment);
    EXPECT_EQ(a.OnFrame(Header(Opcode::kContinuation, false, 2), B("\x9f\x98")), Action::kFragment);
    EXPECT_EQ(a.OnFrame(Header(Opcode::kContinuation, true, 2), B("\x80z")), Action::kFinalFragment);
    EXPECT_EQ(a.message_opcode(), Opcode::kText);
  }
  {
    // Invalid bytes fail on the fragment that holds them, before the message ends.
    MessageAssembler a(100, true);
    EXPECT_EQ(a.OnFrame(Header(Opcode::kText, false, 2), B("a\xed")), Action::kFragment);
    EXPECT_EQ(a.OnFrame(Header(Opcode::kContinuation, false, 2), B("\xa0\x80")), Action::kError);
    EXPECT_EQ(a.error(), Error::kInvalidUtf8);
    EXPECT_EQ(CloseCodeFor(a.error()), CloseCode::kInvalidPayload);
  }
  {
    // A message may not end inside a character.
    MessageAssembler a(100, true);
    EXPECT_EQ(a.OnFrame(Header(Opcode::kText, false, 1), B("\xe2")), Action::kFragment);
    EXPECT_EQ(a.OnFrame(Header(Opcode::kContinuation, true, 1), B("\x82")), Action::kError);
    EXPECT_EQ(a.error(), Error::kInvalidUtf8);
  }
  {
    MessageAssembler a(100, true);
    EXPECT_EQ(a.OnFrame(Header(Opcode::kText, true, 1), B("\xc2")), Action::kError);
    EXPECT_EQ(a.error(), Error::kInvalidUtf8);
  }
  {
    // Binary messages are not UTF-8 checked, and the UTF-8 state does not leak between messages.
    MessageAssembler a(100, true);
    EXPECT_EQ(a.OnFrame(Header(Opcode::kText, false, 1), B("\xe2")), Action::kFragment);
    EXPECT_EQ(a.OnFrame(Header(Opcode::kContinuation, true, 2), B("\x82\xac")), Action::kFinalFragment);
    EXPECT_EQ(a.OnFrame(Header(Opcode::kBinary, true, 2), B("\xff\xfe")), Action::kMessage);
    EXPECT_EQ(a.OnFrame(Header(Opcode::kText, true, 3), B("abc")), Action::kMessage);
  }
}

TEST(MessageAssembler, ClosePayloadChecked) {
  struct Case {
    Bytes payload;
    Error error;
  };
  for (const Case& c : {Case{{}, Error::kNone}, Case{{0x03, 0xe8}, Error::kNone}, Case{{0x03}, Error::kBadCloseLength},
                        Case{{0x03, 0xee}, Error::kBadCloseCode}, Case{{0x0f, 0xa0, 0xff}, Error::kInvalidUtf8}}) {
    MessageAssembler a(100, false);
    const Action action = a.OnFrame(Header(Opcode::kClose, true, c.payload.size()), c.payload);
    EXPECT_EQ(action, c.error == Error::kNone ? Action::kControl : Action::kError);
    EXPECT_EQ(a.error(), c.error);
  }
}

TEST(MessageAssembler, DrivenByTheParserOverAStream) {
  // A client's stream: a fragmented binary message with a ping in the middle, then a close, all masked,
  // parsed and unmasked the way the gateway will, byte-at-a-time arrival included.
  const MaskKey key = {1, 2, 3, 4};
  Bytes stream;
  auto add = [&](Opcode op, bool fin, const Bytes& payload) { stream = Cat(stream, Encode(op, fin, payload, key)); };
  add(Opcode::kBinary, false, B("frame-"));
  add(Opcode::kPing, true, B("beat"));
  add(Opcode::kContinuation, true, B("one"));
  add(Opcode::kBinary, true, Bytes(300, 9));
  Bytes close(8);
  close.resize(EncodeCloseFrame(1000, "", key, close));
  stream = Cat(stream, close);

  MessageAssembler a(1024, false);
  std::vector<std::string> messages;
  std::string buffer;
  size_t controls = 0;
  size_t pos = 0;
  for (size_t available = 0; available <= stream.size(); ++available) {
    for (;;) {
      std::span<uint8_t> in = std::span(stream).subspan(pos, available - pos);
      const HeaderResult r = ParseFrameHeader(in, Role::kServer, 1024);
      ASSERT_NE(r.status, ParseStatus::kError);
      if (r.status == ParseStatus::kNeedMore || in.size() < r.header.header_size + r.header.payload_length) {
        break;
      }
      ASSERT_EQ(a.Precheck(r.header), Error::kNone);
      std::span<uint8_t> payload = in.subspan(r.header.header_size, r.header.payload_length);
      Unmask(payload, r.header.mask_key);
      switch (a.OnFrame(r.header, payload)) {
        case Action::kControl:
          ++controls;
          break;
        case Action::kMessage:
          messages.emplace_back(Text(payload));
          break;
        case Action::kFragment:
          buffer += Text(payload);
          break;
        case Action::kFinalFragment:
          buffer += Text(payload);
          messages.push_back(buffer);
          buffer.clear();
          break;
        case Action::kError:
          FAIL() << ErrorName(a.error());
      }
      pos += r.header.header_size + r.header.payload_length;
    }
  }
  EXPECT_EQ(pos, stream.size());
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0], "frame-one");
  EXPECT_EQ(messages[1], std::string(300, '\x09'));
  EXPECT_EQ(controls, 2u);
}

}  // namespace
}  // namespace longlink::protocol::ws
