#include "gateway/backend/local/log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "gateway/backend/local/crc32c.h"

namespace longlink::gateway::local {
namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/longlink-log-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf " + path_).c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::vector<uint8_t> Body(size_t n, uint8_t seed) {
  std::vector<uint8_t> b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(seed + i * 7);
  return b;
}

struct Seen {
  uint8_t type;
  std::vector<uint8_t> body;
  LogPos pos;
};

std::vector<Seen> Reopen(const std::string& dir, uint64_t segment_bytes = 1 << 20, SegmentLog* keep = nullptr) {
  std::vector<Seen> seen;
  SegmentLog local;
  SegmentLog& log = keep != nullptr ? *keep : local;
  absl::Status st = log.Open({dir, segment_bytes}, [&](const RecordView& r) {
    seen.push_back(Seen{r.type, std::vector<uint8_t>(r.body.begin(), r.body.end()), r.pos});
  });
  EXPECT_TRUE(st.ok()) << st;
  return seen;
}

off_t FileSize(const std::string& path) {
  struct stat st {};
  stat(path.c_str(), &st);
  return st.st_size;
}

TEST(Crc32cTest, KnownVectors) {
  // RFC 3720 B.4 and the common check value.
  EXPECT_EQ(Crc32c(0, "123456789", 9), 0xe3069283u);
  std::vector<uint8_t> zeros(32, 0);
  EXPECT_EQ(Crc32c(0, zeros.data(), zeros.size()), 0x8a9136aau);
  std::vector<uint8_t> ones(32, 0xff);
  EXPECT_EQ(Crc32c(0, ones.data(), ones.size()), 0x62a8ab43u);
  // Extending in pieces equals one pass.
  EXPECT_EQ(Crc32c(Crc32c(0, "12345", 5), "6789", 4), 0xe3069283u);
}

TEST(SegmentLogTest, AppendWriteAndRecoverInOrder) {
  TempDir dir;
  std::vector<std::vector<uint8_t>> bodies;
  {
    SegmentLog log;
    ASSERT_TRUE(log.Open({dir.path(), 1 << 20}, [](const RecordView&) { FAIL() << "empty log replayed"; }).ok());
    for (int i = 0; i < 100; ++i) {
      bodies.push_back(Body(static_cast<size_t>(i * 3), static_cast<uint8_t>(i)));
      Appended a = log.Append(static_cast<uint8_t>(i % 7 + 1), bodies.back());
      EXPECT_EQ(a.end - a.lsn, kRecordHeaderSize + bodies.back().size());
      if (i % 10 == 9) ASSERT_TRUE(log.Write().ok());
    }
    ASSERT_TRUE(log.Write().ok());
    EXPECT_EQ(log.written_lsn(), log.appended_lsn());
    EXPECT_EQ(log.write_calls(), 10u);  // one write per batch
    ASSERT_TRUE(log.SyncNow().ok());
    EXPECT_EQ(log.durable_lsn(), log.written_lsn());
  }
  std::vector<Seen> seen = Reopen(dir.path());
  ASSERT_EQ(seen.size(), 100u);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(seen[i].type, i % 7 + 1);
    EXPECT_EQ(seen[i].body, bodies[i]);
  }
}

TEST(SegmentLogTest, ReadAtReturnsTheRecordWrittenThere) {
  TempDir dir;
  SegmentLog log;
  ASSERT_TRUE(log.Open({dir.path(), 1 << 20}, [](const RecordView&) {}).ok());
  std::vector<uint8_t> a = Body(50, 1), b = Body(70, 2);
  log.Append(1, a);
  Appended pb = log.Append(2, std::span<const uint8_t>(b).first(30), std::span<const uint8_t>(b).subspan(30));
  ASSERT_TRUE(log.Write().ok());
  std::vector<uint8_t> out(kRecordHeaderSize + b.size());
  ASSERT_TRUE(log.ReadAt(pb.pos, static_cast<uint32_t>(out.size()), out.data()));
  EXPECT_EQ(out[8], 2);
  EXPECT_TRUE(std::equal(b.begin(), b.end(), out.begin() + kRecordHeaderSize));
  // The same bytes are still in memory until released.
  std::span<const uint8_t> mem = log.Bytes(pb.lsn, static_cast<uint32_t>(pb.end - pb.lsn));
  ASSERT_EQ(mem.size(), out.size());
  EXPECT_TRUE(std::equal(mem.begin(), mem.end(), out.begin()));
}

