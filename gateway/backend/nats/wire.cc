#include "gateway/backend/nats/wire.h"

#include "protocol/frame.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace longlink::gateway::nats {

namespace {
// A body that ends in a protocol frame carries exactly one whole frame.
bool IsWholeFrame(std::span<const uint8_t> f) {
  protocol::Header h;
  return protocol::PeekFrame(f, static_cast<uint32_t>(f.size()), &h) == protocol::FrameStatus::kOk &&
         h.length == f.size();
}
}  // namespace

uint64_t SendMessageId(uint64_t sender, uint32_t device, uint64_t client_msg_id) {
  uint64_t h = core::Mix64(sender ^ core::Mix64(client_msg_id ^ core::Mix64(device + 0x51ed27f1ull)));
  // Clear the top bit so ids stay positive in JSON and languages without unsigned 64-bit integers.
  h &= ~(uint64_t{1} << 63);
  return h == 0 ? 1 : h;
}

// ---- subjects ----

std::string Subjects::Inbox(uint32_t partition, uint64_t user) const {
  return Cat(p_, ".in.", partition, ".", user);
}
std::string Subjects::InboxWildcard(uint32_t partition) const { return Cat(p_, ".in.", partition, ".*"); }
std::string Subjects::InboxStream(uint32_t partition) const {
  return Cat(Upper(p_), "_IN_", partition);
}
std::string Subjects::Partition(uint32_t partition, std::string_view op) const {
  return Cat(p_, ".p.", partition, ".", op);
}
std::string Subjects::PartitionWildcard(uint32_t partition) const { return Cat(p_, ".p.", partition, ".*"); }
std::string Subjects::Gateway(std::string_view gateway_id) const { return Cat(p_, ".gw.", gateway_id); }
std::string Subjects::Control(std::string_view what) const { return Cat(p_, ".ctl.", what); }
std::string Subjects::ControlWildcard() const { return Cat(p_, ".ctl.*"); }
std::string Subjects::EventMessages() const { return Cat(p_, ".ev.msg"); }
std::string Subjects::ServiceSend() const { return Cat(p_, ".svc.send"); }
std::string Subjects::ServicePush() const { return Cat(p_, ".svc.push"); }
std::string Subjects::Bucket(std::string_view what) const {
  return Cat(Upper(p_), "_", Upper(what));
}

// ---- writer / reader ----

Writer& Writer::U8(uint8_t v) {
  buf_.push_back(v);
  return *this;
}
Writer& Writer::U16(uint16_t v) {
  buf_.push_back(static_cast<uint8_t>(v >> 8));
  buf_.push_back(static_cast<uint8_t>(v));
  return *this;
}
Writer& Writer::U32(uint32_t v) {
  for (int i = 3; i >= 0; --i) buf_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  return *this;
}
Writer& Writer::U64(uint64_t v) {
  for (int i = 7; i >= 0; --i) buf_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  return *this;
}
Writer& Writer::Bytes(std::span<const uint8_t> b) {
  U32(static_cast<uint32_t>(b.size()));
  return Raw(b);
}
Writer& Writer::String(std::string_view s) {
  U16(static_cast<uint16_t>(s.size()));
  buf_.insert(buf_.end(), s.begin(), s.end());
  return *this;
}
Writer& Writer::Raw(std::span<const uint8_t> b) {
  buf_.insert(buf_.end(), b.begin(), b.end());
  return *this;
}

bool Reader::U8(uint8_t* v) {
  if (b_.size() - off_ < 1) return false;
  *v = b_[off_++];
  return true;
}
bool Reader::U16(uint16_t* v) {
  if (b_.size() - off_ < 2) return false;
  *v = static_cast<uint16_t>(b_[off_] << 8 | b_[off_ + 1]);
  off_ += 2;
  return true;
}
bool Reader::U32(uint32_t* v) {
  if (b_.size() - off_ < 4) return false;
  uint32_t x = 0;
  for (int i = 0; i < 4; ++i) x = x << 8 | b_[off_ + i];
  off_ += 4;
  *v = x;
  return true;
}
bool Reader::U64(uint64_t* v) {
  if (b_.size() - off_ < 8) return false;
  uint64_t x = 0;
  for (int i = 0; i < 8; ++i) x = x << 8 | b_[off_ + i];
  off_ += 8;
  *v = x;
  return true;
}
bool Reader::Bytes(std::span<const uint8_t>* v) {
  uint32_t n;
  if (!U32(&n) || b_.size() - off_ < n) return false;
  *v = b_.subspan(off_, n);
  off_ += n;
  return true;
}
bool Reader::String(std::string* v) {
  uint16_t n;
  if (!U16(&n) || b_.size() - off_ < n) return false;
  v->assign(reinterpret_cast<const char*>(b_.data() + off_), n);
  off_ += n;
  return true;
}
std::span<const uint8_t> Reader::Rest() {
  std::span<const uint8_t> r = b_.subspan(off_);
  off_ = b_.size();
  return r;
}

