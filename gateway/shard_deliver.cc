// Shard: delivery. Pushes and kicks for a user land on the user's owner shard, directly when that is this
// shard and through the shard grid otherwise; backend calls between shards travel the same way; calls
// from threads outside the shards arrive through the mailbox.
//
// Every grid message has a typed body (core::ShardMessage::Of); bytes that do not fit travel as a heap
// payload owned by the sender, which the receiver hands back (kShardMessageRelease) once it is done, so
// memory is freed on the shard that allocated it.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/user_data.h"
#include "gateway/shard.h"

namespace longlink::gateway {

using core::kShardMessageRelease;
using core::PackUserData;
namespace proto = longlink::protocol;

namespace {

// The bodies of the gateway's own messages (MigrateMsg is in shard.h).
struct PushMsg {  // owned: the frame (malloc), `len` bytes
  uint64_t user;
  uint32_t device;  // 0: every device
  uint32_t len;
};
struct PushManyMsg {};  // owned: a PushManyBlob
struct KickMsg {        // owned: the message text (malloc), `len` bytes
  uint64_t user;
  uint32_t device;
  uint32_t len;
  uint16_t reason;  // protocol::KickReason
};
struct ReleaseMsg {  // owned: the payload to free; `kind` is the message it came with
  uint16_t kind;
};

// Blob for PushToUsers: the frame followed by the user ids, one allocation per target shard.
struct PushManyBlob {
  uint32_t frame_len;
  uint32_t user_count;
  // frame bytes, then user_count uint64_t (8-aligned)
  uint8_t* frame() { return reinterpret_cast<uint8_t*>(this + 1); }
  uint64_t* users() {
    size_t off = (frame_len + 7u) & ~size_t{7};
    return reinterpret_cast<uint64_t*>(frame() + off);
  }
  static size_t SizeFor(uint32_t frame_len, uint32_t users) {
    return sizeof(PushManyBlob) + ((frame_len + 7u) & ~size_t{7}) + sizeof(uint64_t) * users;
  }
};

}  // namespace

bool Shard::SendTo(const ConnRef& ref, std::span<const uint8_t> frame) {
  AssertOwner();
  if (ref.shard != id_ || !conns_.Valid(ref.id, ref.gen)) return false;
  return Enqueue(ref.id, frame);
}

void Shard::DeliverLocal(uint64_t user_id, uint32_t device_id, std::span<const uint8_t> frame) {
  uint32_t id = registry_.First(user_id);
  while (id != kNoConn) {
    // Enqueue may close the connection (slow consumer), which unlinks it: read the next link first.
    uint32_t next = conns_[id].next;
    if (device_id == 0 || conns_[id].device_id == device_id) Enqueue(id, frame);
    id = next;
  }
}

void Shard::PushToUser(uint64_t user_id, uint32_t device_id, std::span<const uint8_t> frame) {
  AssertOwner();
  uint32_t owner = OwnerShard(user_id);
  if (owner == id_) {
    DeliverLocal(user_id, device_id, frame);
    return;
  }
  auto* copy = static_cast<uint8_t*>(std::malloc(frame.size()));
  std::memcpy(copy, frame.data(), frame.size());
  Post(owner, core::ShardMessage::Of(kMsgPush, PushMsg{user_id, device_id, static_cast<uint32_t>(frame.size())}, copy));
}

void Shard::PushToUsers(std::span<const uint64_t> user_ids, std::span<const uint8_t> frame) {
  AssertOwner();
  std::vector<uint32_t> per_shard(shards_, 0);
  for (uint64_t u : user_ids) {
    uint32_t owner = OwnerShard(u);
    if (owner == id_) {
      DeliverLocal(u, 0, frame);
    } else {
      ++per_shard[owner];
    }
  }
  std::vector<PushManyBlob*> blobs(shards_, nullptr);
  for (uint32_t s = 0; s < shards_; ++s) {
    if (per_shard[s] == 0) continue;
    auto* b = static_cast<PushManyBlob*>(
        std::malloc(PushManyBlob::SizeFor(static_cast<uint32_t>(frame.size()), per_shard[s])));
    b->frame_len = static_cast<uint32_t>(frame.size());
    b->user_count = 0;
    std::memcpy(b->frame(), frame.data(), frame.size());
    blobs[s] = b;
  }
  for (uint64_t u : user_ids) {
    uint32_t owner = OwnerShard(u);
    if (owner != id_) blobs[owner]->users()[blobs[owner]->user_count++] = u;
  }
  for (uint32_t s = 0; s < shards_; ++s) {
    if (blobs[s] != nullptr) Post(s, core::ShardMessage::Of(kMsgPushMany, PushManyMsg{}, blobs[s]));
  }
}

void Shard::KickLocal(uint64_t user_id, uint32_t device_id, proto::KickReason reason, std::string_view message) {
  uint32_t id = registry_.First(user_id);
  while (id != kNoConn) {
    uint32_t next = conns_[id].next;
    if (device_id == 0 || conns_[id].device_id == device_id) {
      stats_.kicks_total.Inc();
      proto::KickBody k;
      k.reason = static_cast<uint16_t>(reason);
      k.message = message;
      EnqueueFrame(id, 0, k);
      CloseAfterFlush(id, CloseReason::k_kicked);
    }
    id = next;
  }
}

void Shard::Kick(uint64_t user_id, uint32_t device_id, proto::KickReason reason, std::string_view message) {
  AssertOwner();
  uint32_t owner = OwnerShard(user_id);
  if (owner == id_) {
    KickLocal(user_id, device_id, reason, message);
    return;
  }
  auto* copy = static_cast<char*>(std::malloc(std::max<size_t>(1, message.size())));
  std::memcpy(copy, message.data(), message.size());
  KickMsg k{user_id, device_id, static_cast<uint32_t>(message.size()), static_cast<uint16_t>(reason)};
  Post(owner, core::ShardMessage::Of(kMsgKick, k, copy));
}

void Shard::PostCall(uint32_t shard, uint16_t kind, const void* body, size_t size, ShardPayload* payload) {
  AssertOwner();
  if (shard == id_) {
    backend_->OnShardCall(ShardCall(kind, id_, body, payload));
    delete payload;
    return;
  }
  core::ShardMessage m;
  m.kind = static_cast<uint16_t>(kBackendCall + kind);
  m.owned = payload;
  std::memcpy(m.body, body, std::min(size, sizeof(m.body)));
  Post(shard, m);
}

void Shard::Post(uint32_t to, core::ShardMessage m) {
  AssertOwner();
  m.from = static_cast<uint16_t>(id_);
  stats_.cross_shard_messages_total.Inc();
  if (!outbox_.Post(to, m)) stats_.cross_shard_overflow_total.Inc();
}

void Shard::Release(uint16_t to, uint16_t kind, void* owned) {
  if (owned != nullptr) Post(to, core::ShardMessage::Of(kShardMessageRelease, ReleaseMsg{kind}, owned));
}

void Shard::OnShardMessage(const core::ShardMessage& m) {
  if (m.kind == kShardMessageRelease) {
    // A payload this shard attached to a message, back from its receiver.
    if (m.Body<ReleaseMsg>().kind >= kBackendCall) {
      delete static_cast<ShardPayload*>(m.owned);
    } else {
      std::free(m.owned);
    }
    return;
  }
  if (m.kind >= kBackendCall) {
    backend_->OnShardCall(ShardCall(static_cast<uint16_t>(m.kind - kBackendCall), m.from, m.body,
                                    static_cast<ShardPayload*>(m.owned)));
    Release(m.from, m.kind, m.owned);
    return;
  }
  switch (m.kind) {
    case kMsgMigrate: {
      MigrateMsg r = m.Body<MigrateMsg>();
      uint64_t key = (static_cast<uint64_t>(m.from) << 32) | (r.token_platform & 0xffffff);
      PendingMigration& p = migrations_in_[key];
      p.record = r;
      p.carry = static_cast<Carry*>(m.owned);
      p.from = m.from;
      p.have_record = true;
      if (p.slot >= 0) FinishMigrateIn(key, p);
      return;  // FinishMigrateIn hands the carry back
    }
    case kMsgPush: {
      PushMsg p = m.Body<PushMsg>();
      DeliverLocal(p.user, p.device, {static_cast<const uint8_t*>(m.owned), p.len});
      break;
    }
    case kMsgPushMany: {
      auto* b = static_cast<PushManyBlob*>(m.owned);
      for (uint32_t i = 0; i < b->user_count; ++i) DeliverLocal(b->users()[i], 0, {b->frame(), b->frame_len});
      break;
    }
    case kMsgKick: {
      KickMsg k = m.Body<KickMsg>();
      KickLocal(k.user, k.device, static_cast<proto::KickReason>(k.reason),
                std::string_view(static_cast<const char*>(m.owned), k.len));
      break;
    }
    default:
      break;
  }
  Release(m.from, m.kind, m.owned);
}

// ---- the mailbox: calls from threads outside the shards ----

bool Shard::RunOnShard(absl::AnyInvocable<void(Backend&) &&> fn) {
  return mailbox_.Post([this, fn = std::move(fn)]() mutable { std::move(fn)(*backend_); });
}

void Shard::ArmMailbox() {
  io_uring_sqe* sqe = ring_.Sqe();
  io_uring_prep_read(sqe, mailbox_.fd(), &mailbox_buf_, sizeof(mailbox_buf_), 0);
  io_uring_sqe_set_data64(sqe, PackUserData(kOpMailbox, 0, 0));
}

void Shard::OnMailbox(const io_uring_cqe* cqe) {
  mailbox_.TakeAll(&mailbox_calls_);
  for (core::Mailbox::Call& c : mailbox_calls_) {
    stats_.mailbox_calls_total.Inc();
    std::move(c)();
  }
  mailbox_calls_.clear();
  if (cqe->res >= 0 || cqe->res == -EINTR || cqe->res == -EAGAIN) {
    ArmMailbox();
  } else {
    // Not seen in practice; re-arming would fail again at once, so say it loudly instead.
    std::fprintf(stderr, "longlink-gateway: shard %u: mailbox read failed (%d); calls from other threads stop\n",
                 id_, cqe->res);
  }
}

}  // namespace longlink::gateway
