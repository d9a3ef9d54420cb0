#include "protocol/frame.h"

#include <concepts>
#include <cstring>
#include <limits>
#include <type_traits>

namespace longlink::protocol {
namespace {

// Each body's wire layout is written down exactly once, as a Fields() overload that walks the struct in
// declaration order. The same walk is run by three visitors (Reader, Sizer, Writer), so decoding, sizing
// and encoding cannot disagree about the layout.
template <typename B, typename T>
concept BodyOf = std::same_as<std::remove_const_t<B>, T>;

constexpr size_t kMaxString = std::numeric_limits<uint16_t>::max();
constexpr size_t kMaxPayload = std::numeric_limits<uint32_t>::max();

uint16_t LoadU16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t LoadU32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}
uint64_t LoadU64(const uint8_t* p) { return (uint64_t{LoadU32(p)} << 32) | LoadU32(p + 4); }

void StoreU16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void StoreU32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}
void StoreU64(uint8_t* p, uint64_t v) {
  StoreU32(p, static_cast<uint32_t>(v >> 32));
  StoreU32(p + 4, static_cast<uint32_t>(v));
}

// Reads fields from untrusted bytes. The first short read latches failure and every later read becomes a
// no-op, so the field walks need no error checks of their own; Done() is the single verdict.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}

  void U8(uint8_t& v) {
    if (Take(1)) {
      v = in_[pos_ - 1];
    }
  }
  void U16(uint16_t& v) {
    if (Take(2)) {
      v = LoadU16(&in_[pos_ - 2]);
    }
  }
  void U32(uint32_t& v) {
    if (Take(4)) {
      v = LoadU32(&in_[pos_ - 4]);
    }
  }
  void U64(uint64_t& v) {
    if (Take(8)) {
      v = LoadU64(&in_[pos_ - 8]);
    }
  }
  void Str(std::string_view& v) {
    uint16_t n = 0;
    U16(n);
    if (Take(n)) {
      v = std::string_view(reinterpret_cast<const char*>(in_.data() + pos_ - n), n);
    }
  }
  void Payload(std::span<const uint8_t>& v) {
    uint32_t n = 0;
    U32(n);
    if (Take(n)) {
      v = in_.subspan(pos_ - n, n);
    }
  }

  // True if every read succeeded and the body was consumed exactly.
  bool Done() const { return ok_ && pos_ == in_.size(); }

 private:
  bool Take(size_t n) {
    // Compare against what is left rather than pos_ + n, which a u32 length could overflow on 32-bit.
    if (!ok_ || n > in_.size() - pos_) {
      ok_ = false;
      return false;
    }
    pos_ += n;
    return true;
  }

  std::span<const uint8_t> in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

// Adds up the encoded body size and notes any variable field too long for its length prefix.
class Sizer {
 public:
  void U8(uint8_t) { Add(1); }
  void U16(uint16_t) { Add(2); }
  void U32(uint32_t) { Add(4); }
  void U64(uint64_t) { Add(8); }
  void Str(std::string_view v) {
    ok_ = ok_ && v.size() <= kMaxString;
    Add(2);
    Add(v.size());
  }
  void Payload(std::span<const uint8_t> v) {
    ok_ = ok_ && v.size() <= kMaxPayload;
    Add(4);
    Add(v.size());
  }

  size_t size() const { return size_; }
  bool ok() const { return ok_; }

 private:
  // Saturates instead of wrapping so an absurd span can never make a frame look small.
  void Add(size_t n) { size_ = n > SIZE_MAX - size_ ? SIZE_MAX : size_ + n; }

  size_t size_ = 0;
  bool ok_ = true;
};

// Writes fields into a buffer the caller has already checked is large enough (Sizer ran first).
class Writer {
 public:
  explicit Writer(uint8_t* out) : p_(out) {}

