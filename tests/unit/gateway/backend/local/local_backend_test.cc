// The local backend on a simulated gateway: N shards with fake ports, cross-shard calls delivered by a
// pump, fsync requests run synchronously. Checks the message flow end to end without sockets.
#include "gateway/backend/local/local_backend.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/hash.h"
#include "protocol/frame.h"

namespace longlink::gateway::local {
namespace {

namespace proto = longlink::protocol;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/longlink-backend-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf " + path_).c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct Frame {
  uint8_t opcode;
  uint32_t request_id;
  std::vector<uint8_t> body;
};

class Cluster;

class FakePort final : public GatewayPort {
 public:
  FakePort(Cluster* c, uint32_t id) : cluster_(c), id_(id) {}
  uint32_t shard_id() const override { return id_; }
  uint32_t shard_count() const override;
  uint32_t OwnerShard(uint64_t user_id) const override { return core::OwnerShardOf(user_id, shard_count()); }
  bool SendTo(const ConnRef& conn, std::span<const uint8_t> frame) override;
  void PushToUser(uint64_t user_id, uint32_t device_id, std::span<const uint8_t> frame) override;
  void PushToUsers(std::span<const uint64_t> user_ids, std::span<const uint8_t> frame) override {
    for (uint64_t u : user_ids) PushToUser(u, 0, frame);
  }
  void Kick(uint64_t, uint32_t, proto::KickReason, std::string_view) override {}
  void ObserveBackendLatency(double) override {}
  void ObservePushDelaySeconds(double) override {}
  void SubmitFsync(int fd, uint32_t token) override { fsyncs.push_back({fd, token}); }

  std::vector<std::pair<int, uint32_t>> fsyncs;

 protected:
  void PostCall(uint32_t shard, uint16_t kind, const void* body, size_t size, ShardPayload* payload) override;

 private:
  Cluster* cluster_;
  uint32_t id_;
};

// A call in flight between two simulated shards.
struct QueuedCall {
  uint32_t from;
  uint32_t to;
  uint16_t kind;
  std::vector<uint8_t> body;
  ShardPayload* payload;
};

// Devices are connections: conn id = user * 100 + device.
class Cluster {
 public:
  Cluster(const std::string& dir, uint32_t shards, FsyncPolicy policy = FsyncPolicy::kBatch) {
    opts_.shards = shards;
    opts_.data_dir = dir;
    opts_.fsync = policy;
    opts_.fsync_interval_us = 0;
    opts_.max_sends_per_second = 0;  // the tests stream from one device
    factory_ = std::make_unique<LocalFactory>(opts_);
    absl::Status opened = factory_->Open(nullptr);
    EXPECT_TRUE(opened.ok()) << opened;
    for (uint32_t i = 0; i < shards; ++i) ports_.push_back(std::make_unique<FakePort>(this, i));
    for (uint32_t i = 0; i < shards; ++i) {
      backends_.push_back(std::make_unique<LocalBackend>(factory_.get(), ports_[i].get()));
      absl::Status st = backends_[i]->Start();
      EXPECT_TRUE(st.ok()) << st;
    }
  }

  uint32_t shards() const { return opts_.shards; }
  uint32_t Owner(uint64_t user) const { return core::OwnerShardOf(user, opts_.shards); }
  LocalBackend& backend(uint32_t s) { return *backends_[s]; }

  Session Login(uint64_t user, uint32_t device) {
    Session s;
    s.user_id = user;
    s.device_id = device;
    s.conn = ConnRef{Owner(user), static_cast<uint32_t>(user * 100 + device), 1};
    online_[s.conn.id] = true;
    backends_[Owner(user)]->OnLogin(s);
    return s;
  }
  void Logout(const Session& s) {
    online_.erase(s.conn.id);
    backends_[Owner(s.user_id)]->OnDisconnect(s);
  }
  // The gateway closes this session (a slow consumer) as soon as anything is pushed to it, from inside
  // the backend's call, as Shard::Enqueue does.
  void CloseOnPush(const Session& s) { close_on_push_[s.user_id] = s; }
  void MaybeCloseSlow(uint64_t user) {
    auto it = close_on_push_.find(user);
    if (it == close_on_push_.end()) return;
    Session s = it->second;
    close_on_push_.erase(it);
    Logout(s);
  }

