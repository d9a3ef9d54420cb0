// longlink protocol v1: the frame codec.
//
// A frame is a fixed 12-byte header followed by an opcode-specific body. The codec is pure: it reads and
// writes byte spans and never does I/O or allocates. Transports decide how frames are delimited on the
// wire: over TCP the header's length field splits the stream (see PeekFrame); over WebSocket each binary
// message carries exactly one frame. docs/protocol.md specifies every byte.
//
// All integers are big-endian. Strings are a u16 length followed by that many bytes; payloads are a u32
// length followed by that many bytes. A body must be consumed exactly: trailing bytes make it malformed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace longlink::protocol {

inline constexpr uint8_t kVersion = 1;
inline constexpr size_t kHeaderSize = 12;
// The default for --max-frame-bytes; a peer may never send a frame larger than the configured limit.
inline constexpr uint32_t kDefaultMaxFrame = 64 * 1024;

enum class Opcode : uint8_t {
  kLogin = 1,
  kLoginAck = 2,
  kPing = 3,
  kPong = 4,
  kSend = 5,
  kSendAck = 6,
  kPush = 7,
  kPushAck = 8,
  kSync = 9,
  kSyncDone = 10,
  kKick = 11,
  kGoaway = 12,
  kLogout = 13,
  kError = 14,
  // 15 is never assigned: test suites use it as an opcode every v1 server answers with UNKNOWN_OPCODE.
  kGroupCreate = 16,
  kGroupJoin = 17,
  kGroupLeave = 18,
  kGroupMembers = 19,
  kGroupReply = 20,
  kPresenceSubscribe = 21,
  kPresence = 22,
};
// Highest opcode value this codec knows. Frames with other opcodes (and 15) still split and decode at the
// header level (the session answers them with ERROR kUnknownOpcode).
inline constexpr uint8_t kMaxOpcode = 22;
inline constexpr uint8_t kReservedOpcode = 15;
bool IsKnownOpcode(uint8_t op);
// Lower-case stable name ("login", "send_ack", ...) for metrics labels; "unknown" for others.
std::string_view OpcodeName(uint8_t op);

struct Header {
  uint32_t length = 0;  // whole frame, header included
  uint8_t version = kVersion;
  uint8_t opcode = 0;  // raw, may be unknown
  uint16_t flags = 0;  // reserved in v1: senders write 0, receivers ignore
  uint32_t request_id = 0;
};

enum class FrameStatus : uint8_t {
  kOk,          // a whole frame is available: header filled in, header.length bytes at the front
  kNeedMore,    // not enough bytes yet (header filled in if at least kHeaderSize bytes were there)
  kTooLarge,    // header.length > max_frame
  kTooSmall,    // header.length < kHeaderSize
  kBadVersion,  // version != kVersion
};
std::string_view FrameStatusName(FrameStatus s);

// Looks at the front of a byte stream. Checks the header as soon as kHeaderSize bytes are present, so an
// oversize or garbage header is rejected before its body arrives.
FrameStatus PeekFrame(std::span<const uint8_t> in, uint32_t max_frame, Header* header);

// Error codes carried in ERROR frames.
enum class ErrorCode : uint16_t {
  kUnknownOpcode = 1,
  kMalformedBody = 2,
  kNotLoggedIn = 3,
  kAlreadyLoggedIn = 4,
  kUnsupported = 5,
  kInternal = 6,
  kBackendUnavailable = 7,
  kLimitExceeded = 8,  // a per-device limit was reached (the message names it); the request was not applied
};

// LOGIN_ACK status.
enum class LoginStatus : uint16_t {
  kOk = 0,
  kAuthFailed = 1,
  kBadRequest = 2,
  kServerBusy = 3,
};

// SEND_ACK status.
enum class SendStatus : uint16_t {
  kOk = 0,
  kNoSuchTarget = 1,
  kRejected = 2,
  kTooLarge = 3,
  kUnavailable = 4,
  kRateLimited = 5,  // over the device's SEND rate; retry later with the same client_msg_id
};

// KICK reasons.
enum class KickReason : uint16_t {
  kDuplicateDevice = 1,  // the same user and device logged in again elsewhere
  kAdmin = 2,
  kAuthExpired = 3,
};

enum class TargetKind : uint8_t { kUser = 0, kGroup = 1 };

// GROUP_REPLY status.
enum class GroupStatus : uint16_t {
  kOk = 0,
  kNoSuchGroup = 1,
  kAlreadyExists = 2,
  kNotMember = 3,
  kBadRequest = 4,
  kUnavailable = 5,
  kFull = 6,         // the group has the most members the server allows
  kRateLimited = 7,  // over the device's rate of group changes; retry later
};

// The id lists of GROUP_REPLY and PRESENCE_SUBSCRIBE are `bytes` holding n big-endian u64s; Decode rejects
// a list whose length is not a multiple of 8.
inline constexpr size_t kIdSize = 8;
uint64_t IdAt(std::span<const uint8_t> ids, size_t i);
void PutId(uint8_t* out, uint64_t id);