  void U8(uint8_t v) { *p_++ = v; }
  void U16(uint16_t v) {
    StoreU16(p_, v);
    p_ += 2;
  }
  void U32(uint32_t v) {
    StoreU32(p_, v);
    p_ += 4;
  }
  void U64(uint64_t v) {
    StoreU64(p_, v);
    p_ += 8;
  }
  void Str(std::string_view v) {
    U16(static_cast<uint16_t>(v.size()));
    Bytes(v.data(), v.size());
  }
  void Payload(std::span<const uint8_t> v) {
    U32(static_cast<uint32_t>(v.size()));
    Bytes(v.data(), v.size());
  }

 private:
  void Bytes(const void* src, size_t n) {
    // memcpy with a null source is undefined even for n == 0, and empty views may well be null.
    if (n != 0) {
      std::memcpy(p_, src, n);
      p_ += n;
    }
  }

  uint8_t* p_;
};

// ---- the wire layout of every body, in struct declaration order (docs/protocol.md mirrors this) ----

void Fields(auto& v, BodyOf<LoginBody> auto& b) {
  v.U64(b.user_id);
  v.U32(b.device_id);
  v.U8(b.platform);
  v.Str(b.token);
}
void Fields(auto& v, BodyOf<LoginAckBody> auto& b) {
  v.U16(b.status);
  v.U32(b.heartbeat_interval_ms);
  v.U32(b.heartbeat_timeout_ms);
  v.U64(b.session_id);
  v.U64(b.server_time_ms);
  v.Str(b.message);
}
void Fields(auto& v, BodyOf<PingBody> auto& b) { v.U64(b.timestamp); }
void Fields(auto& v, BodyOf<PongBody> auto& b) { v.U64(b.timestamp); }
void Fields(auto& v, BodyOf<SendBody> auto& b) {
  v.U8(b.target_kind);
  v.U64(b.target_id);
  v.U64(b.client_msg_id);
  v.Payload(b.payload);
}
void Fields(auto& v, BodyOf<SendAckBody> auto& b) {
  v.U16(b.status);
  v.U64(b.client_msg_id);
  v.U64(b.server_msg_id);
  v.U64(b.server_time_ms);
}
void Fields(auto& v, BodyOf<PushBody> auto& b) {
  v.U64(b.seq);
  v.U64(b.server_msg_id);
  v.U64(b.from_user);
  v.U32(b.from_device);
  v.U8(b.conv_kind);
  v.U64(b.conv_id);
  v.U64(b.client_msg_id);
  v.U64(b.server_time_ms);
  v.Payload(b.payload);
}
void Fields(auto& v, BodyOf<PushAckBody> auto& b) { v.U64(b.seq); }
void Fields(auto& v, BodyOf<SyncBody> auto& b) {
  v.U64(b.after_seq);
  v.U32(b.limit);
}
void Fields(auto& v, BodyOf<SyncDoneBody> auto& b) {
  v.U64(b.max_seq);
  v.U8(b.has_more);
}
void Fields(auto& v, BodyOf<KickBody> auto& b) {
  v.U16(b.reason);
  v.Str(b.message);
}
void Fields(auto& v, BodyOf<GoawayBody> auto& b) {
  v.U32(b.reconnect_delay_ms);
  v.Str(b.reason);
}
void Fields(auto&, BodyOf<LogoutBody> auto&) {}
void Fields(auto& v, BodyOf<ErrorBody> auto& b) {
  v.U16(b.code);
  v.Str(b.message);
}