  void Send(const Session& s, uint32_t rid, uint8_t kind, uint64_t target, uint64_t cmid, std::string text) {
    proto::SendBody b;
    b.target_kind = kind;
    b.target_id = target;
    b.client_msg_id = cmid;
    b.payload = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size());
    backends_[Owner(s.user_id)]->OnSend(s, rid, b);
  }
  void Sync(const Session& s, uint32_t rid, uint64_t after, uint32_t limit) {
    backends_[Owner(s.user_id)]->OnSync(s, rid, proto::SyncBody{after, limit});
  }

  // Runs the shards until nothing moves.
  void Pump() {
    for (int round = 0; round < 1000; ++round) {
      bool moved = false;
      while (!queue_.empty()) {
        QueuedCall q = std::move(queue_.front());
        queue_.pop_front();
        backends_[q.to]->OnShardCall(ShardCall(q.kind, q.from, q.body.data(), q.payload));
        delete q.payload;
        moved = true;
      }
      for (uint32_t i = 0; i < shards(); ++i) {
        backends_[i]->OnTick(core::MonoMillis());
        auto fs = std::move(ports_[i]->fsyncs);
        ports_[i]->fsyncs.clear();
        for (auto [fd, token] : fs) {
          int res = fdatasync(fd) == 0 ? 0 : -errno;
          if (fail_fsyncs_[i] > 0) {
            --fail_fsyncs_[i];
            res = -EIO;  // as a disk would report it; the pages may or may not be on it
          }
          backends_[i]->OnFsyncDone(token, res);
          moved = true;
        }
      }
      if (!moved && queue_.empty()) return;
    }
    FAIL() << "the cluster never settled";
  }

  // The next n group commits of a shard fail with EIO.
  void FailFsyncs(uint32_t shard, int n) { fail_fsyncs_[shard] = n; }

  void Stop() {
    for (auto& b : backends_) b->OnStop();
  }

  // Frames received by a device, in order; drained by the call.
  std::vector<Frame> Take(uint64_t user, uint32_t device) {
    auto& v = frames_[user * 100 + device];
    std::vector<Frame> out = std::move(v);
    v.clear();
    return out;
  }

  void Deliver(uint32_t conn, std::span<const uint8_t> frame) {
    proto::Header h;
    EXPECT_EQ(proto::PeekFrame(frame, 1 << 24, &h), proto::FrameStatus::kOk);
    frames_[conn].push_back(Frame{h.opcode, h.request_id,
                                  std::vector<uint8_t>(frame.begin() + proto::kHeaderSize, frame.end())});
  }
  void Post(uint32_t from, uint32_t to, uint16_t kind, const void* body, size_t size, ShardPayload* payload) {
    if (from == to) {
      backends_[to]->OnShardCall(ShardCall(kind, from, body, payload));
      delete payload;
      return;
    }
    const auto* b = static_cast<const uint8_t*>(body);
    queue_.push_back(QueuedCall{from, to, kind, std::vector<uint8_t>(b, b + size), payload});
  }
  bool Online(uint32_t conn) const { return online_.contains(conn); }
  std::vector<uint32_t> DevicesOf(uint64_t user) const {
    std::vector<uint32_t> out;
    for (const auto& [conn, on] : online_) {
      if (conn / 100 == user) out.push_back(conn);
    }
    return out;
  }

 private:
  LocalOptions opts_;
  std::unique_ptr<LocalFactory> factory_;
  std::vector<std::unique_ptr<FakePort>> ports_;
  std::vector<std::unique_ptr<LocalBackend>> backends_;
  std::deque<QueuedCall> queue_;
  std::map<uint32_t, int> fail_fsyncs_;
  std::map<uint64_t, Session> close_on_push_;
  std::map<uint32_t, std::vector<Frame>> frames_;
  std::map<uint32_t, bool> online_;
};

