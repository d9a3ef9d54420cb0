#include "protocol/websocket.h"

#include <cstring>

namespace longlink::protocol::ws {
namespace {

constexpr uint8_t kFinBit = 0x80;
constexpr uint8_t kMaskBit = 0x80;
constexpr uint8_t kLength16 = 126;  // 7-bit length values that announce an extended length
constexpr uint8_t kLength64 = 127;
constexpr uint64_t kLengthHighBit = uint64_t{1} << 63;

uint16_t LoadU16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint64_t LoadU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    v = (v << 8) | p[i];
  }
  return v;
}

// The rules a single header must satisfy on its own, whoever produced it.
Error CheckFrameRules(const FrameHeader& h) {
  if (h.rsv != 0) {
    return Error::kReservedBits;
  }
  if (!IsKnownOpcode(h.opcode)) {
    return Error::kUnknownOpcode;
  }
  if (IsControl(h.opcode)) {
    if (!h.fin) {
      return Error::kFragmentedControl;
    }
    if (h.payload_length > kMaxControlPayload) {
      return Error::kControlTooLong;
    }
  }
  return Error::kNone;
}

size_t ExtendedLengthSize(uint64_t payload_length) {
  if (payload_length < kLength16) {
    return 0;
  }
  return payload_length <= 0xffff ? 2 : 8;
}

}  // namespace

bool IsKnownOpcode(uint8_t opcode) {
  switch (static_cast<Opcode>(opcode)) {
    case Opcode::kContinuation:
    case Opcode::kText:
    case Opcode::kBinary:
    case Opcode::kClose:
    case Opcode::kPing:
    case Opcode::kPong:
      return true;
  }
  return false;
}

bool IsValidCloseCode(uint16_t code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) || (code >= 3000 && code <= 4999);
}

std::string_view ErrorName(Error e) {
  switch (e) {
    case Error::kNone:
      return "none";
    case Error::kReservedBits:
      return "reserved_bits";
    case Error::kUnknownOpcode:
      return "unknown_opcode";
    case Error::kFragmentedControl:
      return "fragmented_control";
    case Error::kControlTooLong:
      return "control_too_long";
    case Error::kLengthHighBit:
      return "length_high_bit";
    case Error::kUnmasked:
      return "unmasked";
    case Error::kMasked:
      return "masked";
    case Error::kFrameTooLarge:
      return "frame_too_large";
    case Error::kMessageTooLarge:
      return "message_too_large";
    case Error::kUnexpectedContinuation:
      return "unexpected_continuation";
    case Error::kExpectedContinuation:
      return "expected_continuation";
    case Error::kTextNotAccepted:
      return "text_not_accepted";
    case Error::kInvalidUtf8:
      return "invalid_utf8";
    case Error::kBadCloseLength:
      return "bad_close_length";
    case Error::kBadCloseCode:
      return "bad_close_code";
  }
  return "unknown";
}

CloseCode CloseCodeFor(Error e) {
  switch (e) {
    case Error::kNone:
      return CloseCode::kNormal;
    case Error::kFrameTooLarge:
    case Error::kMessageTooLarge:
      return CloseCode::kMessageTooBig;
    case Error::kTextNotAccepted:
      return CloseCode::kUnsupportedData;
    case Error::kInvalidUtf8:
      return CloseCode::kInvalidPayload;
    default:
      return CloseCode::kProtocolError;
  }
}

