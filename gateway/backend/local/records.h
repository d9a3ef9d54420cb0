// The record bodies of the local backend's log (see log.h for the framing). Little-endian, fixed layouts,
// written and read only by this backend; the log's format version covers them.
//
//   kMsg        a message stored on this shard: who sent it, to what, and which of this shard's users got
//               it at which inbox seq. The sender's shard writes the "origin" record (it also serves the
//               idempotency map and the re-drive after a crash); every other shard with recipients writes
//               its own copy with its own users.
//   kComplete   every recipient shard has the message durably: no re-drive needed.
//   kCursor     a device's cumulative PUSH_ACK.
//   kGroup      a group created, a member added or removed.
//   kSnap*      a re-statement of the small state (inbox counters, cursors, groups, unfinished messages)
//               at the start of each segment, so older segments can be deleted once their messages expired.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace longlink::gateway::local {

enum RecordType : uint8_t {
  kRecMsg = 1,
  kRecComplete = 2,
  kRecCursor = 3,
  kRecGroup = 4,
  kRecSnapBegin = 5,
  kRecSnapSeq = 6,
  kRecSnapPending = 7,
  kRecSnapEnd = 8,
};

enum GroupOp : uint8_t { kGroupCreate = 1, kGroupAdd = 2, kGroupRemove = 3 };

inline constexpr uint8_t kMsgOrigin = 1;  // MsgHeader::flags

// The fixed part of a kMsg body; the payload follows, then u32 n and n {u64 user, u64 seq}.
struct MsgHeader {
  uint64_t server_msg_id = 0;
  uint64_t from_user = 0;
  uint32_t from_device = 0;
  uint8_t conv_kind = 0;
  uint64_t target_id = 0;
  uint64_t client_msg_id = 0;
  uint64_t server_time_ms = 0;
  uint16_t origin_shard = 0;
  uint8_t flags = 0;
};
inline constexpr uint32_t kMsgFixedSize = 8 + 8 + 4 + 1 + 8 + 8 + 8 + 2 + 1 + 4;  // + payload length field

// In an origin record a slot with seq 0 names a recipient on another shard: the re-drive after a crash
// needs the list (group messages excepted: their members are looked up again).
struct InboxSlot {
  uint64_t user;
  uint64_t seq;
};

// Serializes a kMsg body into `out` (cleared first).
void EncodeMsg(const MsgHeader& h, std::span<const uint8_t> payload, std::span<const InboxSlot> slots,
               std::vector<uint8_t>* out);
// Parses a kMsg body; `slots_out` may be null (for a read of the message part only). False if malformed.
struct MsgView {
  MsgHeader h;
  std::span<const uint8_t> payload;
  uint32_t slot_count = 0;
  const uint8_t* slots = nullptr;  // slot_count x 16 bytes
  InboxSlot slot(uint32_t i) const {
    InboxSlot s;
    std::memcpy(&s.user, slots + i * 16, 8);
    std::memcpy(&s.seq, slots + i * 16 + 8, 8);
    return s;
  }
};
// With `message_only`, the body may end right after the payload (a prefix read for SYNC).
bool DecodeMsg(std::span<const uint8_t> body, MsgView* out, bool message_only = false);
// Bytes of the record (header included) up to the end of the payload: what SYNC reads back.
inline uint32_t MsgPrefixSize(uint32_t payload_len) { return 9 + kMsgFixedSize + payload_len; }

// Small fixed records.
struct U64Rec {
  uint64_t v;
};
struct CursorRec {
  uint64_t user;
  uint32_t device;
  uint64_t seq;
};
struct GroupRec {
  uint64_t group;
  uint8_t op;
  uint64_t user;
};
struct SeqRec {
  uint64_t user;
  uint64_t next_seq;
  uint64_t first_seq;
};


// Fixed-size little-endian writers/readers for the small records.
size_t Put(const CursorRec& r, uint8_t* out);  // 20 bytes
size_t Put(const GroupRec& r, uint8_t* out);   // 17 bytes
size_t Put(const SeqRec& r, uint8_t* out);     // 24 bytes
size_t Put(uint64_t v, uint8_t* out);          // 8 bytes
bool Get(std::span<const uint8_t> b, CursorRec* r);
bool Get(std::span<const uint8_t> b, GroupRec* r);
bool Get(std::span<const uint8_t> b, SeqRec* r);
bool Get(std::span<const uint8_t> b, uint64_t* v);

}  // namespace longlink::gateway::local
