#include "gateway/backend/local/admin_ops.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "core/clock.h"
#include "gateway/backend/common/group_status.h"
#include "core/hash.h"
#include "gateway/backend/local/local_backend.h"

namespace longlink::gateway::local {
namespace {

namespace proto = longlink::protocol;

AdminResult FromGroupStatus(uint16_t s) { return AdminResultOfGroupStatus(s, "storage unavailable"); }

AdminResult Stopping() { return {AdminCode::kUnavailable, "the gateway is stopping"}; }

}  // namespace

uint32_t LocalAdminOps::Owner(uint64_t id) const { return core::OwnerShardOf(id, runner_->shard_count()); }

// Runs `fn(LocalBackend&)` on shard `shard`, or answers `done` with kUnavailable when the shard stopped.
template <class T, class Fn>
void RunOrFail(ShardRunner* runner, uint32_t shard, std::shared_ptr<AdminDone<T>> done, Fn fn) {
  bool queued = runner->RunOnShard(shard, [done, fn = std::move(fn)](Backend& b) mutable {
    fn(static_cast<LocalBackend&>(b), std::move(*done));
  });
  if (!queued) std::move(*done)(Stopping(), T{});
}

void LocalAdminOps::Push(AdminPush push, AdminDone<uint64_t> done) {
  uint32_t shard = push.group != 0 ? Owner(push.group) : Owner(push.users.empty() ? 0 : push.users[0]);
  auto d = std::make_shared<AdminDone<uint64_t>>(std::move(done));
  RunOrFail<uint64_t>(runner_, shard, d, [push = std::move(push)](LocalBackend& b, AdminDone<uint64_t> done) mutable {
    b.PushFromAdmin(std::move(push), std::move(done));
  });
}

void LocalAdminOps::Kick(uint64_t user, uint32_t device, AdminDone<uint64_t> done) {
  auto d = std::make_shared<AdminDone<uint64_t>>(std::move(done));
  RunOrFail<uint64_t>(runner_, Owner(user), d, [user, device](LocalBackend& b, AdminDone<uint64_t> done) {
    std::move(done)(AdminResult::Ok(), b.KickFromAdmin(user, device));
  });
}

void LocalAdminOps::User(uint64_t user, AdminDone<AdminUser> done) {
  auto d = std::make_shared<AdminDone<AdminUser>>(std::move(done));
  RunOrFail<AdminUser>(runner_, Owner(user), d, [user](LocalBackend& b, AdminDone<AdminUser> done) {
    std::move(done)(AdminResult::Ok(), b.UserInfo(user));
  });
}

void LocalAdminOps::GroupChanges(uint64_t group, std::vector<std::pair<uint8_t, uint64_t>> ops, AdminDone<bool> done) {
  auto d = std::make_shared<AdminDone<bool>>(std::move(done));
  RunOrFail<bool>(runner_, Owner(group), d, [group, ops = std::move(ops)](LocalBackend& b, AdminDone<bool> done) {
    if (ops.empty()) {
      std::move(done)(AdminResult::Ok(), true);
      return;
    }
    // Several records, one answer: the last callback (after all are durable) reports the first failure.
    struct Join {
      uint16_t first_error = 0;
      size_t left = 0;
      AdminDone<bool> done;
    };
    auto join = std::make_shared<Join>();
    join->left = ops.size();
    join->done = std::move(done);
    for (const auto& [op, user] : ops) {
      b.GroupOpFromAdmin(op, group, user, [join](uint16_t s) {
        if (s != 0 && join->first_error == 0) join->first_error = s;
        if (--join->left == 0) std::move(join->done)(FromGroupStatus(join->first_error), join->first_error == 0);
      });
    }
  });
}

void LocalAdminOps::CreateGroup(uint64_t group, std::vector<uint64_t> members, AdminDone<bool> done) {
  std::vector<std::pair<uint8_t, uint64_t>> ops{{kGroupCreate, 0}};
  for (uint64_t u : members) ops.emplace_back(kGroupAdd, u);
  GroupChanges(group, std::move(ops), std::move(done));
}

void LocalAdminOps::ChangeMembers(uint64_t group, bool add, std::vector<uint64_t> users, AdminDone<bool> done) {
  std::vector<std::pair<uint8_t, uint64_t>> ops;
  for (uint64_t u : users) ops.emplace_back(add ? kGroupAdd : kGroupRemove, u);
  GroupChanges(group, std::move(ops), std::move(done));
}

void LocalAdminOps::Members(uint64_t group, AdminDone<std::vector<uint64_t>> done) {
  auto d = std::make_shared<AdminDone<std::vector<uint64_t>>>(std::move(done));
  RunOrFail<std::vector<uint64_t>>(runner_, Owner(group), d,
                                   [group](LocalBackend& b, AdminDone<std::vector<uint64_t>> done) {
                                     const absl::btree_set<uint64_t>* m = b.GroupMembers(group);
                                     if (m == nullptr) {
                                       std::move(done)({AdminCode::kNotFound, "no such group"}, {});
                                       return;
                                     }
                                     std::move(done)(AdminResult::Ok(), std::vector<uint64_t>(m->begin(), m->end()));
                                   });
}

// ---- on the shard ----

void LocalBackend::PushFromAdmin(AdminPush push, AdminDone<uint64_t> done) {
  if (failed_ || draining_) {
    std::move(done)({AdminCode::kUnavailable, failed_ ? "storage unavailable" : "the gateway is draining"}, 0);
    return;
  }
  uint64_t id = NewId();
  Inflight& f = inflight_[id];
  f.time_ms = core::UnixMillis();
  f.admin_done = std::move(done);
  if (push.group != 0) {
    f.conv_kind = static_cast<uint8_t>(proto::TargetKind::kGroup);
    f.target = push.group;
    f.pending = std::move(push.payload);
    port_->Call(Owner(push.group), GroupLookupCall{push.group, 0, id});
    return;
  }
  std::vector<uint64_t>& users = push.users;
  std::sort(users.begin(), users.end());
  users.erase(std::unique(users.begin(), users.end()), users.end());
  std::vector<uint64_t> local, remote;
  for (uint64_t u : users) {
    if (u == 0) continue;
    if (peer_failed_[Owner(u)]) {
      AdminDone<uint64_t> answer = std::move(f.admin_done);
      inflight_.erase(id);
      std::move(answer)({AdminCode::kUnavailable, "a recipient's storage is unavailable"}, 0);
      return;
    }
    (Owner(u) == self_ ? local : remote).push_back(u);
  }
  StoreOrigin(id, f, Header(f, id), push.payload, local, std::move(remote), true);
}

AdminUser LocalBackend::UserInfo(uint64_t user) const {
  AdminUser u;
  u.user = user;
  u.shard = self_;
  auto it = sessions_.find(user);
  u.online = it != sessions_.end();
  if (it != sessions_.end()) {
    for (const auto& d : it->second) {
      u.devices.push_back(AdminDevice{d.device, d.platform, d.since_ms, store_.Cursor(user, d.device)});
    }
  }
  const Inbox* in = store_.FindInbox(user);
  u.last_seq = in != nullptr ? in->durable_seq() : 0;
  u.inbox_size = in != nullptr ? in->size() : 0;
  return u;
}

uint64_t LocalBackend::KickFromAdmin(uint64_t user, uint32_t device) {
  uint64_t n = 0;
  auto it = sessions_.find(user);
  if (it != sessions_.end()) {
    for (const auto& d : it->second) n += (device == 0 || d.device == device) ? 1 : 0;
  }
  port_->Kick(user, device, proto::KickReason::kAdmin, "kicked by an operator");
  return n;
}

}  // namespace longlink::gateway::local