HeaderResult ParseFrameHeader(std::span<const uint8_t> in, Role role, uint64_t max_payload) {
  HeaderResult r;
  if (in.size() < kMinHeaderSize) {
    return r;
  }
  const uint8_t b0 = in[0];
  const uint8_t b1 = in[1];
  FrameHeader& h = r.header;
  h.fin = (b0 & kFinBit) != 0;
  h.rsv = static_cast<uint8_t>((b0 >> 4) & 0x7);
  h.opcode = b0 & 0xf;
  h.masked = (b1 & kMaskBit) != 0;
  const uint8_t length7 = b1 & 0x7f;
  h.payload_length = length7;  // provisional until the extended length is read
  auto fail = [&r](Error e) {
    r.status = ParseStatus::kError;
    r.error = e;
    return r;
  };

  // Everything the first two bytes can decide is decided before waiting for the rest.
  if (Error e = CheckFrameRules(h); e != Error::kNone) {
    return fail(e);
  }
  if (role == Role::kServer && !h.masked) {
    return fail(Error::kUnmasked);
  }
  if (role == Role::kClient && h.masked) {
    return fail(Error::kMasked);
  }

  const size_t extended = length7 == kLength16 ? 2 : length7 == kLength64 ? 8 : 0;
  h.header_size = static_cast<uint8_t>(kMinHeaderSize + extended + (h.masked ? 4 : 0));
  if (in.size() < kMinHeaderSize + extended) {
    return r;
  }
  if (extended == 2) {
    h.payload_length = LoadU16(&in[2]);
  } else if (extended == 8) {
    h.payload_length = LoadU64(&in[2]);
    if ((h.payload_length & kLengthHighBit) != 0) {
      return fail(Error::kLengthHighBit);
    }
  }
  if (h.payload_length > max_payload) {
    return fail(Error::kFrameTooLarge);
  }
  if (in.size() < h.header_size) {
    return r;
  }
  if (h.masked) {
    std::memcpy(h.mask_key.data(), &in[kMinHeaderSize + extended], 4);
  }
  r.status = ParseStatus::kOk;
  return r;
}

void Unmask(std::span<uint8_t> data, MaskKey key, uint64_t key_offset) {
  // The key rotated so that byte i of data pairs with key[(key_offset + i) % 4], repeated to 8 bytes. It is
  // laid out in memory order, so XORing it with a word loaded by memcpy is right on any endianness.
  uint8_t pattern[8];
  for (size_t i = 0; i < 8; ++i) {
    pattern[i] = key[(key_offset + i) & 3];
  }
  uint64_t word_key;
  std::memcpy(&word_key, pattern, 8);

  uint8_t* p = data.data();
  size_t n = data.size();
  // memcpy compiles to plain (unaligned) loads and stores; the compiler is free to widen the loop further.
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    w ^= word_key;
    std::memcpy(p, &w, 8);
  }
  for (size_t i = 0; i < n; ++i) {
    p[i] ^= pattern[i];
  }
}

size_t FrameHeaderSize(uint64_t payload_length, bool masked) {
  return kMinHeaderSize + ExtendedLengthSize(payload_length) + (masked ? 4 : 0);
}

size_t EncodeFrameHeader(Opcode opcode, bool fin, uint64_t payload_length, std::optional<MaskKey> mask_key,
                         std::span<uint8_t> out) {
  const FrameHeader h{.fin = fin, .opcode = static_cast<uint8_t>(opcode), .payload_length = payload_length};
  if (CheckFrameRules(h) != Error::kNone || (payload_length & kLengthHighBit) != 0) {
    return 0;
  }
  const size_t size = FrameHeaderSize(payload_length, mask_key.has_value());
  if (out.size() < size) {
    return 0;
  }
  uint8_t* p = out.data();
  *p++ = static_cast<uint8_t>((fin ? kFinBit : 0) | static_cast<uint8_t>(opcode));
  const uint8_t mask_bit = mask_key.has_value() ? kMaskBit : 0;
  switch (ExtendedLengthSize(payload_length)) {
    case 0:
      *p++ = static_cast<uint8_t>(mask_bit | payload_length);
      break;
    case 2:
      *p++ = mask_bit | kLength16;
      *p++ = static_cast<uint8_t>(payload_length >> 8);
      *p++ = static_cast<uint8_t>(payload_length);
      break;
    default:
      *p++ = mask_bit | kLength64;
      for (int shift = 56; shift >= 0; shift -= 8) {
        *p++ = static_cast<uint8_t>(payload_length >> shift);
      }
      break;
  }
  if (mask_key.has_value()) {
    std::memcpy(p, mask_key->data(), 4);
  }
  return size;
}

