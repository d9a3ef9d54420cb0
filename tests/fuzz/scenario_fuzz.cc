// Fuzz target for loadgen scenario files (loadgen/scenario.h), YAML a user writes: LoadScenario must answer
// any text with a scenario or an error naming the field, never crash; an accepted scenario written back
// with ScenarioToYaml must load again.
#include <cstddef>
#include <cstdint>
#include <string>

#include "loadgen/scenario.h"

namespace {

namespace lg = longlink::loadgen;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 16384) return 0;  // scenario files are small; bigger inputs only slow the search
  std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<lg::Scenario> s = lg::LoadScenario(text, "fuzz.yaml");
  if (!s.ok()) {
    Check(!s.status().message().empty());
    return 0;
  }
  absl::StatusOr<lg::Scenario> again = lg::LoadScenario(lg::ScenarioToYaml(*s, false), "again.yaml");
  Check(again.ok());
  return 0;
}
