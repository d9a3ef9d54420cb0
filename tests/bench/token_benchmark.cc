// Login token costs: how many logins per second one shard can verify.
#include <benchmark/benchmark.h>

#include <string>

#include "protocol/token.h"

namespace longlink::protocol {
namespace {

constexpr std::string_view kSecret = "0123456789abcdef0123456789abcdef";

void BM_VerifyOk(benchmark::State& state) {
  const std::string token = MintToken(kSecret, 1234567890123ull, 7, 1'700'000'000);
  for (auto _ : state) {
    benchmark::DoNotOptimize(VerifyToken(kSecret, token, 1234567890123ull, 7, 1'600'000'000));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_VerifyOk);

void BM_VerifyBadSignature(benchmark::State& state) {
  std::string token = MintToken(kSecret, 1234567890123ull, 7, 1'700'000'000);
  token.back() = token.back() == '0' ? '1' : '0';
  for (auto _ : state) {
    benchmark::DoNotOptimize(VerifyToken(kSecret, token, 1234567890123ull, 7, 1'600'000'000));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_VerifyBadSignature);

// Garbage is rejected before any HMAC work.
void BM_VerifyMalformed(benchmark::State& state) {
  const std::string token = "1234567890123.7.17x0000000." + std::string(64, 'a');
  for (auto _ : state) {
    benchmark::DoNotOptimize(VerifyToken(kSecret, token, 1234567890123ull, 7, 1'600'000'000));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_VerifyMalformed);

void BM_Mint(benchmark::State& state) {
  uint64_t user = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(MintToken(kSecret, ++user, 7, 1'700'000'000));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Mint);

}  // namespace
}  // namespace longlink::protocol
