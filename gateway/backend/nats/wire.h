// The NATS backend's wire: subject names, the binary bodies gateways exchange over NATS (and that other
// services may use, docs/nats-contract.md), and the few JetStream API replies it reads (JSON).
//
// Every integer is big-endian, as in the client protocol; `bytes` is a u32 length and the bytes, `string` a
// u16 length and the bytes. A body must be consumed exactly.
#pragma once

#include <charconv>
#include <cstdint>
#include <type_traits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/string_view.h"
#include "core/hash.h"

namespace longlink::gateway::nats {

// Abseil here has its own string_view type: this bridges std::string_view into its calls.
inline absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Concatenation over std::string_view and integers (absl::StrCat takes only Abseil's own string_view).
namespace cat_detail {
inline void Put(std::string* out, std::string_view s) { out->append(s); }
inline void Put(std::string* out, const char* s) { out->append(s); }
inline void Put(std::string* out, const std::string& s) { out->append(s); }
inline void Put(std::string* out, absl::string_view s) { out->append(s.data(), s.size()); }
inline void Put(std::string* out, char c) { out->push_back(c); }
template <typename T>
  requires std::is_integral_v<T>
void Put(std::string* out, T v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out->append(buf, r.ptr);
}
}  // namespace cat_detail
template <typename... A>
std::string Cat(const A&... a) {
  std::string out;
  (cat_detail::Put(&out, a), ...);
  return out;
}
inline std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return out;
}

// The partition of a user or group id among `partitions`: the bits of the shared hash above the ones that
// pick a gateway shard, so partitions and shards are independent.
inline uint32_t PartitionOf(uint64_t id, uint32_t partitions) {
  return static_cast<uint32_t>((core::Mix64(id) >> 32) % partitions);
}

// A message id every retry of one SEND gets again: a hash of (sender, device, client_msg_id), never 0.
uint64_t SendMessageId(uint64_t sender, uint32_t device, uint64_t client_msg_id);

// Subject names under one prefix (--nats-prefix, default "ll").
class Subjects {
 public:
  explicit Subjects(std::string prefix) : p_(std::move(prefix)) {}
  const std::string& prefix() const { return p_; }
  // Inbox messages of one user; the stream of partition p holds "<prefix>.in.<p>.*".
  std::string Inbox(uint32_t partition, uint64_t user) const;
  std::string InboxWildcard(uint32_t partition) const;
  std::string InboxStream(uint32_t partition) const;  // "LL_IN_<p>" (prefix upper-cased)
  // Requests to the owner of a partition: "<prefix>.p.<p>.<op>"; the owner subscribes "<prefix>.p.<p>.*".
  std::string Partition(uint32_t partition, std::string_view op) const;
  std::string PartitionWildcard(uint32_t partition) const;
  // Frames for the users of one gateway.
  std::string Gateway(std::string_view gateway_id) const;
  // Partition owner announcements and gateway starts (every gateway listens).
  std::string Control(std::string_view what) const;
  std::string ControlWildcard() const;
  // The contract for other services: events of stored messages; requests to send and to push.
  std::string EventMessages() const;
  std::string ServiceSend() const;
  std::string ServicePush() const;
  // KV bucket names (each a stream KV_<bucket>).
  std::string Bucket(std::string_view what) const;  // "<PREFIX>_<WHAT>"

 private:
  std::string p_;
};

// ---- a byte writer and reader ----

class Writer {
 public:
  Writer& U8(uint8_t v);
  Writer& U16(uint16_t v);
  Writer& U32(uint32_t v);
  Writer& U64(uint64_t v);
  Writer& Bytes(std::span<const uint8_t> b);
  Writer& String(std::string_view s);
  Writer& Raw(std::span<const uint8_t> b);
  std::vector<uint8_t>& data() { return buf_; }
  std::vector<uint8_t> Take() { return std::move(buf_); }

 private:
  std::vector<uint8_t> buf_;
};

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> b) : b_(b) {}
  bool U8(uint8_t* v);
  bool U16(uint16_t* v);
  bool U32(uint32_t* v);
  bool U64(uint64_t* v);
  bool Bytes(std::span<const uint8_t>* v);
  bool String(std::string* v);
  // Everything left.
  std::span<const uint8_t> Rest();
  bool done() const { return off_ == b_.size(); }

 private:
  std::span<const uint8_t> b_;
  size_t off_ = 0;
};

