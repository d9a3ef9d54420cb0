// Fuzz target for the protocol v1 frame codec, driven the way the gateway's TCP reader drives it.
//
// The input is a byte stream from one connection: split it with PeekFrame, decode each whole frame's body
// by its opcode, and stop where the reader would stop reading (an incomplete frame at the end, a header
// that closes the connection, or a malformed body). Untrusted input must never crash the codec; beyond
// that, every body that decodes must re-encode to exactly the bytes it came from, and a codec that breaks
// that is buggy, so the target traps.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "protocol/frame.h"

namespace {

namespace proto = longlink::protocol;

// The gateway's default limit, so stored inputs are ordinary wire captures under default settings.
constexpr uint32_t kMaxFrame = proto::kDefaultMaxFrame;

// Re-encoding goes here; static because a frame is at most kMaxFrame bytes, and the harness should not
// allocate per input any more than the codec does.
uint8_t g_scratch[kMaxFrame];

void Check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// The single variable-length field of each body; in v1 it is always the last field, so a decoded view
// must end exactly where the frame ends.
std::span<const uint8_t> VariableField(const proto::LoginBody& b) { return AsBytes(b.token); }
std::span<const uint8_t> VariableField(const proto::LoginAckBody& b) { return AsBytes(b.message); }
std::span<const uint8_t> VariableField(const proto::SendBody& b) { return b.payload; }
std::span<const uint8_t> VariableField(const proto::PushBody& b) { return b.payload; }
std::span<const uint8_t> VariableField(const proto::KickBody& b) { return AsBytes(b.message); }
std::span<const uint8_t> VariableField(const proto::GoawayBody& b) { return AsBytes(b.reason); }
std::span<const uint8_t> VariableField(const proto::ErrorBody& b) { return AsBytes(b.message); }
std::span<const uint8_t> VariableField(const proto::GroupReplyBody& b) { return b.members; }
std::span<const uint8_t> VariableField(const proto::PresenceSubscribeBody& b) { return b.user_ids; }
template <typename B>
std::span<const uint8_t> VariableField(const B&) {
  return {};
}

// Returns false if the body is malformed (the session would send ERROR and close).
template <typename B>
bool DecodeAndReencode(std::span<const uint8_t> frame, const proto::Header& h) {
  B body;
  if (!proto::Decode(frame.subspan(proto::kHeaderSize), &body)) {
    return false;
  }
  const std::span<const uint8_t> field = VariableField(body);
  Check(field.size() <= frame.size() - proto::kHeaderSize);
  Check(field.empty() || field.data() + field.size() == frame.data() + frame.size());

  const size_t size = proto::FrameSize(body);
  Check(size == frame.size());
  Check(proto::Encode(h.request_id, body, std::span(g_scratch, size - 1)) == 0);
  Check(proto::Encode(h.request_id, body, std::span(g_scratch, size)) == size);
  // Flags are reserved: receivers ignore them and Encode always writes 0, so they are the only bytes
  // allowed to differ.
  Check(std::memcmp(g_scratch, frame.data(), 6) == 0);
  Check(g_scratch[6] == 0 && g_scratch[7] == 0);
  Check(std::memcmp(g_scratch + 8, frame.data() + 8, size - 8) == 0);
  return true;
}

bool DecodeByOpcode(std::span<const uint8_t> frame, const proto::Header& h) {
  switch (static_cast<proto::Opcode>(h.opcode)) {
    case proto::Opcode::kLogin:
      return DecodeAndReencode<proto::LoginBody>(frame, h);
    case proto::Opcode::kLoginAck:
      return DecodeAndReencode<proto::LoginAckBody>(frame, h);
    case proto::Opcode::kPing:
      return DecodeAndReencode<proto::PingBody>(frame, h);
    case proto::Opcode::kPong:
      return DecodeAndReencode<proto::PongBody>(frame, h);
    case proto::Opcode::kSend:
      return DecodeAndReencode<proto::SendBody>(frame, h);
    case proto::Opcode::kSendAck:
      return DecodeAndReencode<proto::SendAckBody>(frame, h);
    case proto::Opcode::kPush:
      return DecodeAndReencode<proto::PushBody>(frame, h);
    case proto::Opcode::kPushAck:
      return DecodeAndReencode<proto::PushAckBody>(frame, h);
    case proto::Opcode::kSync:
      return DecodeAndReencode<proto::SyncBody>(frame, h);
    case proto::Opcode::kSyncDone:
      return DecodeAndReencode<proto::SyncDoneBody>(frame, h);
    case proto::Opcode::kKick:
      return DecodeAndReencode<proto::KickBody>(frame, h);
    case proto::Opcode::kGoaway:
      return DecodeAndReencode<proto::GoawayBody>(frame, h);
    case proto::Opcode::kLogout:
      return DecodeAndReencode<proto::LogoutBody>(frame, h);
    case proto::Opcode::kError:
      return DecodeAndReencode<proto::ErrorBody>(frame, h);
    case proto::Opcode::kGroupCreate:
      return DecodeAndReencode<proto::GroupCreateBody>(frame, h);
    case proto::Opcode::kGroupJoin:
      return DecodeAndReencode<proto::GroupJoinBody>(frame, h);
    case proto::Opcode::kGroupLeave:
      return DecodeAndReencode<proto::GroupLeaveBody>(frame, h);
    case proto::Opcode::kGroupMembers:
      return DecodeAndReencode<proto::GroupMembersBody>(frame, h);
    case proto::Opcode::kGroupReply:
      return DecodeAndReencode<proto::GroupReplyBody>(frame, h);
    case proto::Opcode::kPresenceSubscribe:
      return DecodeAndReencode<proto::PresenceSubscribeBody>(frame, h);
    case proto::Opcode::kPresence:
      return DecodeAndReencode<proto::PresenceBody>(frame, h);
  }
  // Unknown opcode: the session answers ERROR kUnknownOpcode and keeps reading.
  Check(!proto::IsKnownOpcode(h.opcode));
  Check(proto::OpcodeName(h.opcode) == "unknown");
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  for (;;) {
    proto::Header h;
    const proto::FrameStatus status = proto::PeekFrame(in, kMaxFrame, &h);
    Check(proto::FrameStatusName(status) != "unknown");
    if (status != proto::FrameStatus::kOk) {
      // kNeedMore: the stream ends inside a frame. Anything else closes the connection.
      break;
    }
    Check(h.version == proto::kVersion && h.length >= proto::kHeaderSize && h.length <= kMaxFrame &&
          h.length <= in.size());
    const std::span<const uint8_t> frame = in.first(h.length);
    // One byte short of the frame must still be waiting for more, never an error.
    proto::Header partial;
    Check(proto::PeekFrame(frame.first(h.length - 1), kMaxFrame, &partial) == proto::FrameStatus::kNeedMore);

    if (!DecodeByOpcode(frame, h)) {
      break;
    }
    in = in.subspan(h.length);
  }
  return 0;
}