uint32_t FakePort::shard_count() const { return cluster_->shards(); }
bool FakePort::SendTo(const ConnRef& conn, std::span<const uint8_t> frame) {
  if (!cluster_->Online(conn.id)) return false;
  cluster_->Deliver(conn.id, frame);
  return true;
}
void FakePort::PushToUser(uint64_t user, uint32_t device, std::span<const uint8_t> frame) {
  for (uint32_t conn : cluster_->DevicesOf(user)) {
    if (device == 0 || conn % 100 == device) cluster_->Deliver(conn, frame);
  }
  cluster_->MaybeCloseSlow(user);
}
void FakePort::PostCall(uint32_t shard, uint16_t kind, const void* body, size_t size, ShardPayload* payload) {
  cluster_->Post(id_, shard, kind, body, size, payload);
}

proto::SendAckBody Ack(const Frame& f) {
  proto::SendAckBody b;
  EXPECT_EQ(f.opcode, static_cast<uint8_t>(proto::Opcode::kSendAck));
  EXPECT_TRUE(proto::Decode(f.body, &b));
  return b;
}
proto::PushBody Push(const Frame& f) {
  proto::PushBody b;
  EXPECT_EQ(f.opcode, static_cast<uint8_t>(proto::Opcode::kPush));
  EXPECT_TRUE(proto::Decode(f.body, &b));
  return b;
}
std::string Text(const proto::PushBody& p) { return std::string(p.payload.begin(), p.payload.end()); }

// Two users on different shards.
std::pair<uint64_t, uint64_t> UsersOnTwoShards(uint32_t shards) {
  uint64_t a = 1000;
  uint64_t b = a + 1;
  while (core::OwnerShardOf(b, shards) == core::OwnerShardOf(a, shards)) ++b;
  return {a, b};
}

TEST(LocalBackendTest, OneToOneAcrossShards) {
  TempDir dir;
  Cluster c(dir.path(), 2);
  auto [a, b] = UsersOnTwoShards(2);
  Session sa = c.Login(a, 1);
  Session sa2 = c.Login(a, 2);
  Session sb = c.Login(b, 1);
  c.Send(sa, 7, 0, b, 900, "hello");
  c.Pump();
  std::vector<Frame> fa = c.Take(a, 1);
  ASSERT_EQ(fa.size(), 2u);
  proto::SendAckBody ack = Ack(fa[0]);
  EXPECT_EQ(fa[0].request_id, 7u);
  EXPECT_EQ(ack.status, 0);
  EXPECT_EQ(ack.client_msg_id, 900u);
  // The sender's own devices (the sending one included) get it in the sender's inbox, seq 1.
  for (const Frame& f : {fa[1], c.Take(a, 2).at(0)}) {
    proto::PushBody p = Push(f);
    EXPECT_EQ(p.seq, 1u);
    EXPECT_EQ(p.server_msg_id, ack.server_msg_id);
    EXPECT_EQ(p.conv_id, b);  // for the sender the conversation is the peer
    EXPECT_EQ(Text(p), "hello");
  }
  std::vector<Frame> fb = c.Take(b, 1);
  ASSERT_EQ(fb.size(), 1u);
  proto::PushBody pb = Push(fb[0]);
  EXPECT_EQ(pb.seq, 1u);
  EXPECT_EQ(pb.from_user, a);
  EXPECT_EQ(pb.conv_id, a);
  EXPECT_EQ(pb.server_msg_id, ack.server_msg_id);
  EXPECT_EQ(pb.server_time_ms, ack.server_time_ms);
}

