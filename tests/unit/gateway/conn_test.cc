// ConnTable and Registry: id reuse with generations, and the user -> devices chains.
#include "gateway/conn.h"

#include <map>
#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace longlink::gateway {
namespace {

TEST(ConnTableTest, AllocFreeReusesIdsWithNewGeneration) {
  ConnTable t;
  ASSERT_TRUE(t.Init(4).ok());
  uint32_t a = t.Alloc();
  uint32_t b = t.Alloc();
  EXPECT_NE(a, b);
  t[a].state = ConnState::kActive;
  uint32_t gen_a = t[a].gen;
  EXPECT_TRUE(t.Valid(a, gen_a));
  t.Free(a);
  EXPECT_FALSE(t.Valid(a, gen_a));
  uint32_t c = t.Alloc();
  EXPECT_EQ(c, a);  // most recently freed first
  t[c].state = ConnState::kActive;
  EXPECT_NE(t[c].gen, gen_a);
  EXPECT_FALSE(t.Valid(c, gen_a));
  EXPECT_TRUE(t.Valid(c, t[c].gen));
  EXPECT_EQ(t.live(), 2u);
}

TEST(ConnTableTest, FullTableReturnsNoConn) {
  ConnTable t;
  ASSERT_TRUE(t.Init(3).ok());
  for (int i = 0; i < 3; ++i) EXPECT_NE(t.Alloc(), kNoConn);
  EXPECT_EQ(t.Alloc(), kNoConn);
  t.Free(1);
  EXPECT_EQ(t.Alloc(), 1u);
}

TEST(ConnTableTest, AllocClearsStateButKeepsGeneration) {
  ConnTable t;
  ASSERT_TRUE(t.Init(2).ok());
  uint32_t a = t.Alloc();
  t[a].user_id = 99;
  t[a].flags = 0xff;
  t.Free(a);
  uint32_t gen = t[a].gen;
  uint32_t b = t.Alloc();
  ASSERT_EQ(a, b);
  EXPECT_EQ(t[b].user_id, 0u);
  EXPECT_EQ(t[b].flags, 0u);
  EXPECT_EQ(t[b].gen, gen);
  EXPECT_EQ(t[b].next, kNoConn);
}

uint32_t NewConn(ConnTable& t, uint64_t user, uint32_t device) {
  uint32_t id = t.Alloc();
  t[id].state = ConnState::kActive;
  t[id].user_id = user;
  t[id].device_id = device;
  return id;
}

std::set<uint32_t> Chain(const Registry& r, ConnTable& t, uint64_t user) {
  std::set<uint32_t> out;
  for (uint32_t id = r.First(user); id != kNoConn; id = t[id].next) out.insert(id);
  return out;
}

TEST(RegistryTest, DevicesChainAndDuplicateDeviceIsReported) {
  ConnTable t;
  ASSERT_TRUE(t.Init(16).ok());
  Registry r(&t);
  uint32_t phone = NewConn(t, 7, 1);
  uint32_t laptop = NewConn(t, 7, 2);
  uint32_t other = NewConn(t, 8, 1);
  EXPECT_EQ(r.Add(phone), kNoConn);
  EXPECT_EQ(r.Add(laptop), kNoConn);
  EXPECT_EQ(r.Add(other), kNoConn);
  EXPECT_EQ(Chain(r, t, 7), (std::set<uint32_t>{phone, laptop}));
  EXPECT_EQ(Chain(r, t, 8), (std::set<uint32_t>{other}));
  uint32_t phone2 = NewConn(t, 7, 1);
  EXPECT_EQ(r.Add(phone2), phone);
  EXPECT_EQ(Chain(r, t, 7), (std::set<uint32_t>{phone, laptop, phone2}));
  EXPECT_FALSE(r.Remove(phone));
  EXPECT_EQ(Chain(r, t, 7), (std::set<uint32_t>{laptop, phone2}));
  EXPECT_FALSE(r.Remove(phone2));
  EXPECT_TRUE(r.Remove(laptop));
  EXPECT_EQ(r.First(7), kNoConn);
  EXPECT_EQ(r.users(), 1u);
  EXPECT_FALSE(t[laptop].flags & kInRegistry);
}

TEST(RegistryTest, RemoveFromMiddleOfChain) {
  ConnTable t;
  ASSERT_TRUE(t.Init(16).ok());
  Registry r(&t);
  std::vector<uint32_t> ids;
  for (uint32_t d = 1; d <= 5; ++d) {
    ids.push_back(NewConn(t, 3, d));
    r.Add(ids.back());
  }
  r.Remove(ids[2]);
  EXPECT_EQ(Chain(r, t, 3), (std::set<uint32_t>{ids[0], ids[1], ids[3], ids[4]}));
  r.Remove(ids[0]);
  r.Remove(ids[4]);
  EXPECT_EQ(Chain(r, t, 3), (std::set<uint32_t>{ids[1], ids[3]}));
}

TEST(RegistryTest, RandomizedAgainstModel) {
  ConnTable t;
  ASSERT_TRUE(t.Init(4096).ok());
  Registry r(&t);
  std::map<uint64_t, std::set<uint32_t>> model;
  std::vector<uint32_t> live;
  std::mt19937 rng(42);
  for (int step = 0; step < 20000; ++step) {
    if (live.empty() || (rng() % 3 != 0 && live.size() < 4000)) {
      uint64_t user = rng() % 300;
      uint32_t id = NewConn(t, user, rng() % 4);
      r.Add(id);
      model[user].insert(id);
      live.push_back(id);
    } else {
      size_t i = rng() % live.size();
      uint32_t id = live[i];
      live[i] = live.back();
      live.pop_back();
      uint64_t user = t[id].user_id;
      bool last = r.Remove(id);
      model[user].erase(id);
      EXPECT_EQ(last, model[user].empty());
      if (model[user].empty()) model.erase(user);
      t.Free(id);
    }
  }
  EXPECT_EQ(r.users(), model.size());
  for (const auto& [user, ids] : model) EXPECT_EQ(Chain(r, t, user), ids) << "user " << user;
}

}  // namespace
}  // namespace longlink::gateway
