// Byte buffers shared by both programs' connections: the carry-over of a partial frame, and an output
// queue that exists only while bytes wait to be sent.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace longlink::core {

// Bytes received but not yet parsed: a partial frame, or what followed LOGIN while the connection moves.
struct Carry {
  uint32_t len;
  uint32_t cap;
  uint8_t data[];  // cap bytes

  static Carry* New(uint32_t cap) {
    auto* c = static_cast<Carry*>(std::malloc(sizeof(Carry) + cap));
    c->len = 0;
    c->cap = cap;
    return c;
  }
  // Grows to at least cap; returns the (maybe moved) carry.
  static Carry* Reserve(Carry* c, uint32_t cap) {
    if (c->cap >= cap) return c;
    auto* n = static_cast<Carry*>(std::realloc(c, sizeof(Carry) + cap));
    n->cap = cap;
    return n;
  }
};

// Output waiting for the socket. `sending` is owned by the kernel while a send is in flight; new frames
// append to `pending`, which becomes `sending` when the in-flight send completes.
struct OutQueue {
  uint8_t* sending = nullptr;
  uint32_t sending_len = 0;
  uint32_t sending_off = 0;
  uint32_t sending_cap = 0;
  uint32_t pending_len = 0;
  uint32_t pending_cap = 0;
  uint8_t* pending = nullptr;

  uint32_t bytes() const { return sending_len - sending_off + pending_len; }

  // Appends to the pending buffer, growing it by doubling (at least 256 bytes).
  void Append(const uint8_t* data, uint32_t n) {
    if (pending_len + n > pending_cap) {
      uint32_t cap = pending_len + n;
      if (cap < 256) cap = 256;
      if (cap < pending_cap * 2) cap = pending_cap * 2;
      pending = static_cast<uint8_t*>(std::realloc(pending, cap));
      pending_cap = cap;
    }
    std::memcpy(pending + pending_len, data, n);
    pending_len += n;
  }
  // Makes `sending` hold what goes out next; false if nothing is waiting. A drained sending buffer
  // becomes the next pending one, so a busy connection keeps reusing two buffers.
  bool Ready() {
    if (sending_off < sending_len) return true;
    if (pending_len == 0) return false;
    uint8_t* b = sending;
    sending = pending;
    pending = b;
    uint32_t c = sending_cap;
    sending_cap = pending_cap;
    pending_cap = c;
    sending_len = pending_len;
    sending_off = 0;
    pending_len = 0;
    return true;
  }
  const uint8_t* send_data() const { return sending + sending_off; }
  uint32_t send_len() const { return sending_len - sending_off; }
  // Records n bytes written; true when nothing at all is left to send.
  bool Sent(uint32_t n) {
    sending_off += n;
    return sending_off >= sending_len && pending_len == 0;
  }
  static void Free(OutQueue* q) {
    std::free(q->sending);
    std::free(q->pending);
    delete q;
  }
};

}  // namespace longlink::core
