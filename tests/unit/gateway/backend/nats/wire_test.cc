// The NATS backend's wire: bodies round-trip exactly and refuse truncation and trailing bytes; subjects and
// partitions; the JetStream replies it parses.
#include "gateway/backend/nats/wire.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

namespace longlink::gateway::nats {
namespace {

std::span<const uint8_t> Span(const std::string& s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

template <typename T>
void ExpectStrict(const std::vector<uint8_t>& body) {
  T out;
  EXPECT_TRUE(Decode(body, &out));
  for (size_t cut = 0; cut < body.size(); ++cut) {
    T t;
    EXPECT_FALSE(Decode(std::span<const uint8_t>(body.data(), cut), &t)) << "truncated at " << cut;
  }
  std::vector<uint8_t> longer = body;
  longer.push_back(0);
  T t;
  EXPECT_FALSE(Decode(longer, &t)) << "a trailing byte is refused";
}

TEST(NatsWire, SendRequestRoundTrip) {
  std::string payload = "hello";
  SendRequest r{42, 7, 1, 99, 123456789, Span(payload)};
  std::vector<uint8_t> b = Encode(r);
  SendRequest d;
  ASSERT_TRUE(Decode(b, &d));
  EXPECT_EQ(d.sender, 42u);
  EXPECT_EQ(d.device, 7u);
  EXPECT_EQ(d.target_kind, 1);
  EXPECT_EQ(d.target, 99u);
  EXPECT_EQ(d.client_msg_id, 123456789u);
  EXPECT_EQ(std::string(d.payload.begin(), d.payload.end()), payload);
  ExpectStrict<SendRequest>(b);
  // Big-endian: the sender comes first, most significant byte first.
  ASSERT_GE(b.size(), 8u);
  EXPECT_EQ(b[7], 42);
  EXPECT_EQ(b[0], 0);
}

TEST(NatsWire, StoreAndRegRoundTrip) {
  std::string payload(300, 'x');
  StoreRequest s;
  s.server_msg_id = 1;
  s.server_time_ms = 2;
  s.from_user = 3;
  s.from_device = 4;
  s.conv_kind = 1;
  s.target = 5;
  s.client_msg_id = 6;
  s.users = {10, 11, 12};
  s.payload = Span(payload);
  std::vector<uint8_t> b = Encode(s);
  StoreRequest d;
  ASSERT_TRUE(Decode(b, &d));
  EXPECT_EQ(d.users, (std::vector<uint64_t>{10, 11, 12}));
  EXPECT_EQ(d.payload.size(), payload.size());
  ExpectStrict<StoreRequest>(b);

  RegRequest reg;
  reg.gateway = "g-1";
  reg.shard = 3;
  reg.full = 1;
  reg.entries = {{100, 2}, {101, 0}};
  b = Encode(reg);
  RegRequest rd;
  ASSERT_TRUE(Decode(b, &rd));
  EXPECT_EQ(rd.gateway, "g-1");
  EXPECT_EQ(rd.shard, 3u);
  EXPECT_EQ(rd.full, 1);
  ASSERT_EQ(rd.entries.size(), 2u);
  EXPECT_EQ(rd.entries[1].user, 101u);
  EXPECT_EQ(rd.entries[1].devices, 0u);
  ExpectStrict<RegRequest>(b);
}

TEST(NatsWire, DeliveryGroupPresenceInfoOwner) {
  // A whole protocol frame: a PONG (length 20, version 1, opcode 4, flags 0, request id 0, a u64).
  std::string frame("\0\0\0\x14\x01\x04\0\0\0\0\0\0" "12345678", 20);
  Delivery del{5, 2, 9, 77, 1234, Span(frame)};
  std::vector<uint8_t> b = Encode(del);
  Delivery dd;
  ASSERT_TRUE(Decode(b, &dd));
  EXPECT_EQ(dd.stream_seq, 77u);
  EXPECT_EQ(std::string(dd.frame.begin(), dd.frame.end()), frame);
  ExpectStrict<Delivery>(b);

  GroupRequest g;
  g.op = GroupOp::kCreateWith;
  g.group = 8;
  g.user = 1;
  g.users = {1, 2, 3};
  b = Encode(g);
  GroupRequest gd;
  ASSERT_TRUE(Decode(b, &gd));
  EXPECT_EQ(gd.op, GroupOp::kCreateWith);
  EXPECT_EQ(gd.users.size(), 3u);
  ExpectStrict<GroupRequest>(b);

  PresenceRequest full;
  full.subscribe = kPresenceFull;
  full.users = {7, 8};
  full.subscribers = {100, 101};
  full.gateway = "g2";
  full.shard = 3;
  b = Encode(full);
  PresenceRequest fd;
  ASSERT_TRUE(Decode(b, &fd));
  EXPECT_EQ(fd.subscribers, full.subscribers);
  EXPECT_EQ(fd.gateway, "g2");
  EXPECT_EQ(fd.shard, 3u);
  ExpectStrict<PresenceRequest>(b);
  full.subscribers.pop_back();  // a full list pairs every watched user with its watcher
  EXPECT_FALSE(Decode(Encode(full), &fd));
  // The previous release's body (subscriber, subscribe, users) still decodes, as a change from gateway "".
  Writer old_body;
  old_body.U64(100).U8(1).U32(2).U64(7).U64(8);
  PresenceRequest od;
  ASSERT_TRUE(Decode(old_body.data(), &od));
  EXPECT_EQ(od.users, (std::vector<uint64_t>{7, 8}));
  EXPECT_EQ(od.gateway, "");

  PresenceReply pr;
  pr.states = {{1, 1, 2}, {2, 0, 0}};
  b = Encode(pr);
  PresenceReply prd;
  ASSERT_TRUE(Decode(b, &prd));
  ASSERT_EQ(prd.states.size(), 2u);
  EXPECT_EQ(prd.states[0].devices, 2u);
  ExpectStrict<PresenceReply>(b);

  InfoReply info;
  info.online = 1;
  info.devices = 2;
  info.last_seq = 30;
  info.gateways = {"a", "bb"};
  b = Encode(info);
  InfoReply id;
  ASSERT_TRUE(Decode(b, &id));
  EXPECT_EQ(id.gateways, (std::vector<std::string>{"a", "bb"}));
  ExpectStrict<InfoReply>(b);

  OwnerAnnounce a{3, 99, "g2"};
  b = Encode(a);
  OwnerAnnounce ad;
  ASSERT_TRUE(Decode(b, &ad));
  EXPECT_EQ(ad.epoch, 99u);
  EXPECT_EQ(ad.gateway, "g2");
  ExpectStrict<OwnerAnnounce>(b);
}

TEST(NatsWire, PartitionsSpreadAndDifferFromShards) {
  const uint32_t partitions = 16;
  std::vector<uint32_t> count(partitions);
  uint32_t same_as_shard = 0;
  for (uint64_t u = 1; u <= 160000; ++u) {
    uint32_t p = PartitionOf(u, partitions);
    ASSERT_LT(p, partitions);
    ++count[p];
    same_as_shard += p % 4 == core::Mix64(u) % 4 ? 1 : 0;
  }
  for (uint32_t c : count) {
    EXPECT_GT(c, 9000u);
    EXPECT_LT(c, 11000u);
  }
  // Independent of the shard choice (a quarter agree by chance with 4 shards).
  EXPECT_GT(same_as_shard, 36000u);
  EXPECT_LT(same_as_shard, 44000u);
}

TEST(NatsWire, SendMessageIdIsStableAndNonZero) {
  std::set<uint64_t> seen;
  for (uint64_t cmid = 0; cmid < 1000; ++cmid) {
    uint64_t id = SendMessageId(5, 1, cmid);
    EXPECT_NE(id, 0u);
    EXPECT_EQ(id, SendMessageId(5, 1, cmid));
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_NE(SendMessageId(5, 1, 1), SendMessageId(5, 2, 1));
  EXPECT_NE(SendMessageId(5, 1, 1), SendMessageId(6, 1, 1));
}

TEST(NatsWire, Subjects) {
  Subjects s("ll");
  EXPECT_EQ(s.Inbox(3, 42), "ll.in.3.42");
  EXPECT_EQ(s.InboxWildcard(3), "ll.in.3.*");
  EXPECT_EQ(s.InboxStream(3), "LL_IN_3");
  EXPECT_EQ(s.Partition(2, "send"), "ll.p.2.send");
  EXPECT_EQ(s.Gateway("g1"), "ll.gw.g1");
  EXPECT_EQ(s.EventMessages(), "ll.ev.msg");
  EXPECT_EQ(s.Bucket("owners"), "LL_OWNERS");
}

TEST(NatsWire, PubAckAndErrors) {
  PubAck a = ParsePubAck(R"({"stream":"LL_IN_1","seq":17,"duplicate":true})");
  EXPECT_TRUE(a.ok);
  EXPECT_EQ(a.seq, 17u);
  EXPECT_TRUE(a.duplicate);
  PubAck e = ParsePubAck(
      R"({"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 5"},"stream":"LL_IN_1","seq":0})");
  EXPECT_FALSE(e.ok);
  EXPECT_EQ(e.err_code, kErrWrongLastSequence);
  EXPECT_EQ(e.code, 400);
  EXPECT_FALSE(ParsePubAck("not json").ok);
  EXPECT_FALSE(ParsePubAck("").ok);
}

TEST(NatsWire, MsgGetAndHeaders) {
  // "NATS/1.0\r\nLl-Seq: 4\r\n\r\n" and "hi", base64.
  std::string reply =
      R"({"message":{"subject":"ll.in.1.5","seq":9,"hdrs":"TkFUUy8xLjANCkxsLVNlcTogNA0KDQo=","data":"aGk=","time":"2026-01-01T00:00:00Z"}})";
  bool not_found = true;
  std::string error;
  std::optional<StoredMsg> m = ParseMsgGet(reply, &not_found, &error);
  ASSERT_TRUE(m.has_value()) << error;
  EXPECT_FALSE(not_found);
  EXPECT_EQ(m->subject, "ll.in.1.5");
  EXPECT_EQ(m->seq, 9u);
  EXPECT_EQ(m->data, "hi");
  EXPECT_EQ(HeaderValue(m->headers, "Ll-Seq"), "4");
  EXPECT_EQ(HeaderValue(m->headers, "Missing"), "");
  m = ParseMsgGet(R"({"error":{"code":404,"err_code":10037,"description":"no message found"}})", &not_found, &error);
  EXPECT_FALSE(m.has_value());
  EXPECT_TRUE(not_found);
  m = ParseMsgGet(R"({"error":{"code":503,"err_code":10008,"description":"jetstream not enabled"}})", &not_found,
                  &error);
  EXPECT_FALSE(m.has_value());
  EXPECT_FALSE(not_found);
}

}  // namespace
}  // namespace longlink::gateway::nats
