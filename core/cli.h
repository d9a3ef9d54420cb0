// Command-line helpers shared by both programs.
#pragma once

#include <cstring>

namespace longlink::core {

// Flags are documented with dashes (--max-conns-per-shard) while Abseil's parser knows them with
// underscores; rewrite the name part of every "--flag[=value]" argument in place before parsing.
inline void NormalizeFlagDashes(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    char* a = argv[i];
    if (std::strncmp(a, "--", 2) != 0) continue;
    if (a[2] == '\0') break;  // "--" ends the flags
    for (char* p = a + 2; *p != '\0' && *p != '='; ++p) {
      if (*p == '-') *p = '_';
    }
  }
}

}  // namespace longlink::core
