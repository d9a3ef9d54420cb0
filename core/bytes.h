// Byte buffers shared by both programs' connections: the carry-over of a partial frame, and an output
// queue that exists only while bytes wait to be sent.
#pragma once

#include <cstdint>
#include <cstdlib>

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
};

}  // namespace longlink::core
