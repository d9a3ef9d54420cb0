#include "loadgen/ledger.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace longlink::loadgen {
namespace {

using Ids = std::vector<uint32_t>;

constexpr uint64_t Id(uint32_t sender, uint32_t seq) { return MakeMessageId(sender, seq); }

LedgerTotals MergeOne(const LedgerShard& shard) {
  const LedgerShard* shards[] = {&shard};
  return Merge(std::span<const LedgerShard* const>(shards));
}

// The same bookkeeping with ordinary sets and maps: the specification the ledger must match.
class ReferenceLedger {
 public:
  void Sent(uint64_t id) {
    if (MessageSeq(id) == 0) {
      ++invalid_ids_;
      return;
    }
    sent_.insert(id);
  }
  void Acked(uint64_t id, const Ids& recipients) {
    if (MessageSeq(id) == 0) {
      ++invalid_ids_;
      return;
    }
    if (recipients_.count(id) != 0) {
      ++duplicate_acks_;
      return;
    }
    sent_.insert(id);
    recipients_[id] = std::set<uint32_t>(recipients.begin(), recipients.end());
  }
  bool Delivered(uint32_t recipient, uint64_t id) {
    if (MessageSeq(id) == 0) {
      ++invalid_ids_;
      return false;
    }
    if (!delivered_.insert({recipient, id}).second) {
      ++duplicates_;
      return false;
    }
    uint32_t& highest = highest_[{recipient, MessageSender(id)}];
    if (MessageSeq(id) < highest) {
      ++out_of_order_;
    } else {
      highest = MessageSeq(id);
    }
    return true;
  }
  bool IsLost(const LostDelivery& l) const {
    auto it = recipients_.find(Id(l.sender, l.seq));
    return it != recipients_.end() && it->second.count(l.recipient) != 0 &&
           delivered_.count({l.recipient, it->first}) == 0;
  }
  LedgerTotals Totals() const {
    LedgerTotals t;
    t.sent = sent_.size();
    t.acked = recipients_.size();
    t.inflight = t.sent - t.acked;
    for (const auto& [id, set] : recipients_) {
      t.expected_deliveries += set.size();
      for (uint32_t r : set) t.lost += delivered_.count({r, id}) == 0;
    }
    t.delivered_unique = delivered_.size();
    for (const auto& [r, id] : delivered_) {
      auto it = recipients_.find(id);
      if (it == recipients_.end()) {
        ++t.delivered_unacked;
      } else if (it->second.count(r) == 0) {
        ++t.delivered_to_non_recipient;
      }
    }
    t.duplicates = duplicates_;
    t.out_of_order = out_of_order_;
    t.duplicate_acks = duplicate_acks_;
    t.invalid_ids = invalid_ids_;
    return t;
  }

