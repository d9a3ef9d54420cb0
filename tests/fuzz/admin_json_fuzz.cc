// Fuzz target for the admin API's request bodies (gateway/admin/json.h), the bytes an HTTP client sends:
// ParseObject must refuse what is not one bounded JSON object with an error, never crash or recurse without
// bound, and the field readers must accept or refuse whatever an accepted object holds. An accepted body
// dumped and parsed again must be accepted again (a round trip the routes rely on when they echo ids).
#include <cstddef>
#include <cstdint>
#include <string>

#include "gateway/admin/json.h"

namespace {

namespace admin = longlink::gateway::admin;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<admin::Json> v = admin::ParseObject(text);
  if (!v.ok()) {
    Check(!v.status().message().empty());
    return 0;
  }
  Check(v->is_object());
  for (const char* key : {"users", "members"}) {
    absl::StatusOr<std::vector<uint64_t>> ids = admin::IdList(*v, key);
    if (ids.ok()) {
      for (uint64_t id : *ids) Check(id != 0);
    }
  }
  for (const char* key : {"user", "group", "device"}) (void)admin::OptionalId(*v, key, 0xffffffffu);
  if (auto p = v->find("payload_base64"); p != v->end() && p->is_string()) {
    (void)admin::Base64Decode(p->get_ref<const std::string&>());
  }
  absl::StatusOr<admin::Json> again = admin::ParseObject(admin::Dump(*v));
  Check(again.ok());
  Check(admin::ErrorBody(text).size() >= 2);
  return 0;
}
