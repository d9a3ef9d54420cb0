// The local backend's storage without the gateway: log appends and writes (one pwrite per batch, as a
// shard tick does), group commit with fdatasync, and the inbox operations of the message path.
//   build/tests/bench/local_store_benchmark [--benchmark_filter=...]
// Files go to $TMPDIR (default /tmp): the fdatasync figures are those of that file system.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <string>
#include <vector>

#include "gateway/backend/local/log.h"
#include "gateway/backend/local/store.h"

namespace longlink::gateway::local {
namespace {

std::string TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base != nullptr ? base : "/tmp") + "/longlink-bench-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back(0);
  return mkdtemp(buf.data());
}

void RemoveDir(const std::string& dir) { std::system(("rm -rf " + dir).c_str()); }

// Appends `batch` records of `size` bytes, then one write (and an fdatasync when `sync`); per record.
void BM_LogAppendWrite(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  const int batch = static_cast<int>(state.range(1));
  const bool sync = state.range(2) != 0;
  std::string dir = TempDir();
  {
    SegmentLog log;
    if (!log.Open({dir, 64ull << 20}, [](const RecordView&) {}).ok()) state.SkipWithError("open");
    std::vector<uint8_t> body(size, 0x5a);
    for (auto _ : state) {
      for (int i = 0; i < batch; ++i) log.Append(1, body);
      if (!log.Write().ok()) state.SkipWithError("write");
      if (sync) {
        if (!log.SyncNow().ok()) state.SkipWithError("sync");
      } else {
        log.TreatWrittenAsDurable();
      }
      log.ReleaseDurable();
    }
    state.SetItemsProcessed(state.iterations() * batch);
    state.SetBytesProcessed(state.iterations() * batch * static_cast<int64_t>(size + kRecordHeaderSize));
  }
  RemoveDir(dir);
}
BENCHMARK(BM_LogAppendWrite)
    ->ArgNames({"bytes", "batch", "fdatasync"})
    ->Args({128, 1, 0})
    ->Args({128, 64, 0})
    ->Args({128, 1024, 0})
    ->Args({1024, 64, 0})
    ->Args({128, 1, 1})
    ->Args({128, 64, 1})
    ->Args({128, 1024, 1});

// The store's side of one 1:1 message on one shard: two seqs, one record, two index entries (the write
// is amortized over batches of 256 messages, no fsync).
void BM_StoreMessage(benchmark::State& state) {
  std::string dir = TempDir();
  {
    LocalStore s;
    StoreOptions o;
    o.dir = dir;
    o.max_inbox = 1000;
    if (!s.Open(o).ok()) state.SkipWithError("open");
    std::vector<uint8_t> payload(64, 1);
    const uint64_t users = static_cast<uint64_t>(state.range(0));
    uint64_t i = 0;
    std::vector<std::pair<Appended, std::array<InboxSlot, 2>>> pending;
    for (auto _ : state) {
      uint64_t a = i % users + 1, b = (i * 7919) % users + 1;
      ++i;
      std::array<InboxSlot, 2> slots{InboxSlot{a, s.AssignSeq(a)}, InboxSlot{b, s.AssignSeq(b)}};
      MsgHeader h;
      h.server_msg_id = i;
      h.from_user = a;
      h.target_id = b;
      h.server_time_ms = 1700000000000ull;
      pending.push_back({s.AppendMsg(h, payload, slots), slots});
      if (pending.size() == 256) {
        if (!s.log().Write().ok()) state.SkipWithError("write");
        s.log().TreatWrittenAsDurable();
        for (const auto& [ap, sl] : pending) {
          for (const InboxSlot& x : sl) s.IndexDurable(x.user, x.seq, ap.pos, MsgPrefixSize(64), h.server_time_ms);
        }
        pending.clear();
        s.log().ReleaseDurable();
      }
    }
    state.SetItemsProcessed(state.iterations());
  }
  RemoveDir(dir);
}
BENCHMARK(BM_StoreMessage)->Arg(1000)->Arg(100000);

// Finding where a SYNC starts in a full inbox.
void BM_InboxUpperBound(benchmark::State& state) {
  std::string dir = TempDir();
  {
    LocalStore s;
    StoreOptions o;
    o.dir = dir;
    o.max_inbox = 10000;
    if (!s.Open(o).ok()) state.SkipWithError("open");
    for (uint64_t i = 0; i < 10000; ++i) s.IndexDurable(1, s.AssignSeq(1), LogPos{1, 16}, 100, 1700000000000ull);
    const Inbox* in = s.FindInbox(1);
    uint64_t after = 0;
    for (auto _ : state) {
      benchmark::DoNotOptimize(in->UpperBound(after));
      after = (after + 7919) % 10000;
    }
  }
  RemoveDir(dir);
}
BENCHMARK(BM_InboxUpperBound);

}  // namespace
}  // namespace longlink::gateway::local
