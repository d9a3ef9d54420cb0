// Fuzz target for the WebSocket frame codec, driven the way a connection's receive path drives it.
//
// The first input byte picks the configuration: bit 0 the parsing side (server: frames must be masked;
// client: they must not be), bit 1 whether text messages are accepted, bits 2-4 the frame and message size
// limit from kLimits, bits 5-7 where to split payloads when unmasking and validating in two pieces. The rest
// is the byte stream of one connection: parse a header, unmask the payload, feed the frame to the message
// assembler, and stop where a connection would stop reading (an incomplete frame, or a violation, which
// closes it).
//
// Untrusted input must never crash the codec; beyond that the target traps when a codec breaks one of its
// promises: an accepted header re-encodes to a header that parses the same (byte for byte when the length
// was minimally encoded), every proper prefix of an accepted header is kNeedMore, unmasking in pieces equals
// unmasking at once, every completed text message is valid UTF-8, every error has a valid close code, and
// the UTF-8 validator agrees with a naive reference decoder on the raw input.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>

#include "protocol/websocket.h"

namespace {

namespace ws = longlink::protocol::ws;

constexpr uint64_t kLimits[8] = {0, 1, 125, 126, 1000, 4096, 65535, 65536};
constexpr size_t kMaxLimit = 65536;

// Static buffers: the harness should not allocate per input any more than the codec does.
uint8_t g_payload[kMaxLimit];
uint8_t g_pieces[kMaxLimit];
uint8_t g_message[kMaxLimit];
uint8_t g_scratch[ws::kMaxHeaderSize + ws::kMaxControlPayload];

void Check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

// The definition of UTF-8, decoded the slow obvious way: code points, then range checks.
bool ReferenceUtf8(std::span<const uint8_t> s) {
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t b = s[i];
    size_t n = 0;
    uint32_t cp = 0;
    uint32_t min = 0;
    if (b < 0x80) {
      ++i;
      continue;
    } else if ((b & 0xe0) == 0xc0) {
      n = 1, cp = b & 0x1f, min = 0x80;
    } else if ((b & 0xf0) == 0xe0) {
      n = 2, cp = b & 0x0f, min = 0x800;
    } else if ((b & 0xf8) == 0xf0) {
      n = 3, cp = b & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (s.size() - i - 1 < n) {
      return false;
    }
    for (size_t k = 1; k <= n; ++k) {
      if ((s[i + k] & 0xc0) != 0x80) {
        return false;
      }
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

void CheckUtf8(std::span<const uint8_t> s, size_t split) {
  const bool valid = ws::IsValidUtf8(s);
  Check(valid == ReferenceUtf8(s));
  split = split < s.size() ? split : s.size();
  ws::Utf8Validator v;
  const bool pieces = v.Feed(s.first(split)) && v.Feed(s.subspan(split)) && v.Complete();
  Check(pieces == valid);
}

void CheckHeader(std::span<const uint8_t> in, const ws::FrameHeader& h, ws::Role role, uint64_t limit) {
  Check(h.rsv == 0 && ws::IsKnownOpcode(h.opcode));
  Check(h.masked == (role == ws::Role::kServer));
  Check(h.payload_length <= limit);
  Check(!ws::IsControl(h.opcode) || (h.fin && h.payload_length <= ws::kMaxControlPayload));
  const size_t mask = h.masked ? 4 : 0;
  Check(h.header_size == 2 + mask || h.header_size == 4 + mask || h.header_size == 10 + mask);
  Check(h.header_size >= ws::FrameHeaderSize(h.payload_length, h.masked) && h.header_size <= in.size());
  for (size_t n = 0; n < h.header_size; ++n) {
    Check(ws::ParseFrameHeader(in.first(n), role, limit).status == ws::ParseStatus::kNeedMore);
  }

  const std::optional<ws::MaskKey> key = h.masked ? std::optional(h.mask_key) : std::nullopt;
  const size_t size = ws::EncodeFrameHeader(static_cast<ws::Opcode>(h.opcode), h.fin, h.payload_length, key, g_scratch);
  Check(size == ws::FrameHeaderSize(h.payload_length, h.masked));
  Check(ws::EncodeFrameHeader(static_cast<ws::Opcode>(h.opcode), h.fin, h.payload_length, key,
                              std::span(g_scratch, size - 1)) == 0);
  const ws::HeaderResult again = ws::ParseFrameHeader(std::span(g_scratch, size), role, limit);
  Check(again.status == ws::ParseStatus::kOk);
  Check(again.header.fin == h.fin && again.header.opcode == h.opcode && again.header.masked == h.masked &&
        again.header.mask_key == h.mask_key && again.header.payload_length == h.payload_length &&
        again.header.header_size == size);
  if (size == h.header_size) {
    Check(std::memcmp(g_scratch, in.data(), size) == 0);
  }
}

// A control frame the assembler accepted: the reply a connection would send must encode.
void CheckControl(const ws::FrameHeader& h, std::span<const uint8_t> payload) {
  if (h.opcode == static_cast<uint8_t>(ws::Opcode::kClose)) {
    ws::ClosePayload close;
    Check(ws::ParseClosePayload(payload, &close) == ws::Error::kNone);
    // Echo the close back, as the closing handshake does; it must reproduce the payload exactly.
    const size_t n = ws::EncodeCloseFrame(close.code, close.reason, std::nullopt, g_scratch);
    Check(n == ws::CloseFrameSize(close.code, close.reason, false) && n == 2 + payload.size());
    Check(payload.empty() || std::memcmp(g_scratch + 2, payload.data(), payload.size()) == 0);
  } else if (h.opcode == static_cast<uint8_t>(ws::Opcode::kPing)) {
    Check(ws::EncodeFrame(ws::Opcode::kPong, true, payload, g_scratch) == 2 + payload.size());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  const uint8_t config = data[0];
  const ws::Role role = (config & 1) != 0 ? ws::Role::kClient : ws::Role::kServer;
  const bool accept_text = (config & 2) != 0;
  const uint64_t limit = kLimits[(config >> 2) & 7];
  const size_t split = config >> 5;
  std::span<const uint8_t> in(data + 1, size - 1);
  CheckUtf8(in, split * 3);

  ws::MessageAssembler assembler(limit, accept_text);
  size_t message_size = 0;
  for (;;) {
    const ws::HeaderResult r = ws::ParseFrameHeader(in, role, limit);
    if (r.status == ws::ParseStatus::kNeedMore) {
      Check(in.size() < ws::kMaxHeaderSize && r.error == ws::Error::kNone);
      break;
    }
    if (r.status == ws::ParseStatus::kError) {
      Check(r.error != ws::Error::kNone && ws::ErrorName(r.error) != "unknown");
      Check(ws::IsValidCloseCode(static_cast<uint16_t>(ws::CloseCodeFor(r.error))));
      break;
    }
    const ws::FrameHeader& h = r.header;
    CheckHeader(in, h, role, limit);
    if (in.size() - h.header_size < h.payload_length) {
      break;  // the payload has not fully arrived
    }
    const size_t length = static_cast<size_t>(h.payload_length);
    const std::span<uint8_t> payload(g_payload, length);
    if (length != 0) {
      std::memcpy(g_payload, in.data() + h.header_size, length);
      std::memcpy(g_pieces, g_payload, length);
    }
    if (h.masked) {
      const size_t cut = split * 5 < length ? split * 5 : length;
      ws::Unmask(payload, h.mask_key);
      ws::Unmask(std::span(g_pieces, cut), h.mask_key, 0);
      ws::Unmask(std::span(g_pieces + cut, length - cut), h.mask_key, cut);
      Check(length == 0 || std::memcmp(g_payload, g_pieces, length) == 0);
    }

    const ws::Error pre = assembler.Precheck(h);
    const ws::MessageAssembler::Action action = assembler.OnFrame(h, payload);
    if (pre != ws::Error::kNone) {
      Check(action == ws::MessageAssembler::Action::kError && assembler.error() == pre);
    } else if (action == ws::MessageAssembler::Action::kError) {
      // Past Precheck only the payload itself can be wrong.
      const ws::Error e = assembler.error();
      Check(e == ws::Error::kInvalidUtf8 || e == ws::Error::kBadCloseLength || e == ws::Error::kBadCloseCode);
    }
    switch (action) {
      case ws::MessageAssembler::Action::kControl:
        CheckControl(h, payload);
        break;
      case ws::MessageAssembler::Action::kMessage:
        Check(!assembler.InMessage() && assembler.message_size() == length && length <= limit);
        Check(assembler.message_opcode() != ws::Opcode::kText || ws::IsValidUtf8(payload));
        break;
      case ws::MessageAssembler::Action::kFragment:
      case ws::MessageAssembler::Action::kFinalFragment: {
        if (h.opcode != static_cast<uint8_t>(ws::Opcode::kContinuation)) {
          message_size = 0;
        }
        Check(message_size + length <= limit);
        if (length != 0) {
          std::memcpy(g_message + message_size, g_payload, length);
        }
        message_size += length;
        Check(assembler.message_size() == message_size);
        if (action == ws::MessageAssembler::Action::kFinalFragment) {
          Check(!assembler.InMessage());
          Check(assembler.message_opcode() != ws::Opcode::kText ||
                ws::IsValidUtf8(std::span<const uint8_t>(g_message, message_size)));
          message_size = 0;
        } else {
          Check(assembler.InMessage());
        }
        break;
      }
      case ws::MessageAssembler::Action::kError: {
        const ws::Error e = assembler.error();
        Check(e != ws::Error::kNone && ws::ErrorName(e) != "unknown");
        const auto code = static_cast<uint16_t>(ws::CloseCodeFor(e));
        Check(ws::IsValidCloseCode(code));
        Check(ws::EncodeCloseFrame(code, ws::ErrorName(e), std::nullopt, g_scratch) != 0);
        return 0;
      }
    }
    in = in.subspan(h.header_size + length);
  }
  return 0;
}