void Fields(auto& v, BodyOf<GroupCreateBody> auto& b) { v.U64(b.group_id); }
void Fields(auto& v, BodyOf<GroupJoinBody> auto& b) { v.U64(b.group_id); }
void Fields(auto& v, BodyOf<GroupLeaveBody> auto& b) { v.U64(b.group_id); }
void Fields(auto& v, BodyOf<GroupMembersBody> auto& b) {
  v.U64(b.group_id);
  v.U64(b.after_user);
}
void Fields(auto& v, BodyOf<GroupReplyBody> auto& b) {
  v.U16(b.status);
  v.U64(b.group_id);
  v.U8(b.has_more);
  v.Payload(b.members);
}
void Fields(auto& v, BodyOf<PresenceSubscribeBody> auto& b) {
  v.U8(b.subscribe);
  v.Payload(b.user_ids);
}
void Fields(auto& v, BodyOf<PresenceBody> auto& b) {
  v.U64(b.user_id);
  v.U8(b.online);
  v.U32(b.devices);
  v.U64(b.time_ms);
}

// Checks beyond the layout: id lists hold whole u64s.
template <typename B>
bool Valid(const B&) {
  return true;
}
bool Valid(const GroupReplyBody& b) { return b.members.size() % kIdSize == 0; }
bool Valid(const PresenceSubscribeBody& b) { return b.user_ids.size() % kIdSize == 0; }

template <typename B>
bool DecodeBody(std::span<const uint8_t> in, B* out) {
  // Decode into a local so a malformed body never leaves the caller holding half-filled fields.
  B body;
  Reader r(in);
  Fields(r, body);
  if (!r.Done() || !Valid(body)) {
    return false;
  }
  *out = body;
  return true;
}

template <typename B>
size_t SizeOf(const B& b) {
  Sizer s;
  Fields(s, b);
  return s.size() > SIZE_MAX - kHeaderSize ? SIZE_MAX : kHeaderSize + s.size();
}

template <typename B>
size_t EncodeFrame(uint32_t request_id, const B& b, std::span<uint8_t> out) {
  Sizer s;
  Fields(s, b);
  if (!s.ok() || s.size() > std::numeric_limits<uint32_t>::max() - kHeaderSize) {
    return 0;
  }
  const size_t size = kHeaderSize + s.size();
  if (out.size() < size) {
    return 0;
  }
  Writer w(out.data());
  w.U32(static_cast<uint32_t>(size));
  w.U8(kVersion);
  w.U8(static_cast<uint8_t>(B::kOpcode));
  w.U16(0);  // flags: reserved in v1
  w.U32(request_id);
  Fields(w, b);
  return size;
}

}  // namespace

bool IsKnownOpcode(uint8_t op) { return op >= 1 && op <= kMaxOpcode && op != kReservedOpcode; }

uint64_t IdAt(std::span<const uint8_t> ids, size_t i) { return LoadU64(ids.data() + i * kIdSize); }
void PutId(uint8_t* out, uint64_t id) { StoreU64(out, id); }

std::string_view OpcodeName(uint8_t op) {
  // Indexed by opcode value; these strings are metric label values, so they must never change.
  static constexpr std::string_view kNames[kMaxOpcode + 1] = {
      "unknown",  "login", "login_ack", "ping", "pong",   "send",   "send_ack", "push",
      "push_ack", "sync",  "sync_done", "kick", "goaway", "logout", "error", "unknown",
      "group_create", "group_join", "group_leave", "group_members", "group_reply", "presence_subscribe",
      "presence",
  };
  return IsKnownOpcode(op) ? kNames[op] : kNames[0];
}

std::string_view FrameStatusName(FrameStatus s) {
  switch (s) {
    case FrameStatus::kOk:
      return "ok";
    case FrameStatus::kNeedMore:
      return "need_more";
    case FrameStatus::kTooLarge:
      return "too_large";
    case FrameStatus::kTooSmall:
      return "too_small";
    case FrameStatus::kBadVersion:
      return "bad_version";
  }
  return "unknown";
}