namespace {

size_t EncodeWholeFrame(Opcode opcode, bool fin, std::span<const uint8_t> payload, std::optional<MaskKey> mask_key,
                        std::span<uint8_t> out) {
  const size_t header = EncodeFrameHeader(opcode, fin, payload.size(), mask_key, out);
  if (header == 0 || out.size() - header < payload.size()) {
    return 0;
  }
  // memcpy with a null source is undefined even for n == 0, and empty spans may well be null.
  if (!payload.empty()) {
    std::memcpy(out.data() + header, payload.data(), payload.size());
    if (mask_key.has_value()) {
      Unmask(out.subspan(header, payload.size()), *mask_key);
    }
  }
  return header + payload.size();
}

}  // namespace

size_t EncodeFrame(Opcode opcode, bool fin, std::span<const uint8_t> payload, std::span<uint8_t> out) {
  return EncodeWholeFrame(opcode, fin, payload, std::nullopt, out);
}

size_t EncodeMaskedFrame(Opcode opcode, bool fin, std::span<const uint8_t> payload, MaskKey key,
                         std::span<uint8_t> out) {
  return EncodeWholeFrame(opcode, fin, payload, key, out);
}

size_t CloseFrameSize(uint16_t code, std::string_view reason, bool masked) {
  const size_t payload = code == static_cast<uint16_t>(CloseCode::kNoStatus) ? 0 : 2 + reason.size();
  return FrameHeaderSize(payload, masked) + payload;
}

size_t EncodeCloseFrame(uint16_t code, std::string_view reason, std::optional<MaskKey> mask_key,
                        std::span<uint8_t> out) {
  uint8_t payload[kMaxControlPayload];
  size_t size = 0;
  if (code == static_cast<uint16_t>(CloseCode::kNoStatus)) {
    if (!reason.empty()) {
      return 0;
    }
  } else {
    if (!IsValidCloseCode(code) || reason.size() > kMaxCloseReason || !IsValidUtf8(reason)) {
      return 0;
    }
    payload[0] = static_cast<uint8_t>(code >> 8);
    payload[1] = static_cast<uint8_t>(code);
    if (!reason.empty()) {
      std::memcpy(payload + 2, reason.data(), reason.size());
    }
    size = 2 + reason.size();
  }
  return EncodeWholeFrame(Opcode::kClose, true, std::span<const uint8_t>(payload, size), mask_key, out);
}

Error ParseClosePayload(std::span<const uint8_t> payload, ClosePayload* out) {
  if (payload.empty()) {
    *out = ClosePayload{};
    return Error::kNone;
  }
  if (payload.size() == 1) {
    return Error::kBadCloseLength;
  }
  const uint16_t code = LoadU16(payload.data());
  if (!IsValidCloseCode(code)) {
    return Error::kBadCloseCode;
  }
  const std::span<const uint8_t> reason = payload.subspan(2);
  if (!IsValidUtf8(reason)) {
    return Error::kInvalidUtf8;
  }
  out->code = code;
  out->reason = std::string_view(reinterpret_cast<const char*>(reason.data()), reason.size());
  return Error::kNone;
}