TEST(LocalBackendTest, RetriedSendIsStoredOnceAndAckedTheSame) {
  TempDir dir;
  Cluster c(dir.path(), 2);
  auto [a, b] = UsersOnTwoShards(2);
  Session sa = c.Login(a, 1);
  Session sb = c.Login(b, 1);
  // The retry arrives while the first is still in flight, and once more after it finished.
  c.Send(sa, 1, 0, b, 42, "once");
  c.Send(sa, 2, 0, b, 42, "once");
  c.Pump();
  c.Send(sa, 3, 0, b, 42, "once");
  c.Pump();
  std::vector<Frame> fa = c.Take(a, 1);
  std::vector<uint64_t> ids;
  std::vector<uint32_t> rids;
  int pushes = 0;
  for (const Frame& f : fa) {
    if (f.opcode == static_cast<uint8_t>(proto::Opcode::kSendAck)) {
      ids.push_back(Ack(f).server_msg_id);
      rids.push_back(f.request_id);
    } else {
      ++pushes;
    }
  }
  EXPECT_EQ(rids, (std::vector<uint32_t>{1, 2, 3}));
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids[0], ids[1]);
  EXPECT_EQ(ids[0], ids[2]);
  EXPECT_EQ(pushes, 1);
  EXPECT_EQ(c.Take(b, 1).size(), 1u);
  EXPECT_EQ(c.backend(c.Owner(b)).store().FindInbox(b)->durable_seq(), 1u);
}

TEST(LocalBackendTest, OfflineUserSyncsEverythingInOrderInPages) {
  TempDir dir;
  Cluster c(dir.path(), 2);
  auto [a, b] = UsersOnTwoShards(2);
  Session sa = c.Login(a, 1);
  for (int i = 0; i < 300; ++i) c.Send(sa, 10 + i, 0, b, 5000 + i, "m" + std::to_string(i));
  c.Pump();
  Session sb = c.Login(b, 3);
  c.Sync(sb, 99, 0, 1000);  // the server caps a page at 256
  std::vector<Frame> f = c.Take(b, 3);
  ASSERT_EQ(f.size(), 257u);
  for (int i = 0; i < 256; ++i) {
    proto::PushBody p = Push(f[i]);
    EXPECT_EQ(p.seq, static_cast<uint64_t>(i + 1));
    EXPECT_EQ(Text(p), "m" + std::to_string(i));
  }
  proto::SyncDoneBody done;
  ASSERT_TRUE(proto::Decode(f[256].body, &done));
  EXPECT_EQ(f[256].request_id, 99u);
  EXPECT_EQ(done.max_seq, 256u);
  EXPECT_EQ(done.has_more, 1);
  c.Sync(sb, 100, done.max_seq, 100);
  f = c.Take(b, 3);
  ASSERT_EQ(f.size(), 45u);
  EXPECT_EQ(Push(f[0]).seq, 257u);
  ASSERT_TRUE(proto::Decode(f[44].body, &done));
  EXPECT_EQ(done.max_seq, 300u);
  EXPECT_EQ(done.has_more, 0);
}

TEST(LocalBackendTest, GroupFanOutReachesEveryMemberInbox) {
  TempDir dir;
  Cluster c(dir.path(), 3);
  const uint64_t group = 555;
  Session owner = c.Login(1, 1);
  uint32_t gshard = c.Owner(group);
  int status = -1;
  c.backend(gshard).GroupOpFromAdmin(kGroupCreate, group, 1, [&](uint16_t s) { status = s; });
  c.Pump();
  ASSERT_EQ(status, 0);
  for (uint64_t u = 2; u <= 2500; ++u) {
    c.backend(gshard).GroupOpFromAdmin(kGroupAdd, group, u, [](uint16_t) {});
  }
  c.Pump();
  c.Send(owner, 5, 1, group, 1, "to all");
  c.Pump();
  std::vector<Frame> f = c.Take(1, 1);
  ASSERT_GE(f.size(), 1u);
  EXPECT_EQ(Ack(f[0]).status, 0);
  for (uint64_t u = 1; u <= 2500; ++u) {
    const Inbox* in = c.backend(c.Owner(u)).store().FindInbox(u);
    ASSERT_NE(in, nullptr) << u;
    EXPECT_EQ(in->durable_seq(), 1u) << u;
  }
  // A non-member is refused; an unknown group does not exist.
  Session stranger = c.Login(9999, 1);
  c.Send(stranger, 6, 1, group, 1, "no");
  c.Send(stranger, 7, 1, 4242, 2, "no");
  c.Pump();
  f = c.Take(9999, 1);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(Ack(f[0]).status, static_cast<uint16_t>(proto::SendStatus::kRejected));
  EXPECT_EQ(Ack(f[1]).status, static_cast<uint16_t>(proto::SendStatus::kNoSuchTarget));
}