// ---- bodies. Views point into the decoded buffer; they live as long as it does. ----

struct LoginBody {
  static constexpr Opcode kOpcode = Opcode::kLogin;
  uint64_t user_id = 0;
  uint32_t device_id = 0;
  uint8_t platform = 0;  // 0 unknown, 1 ios, 2 android, 3 web, 4 desktop
  std::string_view token;
};
struct LoginAckBody {
  static constexpr Opcode kOpcode = Opcode::kLoginAck;
  uint16_t status = 0;  // LoginStatus
  uint32_t heartbeat_interval_ms = 0;
  uint32_t heartbeat_timeout_ms = 0;
  uint64_t session_id = 0;
  uint64_t server_time_ms = 0;  // unix milliseconds
  std::string_view message;
};
struct PingBody {
  static constexpr Opcode kOpcode = Opcode::kPing;
  uint64_t timestamp = 0;  // opaque to the server, echoed in PONG
};
struct PongBody {
  static constexpr Opcode kOpcode = Opcode::kPong;
  uint64_t timestamp = 0;
};
struct SendBody {
  static constexpr Opcode kOpcode = Opcode::kSend;
  uint8_t target_kind = 0;  // TargetKind
  uint64_t target_id = 0;
  uint64_t client_msg_id = 0;
  std::span<const uint8_t> payload;
};
struct SendAckBody {
  static constexpr Opcode kOpcode = Opcode::kSendAck;
  uint16_t status = 0;  // SendStatus
  uint64_t client_msg_id = 0;
  uint64_t server_msg_id = 0;
  uint64_t server_time_ms = 0;
};
struct PushBody {
  static constexpr Opcode kOpcode = Opcode::kPush;
  uint64_t seq = 0;  // the recipient's inbox sequence, 0 for pushes outside any inbox
  uint64_t server_msg_id = 0;
  uint64_t from_user = 0;
  uint32_t from_device = 0;
  uint8_t conv_kind = 0;  // TargetKind
  uint64_t conv_id = 0;   // the group id, or the peer user id for one-to-one
  uint64_t client_msg_id = 0;
  uint64_t server_time_ms = 0;
  std::span<const uint8_t> payload;
};
struct PushAckBody {
  static constexpr Opcode kOpcode = Opcode::kPushAck;
  uint64_t seq = 0;  // cumulative: everything up to and including seq was received
};
struct SyncBody {
  static constexpr Opcode kOpcode = Opcode::kSync;
  uint64_t after_seq = 0;
  uint32_t limit = 0;
};
struct SyncDoneBody {
  static constexpr Opcode kOpcode = Opcode::kSyncDone;
  uint64_t max_seq = 0;
  uint8_t has_more = 0;
};
struct KickBody {
  static constexpr Opcode kOpcode = Opcode::kKick;
  uint16_t reason = 0;  // KickReason
  std::string_view message;
};
struct GoawayBody {
  static constexpr Opcode kOpcode = Opcode::kGoaway;
  uint32_t reconnect_delay_ms = 0;
  std::string_view reason;
};
struct LogoutBody {
  static constexpr Opcode kOpcode = Opcode::kLogout;
};
struct ErrorBody {
  static constexpr Opcode kOpcode = Opcode::kError;
  uint16_t code = 0;  // ErrorCode
  std::string_view message;
};
struct GroupCreateBody {
  static constexpr Opcode kOpcode = Opcode::kGroupCreate;
  uint64_t group_id = 0;
};
struct GroupJoinBody {
  static constexpr Opcode kOpcode = Opcode::kGroupJoin;
  uint64_t group_id = 0;
};
struct GroupLeaveBody {
  static constexpr Opcode kOpcode = Opcode::kGroupLeave;
  uint64_t group_id = 0;
};
struct GroupMembersBody {
  static constexpr Opcode kOpcode = Opcode::kGroupMembers;
  uint64_t group_id = 0;
  uint64_t after_user = 0;  // page: members with ids above this one
};
struct GroupReplyBody {
  static constexpr Opcode kOpcode = Opcode::kGroupReply;
  uint16_t status = 0;  // GroupStatus
  uint64_t group_id = 0;
  uint8_t has_more = 0;               // GROUP_MEMBERS: more members after the last one listed
  std::span<const uint8_t> members;  // GROUP_MEMBERS: ascending user ids, IdAt(members, i)
};
struct PresenceSubscribeBody {
  static constexpr Opcode kOpcode = Opcode::kPresenceSubscribe;
  uint8_t subscribe = 1;              // 1 subscribe, 0 unsubscribe
  std::span<const uint8_t> user_ids;  // IdAt(user_ids, i)
};
struct PresenceBody {
  static constexpr Opcode kOpcode = Opcode::kPresence;
  uint64_t user_id = 0;
  uint8_t online = 0;
  uint32_t devices = 0;  // devices online now
  uint64_t time_ms = 0;  // unix milliseconds of the change (or of the answer)
};

