// Failure injection for fault tests, in the manner of etcd's and TiKV's failpoints: a named operation can be
// told, from the environment, to fail with an errno a number of times after a number of successes.
//
//   LONGLINK_FAILPOINTS="local.fsync=EIO*2@50,local.write=ENOSPC*1"
//
// makes the 51st and 52nd checks of "local.fsync" fail with EIO, and the first check of "local.write" with
// ENOSPC. The variable is read once, at the first check; without it a check is one load and a compare.
// Checks sit on per-batch storage calls (a write, an fsync), never on a per-message path.
#pragma once

namespace longlink::core {

// 0, or the errno (positive) the named operation should fail with this time. Thread-safe.
int FailpointCheck(const char* name);

// The names and errnos a failpoint spec may use, for --help-like messages and tests: "EIO", "ENOSPC", ...
// Returns 0 for an unknown name.
int ErrnoByName(const char* name);

}  // namespace longlink::core