TEST(LocalBackendTest, RestartKeepsInboxesAndUnfinishedMessagesAreRedriven) {
  TempDir dir;
  auto [a, b] = UsersOnTwoShards(2);
  uint64_t id = 0;
  {
    Cluster c(dir.path(), 2);
    Session sa = c.Login(a, 1);
    c.Send(sa, 1, 0, b, 1, "kept");
    c.Pump();
    id = Ack(c.Take(a, 1).at(0)).server_msg_id;
    // The next message is stored on the sender's shard, but the crash comes before the recipient's
    // shard hears of it: only the origin ticks.
    c.Send(sa, 2, 0, b, 2, "redriven");
    c.backend(c.Owner(a)).OnTick(1);
    c.Stop();
  }
  Cluster c(dir.path(), 2);
  c.Pump();  // the first tick re-drives
  Session sb = c.Login(b, 1);
  c.Sync(sb, 3, 0, 10);
  std::vector<Frame> f = c.Take(b, 1);
  ASSERT_EQ(f.size(), 3u);
  EXPECT_EQ(Text(Push(f[0])), "kept");
  EXPECT_EQ(Push(f[0]).server_msg_id, id);
  EXPECT_EQ(Text(Push(f[1])), "redriven");
  EXPECT_EQ(Push(f[1]).seq, 2u);
  // The retried SEND after the restart gets the original id, and nothing is stored twice.
  Session sa = c.Login(a, 1);
  c.Send(sa, 4, 0, b, 2, "redriven");
  c.Pump();
  std::vector<Frame> fa = c.Take(a, 1);
  ASSERT_EQ(fa.size(), 1u);
  EXPECT_EQ(Ack(fa[0]).server_msg_id, Push(f[1]).server_msg_id);
  EXPECT_EQ(c.backend(c.Owner(b)).store().FindInbox(b)->durable_seq(), 2u);
  // Ids after the restart carry a new boot epoch.
  c.Send(sa, 5, 0, b, 3, "new");
  c.Pump();
  uint64_t newer = Ack(c.Take(a, 1).at(0)).server_msg_id;
  EXPECT_EQ(newer >> 48, (id >> 48) + 1);
}

TEST(LocalBackendTest, DrainingFinishesWhatWasAcceptedAndRefusesNewSends) {
  TempDir dir;
  Cluster c(dir.path(), 2);
  auto [a, b] = UsersOnTwoShards(2);
  Session sa = c.Login(a, 1);
  Session sb = c.Login(b, 1);
  c.Send(sa, 1, 0, b, 1, "accepted before the drain");
  for (uint32_t s = 0; s < 2; ++s) c.backend(s).OnDrain();
  // Stored on the origin, not yet durable, not yet delivered: not idle.
  EXPECT_FALSE(c.backend(c.Owner(a)).Idle());
  c.Send(sa, 2, 0, b, 2, "after the drain began");
  c.Pump();
  for (uint32_t s = 0; s < 2; ++s) EXPECT_TRUE(c.backend(s).Idle()) << s;
  std::vector<Frame> fa = c.Take(a, 1);
  std::map<uint32_t, uint16_t> status;
  for (const Frame& f : fa) {
    if (f.opcode == static_cast<uint8_t>(proto::Opcode::kSendAck)) status[f.request_id] = Ack(f).status;
  }
  EXPECT_EQ(status[1], 0);
  EXPECT_EQ(status[2], static_cast<uint16_t>(proto::SendStatus::kUnavailable));
  ASSERT_EQ(c.Take(b, 1).size(), 1u);
  // A retry of the accepted one is still answered from the idempotency map.
  c.Send(sa, 3, 0, b, 1, "accepted before the drain");
  c.Pump();
  fa = c.Take(a, 1);
  ASSERT_EQ(fa.size(), 1u);
  EXPECT_EQ(Ack(fa[0]).status, 0);
}

