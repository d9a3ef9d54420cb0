// The admin API's answer for a group operation's protocol status, shared by the storing backends.
#pragma once

#include <cstdint>

#include "gateway/backend/admin_ops.h"
#include "protocol/frame.h"

namespace longlink::gateway {

// `unavailable` words the retryable failure in the backend's own terms (storage, messaging system).
inline AdminResult AdminResultOfGroupStatus(uint16_t status, const char* unavailable) {
  switch (static_cast<protocol::GroupStatus>(status)) {
    case protocol::GroupStatus::kOk:
      return AdminResult::Ok();
    case protocol::GroupStatus::kNoSuchGroup:
      return {AdminCode::kNotFound, "no such group"};
    case protocol::GroupStatus::kAlreadyExists:
      return {AdminCode::kConflict, "group already exists"};
    case protocol::GroupStatus::kNotMember:
      return {AdminCode::kNotFound, "not a member"};
    case protocol::GroupStatus::kBadRequest:
      return {AdminCode::kBadRequest, "bad request"};
    case protocol::GroupStatus::kFull:
      return {AdminCode::kRejected, "the group is full"};
    default:
      return {AdminCode::kUnavailable, unavailable};
  }
}

}  // namespace longlink::gateway