namespace {

void PutIds(Writer& w, const std::vector<uint64_t>& ids) {
  w.U32(static_cast<uint32_t>(ids.size()));
  for (uint64_t id : ids) w.U64(id);
}

bool GetIds(Reader& r, std::vector<uint64_t>* ids) {
  uint32_t n;
  if (!r.U32(&n) || n > (1u << 24)) return false;
  ids->resize(n);
  for (uint64_t& id : *ids) {
    if (!r.U64(&id)) return false;
  }
  return true;
}

}  // namespace

// ---- bodies ----

std::vector<uint8_t> Encode(const SendRequest& r) {
  Writer w;
  w.U64(r.sender).U32(r.device).U8(r.target_kind).U64(r.target).U64(r.client_msg_id).Bytes(r.payload);
  return w.Take();
}
bool Decode(std::span<const uint8_t> b, SendRequest* r) {
  Reader rd(b);
  return rd.U64(&r->sender) && rd.U32(&r->device) && rd.U8(&r->target_kind) && rd.U64(&r->target) &&
         rd.U64(&r->client_msg_id) && rd.Bytes(&r->payload) && rd.done();
}

std::vector<uint8_t> Encode(const SendReply& r) {
  Writer w;
  w.U16(r.status).U64(r.server_msg_id).U64(r.server_time_ms);
  return w.Take();
}
bool Decode(std::span<const uint8_t> b, SendReply* r) {
  Reader rd(b);
  return rd.U16(&r->status) && rd.U64(&r->server_msg_id) && rd.U64(&r->server_time_ms) && rd.done();
}

std::vector<uint8_t> Encode(const StoreRequest& r) {
  Writer w;
  w.U64(r.server_msg_id).U64(r.server_time_ms).U64(r.from_user).U32(r.from_device).U8(r.conv_kind).U64(r.target);
  w.U64(r.client_msg_id);
  PutIds(w, r.users);
  w.Bytes(r.payload);
  return w.Take();
}
bool Decode(std::span<const uint8_t> b, StoreRequest* r) {
  Reader rd(b);
  return rd.U64(&r->server_msg_id) && rd.U64(&r->server_time_ms) && rd.U64(&r->from_user) &&
         rd.U32(&r->from_device) && rd.U8(&r->conv_kind) && rd.U64(&r->target) && rd.U64(&r->client_msg_id) &&
         GetIds(rd, &r->users) && rd.Bytes(&r->payload) && rd.done();
}

std::vector<uint8_t> Encode(const StoreReply& r) {
  Writer w;
  w.U16(r.status).U64(r.first_time_ms);
  return w.Take();
}
bool Decode(std::span<const uint8_t> b, StoreReply* r) {
  Reader rd(b);
  return rd.U16(&r->status) && rd.U64(&r->first_time_ms) && rd.done();
}

std::vector<uint8_t> Encode(const RegRequest& r) {
  Writer w;
  w.String(r.gateway).U32(r.shard).U8(r.full).U32(static_cast<uint32_t>(r.entries.size()));
  for (const RegEntry& e : r.entries) w.U64(e.user).U32(e.devices);
  return w.Take();
}
bool Decode(std::span<const uint8_t> b, RegRequest* r) {
  Reader rd(b);
  uint32_t n;
  if (!rd.String(&r->gateway) || !rd.U32(&r->shard) || !rd.U8(&r->full) || !rd.U32(&n) || n > (1u << 24)) {
    return false;
  }
  r->entries.resize(n);
  for (RegEntry& e : r->entries) {
    if (!rd.U64(&e.user) || !rd.U32(&e.devices)) return false;
  }
  return rd.done();
}

