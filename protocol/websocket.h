// RFC 6455 WebSocket framing: the pure codec the gateway (server side) and the loadgen (client side) put
// between their sockets and the longlink frame codec.
//
// Like frame.h it reads and writes byte spans only: no I/O, no allocation, no exceptions. The pieces are
// used in this order on a receive path:
//
//   ParseFrameHeader  checks a frame header as soon as its first bytes arrive, so a bad or oversize frame is
//                     refused before its payload is buffered; stateless, so it is simply called again when
//                     more bytes have arrived.
//   Unmask            XORs a client frame's payload in place, 8 bytes at a time, in one piece or several.
//   MessageAssembler  follows fragmentation across frames (continuations, control frames in between,
//                     message size limit, UTF-8 of text messages) and says what to do with each payload.
//                     It keeps no bytes itself, so an unfragmented message, nearly all traffic, reaches the
//                     longlink decoder without a copy.
//
// Every protocol violation is an Error: a stable name for the close-reason metric and the close code to
// send (CloseCodeFor). No extension is ever negotiated, so RSV1-3 must be 0.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace longlink::protocol::ws {

enum class Opcode : uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xa,
};
// Control frames (close, ping, pong) have the high opcode bit set; they may arrive between the fragments of
// a message and must themselves be unfragmented and short.
inline constexpr bool IsControl(uint8_t opcode) { return (opcode & 0x8) != 0; }
bool IsKnownOpcode(uint8_t opcode);

// Close status codes (RFC 6455 section 7.4.1) this codebase sends or names.
enum class CloseCode : uint16_t {
  kNormal = 1000,
  kGoingAway = 1001,
  kProtocolError = 1002,
  kUnsupportedData = 1003,
  kNoStatus = 1005,  // never on the wire: "the close frame had no body"
  kAbnormal = 1006,  // never on the wire: "the connection dropped without a close frame"
  kInvalidPayload = 1007,
  kPolicyViolation = 1008,
  kMessageTooBig = 1009,
  kMandatoryExtension = 1010,
  kInternalError = 1011,
};
// True for the codes a close frame may carry: 1000-1003, 1007-1011 and 3000-4999 (registered and private
// use). 1004-1006, 1015, the rest of 1000-2999 and everything outside 1000-4999 are invalid.
bool IsValidCloseCode(uint16_t code);

inline constexpr size_t kMinHeaderSize = 2;
inline constexpr size_t kMaxHeaderSize = 14;  // 2 + 8 (64-bit length) + 4 (mask key)
inline constexpr size_t kMaxControlPayload = 125;
inline constexpr size_t kMaxCloseReason = kMaxControlPayload - 2;

// Which end of the connection is parsing. Clients must mask every frame and servers must not, so each side
// refuses the other kind (RFC 6455 section 5.1).
enum class Role : uint8_t { kServer, kClient };

using MaskKey = std::array<uint8_t, 4>;

// Protocol violations. Names and values are stable: they are metric label values.
enum class Error : uint8_t {
  kNone,
  kReservedBits,            // RSV1-3 set, but no extension was negotiated
  kUnknownOpcode,           // opcode 3-7 or 0xb-0xf
  kFragmentedControl,       // control frame without FIN
  kControlTooLong,          // control frame payload > 125
  kLengthHighBit,           // 64-bit length with its most significant bit set
  kUnmasked,                // server got an unmasked client frame
  kMasked,                  // client got a masked server frame
  kFrameTooLarge,           // frame payload above the configured limit
  kMessageTooLarge,         // message (all fragments together) above the configured limit
  kUnexpectedContinuation,  // continuation frame with no message in progress
  kExpectedContinuation,    // new text/binary frame while a fragmented message is in progress
  kTextNotAccepted,         // text message while the endpoint only accepts binary
  kInvalidUtf8,             // text message or close reason that is not valid UTF-8
  kBadCloseLength,          // close payload of exactly 1 byte
  kBadCloseCode,            // close code not allowed on the wire
};
std::string_view ErrorName(Error e);
// The close code to send when closing for e: 1009 for the size limits, 1003 for refused text, 1007 for
// invalid UTF-8, 1002 for every other violation (1000 for kNone).
CloseCode CloseCodeFor(Error e);

struct FrameHeader {
  bool fin = false;
  uint8_t rsv = 0;     // RSV1-3 as the low 3 bits; always 0 in a header ParseFrameHeader accepted
  uint8_t opcode = 0;  // raw; always a known Opcode in an accepted header
  bool masked = false;
  MaskKey mask_key = {};  // valid when masked
  uint64_t payload_length = 0;
  uint8_t header_size = 0;  // 2..14: the payload starts this many bytes into the frame
};

enum class ParseStatus : uint8_t {
  kOk,        // header complete and valid
  kNeedMore,  // not enough bytes yet to finish (or to reject) the header
  kError,     // protocol violation: close with CloseCodeFor(error)
};

struct HeaderResult {
  ParseStatus status = ParseStatus::kNeedMore;
  Error error = Error::kNone;  // set when status == kError
  FrameHeader header;          // complete when status == kOk
};

// Parses the frame header at the front of in. Checks each field as soon as its bytes are present: the
// first two bytes decide RSV, opcode, control-frame rules and masking; the extended length is checked for
// its high bit and against max_payload (-> kFrameTooLarge, close 1009). Non-minimal length encodings are
// accepted. Only the header is parsed: the payload is complete once in holds header_size + payload_length
// bytes.
HeaderResult ParseFrameHeader(std::span<const uint8_t> in, Role role, uint64_t max_payload);