// Decode a body (the bytes after the header). False if malformed: short, over-long strings, trailing bytes.
bool Decode(std::span<const uint8_t> body, LoginBody* out);
bool Decode(std::span<const uint8_t> body, LoginAckBody* out);
bool Decode(std::span<const uint8_t> body, PingBody* out);
bool Decode(std::span<const uint8_t> body, PongBody* out);
bool Decode(std::span<const uint8_t> body, SendBody* out);
bool Decode(std::span<const uint8_t> body, SendAckBody* out);
bool Decode(std::span<const uint8_t> body, PushBody* out);
bool Decode(std::span<const uint8_t> body, PushAckBody* out);
bool Decode(std::span<const uint8_t> body, SyncBody* out);
bool Decode(std::span<const uint8_t> body, SyncDoneBody* out);
bool Decode(std::span<const uint8_t> body, KickBody* out);
bool Decode(std::span<const uint8_t> body, GoawayBody* out);
bool Decode(std::span<const uint8_t> body, LogoutBody* out);
bool Decode(std::span<const uint8_t> body, ErrorBody* out);
bool Decode(std::span<const uint8_t> body, GroupCreateBody* out);
bool Decode(std::span<const uint8_t> body, GroupJoinBody* out);
bool Decode(std::span<const uint8_t> body, GroupLeaveBody* out);
bool Decode(std::span<const uint8_t> body, GroupMembersBody* out);
bool Decode(std::span<const uint8_t> body, GroupReplyBody* out);
bool Decode(std::span<const uint8_t> body, PresenceSubscribeBody* out);
bool Decode(std::span<const uint8_t> body, PresenceBody* out);

// Size of the whole frame (header + body) that Encode would write.
size_t FrameSize(const LoginBody& b);
size_t FrameSize(const LoginAckBody& b);
size_t FrameSize(const PingBody& b);
size_t FrameSize(const PongBody& b);
size_t FrameSize(const SendBody& b);
size_t FrameSize(const SendAckBody& b);
size_t FrameSize(const PushBody& b);
size_t FrameSize(const PushAckBody& b);
size_t FrameSize(const SyncBody& b);
size_t FrameSize(const SyncDoneBody& b);
size_t FrameSize(const KickBody& b);
size_t FrameSize(const GoawayBody& b);
size_t FrameSize(const LogoutBody& b);
size_t FrameSize(const ErrorBody& b);
size_t FrameSize(const GroupCreateBody& b);
size_t FrameSize(const GroupJoinBody& b);
size_t FrameSize(const GroupLeaveBody& b);
size_t FrameSize(const GroupMembersBody& b);
size_t FrameSize(const GroupReplyBody& b);
size_t FrameSize(const PresenceSubscribeBody& b);
size_t FrameSize(const PresenceBody& b);

// Writes header + body into out. Returns the bytes written, or 0 if out is too small or a string/payload
// is longer than its length field can express (nothing useful is written then).
size_t Encode(uint32_t request_id, const LoginBody& b, std::span<uint8_t> out);
size_t Encode(uint32_t request_id, const LoginAckBody& b, std::span<uint8_t> out);
size_t Encode(uint32_t request_id, const PingBody& b, std::span<uint8_t> out);
size_t Encode(uint32_t request_id, const PongBody& b, std::span<uint8_t> out);
size_t Encode(uint32_t request_id, const SendBody& b, std::span<uint8_t> out);
size_t Encode(uint32_t request_id, const SendAckBody& b, std::span<uint8_t> out);
size_t Encode(uint32_t request_id, const PushBody& b, std::span<uint8_t> out);
size_t Encode(uint32_t request_id, const PushAckBody& b, std::span<uint8_t> out);
size_t Encode(uint32_t request_id, const SyncBody& b, std::span<uint8_t> out);
size_t Encode(uint32_t request_id, const SyncDoneBody& b, std::span<uint8_t> out);
size_t Encode(uint32_t request_id, const KickBody& b, std::span<uint8_t> out);
size_t Encode(uint32_t request_id, const GoawayBody& b, std::span<uint8_t> out);
size_t Encode(uint32_t request_id, const LogoutBody& b, std::span<uint8_t> out);
size_t Encode(uint32_t request_id, const ErrorBody& b, std::span<uint8_t> out);
size_t Encode(uint32_t request_id, const GroupCreateBody& b, std::span<uint8_t> out);
size_t Encode(uint32_t request_id, const GroupJoinBody& b, std::span<uint8_t> out);
size_t Encode(uint32_t request_id, const GroupLeaveBody& b, std::span<uint8_t> out);
size_t Encode(uint32_t request_id, const GroupMembersBody& b, std::span<uint8_t> out);
size_t Encode(uint32_t request_id, const GroupReplyBody& b, std::span<uint8_t> out);
size_t Encode(uint32_t request_id, const PresenceSubscribeBody& b, std::span<uint8_t> out);
size_t Encode(uint32_t request_id, const PresenceBody& b, std::span<uint8_t> out);

}  // namespace longlink::protocol
