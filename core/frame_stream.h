// Splits a TCP byte stream into longlink frames for both programs: whole frames are handed over in place
// (straight from the receive buffer), and only a partial frame is copied aside into the connection's
// Carry until the rest arrives.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

#include "core/bytes.h"
#include "protocol/frame.h"

namespace longlink::core {

enum class SplitResult : uint8_t {
  kDone,       // every byte was consumed (a partial frame may wait in the carry)
  kStopped,    // on_frame asked to stop; `rest` holds the bytes after that frame
  kTooLarge,   // a header announced more than max_frame
  kBadFrame,   // bad version or a length below the header size
};

// on_frame(const protocol::Header&, std::span<const uint8_t> body) returns false to stop.
template <class OnFrame>
SplitResult SplitFrames(Carry** carry, const uint8_t* data, uint32_t len, uint32_t max_frame, OnFrame&& on_frame,
                        std::span<const uint8_t>* rest) {
  namespace proto = longlink::protocol;
  auto fail = [](proto::FrameStatus st) {
    return st == proto::FrameStatus::kTooLarge ? SplitResult::kTooLarge : SplitResult::kBadFrame;
  };
  while (len > 0) {
    proto::Header h;
    if (*carry != nullptr) {
      Carry* k = *carry;
      if (k->len < proto::kHeaderSize) {
        uint32_t take = std::min<uint32_t>(len, static_cast<uint32_t>(proto::kHeaderSize) - k->len);
        std::memcpy(k->data + k->len, data, take);
        k->len += take;
        data += take;
        len -= take;
        if (k->len < proto::kHeaderSize) return SplitResult::kDone;
      }
      proto::FrameStatus st = proto::PeekFrame({k->data, k->len}, max_frame, &h);
      if (st != proto::FrameStatus::kOk && st != proto::FrameStatus::kNeedMore) return fail(st);
      if (k->len < h.length) {
        k = *carry = Carry::Reserve(k, h.length);
        uint32_t take = std::min<uint32_t>(len, h.length - k->len);
        std::memcpy(k->data + k->len, data, take);
        k->len += take;
        data += take;
        len -= take;
        if (k->len < h.length) return SplitResult::kDone;
      }
      // The carry holds exactly one frame. Detach it first: the handler may close the connection.
      *carry = nullptr;
      bool go_on = on_frame(h, std::span<const uint8_t>(k->data + proto::kHeaderSize, h.length - proto::kHeaderSize));
      std::free(k);
      if (!go_on) {
        *rest = std::span<const uint8_t>(data, len);
        return SplitResult::kStopped;
      }
      continue;
    }
    proto::FrameStatus st = proto::PeekFrame({data, len}, max_frame, &h);
    if (st == proto::FrameStatus::kOk) {
      bool go_on = on_frame(h, std::span<const uint8_t>(data + proto::kHeaderSize, h.length - proto::kHeaderSize));
      data += h.length;
      len -= h.length;
      if (!go_on) {
        *rest = std::span<const uint8_t>(data, len);
        return SplitResult::kStopped;
      }
      continue;
    }
    if (st != proto::FrameStatus::kNeedMore) return fail(st);
    uint32_t want = len >= proto::kHeaderSize ? h.length : static_cast<uint32_t>(proto::kHeaderSize);
    Carry* k = Carry::New(std::max(want, len));
    std::memcpy(k->data, data, len);
    k->len = len;
    *carry = k;
    return SplitResult::kDone;
  }
  return SplitResult::kDone;
}

}  // namespace longlink::core