TEST(SegmentLogTest, TornTailIsCutAndEarlierRecordsKept) {
  TempDir dir;
  {
    SegmentLog log;
    ASSERT_TRUE(log.Open({dir.path(), 1 << 20}, [](const RecordView&) {}).ok());
    for (int i = 0; i < 10; ++i) log.Append(1, Body(100, static_cast<uint8_t>(i)));
    ASSERT_TRUE(log.Write().ok());
  }
  std::string seg = dir.path() + "/seg-00000001.log";
  off_t full = FileSize(seg);
  ASSERT_EQ(full, static_cast<off_t>(kSegmentHeaderSize + 10 * (kRecordHeaderSize + 100)));
  // Cut the last record in half, as a crash in the middle of a write would.
  ASSERT_EQ(truncate(seg.c_str(), full - 50), 0);
  SegmentLog log;
  std::vector<Seen> seen = Reopen(dir.path(), 1 << 20, &log);
  ASSERT_EQ(seen.size(), 9u);
  for (int i = 0; i < 9; ++i) EXPECT_EQ(seen[i].body, Body(100, static_cast<uint8_t>(i)));
  EXPECT_EQ(log.stats().torn_tails, 1u);
  EXPECT_EQ(FileSize(seg), static_cast<off_t>(kSegmentHeaderSize + 9 * (kRecordHeaderSize + 100)));
  // Appending continues right after the last good record.
  log.Append(3, Body(5, 9));
  ASSERT_TRUE(log.Write().ok());
  ASSERT_TRUE(log.SyncNow().ok());
  std::vector<Seen> again = Reopen(dir.path());
  ASSERT_EQ(again.size(), 10u);
  EXPECT_EQ(again.back().type, 3);
  EXPECT_EQ(again.back().body, Body(5, 9));
}

TEST(SegmentLogTest, CorruptChecksumEndsTheSegment) {
  TempDir dir;
  LogPos third;
  {
    SegmentLog log;
    ASSERT_TRUE(log.Open({dir.path(), 1 << 20}, [](const RecordView&) {}).ok());
    for (int i = 0; i < 5; ++i) {
      Appended a = log.Append(1, Body(20, static_cast<uint8_t>(i)));
      if (i == 2) third = a.pos;
    }
    ASSERT_TRUE(log.Write().ok());
  }
  std::string seg = dir.path() + "/seg-00000001.log";
  int fd = open(seg.c_str(), O_RDWR);
  uint8_t x = 0x5a;
  ASSERT_EQ(pwrite(fd, &x, 1, third.offset + kRecordHeaderSize + 3), 1);  // a bit flip inside the body
  close(fd);
  std::vector<Seen> seen = Reopen(dir.path());
  EXPECT_EQ(seen.size(), 2u);
}

