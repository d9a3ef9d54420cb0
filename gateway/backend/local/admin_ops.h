// The local backend's answers to the admin API (gateway/backend/admin_ops.h): each operation runs on the
// shard that owns its user or group (ShardRunner::RunOnShard), where it uses the same paths as a client
// would (an admin push is a message from user 0, stored and pushed like any other).
#pragma once

#include "gateway/backend/admin_ops.h"
#include "gateway/backend/backend.h"

namespace longlink::gateway::local {

class LocalAdminOps final : public AdminOps {
 public:
  explicit LocalAdminOps(ShardRunner* runner) : runner_(runner) {}

  void Push(AdminPush push, AdminDone<uint64_t> done) override;
  void Kick(uint64_t user, uint32_t device, AdminDone<uint64_t> done) override;
  void User(uint64_t user, AdminDone<AdminUser> done) override;
  void CreateGroup(uint64_t group, std::vector<uint64_t> members, AdminDone<bool> done) override;
  void ChangeMembers(uint64_t group, bool add, std::vector<uint64_t> users, AdminDone<bool> done) override;
  void Members(uint64_t group, AdminDone<std::vector<uint64_t>> done) override;

 private:
  uint32_t Owner(uint64_t id) const;
  // Group changes on the group's owner: `ops` (GroupOp, user) applied in order, one answer for all.
  void GroupChanges(uint64_t group, std::vector<std::pair<uint8_t, uint64_t>> ops, AdminDone<bool> done);

  ShardRunner* runner_;
};

}  // namespace longlink::gateway::local