// XORs data with the mask key. key_offset is the index, within the frame's payload, of data[0], so a
// payload that arrives in pieces can be unmasked piece by piece. Masking and unmasking are the same
// operation.
void Unmask(std::span<uint8_t> data, MaskKey key, uint64_t key_offset = 0);

// Size of the header EncodeFrameHeader writes for this payload length (minimal length encoding).
size_t FrameHeaderSize(uint64_t payload_length, bool masked);

// Writes a frame header (RSV 0, minimal length encoding), masked when mask_key is set. Returns its size, or 0
// if out is too small or the header would be invalid (a control frame without fin or over 125 bytes, an
// opcode not in Opcode, a length with the high bit set).
size_t EncodeFrameHeader(Opcode opcode, bool fin, uint64_t payload_length, std::optional<MaskKey> mask_key,
                         std::span<uint8_t> out);

// Writes a whole frame, header and payload: EncodeFrame unmasked (server to client), EncodeMaskedFrame
// masked with key (client to server). Returns the bytes written, or 0 as EncodeFrameHeader does, or if out
// cannot hold the payload too. payload and out must not overlap.
size_t EncodeFrame(Opcode opcode, bool fin, std::span<const uint8_t> payload, std::span<uint8_t> out);
size_t EncodeMaskedFrame(Opcode opcode, bool fin, std::span<const uint8_t> payload, MaskKey key,
                         std::span<uint8_t> out);

// Close frames. code kNoStatus writes an empty body (reason must then be empty); any other code must pass
// IsValidCloseCode, and reason must be valid UTF-8 of at most kMaxCloseReason bytes. Returns the bytes
// written, or 0 if out is too small or the arguments are invalid.
size_t CloseFrameSize(uint16_t code, std::string_view reason, bool masked);
size_t EncodeCloseFrame(uint16_t code, std::string_view reason, std::optional<MaskKey> mask_key,
                        std::span<uint8_t> out);

struct ClosePayload {
  uint16_t code = static_cast<uint16_t>(CloseCode::kNoStatus);  // kNoStatus when the body was empty
  std::string_view reason;                                      // points into the parsed payload
};
// Parses an (unmasked) close frame payload: empty, or a 2-byte big-endian code plus a UTF-8 reason.
// Returns kNone, kBadCloseLength (1 byte), kBadCloseCode, or kInvalidUtf8; out is written only on kNone.
Error ParseClosePayload(std::span<const uint8_t> payload, ClosePayload* out);

// Incremental UTF-8 validation (Unicode Standard table 3-7: no overlong forms, no surrogates, nothing above
// U+10FFFF). Text may be fed in any number of pieces split anywhere, including inside a character.
class Utf8Validator {
 public:
  // False as soon as the bytes fed so far cannot begin valid UTF-8; stays false until Reset.
  bool Feed(std::span<const uint8_t> bytes);
  // True if everything fed so far is valid and ends on a character boundary.
  bool Complete() const { return !failed_ && need_ == 0; }
  bool Failed() const { return failed_; }
  void Reset() { *this = Utf8Validator(); }

 private:
  uint8_t need_ = 0;   // continuation bytes still expected for the current character
  uint8_t lo_ = 0x80;  // allowed range of the next continuation byte; narrower than 80..BF only right
  uint8_t hi_ = 0xbf;  // after a lead byte, where it excludes overlongs, surrogates and > U+10FFFF
  bool failed_ = false;
};
bool IsValidUtf8(std::span<const uint8_t> bytes);
bool IsValidUtf8(std::string_view text);

// Follows the messages of one connection across frames. Feed it every frame in order, header and unmasked
// payload, with OnFrame; it answers what the frame means:
//
//   kControl        a close, ping or pong (valid; a close's payload already passed ParseClosePayload).
//                   Handle it now; a fragmented message in progress stays in progress.
//   kMessage        an unfragmented text/binary message: payload is the whole message, use it in place.
//   kFragment       part of a fragmented message: append payload to the connection's message buffer.
//   kFinalFragment  the last part: append payload; the buffered message is now complete.
//   kError          a violation: close the connection with CloseCodeFor(error()).
//
// After kError the assembler stays failed. message_opcode() says whether the current or just completed
// message is text or binary. Text is refused (kTextNotAccepted, 1003) unless accept_text; accepted text
// is checked for UTF-8 per fragment (failing fast) and at the end of the message.
class MessageAssembler {
 public:
  enum class Action : uint8_t { kControl, kMessage, kFragment, kFinalFragment, kError };

  MessageAssembler(uint64_t max_message_size, bool accept_text)
      : max_message_(max_message_size), accept_text_(accept_text) {}

  // Checks a header against the message state without consuming it: the gateway calls it as soon as
  // ParseFrameHeader succeeds, to refuse an out-of-sequence or oversize frame before buffering its payload.
  Error Precheck(const FrameHeader& header) const;
  Action OnFrame(const FrameHeader& header, std::span<const uint8_t> payload);

  bool InMessage() const { return in_message_; }
  Opcode message_opcode() const { return message_opcode_; }
  uint64_t message_size() const { return message_size_; }  // bytes of the current message so far
  Error error() const { return error_; }
  void Reset() { *this = MessageAssembler(max_message_, accept_text_); }

 private:
  Action Fail(Error e);

  uint64_t max_message_;
  bool accept_text_;
  bool in_message_ = false;
  Opcode message_opcode_ = Opcode::kBinary;
  uint64_t message_size_ = 0;
  Utf8Validator utf8_;
  Error error_ = Error::kNone;
};

}  // namespace longlink::protocol::ws