TEST(SegmentLogTest, RollsSegmentsAndRecoversAcrossThem) {
  TempDir dir;
  int hook_calls = 0;
  {
    SegmentLog log;
    ASSERT_TRUE(log.Open({dir.path(), 4096}, [](const RecordView&) {}).ok());
    log.SetRollHook([&] {
      ++hook_calls;
      log.Append(9, Body(4, 0));  // what a snapshot would write, first in the new segment
    });
    for (int i = 0; i < 100; ++i) {
      log.Append(1, Body(200, static_cast<uint8_t>(i)));
      if (i % 3 == 0) ASSERT_TRUE(log.Write().ok());
    }
    ASSERT_TRUE(log.Write().ok());
    // Synced segment by segment, oldest first.
    int fd;
    uint64_t lsn, last = 0;
    int syncs = 0;
    while (log.NextSync(&fd, &lsn)) {
      EXPECT_GT(lsn, last);
      ASSERT_EQ(fdatasync(fd), 0);
      log.Synced(lsn);
      last = lsn;
      ++syncs;
    }
    EXPECT_EQ(syncs, hook_calls + 1);
    EXPECT_EQ(log.durable_lsn(), log.written_lsn());
    EXPECT_GT(log.Segments().size(), 4u);
  }
  EXPECT_GT(hook_calls, 3);
  std::vector<Seen> seen = Reopen(dir.path(), 4096);
  std::vector<Seen> ones;
  int nines = 0;
  for (const Seen& s : seen) {
    if (s.type == 1) ones.push_back(s);
    if (s.type == 9) {
      ++nines;
      EXPECT_EQ(s.pos.offset, kSegmentHeaderSize) << "the roll hook's record opens its segment";
    }
  }
  EXPECT_EQ(nines, hook_calls);
  ASSERT_EQ(ones.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(ones[i].body, Body(200, static_cast<uint8_t>(i)));
}

TEST(SegmentLogTest, DeleteSegmentRemovesTheFile) {
  TempDir dir;
  SegmentLog log;
  ASSERT_TRUE(log.Open({dir.path(), 4096}, [](const RecordView&) {}).ok());
  for (int i = 0; i < 60; ++i) log.Append(1, Body(200, 1));
  ASSERT_TRUE(log.Write().ok());
  ASSERT_TRUE(log.SyncNow().ok());
  std::vector<uint32_t> segs = log.Segments();
  ASSERT_GE(segs.size(), 3u);
  EXPECT_FALSE(log.DeleteSegment(log.active_segment()).ok());
  ASSERT_TRUE(log.DeleteSegment(segs[0]).ok());
  EXPECT_NE(access((dir.path() + "/seg-00000001.log").c_str(), F_OK), 0);
  EXPECT_EQ(log.Segments().size(), segs.size() - 1);
}

TEST(SegmentLogTest, RefusesAnotherFormatVersion) {
  TempDir dir;
  {
    SegmentLog log;
    ASSERT_TRUE(log.Open({dir.path(), 1 << 20}, [](const RecordView&) {}).ok());
  }
  std::string seg = dir.path() + "/seg-00000001.log";
  int fd = open(seg.c_str(), O_RDWR);
  uint32_t v = kLogFormatVersion + 1;
  ASSERT_EQ(pwrite(fd, &v, 4, 4), 4);
  close(fd);
  SegmentLog log;
  absl::Status st = log.Open({dir.path(), 1 << 20}, [](const RecordView&) {});
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(st.message()).find("format version 2"), std::string::npos) << st;
}

TEST(SegmentLogTest, ReleaseKeepsBatchesNotYetActedOn) {
  TempDir dir;
  SegmentLog log;
  ASSERT_TRUE(log.Open({dir.path(), 1 << 20}, [](const RecordView&) {}).ok());
  Appended a = log.Append(1, Body(10, 1));
  ASSERT_TRUE(log.Write().ok());
  Appended b = log.Append(1, Body(10, 2));
  ASSERT_TRUE(log.Write().ok());
  log.TreatWrittenAsDurable();
  log.ReleaseDurable(b.lsn);  // the caller still needs b
  EXPECT_TRUE(log.Bytes(a.lsn, 19).empty());
  EXPECT_EQ(log.Bytes(b.lsn, 19).size(), 19u);
  log.ReleaseDurable();
  EXPECT_TRUE(log.Bytes(b.lsn, 19).empty());
}

}  // namespace
}  // namespace longlink::gateway::local
