#include "gateway/backend/nats/admin_ops.h"

#include <algorithm>
#include <memory>
#include <mutex>
#include <random>

#include "core/clock.h"
#include "gateway/backend/common/group_status.h"
#include "core/hash.h"
#include "gateway/backend/nats/nats_backend.h"

namespace longlink::gateway::nats {
namespace {

namespace proto = longlink::protocol;

AdminResult FromGroupStatus(uint16_t s) { return AdminResultOfGroupStatus(s, "the messaging system is unavailable; retry"); }

AdminResult Unavailable() { return {AdminCode::kUnavailable, "the messaging system is unavailable; retry"}; }

}  // namespace

void NatsAdminOps::Push(AdminPush push, AdminDone<uint64_t> done) {
  NatsFactory* f = f_;
  auto d = std::make_shared<AdminDone<uint64_t>>(std::move(done));
  static std::mt19937_64 rng(std::random_device{}());
  static std::mutex rng_mu;
  uint64_t smid;
  {
    std::lock_guard<std::mutex> lock(rng_mu);
    smid = (rng() & ~(uint64_t{1} << 63)) | 1;
  }
  uint64_t time_ms = core::UnixMillis();
  auto payload = std::make_shared<std::vector<uint8_t>>(std::move(push.payload));
  uint64_t group = push.group;
  // Stores the message in these users' inboxes, partition by partition; done once all are stored.
  auto store = [f, d, smid, time_ms, payload, group](std::vector<uint64_t> users) {
    std::sort(users.begin(), users.end());
    users.erase(std::unique(users.begin(), users.end()), users.end());
    users.erase(std::remove(users.begin(), users.end(), uint64_t{0}), users.end());
    absl::flat_hash_map<uint32_t, std::vector<uint64_t>> by_partition;
    for (uint64_t u : users) by_partition[f->Partition(u)].push_back(u);
    if (by_partition.empty()) {
      std::move(*d)(AdminResult::Ok(), smid);
      return;
    }
    struct State {
      std::mutex mu;
      size_t left;
      bool failed = false;
    };
    auto st = std::make_shared<State>();
    st->left = by_partition.size();
    for (auto& [p, us] : by_partition) {
      StoreRequest r;
      r.server_msg_id = smid;
      r.server_time_ms = time_ms;
      r.conv_kind = static_cast<uint8_t>(group != 0 ? proto::TargetKind::kGroup : proto::TargetKind::kUser);
      r.target = group;
      r.users = std::move(us);
      r.payload = *payload;
      f->link().Request(f->subjects().Partition(p, "store"), Encode(r), nullptr, f->options().send_timeout_ms,
                        [d, st, smid](Reply reply) {
                          StoreReply sr;
                          bool ok = reply.ok() && Decode(reply.data(), &sr) && sr.status == 0;
                          bool last;
                          bool failed;
                          {
                            std::lock_guard<std::mutex> lock(st->mu);
                            st->failed = st->failed || !ok;
                            last = --st->left == 0;
                            failed = st->failed;
                          }
                          if (!last) return;
                          if (failed) {
                            std::move(*d)(Unavailable(), 0);
                          } else {
                            std::move(*d)(AdminResult::Ok(), smid);
                          }
                        });
    }
  };
  if (group == 0) {
    store(std::move(push.users));
    return;
  }
  GroupRequest g;
  g.op = GroupOp::kLookup;
  g.group = group;
  f->link().Request(f->subjects().Partition(f->Partition(group), "group"), Encode(g), nullptr,
                    f->options().request_timeout_ms, [d, store](Reply reply) mutable {
                      GroupReply gr;
                      if (!reply.ok() || !Decode(reply.data(), &gr)) {
                        std::move(*d)(Unavailable(), 0);
                      } else if (gr.status != 0) {
                        std::move(*d)({AdminCode::kNotFound, "no such group"}, 0);
                      } else {
                        store(std::move(gr.members));
                      }
                    });
}

void NatsAdminOps::Kick(uint64_t user, uint32_t device, AdminDone<uint64_t> done) {
  auto d = std::make_shared<AdminDone<uint64_t>>(std::move(done));
  Writer w;
  w.U64(user).U32(device);
  f_->link().Request(f_->subjects().Partition(f_->Partition(user), "kick"), w.data(), nullptr,
                     f_->options().request_timeout_ms, [d](Reply reply) {
                       Reader rd(reply.data());
                       uint64_t n = 0;
                       if (!reply.ok() || !rd.U64(&n)) {
                         std::move(*d)(Unavailable(), 0);
                         return;
                       }
                       std::move(*d)(AdminResult::Ok(), n);
                     });
}

void NatsAdminOps::User(uint64_t user, AdminDone<AdminUser> done) {
  auto d = std::make_shared<AdminDone<AdminUser>>(std::move(done));
  NatsFactory* f = f_;
  Writer w;
  w.U64(user).U32(0);
  f_->link().Request(f_->subjects().Partition(f_->Partition(user), "info"), w.data(), nullptr,
                     f_->options().request_timeout_ms, [d, f, user](Reply reply) {
                       InfoReply info;
                       if (!reply.ok() || !Decode(reply.data(), &info)) {
                         std::move(*d)(Unavailable(), AdminUser{});
                         return;
                       }
                       uint32_t shard = core::OwnerShardOf(user, f->shards());
                       bool queued = f->OnShard(shard, [d, info, user](NatsBackend& b) {
                         AdminUser u = b.LocalUserInfo(user);
                         u.online = info.online != 0;
                         u.last_seq = info.last_seq;
                         std::move(*d)(AdminResult::Ok(), std::move(u));
                       });
                       if (!queued) std::move(*d)({AdminCode::kUnavailable, "the gateway is stopping"}, AdminUser{});
                     });
}

void NatsAdminOps::AskGroupOwner(const GroupRequest& g, AdminDone<bool> done) {
  auto d = std::make_shared<AdminDone<bool>>(std::move(done));
  f_->link().Request(f_->subjects().Partition(f_->Partition(g.group), "group"), Encode(g), nullptr,
                     f_->options().request_timeout_ms, [d](Reply reply) {
                       GroupReply gr;
                       if (!reply.ok() || !Decode(reply.data(), &gr)) {
                         std::move(*d)(Unavailable(), false);
                         return;
                       }
                       AdminResult r = FromGroupStatus(gr.status);
                       bool ok = r.code == AdminCode::kOk;
                       std::move(*d)(std::move(r), ok);
                     });
}

void NatsAdminOps::CreateGroup(uint64_t group, std::vector<uint64_t> members, AdminDone<bool> done) {
  GroupRequest g;
  g.op = GroupOp::kCreateWith;
  g.group = group;
  g.users = std::move(members);
  AskGroupOwner(g, std::move(done));
}

void NatsAdminOps::ChangeMembers(uint64_t group, bool add, std::vector<uint64_t> users, AdminDone<bool> done) {
  if (users.empty()) {
    std::move(done)(AdminResult::Ok(), true);
    return;
  }
  GroupRequest g;
  g.op = add ? GroupOp::kJoin : GroupOp::kLeave;
  g.group = group;
  g.users = std::move(users);
  AskGroupOwner(g, std::move(done));
}

namespace {

struct MembersState {
  NatsFactory* f;
  uint64_t group;
  std::vector<uint64_t> members;
  AdminDone<std::vector<uint64_t>> done;
};

// Pages of 4,096 until the owner says there are no more.
void MembersPage(std::shared_ptr<MembersState> st, uint64_t after) {
  GroupRequest g;
  g.op = GroupOp::kMembers;
  g.group = st->group;
  g.after = after;
  NatsFactory* f = st->f;
  f->link().Request(f->subjects().Partition(f->Partition(st->group), "group"), Encode(g), nullptr,
                    f->options().request_timeout_ms, [st](Reply reply) {
                      GroupReply gr;
                      if (!reply.ok() || !Decode(reply.data(), &gr)) {
                        std::move(st->done)(Unavailable(), {});
                        return;
                      }
                      if (gr.status != 0) {
                        std::move(st->done)(FromGroupStatus(gr.status), {});
                        return;
                      }
                      st->members.insert(st->members.end(), gr.members.begin(), gr.members.end());
                      if (gr.has_more != 0 && !gr.members.empty()) {
                        MembersPage(st, gr.members.back());
                        return;
                      }
                      std::move(st->done)(AdminResult::Ok(), std::move(st->members));
                    });
}

}  // namespace

void NatsAdminOps::Members(uint64_t group, AdminDone<std::vector<uint64_t>> done) {
  MembersPage(std::make_shared<MembersState>(MembersState{f_, group, {}, std::move(done)}), 0);
}

}  // namespace longlink::gateway::nats