// ---- bodies between gateways ----

// <prefix>.p.<p>.send: a client's SEND, to the owner of the sender's partition (the coordinator).
struct SendRequest {
  uint64_t sender = 0;
  uint32_t device = 0;
  uint8_t target_kind = 0;  // protocol::TargetKind
  uint64_t target = 0;
  uint64_t client_msg_id = 0;
  std::span<const uint8_t> payload;
};
// The answer to SendRequest (and to <prefix>.svc.send).
struct SendReply {
  uint16_t status = 0;  // protocol::SendStatus
  uint64_t server_msg_id = 0;
  uint64_t server_time_ms = 0;
};

// <prefix>.p.<p>.store: store one message in the inboxes of these users (all of partition p).
struct StoreRequest {
  uint64_t server_msg_id = 0;
  uint64_t server_time_ms = 0;
  uint64_t from_user = 0;
  uint32_t from_device = 0;
  uint8_t conv_kind = 0;
  uint64_t target = 0;  // the SEND's target: the group, or the recipient user
  uint64_t client_msg_id = 0;
  std::vector<uint64_t> users;
  std::span<const uint8_t> payload;
};
struct StoreReply {
  uint16_t status = 0;              // protocol::SendStatus
  uint64_t first_time_ms = 0;       // the server time of a copy stored before (retry), else 0
};

// <prefix>.p.<p>.reg: devices of users that came online or went away on a gateway shard. A batch; the
// gateway sends one per partition and shard (after a reconnect or an owner change: every user it holds).
struct RegEntry {
  uint64_t user = 0;
  uint32_t devices = 0;  // online devices of the user on that gateway after the change (0: none left)
};
struct RegRequest {
  std::string gateway;
  uint32_t shard = 0;  // the gateway shard the users are on (full lists replace that shard's entries)
  uint8_t full = 0;  // 1: the complete list of this gateway's users in the partition (others are dropped)
  std::vector<RegEntry> entries;
};

// <prefix>.gw.<gateway>: a frame for one user's devices on that gateway (device 0: all of them).
struct Delivery {
  uint64_t user = 0;
  uint32_t device = 0;
  uint64_t seq = 0;             // the inbox seq of a PUSH (0 otherwise)
  uint64_t stream_seq = 0;      // where that copy is in its stream
  uint64_t server_time_ms = 0;  // of a live PUSH, for the push delay histogram (0 otherwise)
  std::span<const uint8_t> frame;  // a whole protocol frame (header and body)
};

// <prefix>.p.<p>.fwd: a frame for a user's devices wherever they are, routed by the user's owner.
struct Forward {
  uint64_t user = 0;
  uint32_t device = 0;
  std::span<const uint8_t> frame;
};

// <prefix>.p.<p>.group: a group change or lookup on the group's owner.
enum class GroupOp : uint8_t { kCreate = 1, kJoin = 2, kLeave = 3, kMembers = 4, kLookup = 5, kCreateWith = 6 };
struct GroupRequest {
  GroupOp op = GroupOp::kMembers;
  uint64_t group = 0;
  uint64_t user = 0;   // who asks (create, join, leave: who changes; lookup: the sender, 0: no check)
  uint64_t after = 0;  // kMembers: page after this user id
  std::vector<uint64_t> users;  // kCreateWith (admin): the first members; kJoin/kLeave by admin: users
};
struct GroupReply {
  uint16_t status = 0;  // protocol::GroupStatus (kLookup: protocol::SendStatus)
  uint8_t has_more = 0;
  std::vector<uint64_t> members;
};

// <prefix>.p.<p>.presence: (un)subscribe `subscriber` to users of partition p, answered with their states.
// subscribe: 1 one more device of `subscriber` on (gateway, shard) watches `users`, 0 one less, 2 no change
// (states only), 3 the complete list of watches from (gateway, shard) in this partition: subscribers[i]
// watches users[i] (once per watching device), replacing what the owner held from there (sent after an
// owner change or a reconnect).
struct PresenceRequest {
  uint64_t subscriber = 0;
  uint8_t subscribe = 1;
  std::vector<uint64_t> users;
  std::string gateway;
  uint32_t shard = 0;
  std::vector<uint64_t> subscribers;  // subscribe == 3 only, as long as users
};
constexpr uint8_t kPresenceFull = 3;
struct PresenceState {
  uint64_t user = 0;
  uint8_t online = 0;
  uint32_t devices = 0;
};
struct PresenceReply {
  std::vector<PresenceState> states;
};

