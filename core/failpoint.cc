#include "core/failpoint.h"

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace longlink::core {
namespace {

struct Point {
  std::string name;
  int err = 0;
  uint64_t after = 0;  // successes before the failures
  uint64_t count = 0;  // failures
  std::atomic<uint64_t> calls{0};
};

// Parsed once; a bad spec is reported on stderr and ignored, so a typo cannot pass silently.
std::vector<Point*>* Points() {
  static std::vector<Point*>* points = [] {
    auto* v = new std::vector<Point*>();
    const char* env = std::getenv("LONGLINK_FAILPOINTS");
    if (env == nullptr || *env == '\0') return v;
    std::string spec(env);
    size_t pos = 0;
    while (pos <= spec.size()) {
      size_t end = spec.find(',', pos);
      if (end == std::string::npos) end = spec.size();
      std::string item = spec.substr(pos, end - pos);
      pos = end + 1;
      if (item.empty()) continue;
      // name=ERRNO*count[@after]
      size_t eq = item.find('=');
      size_t star = item.find('*');
      if (eq == std::string::npos || star == std::string::npos || star < eq) {
        std::fprintf(stderr, "LONGLINK_FAILPOINTS: ignoring '%s' (expected name=ERRNO*count[@after])\n", item.c_str());
        continue;
      }
      auto* p = new Point();
      p->name = item.substr(0, eq);
      p->err = ErrnoByName(item.substr(eq + 1, star - eq - 1).c_str());
      size_t at = item.find('@', star);
      p->count = std::strtoull(item.substr(star + 1, at == std::string::npos ? std::string::npos : at - star - 1).c_str(),
                               nullptr, 10);
      if (at != std::string::npos) p->after = std::strtoull(item.substr(at + 1).c_str(), nullptr, 10);
      if (p->err == 0 || p->count == 0) {
        std::fprintf(stderr, "LONGLINK_FAILPOINTS: ignoring '%s' (unknown errno or zero count)\n", item.c_str());
        delete p;
        continue;
      }
      std::fprintf(stderr, "LONGLINK_FAILPOINTS: %s fails with %s %lu time(s) after %lu call(s)\n", p->name.c_str(),
                   std::strerror(p->err), static_cast<unsigned long>(p->count), static_cast<unsigned long>(p->after));
      v->push_back(p);
    }
    return v;
  }();
  return points;
}

}  // namespace

int ErrnoByName(const char* name) {
  static constexpr struct {
    const char* name;
    int err;
  } kErrnos[] = {{"EIO", EIO}, {"ENOSPC", ENOSPC}, {"EDQUOT", EDQUOT}, {"EROFS", EROFS}, {"EBADF", EBADF}};
  for (const auto& e : kErrnos) {
    if (std::strcmp(e.name, name) == 0) return e.err;
  }
  return 0;
}

int FailpointCheck(const char* name) {
  std::vector<Point*>* points = Points();
  if (points->empty()) return 0;
  for (Point* p : *points) {
    if (p->name != name) continue;
    // relaxed: only a count of calls; the order between threads does not matter.
    uint64_t n = p->calls.fetch_add(1, std::memory_order_relaxed);
    return n >= p->after && n < p->after + p->count ? p->err : 0;
  }
  return 0;
}

}  // namespace longlink::core