std::vector<uint8_t> Encode(const Delivery& r) {
  Writer w;
  w.U64(r.user).U32(r.device).U64(r.seq).U64(r.stream_seq).U64(r.server_time_ms).Raw(r.frame);
  return w.Take();
}
bool Decode(std::span<const uint8_t> b, Delivery* r) {
  Reader rd(b);
  if (!rd.U64(&r->user) || !rd.U32(&r->device) || !rd.U64(&r->seq) || !rd.U64(&r->stream_seq) ||
      !rd.U64(&r->server_time_ms)) {
    return false;
  }
  r->frame = rd.Rest();
  return IsWholeFrame(r->frame);
}

std::vector<uint8_t> Encode(const Forward& r) {
  Writer w;
  w.U64(r.user).U32(r.device).Raw(r.frame);
  return w.Take();
}
bool Decode(std::span<const uint8_t> b, Forward* r) {
  Reader rd(b);
  if (!rd.U64(&r->user) || !rd.U32(&r->device)) return false;
  r->frame = rd.Rest();
  return IsWholeFrame(r->frame);
}

std::vector<uint8_t> Encode(const GroupRequest& r) {
  Writer w;
  w.U8(static_cast<uint8_t>(r.op)).U64(r.group).U64(r.user).U64(r.after);
  PutIds(w, r.users);
  return w.Take();
}
bool Decode(std::span<const uint8_t> b, GroupRequest* r) {
  Reader rd(b);
  uint8_t op;
  if (!rd.U8(&op) || op < 1 || op > 6) return false;
  r->op = static_cast<GroupOp>(op);
  return rd.U64(&r->group) && rd.U64(&r->user) && rd.U64(&r->after) && GetIds(rd, &r->users) && rd.done();
}

std::vector<uint8_t> Encode(const GroupReply& r) {
  Writer w;
  w.U16(r.status).U8(r.has_more);
  PutIds(w, r.members);
  return w.Take();
}
bool Decode(std::span<const uint8_t> b, GroupReply* r) {
  Reader rd(b);
  return rd.U16(&r->status) && rd.U8(&r->has_more) && GetIds(rd, &r->members) && rd.done();
}

std::vector<uint8_t> Encode(const PresenceRequest& r) {
  Writer w;
  w.U64(r.subscriber).U8(r.subscribe);
  PutIds(w, r.users);
  w.String(r.gateway).U32(r.shard);
  PutIds(w, r.subscribers);
  return w.Take();
}
bool Decode(std::span<const uint8_t> b, PresenceRequest* r) {
  Reader rd(b);
  if (!rd.U64(&r->subscriber) || !rd.U8(&r->subscribe) || !GetIds(rd, &r->users)) return false;
  // A gateway of the previous release sends no more than this (during a rolling upgrade): its watches count
  // for gateway "" and are not replaced by complete lists.
  if (rd.done()) return r->subscribe != kPresenceFull;
  return rd.String(&r->gateway) && rd.U32(&r->shard) && GetIds(rd, &r->subscribers) && rd.done() &&
         (r->subscribe == kPresenceFull ? r->subscribers.size() == r->users.size() : r->subscribers.empty());
}

std::vector<uint8_t> Encode(const PresenceReply& r) {
  Writer w;
  w.U32(static_cast<uint32_t>(r.states.size()));
  for (const PresenceState& s : r.states) w.U64(s.user).U8(s.online).U32(s.devices);
  return w.Take();
}
bool Decode(std::span<const uint8_t> b, PresenceReply* r) {
  Reader rd(b);
  uint32_t n;
  if (!rd.U32(&n) || n > (1u << 24)) return false;
  r->states.resize(n);
  for (PresenceState& s : r->states) {
    if (!rd.U64(&s.user) || !rd.U8(&s.online) || !rd.U32(&s.devices)) return false;
  }
  return rd.done();
}

std::vector<uint8_t> Encode(const InfoReply& r) {
  Writer w;
  w.U8(r.online).U32(r.devices).U64(r.last_seq).U32(static_cast<uint32_t>(r.gateways.size()));
  for (const std::string& g : r.gateways) w.String(g);
  return w.Take();
}
bool Decode(std::span<const uint8_t> b, InfoReply* r) {
  Reader rd(b);
  uint32_t n;
  if (!rd.U8(&r->online) || !rd.U32(&r->devices) || !rd.U64(&r->last_seq) || !rd.U32(&n) || n > 4096) return false;
  r->gateways.resize(n);
  for (std::string& g : r->gateways) {
    if (!rd.String(&g)) return false;
  }
  return rd.done();
}