// Statuses of the SEND_ACKs a device received, by request id.
std::map<uint32_t, proto::SendAckBody> Acks(const std::vector<Frame>& frames) {
  std::map<uint32_t, proto::SendAckBody> out;
  for (const Frame& f : frames) {
    if (f.opcode == static_cast<uint8_t>(proto::Opcode::kSendAck)) out[f.request_id] = Ack(f);
  }
  return out;
}

TEST(LocalBackendTest, AFailedSyncAnswersUnavailableThenRecoversWithoutLossOrDuplicates) {
  TempDir dir;
  Cluster c(dir.path(), 2);
  auto [a, b] = UsersOnTwoShards(2);
  Session sa = c.Login(a, 1);
  Session sb = c.Login(b, 1);
  uint32_t origin = c.Owner(a);
  c.FailFsyncs(origin, 1);
  c.Send(sa, 1, 0, b, 100, "written, then the sync failed");
  c.Pump();
  auto acks = Acks(c.Take(a, 1));
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[1].status, static_cast<uint16_t>(proto::SendStatus::kUnavailable));
  EXPECT_FALSE(c.backend(origin).Ready());
  EXPECT_EQ(c.backend(origin).stats().storage_failed.Get(), 1);
  // While failed: new SENDs, retries and SENDs from the other shard to this one's users are answered.
  c.Send(sa, 2, 0, b, 101, "refused while failed");
  c.Send(sa, 3, 0, b, 100, "written, then the sync failed");
  c.Send(sb, 4, 0, a, 200, "to a user of the failed shard");
  c.Pump();
  acks = Acks(c.Take(a, 1));
  EXPECT_EQ(acks[2].status, static_cast<uint16_t>(proto::SendStatus::kUnavailable));
  EXPECT_EQ(acks[3].status, static_cast<uint16_t>(proto::SendStatus::kUnavailable));
  EXPECT_EQ(Acks(c.Take(b, 1))[4].status, static_cast<uint16_t>(proto::SendStatus::kUnavailable));
  // The probe writes the kept batch again and syncs it: the first message is stored after all, once.
  usleep(1100 * 1000);
  c.Pump();
  EXPECT_TRUE(c.backend(origin).Ready());
  EXPECT_EQ(c.backend(origin).stats().storage_recoveries_total.Get(), 1u);
  c.Send(sa, 5, 0, b, 100, "written, then the sync failed");  // the client's retry
  c.Send(sa, 6, 0, b, 102, "after the recovery");
  c.Pump();
  acks = Acks(c.Take(a, 1));
  ASSERT_EQ(acks[5].status, 0);
  ASSERT_EQ(acks[6].status, 0);
  c.Sync(sb, 7, 0, 100);
  std::vector<std::string> got;
  for (const Frame& f : c.Take(b, 1)) {
    if (f.opcode == static_cast<uint8_t>(proto::Opcode::kPush) && f.request_id == 0) got.push_back(Text(Push(f)));
  }
  // Live pushes and the SYNC both carry the messages; each text once per path, never the refused one.
  std::map<std::string, int> count;
  for (const std::string& t : got) ++count[t];
  EXPECT_EQ(count["written, then the sync failed"], 2) << "one live push, one in the SYNC";
  EXPECT_EQ(count["after the recovery"], 2);
  EXPECT_EQ(count.count("refused while failed"), 0u);
  EXPECT_EQ(c.backend(c.Owner(b)).store().FindInbox(b)->durable_seq(), 2u);
}

