// Tiny Status helpers: Debian's Abseil (20220623) ships absl::Status but not the status macros, so setup
// code uses these two to propagate errors without exceptions.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#define LL_CONCAT_INNER_(a, b) a##b
#define LL_CONCAT_(a, b) LL_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                 \
  do {                                        \
    ::absl::Status ll_status_ = (expr);       \
    if (!ll_status_.ok()) return ll_status_;  \
  } while (0)

#define ASSIGN_OR_RETURN(lhs, expr) ASSIGN_OR_RETURN_IMPL_(LL_CONCAT_(ll_statusor_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return tmp.status();          \
  lhs = std::move(*tmp)

namespace longlink {

// An error Status from a negative errno (as io_uring and liburing return them) or errno itself.
inline absl::Status ErrnoStatus(int err, absl::string_view what) {
  if (err < 0) err = -err;
  return absl::Status(absl::ErrnoToStatusCode(err), absl::StrCat(what, ": ", std::strerror(err)));
}

}  // namespace longlink