std::vector<uint8_t> Encode(const OwnerAnnounce& r) {
  Writer w;
  w.U32(r.partition).U64(r.epoch).String(r.gateway);
  return w.Take();
}
bool Decode(std::span<const uint8_t> b, OwnerAnnounce* r) {
  Reader rd(b);
  return rd.U32(&r->partition) && rd.U64(&r->epoch) && rd.String(&r->gateway) && rd.done();
}

// ---- JetStream ----

PubAck ParsePubAck(std::string_view text) {
  PubAck a;
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    a.description = "unparsable publish acknowledgement";
    return a;
  }
  if (auto e = j.find("error"); e != j.end() && e->is_object()) {
    a.code = e->value("code", 0);
    a.err_code = e->value("err_code", 0);
    a.description = e->value("description", std::string());
    return a;
  }
  a.seq = j.value("seq", uint64_t{0});
  a.duplicate = j.value("duplicate", false);
  a.ok = a.seq != 0;
  return a;
}

std::optional<StoredMsg> ParseMsgGet(std::string_view text, bool* not_found, std::string* error) {
  *not_found = false;
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) {
    *error = "unparsable message get reply";
    return std::nullopt;
  }
  if (auto e = j.find("error"); e != j.end() && e->is_object()) {
    int err_code = e->value("err_code", 0);
    *not_found = err_code == 10037 || e->value("code", 0) == 404;
    *error = e->value("description", std::string("error"));
    return std::nullopt;
  }
  auto m = j.find("message");
  if (m == j.end() || !m->is_object()) {
    *error = "message get reply without a message";
    return std::nullopt;
  }
  StoredMsg out;
  out.subject = m->value("subject", std::string());
  out.seq = m->value("seq", uint64_t{0});
  std::string hdrs = m->value("hdrs", std::string());
  std::string data = m->value("data", std::string());
  if (!absl::Base64Unescape(hdrs, &out.headers) || !absl::Base64Unescape(data, &out.data)) {
    *error = "bad base64 in message get reply";
    return std::nullopt;
  }
  return out;
}

std::string_view HeaderValue(std::string_view block, std::string_view name) {
  size_t pos = block.find("\r\n");
  while (pos != std::string_view::npos) {
    size_t start = pos + 2;
    size_t end = block.find("\r\n", start);
    if (end == std::string_view::npos || end == start) break;
    std::string_view line = block.substr(start, end - start);
    size_t colon = line.find(':');
    if (colon != std::string_view::npos && absl::EqualsIgnoreCase(AV(line.substr(0, colon)), AV(name))) {
      std::string_view v = line.substr(colon + 1);
      while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
      return v;
    }
    pos = end;
  }
  return {};
}

std::string InboxStreamConfig(const Subjects& s, uint32_t partition, uint32_t replicas, uint64_t retention_ms,
                              uint32_t max_inbox, uint64_t duplicate_window_ms) {
  nlohmann::json c;
  c["name"] = s.InboxStream(partition);
  c["subjects"] = {s.InboxWildcard(partition)};
  c["retention"] = "limits";
  c["storage"] = "file";
  c["num_replicas"] = replicas;
  c["max_age"] = retention_ms * 1000000ull;
  c["max_msgs_per_subject"] = max_inbox;
  c["discard"] = "old";
  c["duplicate_window"] = duplicate_window_ms * 1000000ull;
  c["allow_direct"] = true;
  c["deny_delete"] = true;
  c["deny_purge"] = false;
  return c.dump();
}

std::string BucketStreamConfig(std::string_view bucket, uint32_t replicas, uint64_t max_age_ms, uint32_t history) {
  nlohmann::json c;
  c["name"] = Cat("KV_", bucket);
  c["subjects"] = {Cat("$KV.", bucket, ".>")};
  c["retention"] = "limits";
  c["storage"] = "file";
  c["num_replicas"] = replicas;
  c["max_age"] = max_age_ms * 1000000ull;
  c["max_msgs_per_subject"] = history;
  c["discard"] = "new";
  c["allow_direct"] = true;
  c["allow_rollup_hdrs"] = true;
  c["deny_delete"] = true;
  // The duplicate window may not exceed the age limit.
  uint64_t dup_ms = max_age_ms == 0 ? 120000 : std::min<uint64_t>(120000, max_age_ms);
  c["duplicate_window"] = dup_ms * 1000000ull;
  return c.dump();
}

}  // namespace longlink::gateway::nats
