// The admin API on the NATS backend: every operation is a request to the owner of the user's or group's
// partition, wherever it runs, so it works from any gateway. A user's devices are listed as far as this
// gateway holds them (the owner's directory knows how many devices are online, and on which gateways).
#pragma once

#include "gateway/backend/admin_ops.h"

namespace longlink::gateway::nats {

class NatsFactory;
struct GroupRequest;

class NatsAdminOps final : public AdminOps {
 public:
  explicit NatsAdminOps(NatsFactory* f) : f_(f) {}
  void Push(AdminPush push, AdminDone<uint64_t> done) override;
  void Kick(uint64_t user, uint32_t device, AdminDone<uint64_t> done) override;
  void User(uint64_t user, AdminDone<AdminUser> done) override;
  void CreateGroup(uint64_t group, std::vector<uint64_t> members, AdminDone<bool> done) override;
  void ChangeMembers(uint64_t group, bool add, std::vector<uint64_t> users, AdminDone<bool> done) override;
  void Members(uint64_t group, AdminDone<std::vector<uint64_t>> done) override;

 private:
  // A group change on the group's owner, answered with its status.
  void AskGroupOwner(const GroupRequest& g, AdminDone<bool> done);
  NatsFactory* f_;
};

}  // namespace longlink::gateway::nats
