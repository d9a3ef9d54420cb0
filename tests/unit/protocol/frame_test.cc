#include "protocol/frame.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace longlink::protocol {
namespace {

using ByteVec = std::vector<uint8_t>;

bool SameBytes(std::span<const uint8_t> a, std::span<const uint8_t> b) { return std::ranges::equal(a, b); }

// Backing storage for the views in the sample bodies; static so the views outlive every test.
const std::string& MaxString() {
  static const std::string s(std::numeric_limits<uint16_t>::max(), 'm');
  return s;
}
const ByteVec& LargePayload() {
  static const ByteVec p = [] {
    ByteVec v(1 << 20);
    for (size_t i = 0; i < v.size(); ++i) {
      v[i] = static_cast<uint8_t>(i * 131 + 7);
    }
    return v;
  }();
  return p;
}
// Non-ASCII and NUL bytes: strings are opaque bytes on the wire, not C strings.
constexpr std::string_view kOddString("a\0\xff\x80z", 5);
const ByteVec& SmallPayload() {
  static const ByteVec p = {0x00, 0x01, 0xfe, 0xff};
  return p;
}

// ---- field-wise equality (bodies hold views, so they have no operator==) ----

bool Same(const LoginBody& a, const LoginBody& b) {
  return a.user_id == b.user_id && a.device_id == b.device_id && a.platform == b.platform &&
         a.token == b.token;
}
bool Same(const LoginAckBody& a, const LoginAckBody& b) {
  return a.status == b.status && a.heartbeat_interval_ms == b.heartbeat_interval_ms &&
         a.heartbeat_timeout_ms == b.heartbeat_timeout_ms && a.session_id == b.session_id &&
         a.server_time_ms == b.server_time_ms && a.message == b.message;
}
bool Same(const PingBody& a, const PingBody& b) { return a.timestamp == b.timestamp; }
bool Same(const PongBody& a, const PongBody& b) { return a.timestamp == b.timestamp; }
bool Same(const SendBody& a, const SendBody& b) {
  return a.target_kind == b.target_kind && a.target_id == b.target_id && a.client_msg_id == b.client_msg_id &&
         SameBytes(a.payload, b.payload);
}
bool Same(const SendAckBody& a, const SendAckBody& b) {
  return a.status == b.status && a.client_msg_id == b.client_msg_id && a.server_msg_id == b.server_msg_id &&
         a.server_time_ms == b.server_time_ms;
}
bool Same(const PushBody& a, const PushBody& b) {
  return a.seq == b.seq && a.server_msg_id == b.server_msg_id && a.from_user == b.from_user &&
         a.from_device == b.from_device && a.conv_kind == b.conv_kind && a.conv_id == b.conv_id &&
         a.client_msg_id == b.client_msg_id && a.server_time_ms == b.server_time_ms &&
         SameBytes(a.payload, b.payload);
}
bool Same(const PushAckBody& a, const PushAckBody& b) { return a.seq == b.seq; }
bool Same(const SyncBody& a, const SyncBody& b) { return a.after_seq == b.after_seq && a.limit == b.limit; }
bool Same(const SyncDoneBody& a, const SyncDoneBody& b) {
  return a.max_seq == b.max_seq && a.has_more == b.has_more;
}
bool Same(const KickBody& a, const KickBody& b) { return a.reason == b.reason && a.message == b.message; }
bool Same(const GoawayBody& a, const GoawayBody& b) {
  return a.reconnect_delay_ms == b.reconnect_delay_ms && a.reason == b.reason;
}
bool Same(const LogoutBody&, const LogoutBody&) { return true; }
bool Same(const ErrorBody& a, const ErrorBody& b) { return a.code == b.code && a.message == b.message; }
bool Same(const GroupCreateBody& a, const GroupCreateBody& b) { return a.group_id == b.group_id; }
bool Same(const GroupJoinBody& a, const GroupJoinBody& b) { return a.group_id == b.group_id; }
bool Same(const GroupLeaveBody& a, const GroupLeaveBody& b) { return a.group_id == b.group_id; }
bool Same(const GroupMembersBody& a, const GroupMembersBody& b) {
  return a.group_id == b.group_id && a.after_user == b.after_user;
}
bool Same(const GroupReplyBody& a, const GroupReplyBody& b) {
  return a.status == b.status && a.group_id == b.group_id && a.has_more == b.has_more &&
         SameBytes(a.members, b.members);
}
bool Same(const PresenceSubscribeBody& a, const PresenceSubscribeBody& b) {
  return a.subscribe == b.subscribe && SameBytes(a.user_ids, b.user_ids);
}
bool Same(const PresenceBody& a, const PresenceBody& b) {
  return a.user_id == b.user_id && a.online == b.online && a.devices == b.devices && a.time_ms == b.time_ms;
}

// ---- sample bodies: typical values, extremes of every integer, and empty and maximal variable fields ----

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();
constexpr uint32_t kU32Max = std::numeric_limits<uint32_t>::max();
constexpr uint16_t kU16Max = std::numeric_limits<uint16_t>::max();

template <typename B>
std::vector<B> Samples();

template <>
std::vector<LoginBody> Samples<LoginBody>() {
  return {
      {.user_id = 1001, .device_id = 7, .platform = 2, .token = "v1.abc.def"},
      {.user_id = 0, .device_id = 0, .platform = 0, .token = ""},
      {.user_id = kU64Max, .device_id = kU32Max, .platform = 0xff, .token = MaxString()},
      {.user_id = 5, .device_id = 1, .platform = 4, .token = kOddString},
  };
}
template <>
std::vector<LoginAckBody> Samples<LoginAckBody>() {
  return {
      {.status = 0,
       .heartbeat_interval_ms = 30000,
       .heartbeat_timeout_ms = 90000,
       .session_id = 77,
       .server_time_ms = 1700000000000,
       .message = "welcome"},
      {},
      {.status = kU16Max,
       .heartbeat_interval_ms = kU32Max,
       .heartbeat_timeout_ms = kU32Max,
       .session_id = kU64Max,
       .server_time_ms = kU64Max,
       .message = MaxString()},
  };
}
template <>
std::vector<PingBody> Samples<PingBody>() {
  return {{.timestamp = 1700000000123}, {.timestamp = 0}, {.timestamp = kU64Max}};
}
template <>
std::vector<PongBody> Samples<PongBody>() {
  return {{.timestamp = 1700000000123}, {.timestamp = 0}, {.timestamp = kU64Max}};
}
template <>
std::vector<SendBody> Samples<SendBody>() {
  return {
      {.target_kind = 0, .target_id = 2002, .client_msg_id = 9, .payload = SmallPayload()},
      {.target_kind = 1, .target_id = 0, .client_msg_id = 0, .payload = {}},
      {.target_kind = 0xff, .target_id = kU64Max, .client_msg_id = kU64Max, .payload = LargePayload()},
  };
}
template <>
std::vector<SendAckBody> Samples<SendAckBody>() {
  return {
      {.status = 0, .client_msg_id = 9, .server_msg_id = 123456, .server_time_ms = 1700000000000},
      {},
      {.status = kU16Max, .client_msg_id = kU64Max, .server_msg_id = kU64Max, .server_time_ms = kU64Max},
  };
}
template <>
std::vector<PushBody> Samples<PushBody>() {
  return {
      {.seq = 3,
       .server_msg_id = 123456,
       .from_user = 1001,
       .from_device = 7,
       .conv_kind = 0,
       .conv_id = 1001,
       .client_msg_id = 9,
       .server_time_ms = 1700000000000,
       .payload = SmallPayload()},
      {},
      {.seq = kU64Max,
       .server_msg_id = kU64Max,
       .from_user = kU64Max,
       .from_device = kU32Max,
       .conv_kind = 0xff,
       .conv_id = kU64Max,
       .client_msg_id = kU64Max,
       .server_time_ms = kU64Max,
       .payload = LargePayload()},
  };
}
template <>
std::vector<PushAckBody> Samples<PushAckBody>() {
  return {{.seq = 3}, {.seq = 0}, {.seq = kU64Max}};
}
template <>
std::vector<SyncBody> Samples<SyncBody>() {
  return {{.after_seq = 3, .limit = 100}, {}, {.after_seq = kU64Max, .limit = kU32Max}};
}
template <>
std::vector<SyncDoneBody> Samples<SyncDoneBody>() {
  return {{.max_seq = 103, .has_more = 1}, {}, {.max_seq = kU64Max, .has_more = 0xff}};
}
template <>
std::vector<KickBody> Samples<KickBody>() {
  return {
      {.reason = static_cast<uint16_t>(KickReason::kDuplicateDevice), .message = "logged in elsewhere"},
      {.reason = 0, .message = ""},
      {.reason = kU16Max, .message = MaxString()},
  };
}
template <>
std::vector<GoawayBody> Samples<GoawayBody>() {
  return {
      {.reconnect_delay_ms = 5000, .reason = "drain"},
      {.reconnect_delay_ms = 0, .reason = ""},
      {.reconnect_delay_ms = kU32Max, .reason = MaxString()},
  };
}
template <>
std::vector<LogoutBody> Samples<LogoutBody>() {
  return {{}};
}
template <>
std::vector<ErrorBody> Samples<ErrorBody>() {
  return {
      {.code = static_cast<uint16_t>(ErrorCode::kUnknownOpcode), .message = "unknown opcode 99"},
      {.code = 0, .message = ""},
      {.code = kU16Max, .message = MaxString()},
      {.code = static_cast<uint16_t>(ErrorCode::kMalformedBody), .message = kOddString},
  };
}

const ByteVec& IdList() {
  static const ByteVec p = {0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  return p;
}
template <>
std::vector<GroupCreateBody> Samples<GroupCreateBody>() {
  return {{.group_id = 77}, {}, {.group_id = kU64Max}};
}
template <>
std::vector<GroupJoinBody> Samples<GroupJoinBody>() {
  return {{.group_id = 77}, {}, {.group_id = kU64Max}};
}
template <>
std::vector<GroupLeaveBody> Samples<GroupLeaveBody>() {
  return {{.group_id = 77}, {}, {.group_id = kU64Max}};
}
template <>
std::vector<GroupMembersBody> Samples<GroupMembersBody>() {
  return {{.group_id = 77, .after_user = 5}, {}, {.group_id = kU64Max, .after_user = kU64Max}};
}
template <>
std::vector<GroupReplyBody> Samples<GroupReplyBody>() {
  return {
      {.status = 0, .group_id = 77, .has_more = 1, .members = IdList()},
      {},
      {.status = kU16Max, .group_id = kU64Max, .has_more = 0xff, .members = {}},
  };
}
template <>
std::vector<PresenceSubscribeBody> Samples<PresenceSubscribeBody>() {
  return {{.subscribe = 1, .user_ids = IdList()}, {}, {.subscribe = 0xff, .user_ids = {}}};
}
template <>
std::vector<PresenceBody> Samples<PresenceBody>() {
  return {{.user_id = 42, .online = 1, .devices = 2, .time_ms = 1700000000000},
          {},
          {.user_id = kU64Max, .online = 0xff, .devices = kU32Max, .time_ms = kU64Max}};
}

template <typename B>
ByteVec EncodeToVector(uint32_t request_id, const B& b) {
  ByteVec out(FrameSize(b));
  EXPECT_EQ(Encode(request_id, b, out), out.size());
  return out;
}

std::span<const uint8_t> BodyOf(const ByteVec& frame) { return std::span(frame).subspan(kHeaderSize); }

ByteVec RawHeader(uint32_t length, uint8_t version, uint8_t opcode, uint16_t flags, uint32_t request_id) {
  return {static_cast<uint8_t>(length >> 24),
          static_cast<uint8_t>(length >> 16),
          static_cast<uint8_t>(length >> 8),
          static_cast<uint8_t>(length),
          version,
          opcode,
          static_cast<uint8_t>(flags >> 8),
          static_cast<uint8_t>(flags),
          static_cast<uint8_t>(request_id >> 24),
          static_cast<uint8_t>(request_id >> 16),
          static_cast<uint8_t>(request_id >> 8),
          static_cast<uint8_t>(request_id)};
}

// ---- properties every body type must have ----

template <typename B>
class BodyCodecTest : public testing::Test {};

using AllBodies =
    testing::Types<LoginBody, LoginAckBody, PingBody, PongBody, SendBody, SendAckBody, PushBody, PushAckBody,
                   SyncBody, SyncDoneBody, KickBody, GoawayBody, LogoutBody, ErrorBody, GroupCreateBody,
                   GroupJoinBody, GroupLeaveBody, GroupMembersBody, GroupReplyBody, PresenceSubscribeBody,
                   PresenceBody>;
TYPED_TEST_SUITE(BodyCodecTest, AllBodies);

TYPED_TEST(BodyCodecTest, RoundTrips) {
  using B = TypeParam;
  for (const B& sample : Samples<B>()) {
    for (uint32_t request_id : {0u, 1u, 0xa1b2c3d4u, kU32Max}) {
      const ByteVec frame = EncodeToVector(request_id, sample);
      ASSERT_EQ(frame.size(), FrameSize(sample));

      Header h;
      ASSERT_EQ(PeekFrame(frame, kU32Max, &h), FrameStatus::kOk);
      EXPECT_EQ(h.length, frame.size());
      EXPECT_EQ(h.version, kVersion);
      EXPECT_EQ(h.opcode, static_cast<uint8_t>(B::kOpcode));
      EXPECT_EQ(h.flags, 0);
      EXPECT_EQ(h.request_id, request_id);

      B decoded;
      ASSERT_TRUE(Decode(BodyOf(frame), &decoded));
      EXPECT_TRUE(Same(decoded, sample));
    }
  }
}

TYPED_TEST(BodyCodecTest, RejectsEveryTruncation) {
  using B = TypeParam;
  for (const B& sample : Samples<B>()) {
    const ByteVec frame = EncodeToVector(7, sample);
    const std::span<const uint8_t> body = BodyOf(frame);
    for (size_t n = 0; n < body.size(); ++n) {
      B out;
      ASSERT_FALSE(Decode(body.first(n), &out)) << "body accepted when cut to " << n << " of " << body.size();
      // A failed decode leaves the output as it was.
      ASSERT_TRUE(Same(out, B{}));
    }
  }
}

TYPED_TEST(BodyCodecTest, RejectsTrailingBytes) {
  using B = TypeParam;
  for (const B& sample : Samples<B>()) {
    ByteVec frame = EncodeToVector(7, sample);
    frame.push_back(0);
    B out;
    EXPECT_FALSE(Decode(BodyOf(frame), &out));
    frame.insert(frame.end(), {1, 2, 3, 4, 5, 6, 7, 8, 9});
    EXPECT_FALSE(Decode(BodyOf(frame), &out));
  }
}

TYPED_TEST(BodyCodecTest, EncodeIntoTooSmallBufferReturnsZero) {
  using B = TypeParam;
  for (const B& sample : Samples<B>()) {
    const size_t size = FrameSize(sample);
    ByteVec buf(size);
    // Every short length for ordinary frames; for the megabyte ones the two ends suffice.
    std::vector<size_t> lengths;
    for (size_t n = 0; n < size && n < 4096; ++n) {
      lengths.push_back(n);
    }
    for (size_t n = size > 16 ? size - 16 : 0; n < size; ++n) {
      lengths.push_back(n);
    }
    for (size_t n : lengths) {
      ASSERT_EQ(Encode(1, sample, std::span(buf).first(n)), 0u) << "buffer of " << n << " for " << size;
    }
  }
}

TYPED_TEST(BodyCodecTest, EncodeLeavesTheRestOfALargerBufferAlone) {
  using B = TypeParam;
  const B sample = Samples<B>().front();
  const size_t size = FrameSize(sample);
  ByteVec buf(size + 8, 0xee);
  ASSERT_EQ(Encode(9, sample, buf), size);
  EXPECT_TRUE(std::all_of(buf.begin() + static_cast<ptrdiff_t>(size), buf.end(),
                          [](uint8_t c) { return c == 0xee; }));
  EXPECT_TRUE(SameBytes(std::span(buf).first(size), EncodeToVector(9, sample)));
}

// ---- the wire layout, pinned byte by byte against docs/protocol.md ----

template <typename B>
void ExpectWire(uint32_t request_id, const B& b, const ByteVec& want) {
  EXPECT_EQ(EncodeToVector(request_id, b), want);
  Header h;
  ASSERT_EQ(PeekFrame(want, kDefaultMaxFrame, &h), FrameStatus::kOk);
  EXPECT_EQ(h.length, want.size());
  EXPECT_EQ(h.opcode, static_cast<uint8_t>(B::kOpcode));
  EXPECT_EQ(h.request_id, request_id);
  B decoded;
  ASSERT_TRUE(Decode(BodyOf(want), &decoded));
  EXPECT_TRUE(Same(decoded, b));
}

// One row per field, so each array reads like the tables in docs/protocol.md.
// clang-format off
TEST(WireLayoutTest, Login) {
  ExpectWire(7, LoginBody{.user_id = 0x0102030405060708, .device_id = 0x0a0b0c0d, .platform = 2, .token = "tok"},
             {0x00, 0x00, 0x00, 0x1e, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07,  // header
              0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,                          // user_id
              0x0a, 0x0b, 0x0c, 0x0d,                                                  // device_id
              0x02,                                                                    // platform
              0x00, 0x03, 't', 'o', 'k'});                                             // token
}

TEST(WireLayoutTest, LoginAck) {
  ExpectWire(7,
             LoginAckBody{.status = 0,
                          .heartbeat_interval_ms = 30000,
                          .heartbeat_timeout_ms = 90000,
                          .session_id = 0x1122334455667788,
                          .server_time_ms = 1700000000000,
                          .message = "ok"},
             {0x00, 0x00, 0x00, 0x2a, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07,  // header
              0x00, 0x00,                                                              // status
              0x00, 0x00, 0x75, 0x30,                                                  // heartbeat_interval_ms
              0x00, 0x01, 0x5f, 0x90,                                                  // heartbeat_timeout_ms
              0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,                          // session_id
              0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00,                          // server_time_ms
              0x00, 0x02, 'o', 'k'});                                                  // message
}

TEST(WireLayoutTest, PingAndPong) {
  ExpectWire(9, PingBody{.timestamp = 1700000000000},
             {0x00, 0x00, 0x00, 0x14, 0x01, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09,  // header
              0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00});                        // timestamp
  ExpectWire(9, PongBody{.timestamp = 1700000000000},
             {0x00, 0x00, 0x00, 0x14, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09,  // header
              0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00});                        // timestamp
}

TEST(WireLayoutTest, Send) {
  const ByteVec payload = {'h', 'i'};
  ExpectWire(0x01020304,
             SendBody{.target_kind = 0, .target_id = 42, .client_msg_id = 0xdeadbeefcafef00d, .payload = payload},
             {0x00, 0x00, 0x00, 0x23, 0x01, 0x05, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04,  // header
              0x00,                                                                    // target_kind
              0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a,                          // target_id
              0xde, 0xad, 0xbe, 0xef, 0xca, 0xfe, 0xf0, 0x0d,                          // client_msg_id
              0x00, 0x00, 0x00, 0x02, 'h', 'i'});                                      // payload
}

TEST(WireLayoutTest, SendAck) {
  ExpectWire(0x01020304,
             SendAckBody{.status = 1, .client_msg_id = 0xdeadbeefcafef00d, .server_msg_id = 0x100, .server_time_ms = 1},
             {0x00, 0x00, 0x00, 0x26, 0x01, 0x06, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04,  // header
              0x00, 0x01,                                                              // status
              0xde, 0xad, 0xbe, 0xef, 0xca, 0xfe, 0xf0, 0x0d,                          // client_msg_id
              0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,                          // server_msg_id
              0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01});                        // server_time_ms
}

TEST(WireLayoutTest, Push) {
  const ByteVec payload = {0xff};
  ExpectWire(0,
             PushBody{.seq = 5,
                      .server_msg_id = 0x100,
                      .from_user = 42,
                      .from_device = 3,
                      .conv_kind = 1,
                      .conv_id = 0x77,
                      .client_msg_id = 0xdeadbeefcafef00d,
                      .server_time_ms = 1,
                      .payload = payload},
             {0x00, 0x00, 0x00, 0x46, 0x01, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // header
              0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05,                          // seq
              0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,                          // server_msg_id
              0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a,                          // from_user
              0x00, 0x00, 0x00, 0x03,                                                  // from_device
              0x01,                                                                    // conv_kind
              0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x77,                          // conv_id
              0xde, 0xad, 0xbe, 0xef, 0xca, 0xfe, 0xf0, 0x0d,                          // client_msg_id
              0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,                          // server_time_ms
              0x00, 0x00, 0x00, 0x01, 0xff});                                          // payload
}

TEST(WireLayoutTest, PushAck) {
  ExpectWire(11, PushAckBody{.seq = 5},
             {0x00, 0x00, 0x00, 0x14, 0x01, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0b,  // header
              0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05});                        // seq
}

TEST(WireLayoutTest, Sync) {
  ExpectWire(12, SyncBody{.after_seq = 5, .limit = 100},
             {0x00, 0x00, 0x00, 0x18, 0x01, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c,  // header
              0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05,                          // after_seq
              0x00, 0x00, 0x00, 0x64});                                                // limit
}

TEST(WireLayoutTest, SyncDone) {
  ExpectWire(12, SyncDoneBody{.max_seq = 9, .has_more = 1},
             {0x00, 0x00, 0x00, 0x15, 0x01, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c,  // header
              0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09,                          // max_seq
              0x01});                                                                  // has_more
}

TEST(WireLayoutTest, Kick) {
  ExpectWire(0, KickBody{.reason = 1, .message = "dup"},
             {0x00, 0x00, 0x00, 0x13, 0x01, 0x0b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // header
              0x00, 0x01,                                                              // reason
              0x00, 0x03, 'd', 'u', 'p'});                                             // message
}

TEST(WireLayoutTest, Goaway) {
  ExpectWire(0, GoawayBody{.reconnect_delay_ms = 5000, .reason = "drain"},
             {0x00, 0x00, 0x00, 0x17, 0x01, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // header
              0x00, 0x00, 0x13, 0x88,                                                  // reconnect_delay_ms
              0x00, 0x05, 'd', 'r', 'a', 'i', 'n'});                                   // reason
}

TEST(WireLayoutTest, Logout) {
  ExpectWire(13, LogoutBody{},
             {0x00, 0x00, 0x00, 0x0c, 0x01, 0x0d, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0d});  // header only
}

TEST(WireLayoutTest, Error) {
  ExpectWire(0xffffffff, ErrorBody{.code = 1, .message = ""},
             {0x00, 0x00, 0x00, 0x10, 0x01, 0x0e, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff,  // header
              0x00, 0x01,                                                              // code
              0x00, 0x00});                                                            // message
}

TEST(WireLayoutTest, GroupRequests) {
  ExpectWire(21, GroupCreateBody{.group_id = 0x77},
             {0x00, 0x00, 0x00, 0x14, 0x01, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x15,  // header
              0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x77});                        // group_id
  ExpectWire(22, GroupJoinBody{.group_id = 0x77},
             {0x00, 0x00, 0x00, 0x14, 0x01, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x16,  // header
              0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x77});                        // group_id
  ExpectWire(23, GroupLeaveBody{.group_id = 0x77},
             {0x00, 0x00, 0x00, 0x14, 0x01, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x17,  // header
              0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x77});                        // group_id
  ExpectWire(24, GroupMembersBody{.group_id = 0x77, .after_user = 5},
             {0x00, 0x00, 0x00, 0x1c, 0x01, 0x13, 0x00, 0x00, 0x00, 0x00, 0x00, 0x18,  // header
              0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x77,                          // group_id
              0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05});                        // after_user
}

TEST(WireLayoutTest, GroupReply) {
  const ByteVec members = {0, 0, 0, 0, 0, 0, 0, 0x2a};
  ExpectWire(24, GroupReplyBody{.status = 0, .group_id = 0x77, .has_more = 0, .members = members},
             {0x00, 0x00, 0x00, 0x23, 0x01, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x18,  // header
              0x00, 0x00,                                                              // status
              0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x77,                          // group_id
              0x00,                                                                    // has_more
              0x00, 0x00, 0x00, 0x08,                                                  // members: 8 bytes
              0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a});                        //   user 42
}

TEST(WireLayoutTest, Presence) {
  const ByteVec ids = {0, 0, 0, 0, 0, 0, 0, 0x2a};
  ExpectWire(25, PresenceSubscribeBody{.subscribe = 1, .user_ids = ids},
             {0x00, 0x00, 0x00, 0x19, 0x01, 0x15, 0x00, 0x00, 0x00, 0x00, 0x00, 0x19,  // header
              0x01,                                                                    // subscribe
              0x00, 0x00, 0x00, 0x08,                                                  // user_ids: 8 bytes
              0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a});                        //   user 42
  ExpectWire(0, PresenceBody{.user_id = 42, .online = 1, .devices = 2, .time_ms = 1},
             {0x00, 0x00, 0x00, 0x21, 0x01, 0x16, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // header
              0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a,                          // user_id
              0x01,                                                                    // online
              0x00, 0x00, 0x00, 0x02,                                                  // devices
              0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01});                        // time_ms
}

// clang-format on

TEST(DecodeTest, IdListsHoldWholeIds) {
  // A members / user_ids field whose length is not a multiple of 8 is malformed.
  const ByteVec body = {0x01, 0x00, 0x00, 0x00, 0x07, 1, 2, 3, 4, 5, 6, 7};
  PresenceSubscribeBody p;
  EXPECT_FALSE(Decode(body, &p));
  ByteVec ok = {0x01, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 0, 0, 0, 0, 9};
  ASSERT_TRUE(Decode(ok, &p));
  EXPECT_EQ(IdAt(p.user_ids, 0), 9u);
}

// ---- PeekFrame ----

constexpr Header kSentinel{
    .length = 0xdeadbeef, .version = 0xee, .opcode = 0xee, .flags = 0xeeee, .request_id = 0xdeadbeef};

bool SameHeader(const Header& a, const Header& b) {
  return a.length == b.length && a.version == b.version && a.opcode == b.opcode && a.flags == b.flags &&
         a.request_id == b.request_id;
}

TEST(PeekFrameTest, NeedsMoreBeforeTheHeaderIsComplete) {
  const ByteVec frame = EncodeToVector(5, Samples<LoginBody>().front());
  for (size_t n = 0; n < kHeaderSize; ++n) {
    Header h = kSentinel;
    EXPECT_EQ(PeekFrame(std::span(frame).first(n), kDefaultMaxFrame, &h), FrameStatus::kNeedMore) << n;
    EXPECT_TRUE(SameHeader(h, kSentinel)) << "header touched with only " << n << " bytes";
  }
}

TEST(PeekFrameTest, NeedsMoreOnAPartialBodyWithTheHeaderFilledIn) {
  const ByteVec frame = EncodeToVector(5, Samples<LoginBody>().front());
  for (size_t n = kHeaderSize; n < frame.size(); ++n) {
    Header h = kSentinel;
    EXPECT_EQ(PeekFrame(std::span(frame).first(n), kDefaultMaxFrame, &h), FrameStatus::kNeedMore) << n;
    EXPECT_EQ(h.length, frame.size());
    EXPECT_EQ(h.opcode, static_cast<uint8_t>(Opcode::kLogin));
    EXPECT_EQ(h.request_id, 5u);
  }
}

TEST(PeekFrameTest, OkWithExactlyOneFrameOrMore) {
  ByteVec stream = EncodeToVector(5, PingBody{.timestamp = 1});
  Header h;
  EXPECT_EQ(PeekFrame(stream, kDefaultMaxFrame, &h), FrameStatus::kOk);
  EXPECT_EQ(h.length, 20u);
  const ByteVec next = EncodeToVector(6, LogoutBody{});
  stream.insert(stream.end(), next.begin(), next.end());
  EXPECT_EQ(PeekFrame(stream, kDefaultMaxFrame, &h), FrameStatus::kOk);
  EXPECT_EQ(h.length, 20u);
  EXPECT_EQ(h.request_id, 5u);
  // A header-only frame is whole as soon as its header is.
  EXPECT_EQ(PeekFrame(next, kDefaultMaxFrame, &h), FrameStatus::kOk);
  EXPECT_EQ(h.length, kHeaderSize);
}

TEST(PeekFrameTest, TooLargeIsReportedFromTheHeaderAlone) {
  const uint8_t send = static_cast<uint8_t>(Opcode::kSend);
  Header h;
  EXPECT_EQ(PeekFrame(RawHeader(kDefaultMaxFrame + 1, kVersion, send, 0, 3), kDefaultMaxFrame, &h),
            FrameStatus::kTooLarge);
  EXPECT_EQ(h.length, kDefaultMaxFrame + 1);
  EXPECT_EQ(h.request_id, 3u);
  EXPECT_EQ(PeekFrame(RawHeader(kU32Max, kVersion, send, 0, 3), kDefaultMaxFrame, &h),
            FrameStatus::kTooLarge);
  EXPECT_EQ(PeekFrame(RawHeader(kU32Max, kVersion, send, 0, 3), kU32Max - 1, &h), FrameStatus::kTooLarge);
  // Exactly the limit is allowed.
  EXPECT_EQ(PeekFrame(RawHeader(kDefaultMaxFrame, kVersion, send, 0, 3), kDefaultMaxFrame, &h),
            FrameStatus::kNeedMore);
  EXPECT_EQ(PeekFrame(RawHeader(100, kVersion, send, 0, 3), 100, &h), FrameStatus::kNeedMore);
  EXPECT_EQ(PeekFrame(RawHeader(101, kVersion, send, 0, 3), 100, &h), FrameStatus::kTooLarge);
  // A header-only frame against a limit of exactly its size.
  EXPECT_EQ(PeekFrame(RawHeader(12, kVersion, send, 0, 3), 12, &h), FrameStatus::kOk);
}

TEST(PeekFrameTest, TooSmallForEveryLengthShorterThanTheHeader) {
  for (uint32_t length = 0; length < kHeaderSize; ++length) {
    Header h;
    EXPECT_EQ(PeekFrame(RawHeader(length, kVersion, 3, 0, 1), kDefaultMaxFrame, &h), FrameStatus::kTooSmall)
        << length;
    EXPECT_EQ(h.length, length);
  }
}

TEST(PeekFrameTest, BadVersionIsCheckedBeforeTheLength) {
  for (uint8_t version : {0, 2, 0x7f, 0xff}) {
    Header h;
    EXPECT_EQ(PeekFrame(RawHeader(20, version, 3, 0, 1), kDefaultMaxFrame, &h), FrameStatus::kBadVersion);
    EXPECT_EQ(h.version, version);
    EXPECT_EQ(PeekFrame(RawHeader(0, version, 3, 0, 1), kDefaultMaxFrame, &h), FrameStatus::kBadVersion);
    EXPECT_EQ(PeekFrame(RawHeader(kU32Max, version, 3, 0, 1), kDefaultMaxFrame, &h),
              FrameStatus::kBadVersion);
  }
}

TEST(PeekFrameTest, UnknownOpcodesStillSplit) {
  for (uint8_t opcode : {0, 15, 0x80, 0xff}) {
    ByteVec frame = RawHeader(16, kVersion, opcode, 0, 44);
    frame.insert(frame.end(), {1, 2, 3, 4});
    Header h;
    EXPECT_EQ(PeekFrame(frame, kDefaultMaxFrame, &h), FrameStatus::kOk);
    EXPECT_EQ(h.opcode, opcode);
    EXPECT_EQ(h.length, 16u);
  }
}

TEST(PeekFrameTest, FlagsAreReportedButNotChecked) {
  Header h;
  EXPECT_EQ(PeekFrame(RawHeader(12, kVersion, 13, 0xa55a, 1), kDefaultMaxFrame, &h), FrameStatus::kOk);
  EXPECT_EQ(h.flags, 0xa55a);
}

// A TCP reader sees a stream cut at arbitrary points; feeding it one byte at a time must yield exactly the
// frames that were written, in order.
TEST(PeekFrameTest, SplitsAStreamFedOneByteAtATime) {
  ByteVec stream;
  std::vector<size_t> sizes;
  auto append = [&](const ByteVec& f) {
    stream.insert(stream.end(), f.begin(), f.end());
    sizes.push_back(f.size());
  };
  append(EncodeToVector(1, Samples<LoginBody>().front()));
  append(EncodeToVector(2, PingBody{.timestamp = 5}));
  append(EncodeToVector(3, Samples<SendBody>().front()));
  append(EncodeToVector(4, LogoutBody{}));

  size_t start = 0;
  std::vector<size_t> seen;
  for (size_t end = 0; end <= stream.size(); ++end) {
    Header h;
    while (PeekFrame(std::span(stream).subspan(start, end - start), kDefaultMaxFrame, &h) ==
           FrameStatus::kOk) {
      seen.push_back(h.length);
      EXPECT_EQ(h.request_id, seen.size());
      start += h.length;
    }
  }
  EXPECT_EQ(seen, sizes);
  EXPECT_EQ(start, stream.size());
}

// ---- malformed bodies beyond plain truncation ----

TEST(DecodeTest, RejectsAStringLengthPastTheEnd) {
  // KICK: reason 1, message claims 5 bytes but only 4 follow.
  const ByteVec body = {0x00, 0x01, 0x00, 0x05, 'a', 'b', 'c', 'd'};
  KickBody kick;
  EXPECT_FALSE(Decode(body, &kick));
  const ByteVec huge = {0x00, 0x01, 0xff, 0xff, 'a'};
  EXPECT_FALSE(Decode(huge, &kick));
  // LOGIN's token is the last field: the same holds there.
  ByteVec login(13, 0);
  login.insert(login.end(), {0x00, 0x02, 'x'});
  LoginBody l;
  EXPECT_FALSE(Decode(login, &l));
}

TEST(DecodeTest, RejectsAPayloadLengthPastTheEnd) {
  ByteVec send(17, 0);
  send.insert(send.end(), {0xff, 0xff, 0xff, 0xff, 1, 2, 3});
  SendBody s;
  EXPECT_FALSE(Decode(send, &s));
  ByteVec off_by_one(17, 0);
  off_by_one.insert(off_by_one.end(), {0x00, 0x00, 0x00, 0x04, 1, 2, 3});
  EXPECT_FALSE(Decode(off_by_one, &s));
  off_by_one.push_back(4);
  EXPECT_TRUE(Decode(off_by_one, &s));
  EXPECT_EQ(s.payload.size(), 4u);
}

TEST(DecodeTest, RejectsAStringShorterThanItsLengthWithTrailingRoomElsewhere) {
  // A string length smaller than what follows leaves trailing bytes: also malformed.
  const ByteVec body = {0x00, 0x00, 0x13, 0x88, 0x00, 0x02, 'a', 'b', 'c'};
  GoawayBody g;
  EXPECT_FALSE(Decode(body, &g));
}

TEST(DecodeTest, LogoutMustBeEmpty) {
  LogoutBody l;
  EXPECT_TRUE(Decode({}, &l));
  const ByteVec one = {0};
  EXPECT_FALSE(Decode(one, &l));
}

TEST(DecodeTest, ViewsPointIntoTheInput) {
  const ByteVec payload = {9, 8, 7};
  const ByteVec frame = EncodeToVector(1, SendBody{.target_id = 1, .client_msg_id = 2, .payload = payload});
  SendBody s;
  ASSERT_TRUE(Decode(BodyOf(frame), &s));
  EXPECT_EQ(s.payload.data(), frame.data() + kHeaderSize + 21);

  const ByteVec login = EncodeToVector(1, LoginBody{.user_id = 1, .token = "abc"});
  LoginBody l;
  ASSERT_TRUE(Decode(BodyOf(login), &l));
  EXPECT_EQ(reinterpret_cast<const uint8_t*>(l.token.data()), login.data() + kHeaderSize + 15);
}

// ---- Encode limits ----

TEST(EncodeTest, RejectsStringsLongerThanTheirLengthField) {
  const std::string too_long(size_t{kU16Max} + 1, 'x');
  ByteVec buf(too_long.size() + 64);
  EXPECT_EQ(Encode(1, LoginBody{.token = too_long}, buf), 0u);
  EXPECT_EQ(Encode(1, LoginAckBody{.message = too_long}, buf), 0u);
  EXPECT_EQ(Encode(1, KickBody{.message = too_long}, buf), 0u);
  EXPECT_EQ(Encode(1, GoawayBody{.reason = too_long}, buf), 0u);
  EXPECT_EQ(Encode(1, ErrorBody{.message = too_long}, buf), 0u);
  // One byte less fits.
  EXPECT_EQ(Encode(1, KickBody{.message = std::string_view(too_long).substr(1)}, buf), 12u + 2 + 2 + kU16Max);
}

// Payloads near 4 GiB: reserve address space without committing memory (read-only zero pages), since
// Encode must refuse before it reads a byte.
class HugePayloadTest : public testing::Test {
 protected:
  static constexpr size_t kSpan = size_t{kU32Max} + 2;

  void SetUp() override {
    void* p = mmap(nullptr, kSpan, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
      GTEST_SKIP() << "cannot reserve 4 GiB of address space";
    }
    base_ = static_cast<const uint8_t*>(p);
  }
  void TearDown() override {
    if (base_ != nullptr) {
      munmap(const_cast<uint8_t*>(base_), kSpan);
    }
  }

  const uint8_t* base_ = nullptr;
};

TEST_F(HugePayloadTest, RejectsAFrameLargerThanTheLengthFieldCanExpress) {
  ByteVec buf(64);
  // The payload's own u32 length would fit, but the frame's would not.
  EXPECT_EQ(Encode(1, SendBody{.payload = std::span(base_, kU32Max)}, buf), 0u);
  EXPECT_EQ(Encode(1, PushBody{.payload = std::span(base_, kU32Max - 20)}, buf), 0u);
  // Nor the payload's.
  EXPECT_EQ(Encode(1, SendBody{.payload = std::span(base_, size_t{kU32Max} + 1)}, buf), 0u);
  // The largest SEND payload that still fits the frame length field is accepted by the size check; only
  // the small buffer stops it.
  const size_t max_send_payload = kU32Max - kHeaderSize - 21;
  EXPECT_EQ(FrameSize(SendBody{.payload = std::span(base_, max_send_payload)}), kU32Max);
}

// ---- names ----

TEST(NamesTest, OpcodeNames) {
  const std::vector<std::pair<Opcode, std::string_view>> want = {
      {Opcode::kLogin, "login"},        {Opcode::kLoginAck, "login_ack"}, {Opcode::kPing, "ping"},
      {Opcode::kPong, "pong"},          {Opcode::kSend, "send"},          {Opcode::kSendAck, "send_ack"},
      {Opcode::kPush, "push"},          {Opcode::kPushAck, "push_ack"},   {Opcode::kSync, "sync"},
      {Opcode::kSyncDone, "sync_done"}, {Opcode::kKick, "kick"},          {Opcode::kGoaway, "goaway"},
      {Opcode::kLogout, "logout"},      {Opcode::kError, "error"},
      {Opcode::kGroupCreate, "group_create"},   {Opcode::kGroupJoin, "group_join"},
      {Opcode::kGroupLeave, "group_leave"},     {Opcode::kGroupMembers, "group_members"},
      {Opcode::kGroupReply, "group_reply"},     {Opcode::kPresenceSubscribe, "presence_subscribe"},
      {Opcode::kPresence, "presence"},
  };
  ASSERT_EQ(want.size(), kMaxOpcode - 1u);  // 15 is never assigned
  for (const auto& [op, name] : want) {
    EXPECT_EQ(OpcodeName(static_cast<uint8_t>(op)), name);
    EXPECT_TRUE(IsKnownOpcode(static_cast<uint8_t>(op)));
  }
  for (int op : {0, 15, 23, 0x80, 0xff}) {
    EXPECT_EQ(OpcodeName(static_cast<uint8_t>(op)), "unknown");
    EXPECT_FALSE(IsKnownOpcode(static_cast<uint8_t>(op)));
  }
}

TEST(NamesTest, FrameStatusNames) {
  EXPECT_EQ(FrameStatusName(FrameStatus::kOk), "ok");
  EXPECT_EQ(FrameStatusName(FrameStatus::kNeedMore), "need_more");
  EXPECT_EQ(FrameStatusName(FrameStatus::kTooLarge), "too_large");
  EXPECT_EQ(FrameStatusName(FrameStatus::kTooSmall), "too_small");
  EXPECT_EQ(FrameStatusName(FrameStatus::kBadVersion), "bad_version");
}

}  // namespace
}  // namespace longlink::protocol