bool Utf8Validator::Feed(std::span<const uint8_t> bytes) {
  if (failed_) {
    return false;
  }
  const uint8_t* p = bytes.data();
  const uint8_t* const end = p + bytes.size();
  // Locals, so the compiler keeps the state in registers rather than storing it back per byte.
  uint8_t need = need_;
  uint8_t lo = lo_;
  uint8_t hi = hi_;
  while (p != end) {
    if (need == 0) {
      // Between characters: skip ASCII a word at a time, which is most of any chat text.
      while (end - p >= 8) {
        uint64_t w;
        std::memcpy(&w, p, 8);
        if ((w & 0x8080808080808080ULL) != 0) {
          break;
        }
        p += 8;
      }
      if (p == end) {
        break;
      }
      const uint8_t b = *p++;
      if (b < 0x80) {
        continue;
      }
      // A lead byte fixes the length and the range of the first continuation byte (Unicode table 3-7).
      if (b < 0xc2) {
        // 80..BF: a continuation byte with no lead; C0, C1: overlong two-byte forms of ASCII.
        failed_ = true;
        return false;
      }
      if (b < 0xe0) {
        need = 1;
      } else if (b < 0xf0) {
        need = 2;
        lo = b == 0xe0 ? 0xa0 : 0x80;  // E0 80..9F would be overlong
        hi = b == 0xed ? 0x9f : 0xbf;  // ED A0..BF would be a UTF-16 surrogate
      } else if (b < 0xf5) {
        need = 3;
        lo = b == 0xf0 ? 0x90 : 0x80;  // F0 80..8F would be overlong
        hi = b == 0xf4 ? 0x8f : 0xbf;  // F4 90.. would be above U+10FFFF
      } else {
        failed_ = true;  // F5..FF never occur
        return false;
      }
    } else {
      const uint8_t b = *p++;
      if (b < lo || b > hi) {
        failed_ = true;
        return false;
      }
      --need;
      lo = 0x80;
      hi = 0xbf;
    }
  }
  need_ = need;
  lo_ = lo;
  hi_ = hi;
  return true;
}

bool IsValidUtf8(std::span<const uint8_t> bytes) {
  Utf8Validator v;
  return v.Feed(bytes) && v.Complete();
}

bool IsValidUtf8(std::string_view text) {
  return IsValidUtf8(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

Error MessageAssembler::Precheck(const FrameHeader& header) const {
  if (error_ != Error::kNone) {
    return error_;
  }
  if (Error e = CheckFrameRules(header); e != Error::kNone) {
    return e;
  }
  if (IsControl(header.opcode)) {
    return Error::kNone;
  }
  if (header.opcode == static_cast<uint8_t>(Opcode::kContinuation)) {
    if (!in_message_) {
      return Error::kUnexpectedContinuation;
    }
    // message_size_ <= max_message_ always holds, so the subtraction cannot wrap.
    return header.payload_length > max_message_ - message_size_ ? Error::kMessageTooLarge : Error::kNone;
  }
  if (in_message_) {
    return Error::kExpectedContinuation;
  }
  if (header.opcode == static_cast<uint8_t>(Opcode::kText) && !accept_text_) {
    return Error::kTextNotAccepted;
  }
  return header.payload_length > max_message_ ? Error::kMessageTooLarge : Error::kNone;
}

MessageAssembler::Action MessageAssembler::Fail(Error e) {
  error_ = e;
  in_message_ = false;
  return Action::kError;
}

MessageAssembler::Action MessageAssembler::OnFrame(const FrameHeader& header, std::span<const uint8_t> payload) {
  // The payload actually handed over is what counts against the limit.
  FrameHeader h = header;
  h.payload_length = payload.size();
  if (Error e = Precheck(h); e != Error::kNone) {
    return Fail(e);
  }
  if (IsControl(h.opcode)) {
    if (h.opcode == static_cast<uint8_t>(Opcode::kClose)) {
      ClosePayload close;
      if (Error e = ParseClosePayload(payload, &close); e != Error::kNone) {
        return Fail(e);
      }
    }
    return Action::kControl;
  }
  if (h.opcode != static_cast<uint8_t>(Opcode::kContinuation)) {
    message_opcode_ = static_cast<Opcode>(h.opcode);
    message_size_ = 0;
    utf8_.Reset();
  }
  message_size_ += payload.size();
  if (message_opcode_ == Opcode::kText && (!utf8_.Feed(payload) || (h.fin && !utf8_.Complete()))) {
    return Fail(Error::kInvalidUtf8);
  }
  if (!h.fin) {
    in_message_ = true;
    return Action::kFragment;
  }
  const bool fragmented = in_message_;
  in_message_ = false;
  return fragmented ? Action::kFinalFragment : Action::kMessage;
}

}  // namespace longlink::protocol::ws