// <prefix>.p.<p>.info: what the owner knows of a user (admin API).
struct InfoReply {
  uint8_t online = 0;
  uint32_t devices = 0;
  uint64_t last_seq = 0;
  std::vector<std::string> gateways;
};

// <prefix>.ctl.owner: a gateway took over a partition.
struct OwnerAnnounce {
  uint32_t partition = 0;
  uint64_t epoch = 0;
  std::string gateway;
};

std::vector<uint8_t> Encode(const SendRequest& r);
std::vector<uint8_t> Encode(const SendReply& r);
std::vector<uint8_t> Encode(const StoreRequest& r);
std::vector<uint8_t> Encode(const StoreReply& r);
std::vector<uint8_t> Encode(const RegRequest& r);
std::vector<uint8_t> Encode(const Delivery& r);
std::vector<uint8_t> Encode(const Forward& r);
std::vector<uint8_t> Encode(const GroupRequest& r);
std::vector<uint8_t> Encode(const GroupReply& r);
std::vector<uint8_t> Encode(const PresenceRequest& r);
std::vector<uint8_t> Encode(const PresenceReply& r);
std::vector<uint8_t> Encode(const InfoReply& r);
std::vector<uint8_t> Encode(const OwnerAnnounce& r);
bool Decode(std::span<const uint8_t> b, SendRequest* r);
bool Decode(std::span<const uint8_t> b, SendReply* r);
bool Decode(std::span<const uint8_t> b, StoreRequest* r);
bool Decode(std::span<const uint8_t> b, StoreReply* r);
bool Decode(std::span<const uint8_t> b, RegRequest* r);
bool Decode(std::span<const uint8_t> b, Delivery* r);
bool Decode(std::span<const uint8_t> b, Forward* r);
bool Decode(std::span<const uint8_t> b, GroupRequest* r);
bool Decode(std::span<const uint8_t> b, GroupReply* r);
bool Decode(std::span<const uint8_t> b, PresenceRequest* r);
bool Decode(std::span<const uint8_t> b, PresenceReply* r);
bool Decode(std::span<const uint8_t> b, InfoReply* r);
bool Decode(std::span<const uint8_t> b, OwnerAnnounce* r);

// ---- JetStream API replies ----

// A publish acknowledgement: {"stream":..,"seq":N,"duplicate":true} or {"error":{"code":..,"err_code":..}}.
struct PubAck {
  bool ok = false;
  uint64_t seq = 0;
  bool duplicate = false;
  int code = 0;       // HTTP-like code of an error
  int err_code = 0;   // JetStream's error code (10071: wrong last sequence)
  std::string description;
};
PubAck ParsePubAck(std::string_view json);
inline constexpr int kErrWrongLastSequence = 10071;

// A stored message from $JS.API.STREAM.MSG.GET (JSON, base64 headers and data) or from a push consumer.
struct StoredMsg {
  std::string subject;
  uint64_t seq = 0;  // stream sequence
  std::string headers;  // "NATS/1.0\r\nName: value\r\n...\r\n\r\n"
  std::string data;
};
// Returns nullopt on an error reply; *not_found is set when the error is "no message found" (10037).
std::optional<StoredMsg> ParseMsgGet(std::string_view json, bool* not_found, std::string* error);
// The value of a header in a NATS header block ("NATS/1.0\r\nA: b\r\n\r\n"), or empty.
std::string_view HeaderValue(std::string_view block, std::string_view name);

// The stream configuration of one partition's inboxes (JSON for $JS.API.STREAM.CREATE / UPDATE).
std::string InboxStreamConfig(const Subjects& s, uint32_t partition, uint32_t replicas, uint64_t retention_ms,
                              uint32_t max_inbox, uint64_t duplicate_window_ms);
// A KV bucket (stream KV_<bucket>): keys "$KV.<bucket>.<key>", one value per key, optionally expiring.
std::string BucketStreamConfig(std::string_view bucket, uint32_t replicas, uint64_t max_age_ms, uint32_t history);

}  // namespace longlink::gateway::nats
