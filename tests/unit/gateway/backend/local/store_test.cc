#include "gateway/backend/local/store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "protocol/frame.h"

namespace longlink::gateway::local {
namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/longlink-store-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf " + path_).c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

constexpr uint64_t kNowMs = 1700000000000ull;

// Stores one message for `users` the way the backend does: seqs, append, durable, index.
uint64_t StoreMessage(LocalStore& s, uint64_t id, const std::vector<uint64_t>& users, uint64_t time_ms,
                      bool origin = false, uint64_t from = 7, uint64_t cmid = 0, uint8_t payload_byte = 'x') {
  std::vector<InboxSlot> slots;
  for (uint64_t u : users) slots.push_back(InboxSlot{u, s.AssignSeq(u)});
  MsgHeader h;
  h.server_msg_id = id;
  h.from_user = from;
  h.from_device = 1;
  h.client_msg_id = cmid;
  h.server_time_ms = time_ms;
  h.flags = origin ? kMsgOrigin : 0;
  std::vector<uint8_t> payload(16, payload_byte);
  Appended a = s.AppendMsg(h, payload, slots);
  if (origin) {
    s.PutIdem(IdemKey{from, 1, cmid}, IdemValue{id, time_ms, a.pos.segment});
    s.AddPending(id, a.pos, static_cast<uint32_t>(a.end - a.lsn));
  }
  EXPECT_TRUE(s.log().Write().ok());
  EXPECT_TRUE(s.log().SyncNow().ok());
  for (const InboxSlot& sl : slots) s.IndexDurable(sl.user, sl.seq, a.pos, MsgPrefixSize(16), time_ms);
  return a.end;
}

std::vector<uint64_t> Seqs(const LocalStore& s, uint64_t user) {
  std::vector<uint64_t> out;
  const Inbox* in = s.FindInbox(user);
  if (in == nullptr) return out;
  for (size_t i = 0; i < in->size(); ++i) out.push_back(in->at(i).seq);
  return out;
}

StoreOptions Opts(const std::string& dir, uint32_t max_inbox = 100, uint64_t segment_bytes = 1 << 20) {
  StoreOptions o;
  o.dir = dir;
  o.max_inbox = max_inbox;
  o.segment_bytes = segment_bytes;
  o.retention_ms = 3600 * 1000;
  return o;
}

TEST(LocalStoreTest, InboxSequencesAreContiguousPerUser) {
  TempDir dir;
  LocalStore s;
  ASSERT_TRUE(s.Open(Opts(dir.path())).ok());
  for (uint64_t i = 1; i <= 10; ++i) StoreMessage(s, i, i % 2 ? std::vector<uint64_t>{1, 2} : std::vector<uint64_t>{2}, kNowMs);
  EXPECT_EQ(Seqs(s, 1), (std::vector<uint64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(Seqs(s, 2), (std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
  const Inbox* in = s.FindInbox(2);
  EXPECT_EQ(in->UpperBound(0), 0u);
  EXPECT_EQ(in->UpperBound(4), 4u);
  EXPECT_EQ(in->UpperBound(10), 10u);
  // Messages read back from disk carry what was stored.
  std::vector<uint8_t> buf;
  MsgView m;
  ASSERT_TRUE(s.ReadMessage(in->at(3), &buf, &m));
  EXPECT_EQ(m.h.server_msg_id, 4u);
  EXPECT_EQ(m.payload.size(), 16u);
}

TEST(LocalStoreTest, RecoveryRebuildsInboxesIdempotencyAndPending) {
  TempDir dir;
  {
    LocalStore s;
    ASSERT_TRUE(s.Open(Opts(dir.path())).ok());
    StoreMessage(s, 100, {1, 2}, kNowMs, /*origin=*/true, /*from=*/1, /*cmid=*/55);
    StoreMessage(s, 101, {1}, kNowMs, true, 1, 56);
    s.Complete(100);
    StoreMessage(s, 200, {3}, kNowMs);  // delivered here by another shard
    s.SetCursor(1, 1, 2);
    s.FlushCursors(10);
    ASSERT_TRUE(s.log().Write().ok());
    ASSERT_TRUE(s.log().SyncNow().ok());
  }
  LocalStore s;
  ASSERT_TRUE(s.Open(Opts(dir.path())).ok());
  EXPECT_EQ(Seqs(s, 1), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(Seqs(s, 2), (std::vector<uint64_t>{1}));
  EXPECT_EQ(s.FindInbox(1)->next_seq(), 3u);
  ASSERT_NE(s.FindIdem(IdemKey{1, 1, 55}), nullptr);
  EXPECT_EQ(s.FindIdem(IdemKey{1, 1, 55})->server_msg_id, 100u);
  EXPECT_EQ(s.FindIdem(IdemKey{1, 1, 57}), nullptr);
  // 100 completed; 101 was not: it is re-driven.
  EXPECT_EQ(s.pending().size(), 1u);
  EXPECT_TRUE(s.pending().contains(101));
  EXPECT_TRUE(s.SeenForeign(200));
  EXPECT_FALSE(s.SeenForeign(100));
  EXPECT_EQ(s.Cursor(1, 1), 2u);
}

TEST(LocalStoreTest, MaxInboxEvictsTheOldest) {
  TempDir dir;
  LocalStore s;
  ASSERT_TRUE(s.Open(Opts(dir.path(), /*max_inbox=*/5)).ok());
  for (uint64_t i = 1; i <= 12; ++i) StoreMessage(s, i, {9}, kNowMs);
  EXPECT_EQ(Seqs(s, 9), (std::vector<uint64_t>{8, 9, 10, 11, 12}));
  EXPECT_EQ(s.stats().entries_evicted, 7u);
}

TEST(LocalStoreTest, SweepExpiresOldEntries) {
  TempDir dir;
  LocalStore s;
  ASSERT_TRUE(s.Open(Opts(dir.path())).ok());  // retention 1h
  StoreMessage(s, 1, {4, 5}, kNowMs - 3 * 3600 * 1000);
  StoreMessage(s, 2, {4}, kNowMs - 2 * 3600 * 1000);
  StoreMessage(s, 3, {4, 5}, kNowMs - 60 * 1000);
  s.Sweep(kNowMs, 100);
  EXPECT_EQ(Seqs(s, 4), (std::vector<uint64_t>{3}));
  EXPECT_EQ(Seqs(s, 5), (std::vector<uint64_t>{2}));
  EXPECT_EQ(s.stats().entries_expired, 3u);
  // Sequence numbers keep counting after expiry.
  EXPECT_EQ(s.FindInbox(4)->next_seq(), 4u);
}

TEST(LocalStoreTest, CompactionDeletesSegmentsWithNothingLiveAndRecoveryAgrees) {
  TempDir dir;
  const uint64_t seg_bytes = 4096;
  {
    LocalStore s;
    ASSERT_TRUE(s.Open(Opts(dir.path(), /*max_inbox=*/3, seg_bytes)).ok());
    ASSERT_EQ(s.CreateGroup(77, 1), 0);
    ASSERT_EQ(s.AddMember(77, 2), 0);
    ASSERT_EQ(s.AddMember(77, 3), 0);
    ASSERT_EQ(s.RemoveMember(77, 2), 0);
    for (uint64_t i = 1; i <= 200; ++i) StoreMessage(s, i, {i % 4 + 10}, kNowMs);
    ASSERT_TRUE(s.log().Write().ok());
    ASSERT_TRUE(s.log().SyncNow().ok());
    size_t before = s.log().Segments().size();
    ASSERT_GT(before, 5u);
    size_t deleted = s.Compact();
    EXPECT_GT(deleted, 0u);
    EXPECT_EQ(s.log().Segments().size(), before - deleted);
    // Every segment left either holds live entries, or is at/after the last snapshot.
    for (uint32_t seg : s.log().Segments()) {
      if (seg + 1 < s.log().active_segment()) EXPECT_GT(s.LiveRefs(seg), 0u) << "segment " << seg;
    }
  }
  LocalStore s;
  ASSERT_TRUE(s.Open(Opts(dir.path(), 3, seg_bytes)).ok());
  for (uint64_t u = 10; u < 14; ++u) {
    std::vector<uint64_t> seqs = Seqs(s, u);
    EXPECT_EQ(seqs, (std::vector<uint64_t>{48, 49, 50})) << "user " << u;
    EXPECT_EQ(s.FindInbox(u)->next_seq(), 51u);
  }
  // Group state written before the deleted segments survives through the snapshots, the removal too.
  const absl::btree_set<uint64_t>* members = s.Members(77);
  ASSERT_NE(members, nullptr);
  EXPECT_EQ(std::vector<uint64_t>(members->begin(), members->end()), (std::vector<uint64_t>{1, 3}));
  EXPECT_EQ(s.CreateGroup(77, 5), static_cast<uint16_t>(protocol::GroupStatus::kAlreadyExists));
}

TEST(LocalStoreTest, TornSnapshotIsIgnored) {
  TempDir dir;
  {
    LocalStore s;
    ASSERT_TRUE(s.Open(Opts(dir.path())).ok());
    ASSERT_EQ(s.CreateGroup(5, 1), 0);
    ASSERT_TRUE(s.log().Write().ok());
    // A snapshot whose end never made it to disk must not reset the state it began to re-state.
    uint8_t b[8] = {};
    s.log().Append(kRecSnapBegin, std::span<const uint8_t>(b, 8));
    ASSERT_TRUE(s.log().Write().ok());
    ASSERT_TRUE(s.log().SyncNow().ok());
  }
  LocalStore s;
  ASSERT_TRUE(s.Open(Opts(dir.path())).ok());
  ASSERT_NE(s.Members(5), nullptr);
  EXPECT_TRUE(s.Members(5)->contains(1));
}

TEST(LocalStoreTest, GroupStatuses) {
  TempDir dir;
  LocalStore s;
  ASSERT_TRUE(s.Open(Opts(dir.path())).ok());
  using GS = protocol::GroupStatus;
  EXPECT_EQ(s.CreateGroup(0, 1), static_cast<uint16_t>(GS::kBadRequest));
  EXPECT_EQ(s.AddMember(9, 1), static_cast<uint16_t>(GS::kNoSuchGroup));
  EXPECT_EQ(s.CreateGroup(9, 1), 0);
  EXPECT_EQ(s.AddMember(9, 1), 0);  // already a member: fine
  EXPECT_EQ(s.RemoveMember(9, 2), static_cast<uint16_t>(GS::kNotMember));
  EXPECT_EQ(s.RemoveMember(9, 1), 0);
  EXPECT_TRUE(s.Members(9)->empty());
}

TEST(LocalStoreTest, IdempotencyGenerationsKeepEveryEntryOfTheWindowAndRetireWholeOnes) {
  TempDir dir;
  LocalStore s;
  StoreOptions o = Opts(dir.path());
  o.idempotency_window_ms = 60'000;
  ASSERT_TRUE(s.Open(o).ok());
  // 20,000 SENDs from 100 devices: more than the first generations hold (3,584 in 4,095 slots, then 7,168
  // in 8,191, ...).
  constexpr uint64_t kN = 20000;
  for (uint64_t i = 0; i < kN; ++i) {
    s.PutIdem(IdemKey{i % 100 + 1, 1, i}, IdemValue{1000 + i, kNowMs + i, 0});
  }
  EXPECT_EQ(s.idem_size(), kN);
  EXPECT_EQ(s.idem_generations(), 3u);  // 3,584 + 7,168 + the rest in a third of 14,336
  EXPECT_EQ(s.idem_bucket_count(0), 4095u);  // filled to the brim, never rehashed
  EXPECT_EQ(s.idem_bucket_count(1), 8191u);
  EXPECT_EQ(s.idem_bucket_count(2), 16383u);
  for (uint64_t i = 0; i < kN; ++i) {
    const IdemValue* v = s.FindIdem(IdemKey{i % 100 + 1, 1, i});
    ASSERT_NE(v, nullptr) << i;
    EXPECT_EQ(v->server_msg_id, 1000 + i);
  }
  EXPECT_EQ(s.FindIdem(IdemKey{1, 2, 0}), nullptr);  // another device of the same user
  EXPECT_EQ(s.FindIdem(IdemKey{1, 1, kN}), nullptr);
  // Within the window of the oldest generation's newest entry (kNowMs + 3,583): nothing goes.
  EXPECT_EQ(s.RetireIdem(kNowMs + 3583 + 60'000), 0u);
  EXPECT_NE(s.FindIdem(IdemKey{1, 1, 0}), nullptr);
  // Just past it: the first generation goes whole, the rest stay.
  EXPECT_EQ(s.RetireIdem(kNowMs + 3584 + 60'000), 1u);
  EXPECT_EQ(s.FindIdem(IdemKey{1, 1, 0}), nullptr);
  EXPECT_EQ(s.FindIdem(IdemKey{84, 1, 3583}), nullptr);
  ASSERT_NE(s.FindIdem(IdemKey{85, 1, 3584}), nullptr);
  EXPECT_EQ(s.idem_size(), kN - 3584);
  // Long after: only the newest generation stays (it is still taking entries).
  EXPECT_EQ(s.RetireIdem(kNowMs + 10 * 60'000), 1u);
  EXPECT_EQ(s.idem_generations(), 1u);
  EXPECT_EQ(s.idem_size(), kN - 3584 - 7168);
  // New entries go on; an erased one is gone from whichever generation held it.
  s.PutIdem(IdemKey{1, 1, kN}, IdemValue{5, kNowMs + 10 * 60'000, 0});
  s.EraseIdem(IdemKey{1, 1, 19900});
  EXPECT_EQ(s.FindIdem(IdemKey{1, 1, 19900}), nullptr);
  ASSERT_NE(s.FindIdem(IdemKey{1, 1, kN}), nullptr);
}

}  // namespace
}  // namespace longlink::gateway::local