 private:
  std::set<uint64_t> sent_;
  std::map<uint64_t, std::set<uint32_t>> recipients_;
  std::set<std::pair<uint32_t, uint64_t>> delivered_;
  std::map<std::pair<uint32_t, uint32_t>, uint32_t> highest_;
  uint64_t duplicates_ = 0;
  uint64_t out_of_order_ = 0;
  uint64_t duplicate_acks_ = 0;
  uint64_t invalid_ids_ = 0;
};

void ExpectTotals(const LedgerTotals& got, const LedgerTotals& want, const std::string& where = "") {
  EXPECT_EQ(got.ToString(), want.ToString()) << where;
}

TEST(LedgerTest, MessageIdPacksSenderAndSeq) {
  EXPECT_EQ(MakeMessageId(7, 9), (uint64_t{7} << 32) | 9);
  EXPECT_EQ(MessageSender(MakeMessageId(0xfffffffe, 3)), 0xfffffffeu);
  EXPECT_EQ(MessageSeq(MakeMessageId(5, 0xffffffff)), 0xffffffffu);
}

TEST(LedgerTest, EchoAllDeliveredIsClean) {
  LedgerShard shard;
  for (uint32_t seq = 1; seq <= 3; ++seq) {
    shard.Sent(Id(1, seq));
    shard.Acked(Id(1, seq), Ids{1});
    EXPECT_TRUE(shard.Delivered(1, Id(1, seq)));
  }
  LedgerTotals t = MergeOne(shard);
  EXPECT_EQ(t.sent, 3u);
  EXPECT_EQ(t.acked, 3u);
  EXPECT_EQ(t.inflight, 0u);
  EXPECT_EQ(t.expected_deliveries, 3u);
  EXPECT_EQ(t.delivered_unique, 3u);
  EXPECT_EQ(t.lost, 0u);
  EXPECT_EQ(t.unexpected(), 0u);
  EXPECT_TRUE(t.Clean());
}

TEST(LedgerTest, LostDelivery) {
  LedgerShard shard;
  shard.Sent(Id(1, 1));
  shard.Acked(Id(1, 1), Ids{2, 3});
  EXPECT_TRUE(shard.Delivered(2, Id(1, 1)));
  LedgerTotals t = MergeOne(shard);
  EXPECT_EQ(t.expected_deliveries, 2u);
  EXPECT_EQ(t.delivered_unique, 1u);
  EXPECT_EQ(t.lost, 1u);
  EXPECT_FALSE(t.Clean());
  // The report names it.
  EXPECT_EQ(t.lost_sample, (std::vector<LostDelivery>{{1, 1, 3}}));
}

TEST(LedgerTest, DuplicateDelivery) {
  LedgerShard shard;
  shard.Sent(Id(1, 1));
  shard.Acked(Id(1, 1), Ids{2});
  EXPECT_TRUE(shard.Delivered(2, Id(1, 1)));
  EXPECT_FALSE(shard.Delivered(2, Id(1, 1)));
  EXPECT_FALSE(shard.Delivered(2, Id(1, 1)));
  LedgerTotals t = MergeOne(shard);
  EXPECT_EQ(t.delivered_unique, 1u);
  EXPECT_EQ(t.duplicates, 2u);
  EXPECT_EQ(t.lost, 0u);
  EXPECT_EQ(t.out_of_order, 0u);
  EXPECT_FALSE(t.Clean());
}

TEST(LedgerTest, OutOfOrderIsPerPairAndDuplicatesAreNotReordering) {
  LedgerShard shard;
  for (uint32_t seq = 1; seq <= 4; ++seq) {
    shard.Sent(Id(1, seq));
    shard.Acked(Id(1, seq), Ids{2, 3});
  }
  // Recipient 2: 1, 3, 2 (late), 4, then a SYNC replays 1..4: only duplicates.
  EXPECT_TRUE(shard.Delivered(2, Id(1, 1)));
  EXPECT_TRUE(shard.Delivered(2, Id(1, 3)));
  EXPECT_TRUE(shard.Delivered(2, Id(1, 2)));
  EXPECT_TRUE(shard.Delivered(2, Id(1, 4)));
  for (uint32_t seq = 1; seq <= 4; ++seq) EXPECT_FALSE(shard.Delivered(2, Id(1, seq)));
  // Recipient 3 in order: the other pair's highest does not matter.
  for (uint32_t seq = 1; seq <= 4; ++seq) EXPECT_TRUE(shard.Delivered(3, Id(1, seq)));
  LedgerTotals t = MergeOne(shard);
  EXPECT_EQ(t.out_of_order, 1u);
  EXPECT_EQ(t.duplicates, 4u);
  EXPECT_EQ(t.delivered_unique, 8u);
  EXPECT_EQ(t.lost, 0u);
}

TEST(LedgerTest, MultiDeviceRecipients) {
  // User A has devices 10, 11; user B has 20, 21, 22. A's device 10 sends to B: B's devices and A's
  // other device must each get it once.
  LedgerShard shard;
  Ids recipients = {20, 21, 22, 11};
  for (uint32_t seq = 1; seq <= 10; ++seq) {
    shard.Sent(Id(10, seq));
    shard.Acked(Id(10, seq), recipients);
  }
  for (uint32_t seq = 1; seq <= 10; ++seq) {
    for (uint32_t r : recipients) {
      if (r == 22 && seq == 7) continue;  // one device misses one message
      EXPECT_TRUE(shard.Delivered(r, Id(10, seq)));
    }
  }
  EXPECT_TRUE(shard.Delivered(12, Id(10, 3)));  // a device outside the set
  LedgerTotals t = MergeOne(shard);
  EXPECT_EQ(t.expected_deliveries, 40u);
  EXPECT_EQ(t.delivered_unique, 40u);
  EXPECT_EQ(t.lost, 1u);
  EXPECT_EQ(t.delivered_to_non_recipient, 1u);
  EXPECT_EQ(t.delivered_unacked, 0u);
}

TEST(LedgerTest, DeliveryBeforeAck) {
  LedgerShard shard;
  shard.Sent(Id(1, 1));
  EXPECT_TRUE(shard.Delivered(2, Id(1, 1)));
  LedgerTotals before = MergeOne(shard);
  EXPECT_EQ(before.inflight, 1u);
  EXPECT_EQ(before.delivered_unacked, 1u);
  EXPECT_EQ(before.lost, 0u);
  shard.Acked(Id(1, 1), Ids{2});
  LedgerTotals after = MergeOne(shard);
  EXPECT_EQ(after.inflight, 0u);
  EXPECT_EQ(after.delivered_unacked, 0u);
  EXPECT_EQ(after.lost, 0u);
  EXPECT_TRUE(after.Clean());
}

TEST(LedgerTest, NonRecipientAndUnackedAreSeparate) {
  LedgerShard shard;
  shard.Sent(Id(1, 1));
  shard.Acked(Id(1, 1), Ids{2});
  shard.Sent(Id(1, 2));  // its SEND_ACK was lost with the connection
  EXPECT_TRUE(shard.Delivered(3, Id(1, 1)));
  EXPECT_TRUE(shard.Delivered(2, Id(1, 2)));
  EXPECT_TRUE(shard.Delivered(2, Id(9, 5)));  // never sent by anyone
  LedgerTotals t = MergeOne(shard);
  EXPECT_EQ(t.lost, 1u);
  EXPECT_EQ(t.delivered_to_non_recipient, 1u);
  EXPECT_EQ(t.delivered_unacked, 2u);
  EXPECT_EQ(t.unexpected(), 3u);
  EXPECT_EQ(t.inflight, 1u);
}

TEST(LedgerTest, GroupFanOutOfHundred) {
  LedgerShard shard;
  Ids members(100);
  std::iota(members.begin(), members.end(), 1000);
  constexpr uint32_t kMessages = 50;
  for (uint32_t seq = 1; seq <= kMessages; ++seq) {
    shard.Sent(Id(1000, seq));
    shard.Acked(Id(1000, seq), members);
  }
  for (uint32_t seq = 1; seq <= kMessages; ++seq) {
    for (uint32_t m : members) {
      if (m == 1042 && seq == 17) continue;
      EXPECT_TRUE(shard.Delivered(m, Id(1000, seq)));
    }
  }
  EXPECT_FALSE(shard.Delivered(1005, Id(1000, 3)));
  EXPECT_TRUE(shard.Delivered(5000, Id(1000, 3)));  // not a member
  LedgerTotals t = MergeOne(shard);
  EXPECT_EQ(t.expected_deliveries, 100u * kMessages);
  EXPECT_EQ(t.delivered_unique, 100u * kMessages);
  EXPECT_EQ(t.lost, 1u);
  EXPECT_EQ(t.duplicates, 1u);
  EXPECT_EQ(t.delivered_to_non_recipient, 1u);
  EXPECT_EQ(t.delivered_unacked, 0u);
  // In-order group streams are one ack run and one stream per member; the one gap is still inside its
  // member's window, so nothing is spilled.
  EXPECT_EQ(shard.stream_count(), 100u);
  EXPECT_EQ(shard.spilled_count(), 0u);
}

TEST(LedgerTest, AckBookkeeping) {
  LedgerShard shard;
  shard.Acked(Id(1, 1), Ids{2, 2, 3, 2});  // acked without Sent: counts as sent; recipients deduplicated
  shard.Acked(Id(1, 1), Ids{2});           // a second ack is ignored
  shard.Sent(Id(1, 1));                    // a retransmitted SEND counts once
  shard.Sent(Id(1, 0));
  shard.Acked(Id(1, 0), Ids{2});
  EXPECT_FALSE(shard.Delivered(2, Id(1, 0)));
  shard.Acked(Id(1, 2), Ids{});  // nobody to deliver to
  LedgerTotals t = MergeOne(shard);
  EXPECT_EQ(t.sent, 2u);
  EXPECT_EQ(t.acked, 2u);
  EXPECT_EQ(t.expected_deliveries, 2u);
  EXPECT_EQ(t.duplicate_acks, 1u);
  EXPECT_EQ(t.invalid_ids, 3u);
  EXPECT_EQ(t.lost, 2u);
}

TEST(LedgerTest, SeqsAroundTheTopOfTheRange) {
  // Only deliveries: a sender's sent/acked bits cost 2 bits per seq up to its highest, so a sender near
  // 2^32 would cost a GiB. The recipient side must not overflow its window arithmetic up there.
  LedgerShard shard;
  for (uint32_t seq : {0xfffffff0u, 0xfffffffeu, 0xffffffffu, 0xfffffff1u, 0xffffff00u, 0xfffffff2u}) {
    EXPECT_TRUE(shard.Delivered(4, Id(3, seq)));
    EXPECT_FALSE(shard.Delivered(4, Id(3, seq)));
  }
  for (uint32_t seq = 0xffffff01u; seq != 0; ++seq) {
    bool first = seq < 0xfffffff0u || seq > 0xfffffff2u;
    if (seq == 0xfffffffeu || seq == 0xffffffffu) first = false;
    EXPECT_EQ(shard.Delivered(4, Id(3, seq)), first) << seq;
  }
  EXPECT_EQ(shard.spilled_count(), 0u);
  LedgerTotals t = MergeOne(shard);
  EXPECT_EQ(t.delivered_unique, 256u);
  EXPECT_EQ(t.duplicates, 6u + 5u);
  EXPECT_EQ(t.delivered_unacked, 256u);
  EXPECT_EQ(t.out_of_order, 3u + 250u);  // every seq of the sweep is below 0xffffffff
}

TEST(LedgerTest, SenderBitsGrowWithTheHighestSeq) {
  LedgerShard shard;
  shard.Sent(Id(1, 1'000'000));
  shard.Acked(Id(1, 1'000'000), Ids{2});
  EXPECT_TRUE(shard.Delivered(2, Id(1, 1'000'000)));
  size_t bytes = shard.MemoryBytes();
  EXPECT_GT(bytes, 2'000'000u / 8);  // 2 bits per seq up to the highest
  EXPECT_LT(bytes, 2 * 2'000'000u / 8 + 64 * 1024);
  EXPECT_TRUE(MergeOne(shard).Clean());
}

TEST(LedgerTest, InOrderStreamCostsNoSpill) {
  LedgerShard shard;
  constexpr uint32_t kMessages = 100'000;
  for (uint32_t seq = 1; seq <= kMessages; ++seq) {
    shard.Sent(Id(1, seq));
    shard.Acked(Id(1, seq), Ids{1, 2});
    EXPECT_TRUE(shard.Delivered(1, Id(1, seq)));
    // Recipient 2 sees small local reordering.
    uint32_t s = seq % 2 == 1 ? seq + 1 : seq - 1;
    if (s <= kMessages) {
      EXPECT_TRUE(shard.Delivered(2, Id(1, s)));
    }
  }
  EXPECT_EQ(shard.spilled_count(), 0u);
  EXPECT_EQ(shard.stream_count(), 2u);
  // 2 bits per message for the sent and acked bits, one ack run: well under a byte per message.
  EXPECT_LT(shard.MemoryBytes(), kMessages);
  LedgerTotals t = MergeOne(shard);
  EXPECT_EQ(t.expected_deliveries, 2u * kMessages);
  EXPECT_EQ(t.delivered_unique, 2u * kMessages);
  EXPECT_EQ(t.out_of_order, kMessages / 2);
  EXPECT_TRUE(t.Clean());
}

TEST(LedgerTest, LossesBecomeHolesAndLateFillsCloseThem) {
  LedgerShard shard;
  for (uint32_t seq = 1; seq <= 1000; ++seq) {
    shard.Sent(Id(1, seq));
    shard.Acked(Id(1, seq), Ids{2});
    if (seq % 100 != 0) {
      EXPECT_TRUE(shard.Delivered(2, Id(1, seq)));
    }
  }
  EXPECT_EQ(shard.spilled_count(), 10u - 1);  // the last loss is still in the window
  LedgerTotals lossy = MergeOne(shard);
  EXPECT_EQ(lossy.lost, 10u);
  std::vector<LostDelivery> want_sample;
  for (uint32_t seq = 100; seq <= 1000; seq += 100) want_sample.push_back({1, seq, 2});
  EXPECT_EQ(lossy.lost_sample, want_sample);
  for (uint32_t seq = 100; seq <= 1000; seq += 100) EXPECT_TRUE(shard.Delivered(2, Id(1, seq)));
  for (uint32_t seq = 100; seq <= 1000; seq += 100) EXPECT_FALSE(shard.Delivered(2, Id(1, seq)));
  EXPECT_EQ(shard.spilled_count(), 0u);
  LedgerTotals t = MergeOne(shard);
  EXPECT_EQ(t.lost, 0u);
  EXPECT_EQ(t.out_of_order, 9u);  // 1000 arrives after 999: late, but not below anything delivered
  EXPECT_EQ(t.duplicates, 10u);
}

TEST(LedgerTest, ReconnectGapFilledBySyncFoldsBackIntoTheRun) {
  // The recipient is offline for seqs 101..600; live pushes resume at 601, then SYNC replays the gap.
  LedgerShard shard;
  for (uint32_t seq = 1; seq <= 1000; ++seq) {
    shard.Sent(Id(1, seq));
    shard.Acked(Id(1, seq), Ids{2});
  }
  for (uint32_t seq = 1; seq <= 100; ++seq) EXPECT_TRUE(shard.Delivered(2, Id(1, seq)));
  for (uint32_t seq = 601; seq <= 800; ++seq) EXPECT_TRUE(shard.Delivered(2, Id(1, seq)));
  EXPECT_EQ(MergeOne(shard).lost, 700u);
  for (uint32_t seq = 101; seq <= 600; ++seq) EXPECT_TRUE(shard.Delivered(2, Id(1, seq)));
  for (uint32_t seq = 801; seq <= 1000; ++seq) EXPECT_TRUE(shard.Delivered(2, Id(1, seq)));
  EXPECT_EQ(shard.spilled_count(), 0u);
  LedgerTotals t = MergeOne(shard);
  EXPECT_EQ(t.lost, 0u);
  EXPECT_EQ(t.out_of_order, 500u);
  EXPECT_TRUE(t.Clean());
}

TEST(LedgerTest, IsolatedSeqsThenAStream) {
  LedgerShard shard;
  for (uint32_t seq = 1; seq <= 2000; ++seq) {
    shard.Sent(Id(7, seq));
    shard.Acked(Id(7, seq), Ids{8});
  }
  // Far apart first (a sparse pair), then a replay below the highest: all spilled while the pair is sparse.
  for (uint32_t seq : {5u, 300u, 1005u, 1700u}) EXPECT_TRUE(shard.Delivered(8, Id(7, seq)));
  for (uint32_t seq = 1000; seq <= 1100; ++seq) EXPECT_EQ(shard.Delivered(8, Id(7, seq)), seq != 1005) << seq;
  EXPECT_EQ(shard.stream_count(), 0u);
  EXPECT_EQ(shard.spilled_count(), 103u);
  // Live pushes continue above 1700: a stream starts there.
  for (uint32_t seq = 1701; seq <= 1800; ++seq) EXPECT_TRUE(shard.Delivered(8, Id(7, seq)));
  EXPECT_EQ(shard.stream_count(), 1u);
  for (uint32_t seq : {5u, 300u, 1005u, 1700u, 1050u, 1750u}) EXPECT_FALSE(shard.Delivered(8, Id(7, seq)));
  // The rest of the backlog arrives in order and joins the run from below.
  for (uint32_t seq = 1101; seq <= 1699; ++seq) EXPECT_TRUE(shard.Delivered(8, Id(7, seq)));
  EXPECT_EQ(shard.spilled_count(), 2u);  // 5 and 300
  LedgerTotals t = MergeOne(shard);
  EXPECT_EQ(t.delivered_unique, 803u);
  EXPECT_EQ(t.lost, 2000u - 803u);
  EXPECT_EQ(t.duplicates, 7u);
}

TEST(LedgerTest, ShardsJoinAcrossThreadsOfOwnership) {
  // Sender 1 lives on shard 0; its recipients 2 and 3 on shards 1 and 2; 3 replies from shard 2.
  std::vector<LedgerShard> shards(3);
  for (uint32_t seq = 1; seq <= 200; ++seq) {
    shards[0].Sent(Id(1, seq));
    shards[0].Acked(Id(1, seq), Ids{2, 3});
  }
  shards[2].Sent(Id(3, 1));
  shards[2].Acked(Id(3, 1), Ids{1});
  shards[0].Sent(Id(1, 201));  // in flight
  for (uint32_t seq = 1; seq <= 200; ++seq) {
    EXPECT_TRUE(shards[1].Delivered(2, Id(1, seq)));
    if (seq != 150) {
      EXPECT_TRUE(shards[2].Delivered(3, Id(1, seq)));
    }
  }
  EXPECT_TRUE(shards[2].Delivered(3, Id(1, 201)));  // delivered before its ack
  EXPECT_TRUE(shards[0].Delivered(1, Id(3, 1)));
  LedgerTotals t = Merge(std::span<const LedgerShard>(shards));
  EXPECT_EQ(t.sent, 202u);
  EXPECT_EQ(t.acked, 201u);
  EXPECT_EQ(t.inflight, 1u);
  EXPECT_EQ(t.expected_deliveries, 401u);
  EXPECT_EQ(t.delivered_unique, 401u);
  EXPECT_EQ(t.lost, 1u);
  EXPECT_EQ(t.delivered_unacked, 1u);
  EXPECT_EQ(t.delivered_to_non_recipient, 0u);
  // The pointer form gives the same answer.
  std::vector<const LedgerShard*> pointers = {&shards[2], &shards[0], &shards[1]};
  ExpectTotals(Merge(std::span<const LedgerShard* const>(pointers)), t);
}

// ---------------------------------------------------------------------------------------------------
// Randomized simulation against the reference.

enum class Mode { kEcho, kChat, kGroup, kMixed };

struct SimParams {
  Mode mode;
  uint32_t users;
  uint32_t max_devices;
  uint32_t messages;
  double drop_ack;       // SEND_ACK lost with the connection
  double drop_delivery;  // a push never arrives
  double duplicate;      // a push arrives twice (retransmit, SYNC replay)
  double far_delay;      // a push is held back a long time (reconnect)
  double stray;          // a push reaches a device outside the set, or carries a bogus id
  uint32_t shards;
  uint64_t seed;
};

struct Event {
  uint64_t time;
  uint64_t order;
  int kind;  // 0 sent, 1 acked, 2 delivered
  uint32_t client;
  uint64_t id;
  Ids recipients;
};

void RunSimulation(const SimParams& p) {
  std::mt19937_64 rng(p.seed);
  auto chance = [&](double x) { return std::uniform_real_distribution<double>(0, 1)(rng) < x; };
  // Users own 1..max_devices consecutive client indices.
  std::vector<Ids> devices(p.users);
  uint32_t next_client = 0;
  for (auto& d : devices) {
    uint32_t n = 1 + rng() % p.max_devices;
    for (uint32_t i = 0; i < n; ++i) d.push_back(next_client++);
  }
  std::vector<uint32_t> user_of(next_client);
  for (uint32_t u = 0; u < p.users; ++u) {
    for (uint32_t c : devices[u]) user_of[c] = u;
  }
  std::vector<uint32_t> next_seq(next_client, 1);
  Ids group;
  for (uint32_t u = 0; u < p.users; u += 2) group.insert(group.end(), devices[u].begin(), devices[u].end());

  std::vector<Event> events;
  uint64_t order = 0;
  for (uint32_t m = 0; m < p.messages; ++m) {
    uint64_t t = m * 4;
    uint32_t sender = rng() % next_client;
    uint64_t id = Id(sender, next_seq[sender]++);
    Mode mode = p.mode == Mode::kMixed ? static_cast<Mode>(rng() % 3) : p.mode;
    Ids recipients;
    if (mode == Mode::kEcho) {
      recipients = devices[user_of[sender]];
    } else if (mode == Mode::kChat) {
      // A handful of favourite peers per sender keeps pairs dense enough to become streams.
      uint32_t target = (user_of[sender] + 1 + (rng() % 3 == 0 ? rng() % p.users : rng() % 2)) % p.users;
      recipients = devices[target];
      for (uint32_t c : devices[user_of[sender]]) {
        if (c != sender) recipients.push_back(c);
      }
    } else {
      recipients = group;
    }
    if (chance(0.05) && !recipients.empty()) recipients.push_back(recipients[0]);  // repeated in the list
    events.push_back({t, order++, 0, sender, id, {}});
    if (chance(0.01)) events.push_back({t + 1 + rng() % 50, order++, 0, sender, id, {}});  // resent
    if (!chance(p.drop_ack)) {
      events.push_back({t + 1 + rng() % 40, order++, 1, sender, id, recipients});
      if (chance(0.01)) events.push_back({t + 50 + rng() % 40, order++, 1, sender, id, recipients});
    }
    std::sort(recipients.begin(), recipients.end());
    recipients.erase(std::unique(recipients.begin(), recipients.end()), recipients.end());
    for (uint32_t r : recipients) {
      if (chance(p.drop_delivery)) continue;
      int copies = chance(p.duplicate) ? 2 : 1;
      for (int c = 0; c < copies; ++c) {
        uint64_t delay = chance(p.far_delay) ? rng() % (uint64_t{p.messages} * 2) : rng() % 30;
        events.push_back({t + delay, order++, 2, r, id, {}});
      }
    }
    if (chance(p.stray)) {
      uint64_t stray_id = chance(0.5) ? id : Id(rng() % next_client, 1 + rng() % 100000);
      events.push_back({t + rng() % 100, order++, 2, static_cast<uint32_t>(rng() % next_client), stray_id, {}});
    }
  }
  std::sort(events.begin(), events.end(),
            [](const Event& a, const Event& b) { return a.time != b.time ? a.time < b.time : a.order < b.order; });

  std::vector<LedgerShard> shards(p.shards);
  ReferenceLedger reference;
  size_t checkpoint = events.size() / 2;
  for (size_t i = 0; i < events.size(); ++i) {
    const Event& e = events[i];
    LedgerShard& shard = shards[e.client % p.shards];
    if (e.kind == 0) {
      shard.Sent(e.id);
      reference.Sent(e.id);
    } else if (e.kind == 1) {
      shard.Acked(e.id, e.recipients);
      reference.Acked(e.id, e.recipients);
    } else {
      ASSERT_EQ(shard.Delivered(e.client, e.id), reference.Delivered(e.client, e.id))
          << "event " << i << " client " << e.client << " sender " << MessageSender(e.id) << " seq "
          << MessageSeq(e.id);
    }
    if (i == checkpoint) ExpectTotals(Merge(std::span<const LedgerShard>(shards)), reference.Totals(), "midway");
  }
  LedgerTotals got = Merge(std::span<const LedgerShard>(shards));
  LedgerTotals want = reference.Totals();
  ExpectTotals(got, want, "final");
  EXPECT_EQ(got.lost_sample.size(), std::min<uint64_t>(want.lost, LedgerTotals::kLostSample));
  for (const LostDelivery& l : got.lost_sample) {
    EXPECT_TRUE(reference.IsLost(l)) << "sender " << l.sender << " seq " << l.seq << " recipient " << l.recipient;
  }
  // The scenario exercises what it claims to.
  EXPECT_GT(want.lost, 0u);
  EXPECT_GT(want.duplicates, 0u);
  EXPECT_GT(want.out_of_order, 0u);
  size_t streams = 0;
  for (const LedgerShard& s : shards) streams += s.stream_count();
  EXPECT_GT(streams, 0u);
}

TEST(LedgerTest, RandomizedEchoAgainstReference) {
  RunSimulation({Mode::kEcho, 40, 3, 30'000, 0.02, 0.02, 0.03, 0.01, 0.0, 3, 1});
}

TEST(LedgerTest, RandomizedChatAgainstReference) {
  RunSimulation({Mode::kChat, 50, 3, 40'000, 0.03, 0.03, 0.03, 0.02, 0.002, 4, 2});
}

TEST(LedgerTest, RandomizedGroupAgainstReference) {
  RunSimulation({Mode::kGroup, 30, 2, 5'000, 0.02, 0.01, 0.02, 0.01, 0.002, 2, 3});
}

TEST(LedgerTest, RandomizedMixedHeavyFaultsAgainstReference) {
  for (uint64_t seed = 10; seed < 16; ++seed) {
    RunSimulation({Mode::kMixed, 20, 3, 10'000, 0.1, 0.15, 0.1, 0.1, 0.01, 3, seed});
  }
}

TEST(LedgerTest, RandomizedSingleShardLongReorders) {
  // Few clients, long streams, many far delays: exercises jumps, holes and pulls.
  RunSimulation({Mode::kEcho, 3, 2, 50'000, 0.01, 0.05, 0.05, 0.2, 0.0, 1, 4});
  RunSimulation({Mode::kChat, 4, 2, 50'000, 0.01, 0.3, 0.05, 0.05, 0.001, 1, 5});
}

}  // namespace
}  // namespace longlink::loadgen
