// Cost of the WebSocket codec on the per-message path: parsing and unmasking a client frame, encoding
// server and client frames, and validating UTF-8 text; plus the once-per-connection handshake (parse the
// upgrade request, answer with Sec-WebSocket-Accept).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "protocol/websocket.h"
#include "protocol/ws_upgrade.h"

namespace longlink::protocol::ws {
namespace {

constexpr MaskKey kKey = {0x37, 0xfa, 0x21, 0x3d};

std::vector<uint8_t> Payload(size_t n) {
  std::vector<uint8_t> p(n);
  for (size_t i = 0; i < n; ++i) {
    p[i] = static_cast<uint8_t>(i * 31);
  }
  return p;
}

// Header parse, in-place unmask and message assembly of one masked binary frame, as the gateway handles each
// client message. Unmasking the same buffer again and again flips it back and forth, at the same cost.
void BM_ParseUnmask(benchmark::State& state) {
  const std::vector<uint8_t> payload = Payload(static_cast<size_t>(state.range(0)));
  std::vector<uint8_t> frame(FrameHeaderSize(payload.size(), true) + payload.size());
  frame.resize(EncodeMaskedFrame(Opcode::kBinary, true, payload, kKey, frame));
  MessageAssembler assembler(1 << 20, false);
  for (auto _ : state) {
    const HeaderResult r = ParseFrameHeader(frame, Role::kServer, 1 << 20);
    if (r.status != ParseStatus::kOk) {
      state.SkipWithError("parse failed");
      break;
    }
    const std::span<uint8_t> body = std::span(frame).subspan(r.header.header_size, r.header.payload_length);
    Unmask(body, r.header.mask_key);
    benchmark::DoNotOptimize(assembler.OnFrame(r.header, body));
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(frame.size()));
}
BENCHMARK(BM_ParseUnmask)->Arg(64)->Arg(1024)->Arg(16384);

// Unmasking alone, to see the XOR loop's throughput apart from the per-frame overhead.
void BM_Unmask(benchmark::State& state) {
  std::vector<uint8_t> data = Payload(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    Unmask(data, kKey, 1);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Unmask)->Arg(1024)->Arg(65536);

// Server to client: header plus payload copy into the send buffer.
void BM_EncodeServerFrame(benchmark::State& state) {
  const std::vector<uint8_t> payload = Payload(static_cast<size_t>(state.range(0)));
  std::vector<uint8_t> out(FrameHeaderSize(payload.size(), false) + payload.size());
  for (auto _ : state) {
    benchmark::DoNotOptimize(EncodeFrame(Opcode::kBinary, true, payload, out));
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(out.size()));
}
BENCHMARK(BM_EncodeServerFrame)->Arg(64)->Arg(1024)->Arg(16384);

// Client to server (the loadgen): header, copy and masking.
void BM_EncodeClientFrame(benchmark::State& state) {
  const std::vector<uint8_t> payload = Payload(static_cast<size_t>(state.range(0)));
  std::vector<uint8_t> out(FrameHeaderSize(payload.size(), true) + payload.size());
  for (auto _ : state) {
    benchmark::DoNotOptimize(EncodeMaskedFrame(Opcode::kBinary, true, payload, kKey, out));
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(out.size()));
}
BENCHMARK(BM_EncodeClientFrame)->Arg(64)->Arg(1024)->Arg(16384);

void Utf8Loop(benchmark::State& state, const std::string& text) {
  const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(text.data()), text.size());
  if (!IsValidUtf8(bytes)) {
    state.SkipWithError("sample is not valid UTF-8");
    return;
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(IsValidUtf8(bytes));
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(text.size()));
}

std::string Repeat(const std::string& unit, size_t size) {
  std::string s;
  while (s.size() + unit.size() <= size) {
    s += unit;
  }
  return s + std::string(size - s.size(), 'x');
}

void BM_Utf8Ascii4KiB(benchmark::State& state) {
  Utf8Loop(state, Repeat("The quick brown fox jumps over the lazy dog. ", 4096));
}
BENCHMARK(BM_Utf8Ascii4KiB);

// Chat text as it comes: Latin with accents, CJK, Cyrillic, emoji and ASCII punctuation mixed.
void BM_Utf8Mixed4KiB(benchmark::State& state) {
  Utf8Loop(state, Repeat("Caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd\xef\xbc\x8c\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5"
                         "\xd1\x82 \xf0\x9f\x98\x80 ok! ",
                         4096));
}
BENCHMARK(BM_Utf8Mixed4KiB);

// Once per connection: parse a browser's upgrade request and write the 101 answer (SHA-1 included).
void BM_Handshake(benchmark::State& state) {
  const std::string request =
      "GET /ws HTTP/1.1\r\nHost: chat.example.com\r\nConnection: Upgrade\r\nPragma: no-cache\r\n"
      "Cache-Control: no-cache\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nUpgrade: websocket\r\n"
      "Origin: https://chat.example.com\r\nSec-WebSocket-Version: 13\r\nAccept-Encoding: gzip, deflate, br\r\n"
      "Accept-Language: en-US,en;q=0.9\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
      "Sec-WebSocket-Protocol: longlink.v1\r\n\r\n";
  const std::span<const uint8_t> in(reinterpret_cast<const uint8_t*>(request.data()), request.size());
  uint8_t out[kMaxResponseSize];
  for (auto _ : state) {
    const UpgradeRequestResult r = ParseUpgradeRequest(in);
    if (r.status != UpgradeStatus::kOk) {
      state.SkipWithError("handshake failed");
      break;
    }
    benchmark::DoNotOptimize(WriteAcceptResponse(r.request, out));
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Handshake);

}  // namespace
}  // namespace longlink::protocol::ws