FrameStatus PeekFrame(std::span<const uint8_t> in, uint32_t max_frame, Header* header) {
  if (in.size() < kHeaderSize) {
    return FrameStatus::kNeedMore;
  }
  const uint8_t* p = in.data();
  header->length = LoadU32(p);
  header->version = p[4];
  header->opcode = p[5];
  header->flags = LoadU16(p + 6);
  header->request_id = LoadU32(p + 8);
  // Version first: under another version the length field may not mean what we think it means.
  if (header->version != kVersion) {
    return FrameStatus::kBadVersion;
  }
  if (header->length < kHeaderSize) {
    return FrameStatus::kTooSmall;
  }
  if (header->length > max_frame) {
    return FrameStatus::kTooLarge;
  }
  return in.size() < header->length ? FrameStatus::kNeedMore : FrameStatus::kOk;
}

bool Decode(std::span<const uint8_t> body, LoginBody* out) { return DecodeBody(body, out); }
bool Decode(std::span<const uint8_t> body, LoginAckBody* out) { return DecodeBody(body, out); }
bool Decode(std::span<const uint8_t> body, PingBody* out) { return DecodeBody(body, out); }
bool Decode(std::span<const uint8_t> body, PongBody* out) { return DecodeBody(body, out); }
bool Decode(std::span<const uint8_t> body, SendBody* out) { return DecodeBody(body, out); }
bool Decode(std::span<const uint8_t> body, SendAckBody* out) { return DecodeBody(body, out); }
bool Decode(std::span<const uint8_t> body, PushBody* out) { return DecodeBody(body, out); }
bool Decode(std::span<const uint8_t> body, PushAckBody* out) { return DecodeBody(body, out); }
bool Decode(std::span<const uint8_t> body, SyncBody* out) { return DecodeBody(body, out); }
bool Decode(std::span<const uint8_t> body, SyncDoneBody* out) { return DecodeBody(body, out); }
bool Decode(std::span<const uint8_t> body, KickBody* out) { return DecodeBody(body, out); }
bool Decode(std::span<const uint8_t> body, GoawayBody* out) { return DecodeBody(body, out); }
bool Decode(std::span<const uint8_t> body, LogoutBody* out) { return DecodeBody(body, out); }
bool Decode(std::span<const uint8_t> body, ErrorBody* out) { return DecodeBody(body, out); }
bool Decode(std::span<const uint8_t> body, GroupCreateBody* out) { return DecodeBody(body, out); }
bool Decode(std::span<const uint8_t> body, GroupJoinBody* out) { return DecodeBody(body, out); }
bool Decode(std::span<const uint8_t> body, GroupLeaveBody* out) { return DecodeBody(body, out); }
bool Decode(std::span<const uint8_t> body, GroupMembersBody* out) { return DecodeBody(body, out); }
bool Decode(std::span<const uint8_t> body, GroupReplyBody* out) { return DecodeBody(body, out); }
bool Decode(std::span<const uint8_t> body, PresenceSubscribeBody* out) { return DecodeBody(body, out); }
bool Decode(std::span<const uint8_t> body, PresenceBody* out) { return DecodeBody(body, out); }

size_t FrameSize(const LoginBody& b) { return SizeOf(b); }
size_t FrameSize(const LoginAckBody& b) { return SizeOf(b); }
size_t FrameSize(const PingBody& b) { return SizeOf(b); }
size_t FrameSize(const PongBody& b) { return SizeOf(b); }
size_t FrameSize(const SendBody& b) { return SizeOf(b); }
size_t FrameSize(const SendAckBody& b) { return SizeOf(b); }
size_t FrameSize(const PushBody& b) { return SizeOf(b); }
size_t FrameSize(const PushAckBody& b) { return SizeOf(b); }
size_t FrameSize(const SyncBody& b) { return SizeOf(b); }
size_t FrameSize(const SyncDoneBody& b) { return SizeOf(b); }
size_t FrameSize(const KickBody& b) { return SizeOf(b); }
size_t FrameSize(const GoawayBody& b) { return SizeOf(b); }
size_t FrameSize(const LogoutBody& b) { return SizeOf(b); }
size_t FrameSize(const ErrorBody& b) { return SizeOf(b); }
size_t FrameSize(const GroupCreateBody& b) { return SizeOf(b); }
size_t FrameSize(const GroupJoinBody& b) { return SizeOf(b); }
size_t FrameSize(const GroupLeaveBody& b) { return SizeOf(b); }
size_t FrameSize(const GroupMembersBody& b) { return SizeOf(b); }
size_t FrameSize(const GroupReplyBody& b) { return SizeOf(b); }
size_t FrameSize(const PresenceSubscribeBody& b) { return SizeOf(b); }
size_t FrameSize(const PresenceBody& b) { return SizeOf(b); }