TEST(LocalBackendTest, ARecipientShardThatFailsHoldsItsDeliversAndTheOriginAnswers) {
  TempDir dir;
  Cluster c(dir.path(), 2);
  auto [a, b] = UsersOnTwoShards(2);
  Session sa = c.Login(a, 1);
  Session sb = c.Login(b, 1);
  uint32_t recipient = c.Owner(b);
  c.FailFsyncs(recipient, 1);
  c.Send(sa, 1, 0, b, 300, "to a shard whose sync fails");
  c.Pump();
  EXPECT_EQ(Acks(c.Take(a, 1))[1].status, static_cast<uint16_t>(proto::SendStatus::kUnavailable));
  EXPECT_FALSE(c.backend(recipient).Ready());
  c.Send(sa, 2, 0, b, 301, "while the recipient shard is failed");
  c.Pump();
  EXPECT_EQ(Acks(c.Take(a, 1))[2].status, static_cast<uint16_t>(proto::SendStatus::kUnavailable));
  usleep(1100 * 1000);
  c.Pump();
  EXPECT_TRUE(c.backend(recipient).Ready());
  c.Send(sa, 3, 0, b, 300, "to a shard whose sync fails");
  c.Pump();
  std::map<uint32_t, proto::SendAckBody> acks = Acks(c.Take(a, 1));
  EXPECT_EQ(acks[3].status, 0);
  EXPECT_EQ(c.backend(recipient).store().FindInbox(b)->durable_seq(), 1u) << "stored once, the refused one never";
}

TEST(LocalBackendTest, ASubscriberClosedWhileItsSubscribeIsAnsweredIsDroppedCleanly) {
  TempDir dir;
  Cluster c(dir.path(), 1);  // one shard: every PresenceCall runs inside the subscribe
  Session watcher = c.Login(7, 1);
  c.Login(8, 1);
  c.CloseOnPush(watcher);  // the first PRESENCE answer closes the watcher's connection
  proto::PresenceSubscribeBody b;
  std::vector<uint8_t> ids(3 * proto::kIdSize);
  for (int i = 0; i < 3; ++i) proto::PutId(ids.data() + i * proto::kIdSize, 8 + i);
  b.user_ids = ids;
  b.subscribe = 1;
  std::vector<uint8_t> frame(proto::FrameSize(b));
  size_t n = proto::Encode(9, b, frame);
  proto::Header h;
  ASSERT_EQ(proto::PeekFrame({frame.data(), n}, 1 << 20, &h), proto::FrameStatus::kOk);
  EXPECT_EQ(c.backend(0).OnFrame(watcher, h, {frame.data() + proto::kHeaderSize, n - proto::kHeaderSize}),
            Backend::FrameVerdict::kHandled);
  c.Pump();
  // The session (and its subscriptions) ended; nothing of it is left to leak or to be touched again.
  c.backend(0).RefreshStats();
  EXPECT_EQ(c.backend(0).stats().presence_subscriptions.Get(), 0);
}

TEST(LocalBackendTest, FsyncAlwaysAndNoneAlsoDeliver) {
  for (FsyncPolicy p : {FsyncPolicy::kAlways, FsyncPolicy::kNone}) {
    TempDir dir;
    Cluster c(dir.path(), 2, p);
    auto [a, b] = UsersOnTwoShards(2);
    Session sa = c.Login(a, 1);
    Session sb = c.Login(b, 1);
    c.Send(sa, 1, 0, b, 1, "x");
    c.Pump();
    EXPECT_EQ(Ack(c.Take(a, 1).at(0)).status, 0);
    EXPECT_EQ(c.Take(b, 1).size(), 1u);
  }
}

}  // namespace
}  // namespace longlink::gateway::local
