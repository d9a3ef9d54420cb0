// Cost of the protocol v1 frame codec on the per-message path: encoding and decoding the frames a busy
// gateway handles most (SEND in, PUSH out, PING/PONG for every idle connection), and splitting a receive
// buffer full of frames with PeekFrame as the TCP reader does.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <span>
#include <vector>

#include "protocol/frame.h"

namespace longlink::protocol {
namespace {

std::vector<uint8_t> Payload(size_t n) {
  std::vector<uint8_t> p(n);
  for (size_t i = 0; i < n; ++i) {
    p[i] = static_cast<uint8_t>(i);
  }
  return p;
}

PushBody SamplePush(std::span<const uint8_t> payload) {
  return {.seq = 42,
          .server_msg_id = 123456789,
          .from_user = 1001,
          .from_device = 1,
          .conv_kind = 0,
          .conv_id = 1001,
          .client_msg_id = 7,
          .server_time_ms = 1700000000000,
          .payload = payload};
}

template <typename B>
std::vector<uint8_t> EncodeToVector(const B& b) {
  std::vector<uint8_t> out(FrameSize(b));
  out.resize(Encode(1, b, out));
  return out;
}

// Encode writes into a caller-owned buffer that is reused, as a connection's send path would.
template <typename B>
void EncodeLoop(benchmark::State& state, const B& body) {
  std::vector<uint8_t> out(FrameSize(body));
  uint32_t request_id = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(body);
    size_t n = Encode(++request_id, body, out);
    benchmark::DoNotOptimize(n);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(out.size()));
}

// Decode runs on a whole frame as the TCP reader hands it over: header check plus body decode.
template <typename B>
void DecodeLoop(benchmark::State& state, const std::vector<uint8_t>& frame) {
  const std::span<const uint8_t> in(frame);
  for (auto _ : state) {
    benchmark::DoNotOptimize(in.data());
    Header h;
    B body;
    const bool ok = PeekFrame(in, kDefaultMaxFrame, &h) == FrameStatus::kOk &&
                    Decode(in.subspan(kHeaderSize, h.length - kHeaderSize), &body);
    if (!ok) {
      state.SkipWithError("decode failed");
      break;
    }
    benchmark::DoNotOptimize(body);
  }
  // Items only: decoding is zero-copy (the payload is a view), so bytes per second would say nothing.
  state.SetItemsProcessed(state.iterations());
}

void BM_EncodeSend(benchmark::State& state) {
  const std::vector<uint8_t> payload = Payload(static_cast<size_t>(state.range(0)));
  EncodeLoop(state, SendBody{.target_kind = 0, .target_id = 1002, .client_msg_id = 7, .payload = payload});
}
void BM_DecodeSend(benchmark::State& state) {
  const std::vector<uint8_t> payload = Payload(static_cast<size_t>(state.range(0)));
  DecodeLoop<SendBody>(
      state,
      EncodeToVector(SendBody{.target_kind = 0, .target_id = 1002, .client_msg_id = 7, .payload = payload}));
}
void BM_EncodePush(benchmark::State& state) {
  const std::vector<uint8_t> payload = Payload(static_cast<size_t>(state.range(0)));
  EncodeLoop(state, SamplePush(payload));
}
void BM_DecodePush(benchmark::State& state) {
  const std::vector<uint8_t> payload = Payload(static_cast<size_t>(state.range(0)));
  DecodeLoop<PushBody>(state, EncodeToVector(SamplePush(payload)));
}
void BM_EncodePing(benchmark::State& state) { EncodeLoop(state, PingBody{.timestamp = 1700000000123}); }
void BM_DecodePing(benchmark::State& state) {
  DecodeLoop<PingBody>(state, EncodeToVector(PingBody{.timestamp = 1700000000123}));
}

// 32 B is a typing indicator or receipt, 256 B a typical chat message, 4 KiB a large one.
BENCHMARK(BM_EncodeSend)->Arg(32)->Arg(256)->Arg(4096);
BENCHMARK(BM_DecodeSend)->Arg(32)->Arg(256)->Arg(4096);
BENCHMARK(BM_EncodePush)->Arg(32)->Arg(256)->Arg(4096);
BENCHMARK(BM_DecodePush)->Arg(32)->Arg(256)->Arg(4096);
BENCHMARK(BM_EncodePing);
BENCHMARK(BM_DecodePing);

// Splits a buffer holding many frames, of the mix one connection receives, into frames without decoding
// bodies: the cost of the TCP framing layer alone. Reported per frame.
void BM_PeekFrameStream(benchmark::State& state) {
  const std::vector<uint8_t> payload = Payload(256);
  std::vector<uint8_t> stream;
  int64_t frames = 0;
  auto append = [&](const std::vector<uint8_t>& f) {
    stream.insert(stream.end(), f.begin(), f.end());
    ++frames;
  };
  for (int i = 0; i < 1000; ++i) {
    switch (i % 4) {
      case 0:
        append(EncodeToVector(PingBody{.timestamp = static_cast<uint64_t>(i)}));
        break;
      case 1:
        append(EncodeToVector(
            SendBody{.target_id = 1002, .client_msg_id = static_cast<uint64_t>(i), .payload = payload}));
        break;
      case 2:
        append(EncodeToVector(PushAckBody{.seq = static_cast<uint64_t>(i)}));
        break;
      default:
        append(EncodeToVector(SamplePush(std::span(payload).first(64))));
        break;
    }
  }
  for (auto _ : state) {
    std::span<const uint8_t> in(stream);
    Header h;
    uint64_t opcodes = 0;
    while (PeekFrame(in, kDefaultMaxFrame, &h) == FrameStatus::kOk) {
      opcodes += h.opcode;
      in = in.subspan(h.length);
    }
    benchmark::DoNotOptimize(opcodes);
  }
  state.SetItemsProcessed(state.iterations() * frames);
}
BENCHMARK(BM_PeekFrameStream);

}  // namespace
}  // namespace longlink::protocol