size_t Encode(uint32_t request_id, const LoginBody& b, std::span<uint8_t> out) {
  return EncodeFrame(request_id, b, out);
}
size_t Encode(uint32_t request_id, const LoginAckBody& b, std::span<uint8_t> out) {
  return EncodeFrame(request_id, b, out);
}
size_t Encode(uint32_t request_id, const PingBody& b, std::span<uint8_t> out) {
  return EncodeFrame(request_id, b, out);
}
size_t Encode(uint32_t request_id, const PongBody& b, std::span<uint8_t> out) {
  return EncodeFrame(request_id, b, out);
}
size_t Encode(uint32_t request_id, const SendBody& b, std::span<uint8_t> out) {
  return EncodeFrame(request_id, b, out);
}
size_t Encode(uint32_t request_id, const SendAckBody& b, std::span<uint8_t> out) {
  return EncodeFrame(request_id, b, out);
}
size_t Encode(uint32_t request_id, const PushBody& b, std::span<uint8_t> out) {
  return EncodeFrame(request_id, b, out);
}
size_t Encode(uint32_t request_id, const PushAckBody& b, std::span<uint8_t> out) {
  return EncodeFrame(request_id, b, out);
}
size_t Encode(uint32_t request_id, const SyncBody& b, std::span<uint8_t> out) {
  return EncodeFrame(request_id, b, out);
}
size_t Encode(uint32_t request_id, const SyncDoneBody& b, std::span<uint8_t> out) {
  return EncodeFrame(request_id, b, out);
}
size_t Encode(uint32_t request_id, const KickBody& b, std::span<uint8_t> out) {
  return EncodeFrame(request_id, b, out);
}
size_t Encode(uint32_t request_id, const GoawayBody& b, std::span<uint8_t> out) {
  return EncodeFrame(request_id, b, out);
}
size_t Encode(uint32_t request_id, const LogoutBody& b, std::span<uint8_t> out) {
  return EncodeFrame(request_id, b, out);
}
size_t Encode(uint32_t request_id, const ErrorBody& b, std::span<uint8_t> out) {
  return EncodeFrame(request_id, b, out);
}
size_t Encode(uint32_t request_id, const GroupCreateBody& b, std::span<uint8_t> out) {
  return EncodeFrame(request_id, b, out);
}
size_t Encode(uint32_t request_id, const GroupJoinBody& b, std::span<uint8_t> out) {
  return EncodeFrame(request_id, b, out);
}
size_t Encode(uint32_t request_id, const GroupLeaveBody& b, std::span<uint8_t> out) {
  return EncodeFrame(request_id, b, out);
}
size_t Encode(uint32_t request_id, const GroupMembersBody& b, std::span<uint8_t> out) {
  return EncodeFrame(request_id, b, out);
}
size_t Encode(uint32_t request_id, const GroupReplyBody& b, std::span<uint8_t> out) {
  return EncodeFrame(request_id, b, out);
}
size_t Encode(uint32_t request_id, const PresenceSubscribeBody& b, std::span<uint8_t> out) {
  return EncodeFrame(request_id, b, out);
}
size_t Encode(uint32_t request_id, const PresenceBody& b, std::span<uint8_t> out) {
  return EncodeFrame(request_id, b, out);
}

}  // namespace longlink::protocol
