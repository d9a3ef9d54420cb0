#include "gateway/backend/local/records.h"

namespace longlink::gateway::local {
namespace {

template <class T>
uint8_t* W(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(T));
  return p + sizeof(T);
}
template <class T>
const uint8_t* R(const uint8_t* p, T* v) {
  std::memcpy(v, p, sizeof(T));
  return p + sizeof(T);
}

}  // namespace

void EncodeMsg(const MsgHeader& h, std::span<const uint8_t> payload, std::span<const InboxSlot> slots,
               std::vector<uint8_t>* out) {
  out->resize(kMsgFixedSize + payload.size() + 4 + slots.size() * 16);
  uint8_t* p = out->data();
  p = W(p, h.server_msg_id);
  p = W(p, h.from_user);
  p = W(p, h.from_device);
  p = W(p, h.conv_kind);
  p = W(p, h.target_id);
  p = W(p, h.client_msg_id);
  p = W(p, h.server_time_ms);
  p = W(p, h.origin_shard);
  p = W(p, h.flags);
  p = W(p, static_cast<uint32_t>(payload.size()));
  if (!payload.empty()) std::memcpy(p, payload.data(), payload.size());
  p += payload.size();
  p = W(p, static_cast<uint32_t>(slots.size()));
  for (const InboxSlot& s : slots) {
    p = W(p, s.user);
    p = W(p, s.seq);
  }
}

bool DecodeMsg(std::span<const uint8_t> body, MsgView* out, bool message_only) {
  if (body.size() < kMsgFixedSize) return false;
  const uint8_t* p = body.data();
  MsgHeader& h = out->h;
  p = R(p, &h.server_msg_id);
  p = R(p, &h.from_user);
  p = R(p, &h.from_device);
  p = R(p, &h.conv_kind);
  p = R(p, &h.target_id);
  p = R(p, &h.client_msg_id);
  p = R(p, &h.server_time_ms);
  p = R(p, &h.origin_shard);
  p = R(p, &h.flags);
  uint32_t plen;
  p = R(p, &plen);
  size_t left = body.size() - kMsgFixedSize;
  if (plen > left) return false;
  out->payload = std::span<const uint8_t>(p, plen);
  p += plen;
  left -= plen;
  out->slot_count = 0;
  out->slots = nullptr;
  if (message_only && left == 0) return true;
  if (left < 4) return false;
  uint32_t n;
  p = R(p, &n);
  left -= 4;
  if (left != static_cast<size_t>(n) * 16) return false;
  out->slot_count = n;
  out->slots = p;
  return true;
}

size_t Put(const CursorRec& r, uint8_t* out) {
  uint8_t* p = W(out, r.user);
  p = W(p, r.device);
  p = W(p, r.seq);
  return static_cast<size_t>(p - out);
}
size_t Put(const GroupRec& r, uint8_t* out) {
  uint8_t* p = W(out, r.group);
  p = W(p, r.op);
  p = W(p, r.user);
  return static_cast<size_t>(p - out);
}
size_t Put(const SeqRec& r, uint8_t* out) {
  uint8_t* p = W(out, r.user);
  p = W(p, r.next_seq);
  p = W(p, r.first_seq);
  return static_cast<size_t>(p - out);
}
size_t Put(uint64_t v, uint8_t* out) { return static_cast<size_t>(W(out, v) - out); }

bool Get(std::span<const uint8_t> b, CursorRec* r) {
  if (b.size() != 20) return false;
  const uint8_t* p = R(b.data(), &r->user);
  p = R(p, &r->device);
  R(p, &r->seq);
  return true;
}
bool Get(std::span<const uint8_t> b, GroupRec* r) {
  if (b.size() != 17) return false;
  const uint8_t* p = R(b.data(), &r->group);
  p = R(p, &r->op);
  R(p, &r->user);
  return true;
}
bool Get(std::span<const uint8_t> b, SeqRec* r) {
  if (b.size() != 24) return false;
  const uint8_t* p = R(b.data(), &r->user);
  p = R(p, &r->next_seq);
  R(p, &r->first_seq);
  return true;
}
bool Get(std::span<const uint8_t> b, uint64_t* v) {
  if (b.size() != 8) return false;
  R(b.data(), v);
  return true;
}

}  // namespace longlink::gateway::local
