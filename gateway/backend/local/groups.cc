// The local backend's groups. A group's members live on the group's owner shard (hash of the group id),
// which applies every change (one GROUP record each), answers membership checks for group SENDs
// (GroupLookupCall) and pages of members (GROUP_MEMBERS); a change is answered once its record is durable.
#include "gateway/backend/local/local_backend.h"

namespace longlink::gateway::local {
namespace {

namespace proto = longlink::protocol;

constexpr size_t kMembersPage = 4096;  // ids per GROUP_REPLY to GROUP_MEMBERS

}  // namespace

Backend::FrameVerdict LocalBackend::OnGroupFrame(const Session& s, const proto::Header& h,
                                                 std::span<const uint8_t> body) {
  auto op = [&](uint8_t kind, uint64_t group) {
    // Groups and memberships are kept until changed: the rate of changes bounds what one device can pin.
    if (!Allow(FindDevice(s), &DeviceRate::group_ops, opts_.max_group_ops_per_second)) {
      ReplyGroup(s.user_id, s.device_id, h.request_id, group, static_cast<uint16_t>(proto::GroupStatus::kRateLimited),
                 {}, false);
      return FrameVerdict::kHandled;
    }
    port_->Call(Owner(group), GroupOpCall{group, s.user_id, s.device_id, h.request_id, kind});
    return FrameVerdict::kHandled;
  };
  switch (static_cast<proto::Opcode>(h.opcode)) {
    case proto::Opcode::kGroupCreate: {
      proto::GroupCreateBody b;
      if (!proto::Decode(body, &b)) return FrameVerdict::kMalformed;
      return op(kGroupCreate, b.group_id);
    }
    case proto::Opcode::kGroupJoin: {
      proto::GroupJoinBody b;
      if (!proto::Decode(body, &b)) return FrameVerdict::kMalformed;
      return op(kGroupAdd, b.group_id);
    }
    case proto::Opcode::kGroupLeave: {
      proto::GroupLeaveBody b;
      if (!proto::Decode(body, &b)) return FrameVerdict::kMalformed;
      return op(kGroupRemove, b.group_id);
    }
    case proto::Opcode::kGroupMembers: {
      proto::GroupMembersBody b;
      if (!proto::Decode(body, &b)) return FrameVerdict::kMalformed;
      port_->Call(Owner(b.group_id), GroupMembersPageCall{b.group_id, s.user_id, b.after_user, s.device_id, h.request_id});
      return FrameVerdict::kHandled;
    }
    default:
      return FrameVerdict::kNotMine;
  }
}

void LocalBackend::OnLookup(uint32_t from, const GroupLookupCall& c) {
  const absl::btree_set<uint64_t>* members = store_.Members(c.group);
  uint16_t status = 0;
  MembersPayload* p = nullptr;
  if (members == nullptr) {
    status = static_cast<uint16_t>(proto::SendStatus::kNoSuchTarget);
  } else if (c.sender != 0 && !members->contains(c.sender)) {
    status = static_cast<uint16_t>(proto::SendStatus::kRejected);
  } else {
    p = new MembersPayload();
    p->members.assign(members->begin(), members->end());
  }
  port_->Call(from, GroupMembersCall{c.server_msg_id, status}, p);
}

void LocalBackend::OnGroupOp(const GroupOpCall& c) { ApplyGroupOp(c.op, c.group, c.user, c.device, c.request_id, {}); }

void LocalBackend::GroupOpFromAdmin(uint8_t op, uint64_t group, uint64_t user,
                                    absl::AnyInvocable<void(uint16_t) &&> done) {
  ApplyGroupOp(op, group, user, 0, 0, std::move(done));
}

void LocalBackend::ApplyGroupOp(uint8_t op, uint64_t group, uint64_t user, uint32_t device, uint32_t request_id,
                                absl::AnyInvocable<void(uint16_t) &&> admin_done) {
  uint16_t status;
  if (failed_ || draining_) {
    status = static_cast<uint16_t>(proto::GroupStatus::kUnavailable);
  } else if (op == kGroupCreate) {
    status = store_.CreateGroup(group, user);
  } else if (op == kGroupAdd) {
    const absl::btree_set<uint64_t>* members = store_.Members(group);
    if (members != nullptr && members->size() >= opts_.max_group_members && !members->contains(user)) {
      status = static_cast<uint16_t>(proto::GroupStatus::kFull);
    } else {
      status = store_.AddMember(group, user);
    }
  } else {
    status = store_.RemoveMember(group, user);
  }
  uint64_t end = store_.log().appended_lsn();
  if (status != 0 || end <= store_.log().durable_lsn()) {
    // Nothing written (an error, or a join of a member): answer now.
    if (admin_done) {
      std::move(admin_done)(status);
    } else {
      ReplyGroup(user, device, request_id, group, status, {}, false);
    }
    return;
  }
  group_replies_.push_back(GroupReply{user, device, request_id, group, status, std::move(admin_done)});
  actions_.push_back(Action{end, end, 0, LogPos{}, kActGroupReply, 0, 0});
}

void LocalBackend::OnMembersPage(const GroupMembersPageCall& c) {
  const absl::btree_set<uint64_t>* members = store_.Members(c.group);
  std::vector<uint8_t> ids;
  bool more = false;
  if (members != nullptr) {
    for (auto it = members->upper_bound(c.after); it != members->end(); ++it) {
      if (ids.size() / proto::kIdSize == kMembersPage) {
        more = true;
        break;
      }
      ids.resize(ids.size() + proto::kIdSize);
      proto::PutId(ids.data() + ids.size() - proto::kIdSize, *it);
    }
  }
  ReplyGroup(c.user, c.device, c.request_id, c.group,
             members == nullptr ? static_cast<uint16_t>(proto::GroupStatus::kNoSuchGroup) : 0, ids, more);
}

void LocalBackend::ReplyGroup(uint64_t user, uint32_t device, uint32_t request_id, uint64_t group, uint16_t status,
                              std::span<const uint8_t> members, bool has_more) {
  proto::GroupReplyBody r;
  r.status = status;
  r.group_id = group;
  r.has_more = has_more ? 1 : 0;
  r.members = members;
  port_->PushToUser(user, device, Encode(request_id, r));
}

}  // namespace longlink::gateway::local
