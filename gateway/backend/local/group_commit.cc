// The local backend's durability: the tick writes the batch of appended records with one pwrite and makes
// it durable by the --fsync policy (always: fdatasync on the shard thread; batch: group commit, one
// IORING_OP_FSYNC in flight, paced process-wide; none: the page cache), then acts, in log order, on every
// record that became durable (index, push, DELIVER, DONE, SEND_ACK, group replies).
#include "core/clock.h"
#include "core/failpoint.h"
#include "core/status.h"
#include "gateway/backend/local/local_backend.h"

namespace longlink::gateway::local {
namespace {

constexpr size_t kTickBudget = 16384;  // inbox entries indexed and pushed per tick
// Batch fsync: an unwritten batch this large is written even while a group commit is still in flight.
constexpr size_t kBatchWriteBytes = 1u << 20;

}  // namespace

void LocalBackend::Flush() {
  if (failed_) return;
  // With batch fsync nothing waits for a record before its group commit, so the batch goes to the file
  // only when that commit can start (one pwrite per fsync instead of one per loop round), or once it is
  // large enough that holding it would just delay the copy.
  uint64_t now_ns = 0;
  bool sync_now = false;
  if (opts_.fsync == FsyncPolicy::kBatch) {
    now_ns = core::MonoNanos();
    int fd;
    uint64_t lsn;
    sync_now = !fsync_inflight_ && now_ns >= next_fsync_ns_ &&
               (store_.log().pending_bytes() != 0 || store_.log().NextSync(&fd, &lsn));
    uint64_t retry_ns;
    if (sync_now && !factory_->sync_pacer().TryTake(now_ns, &retry_ns)) {
      // The process's sync budget is spent for now (more shards than cores): grow the batch meanwhile.
      next_fsync_ns_ = retry_ns;
      stats_.fsync_waits_total.Inc();
      sync_now = false;
    }
    if (!sync_now && store_.log().pending_bytes() < kBatchWriteBytes) return;
  }
  absl::Status st = store_.log().Write();
  if (!st.ok()) {
    Fail(st);
    return;
  }
  switch (opts_.fsync) {
    case FsyncPolicy::kNone:
      store_.log().TreatWrittenAsDurable();
      break;
    case FsyncPolicy::kAlways: {
      int fd;
      uint64_t lsn;
      if (store_.log().NextSync(&fd, &lsn)) {
        uint64_t start = core::MonoNanos();
        st = store_.log().SyncNow();
        stats_.fsync_seconds.Observe(static_cast<double>(core::MonoNanos() - start) * 1e-9);
        stats_.fsyncs_total.Inc();
        if (!st.ok()) Fail(st);
      }
      break;
    }
    case FsyncPolicy::kBatch:
      if (sync_now) StartFsync(now_ns);
      break;
  }
}

void LocalBackend::StartFsync(uint64_t now_ns) {
  int fd;
  uint64_t lsn;
  if (!store_.log().NextSync(&fd, &lsn)) return;
  fsync_lsn_ = lsn;
  port_->SubmitFsync(fd, ++fsync_token_);
  fsync_inflight_ = true;
  fsync_started_ns_ = now_ns;
  next_fsync_ns_ = now_ns + static_cast<uint64_t>(opts_.fsync_interval_us) * 1000;
  stats_.fsyncs_total.Inc();
}

void LocalBackend::OnFsyncDone(uint32_t token, int res) {
  if (!fsync_inflight_ || token != fsync_token_) return;
  fsync_inflight_ = false;
  if (int injected = core::FailpointCheck("local.fsync"); injected != 0) res = -injected;
  stats_.fsync_seconds.Observe(static_cast<double>(core::MonoNanos() - fsync_started_ns_) * 1e-9);
  if (res < 0) {
    Fail(ErrnoStatus(res, "fdatasync"));
    return;
  }
  store_.log().Synced(fsync_lsn_);
}

uint64_t LocalBackend::MaxWaitNs(uint64_t now_ns) {
  if (more_work_) return 0;
  if (opts_.fsync == FsyncPolicy::kBatch && !fsync_inflight_ && !failed_) {
    int fd;
    uint64_t lsn;
    if (store_.log().pending_bytes() != 0 || store_.log().NextSync(&fd, &lsn)) {
      return next_fsync_ns_ > now_ns ? next_fsync_ns_ - now_ns : 0;
    }
  }
  return ~uint64_t{0};
}

void LocalBackend::ProcessDurable() {
  uint64_t durable = store_.log().durable_lsn();
  size_t work = 0;
  while (!actions_.empty() && actions_.front().end <= durable && work < kTickBudget) {
    Action a = actions_.front();
    actions_.pop_front();
    if (a.kind == kActGroupReply) {
      GroupReply r = std::move(group_replies_.front());
      group_replies_.pop_front();
      if (r.answered) {
        ++work;
        continue;
      }
      if (r.admin_done) {
        std::move(r.admin_done)(r.status);
      } else {
        ReplyGroup(r.user, r.device, r.request_id, r.group, r.status, {}, false);
      }
      ++work;
      continue;
    }
    std::span<const uint8_t> rec = store_.log().Bytes(a.lsn, a.size);
    MsgView m;
    if (rec.size() != a.size || !DecodeMsg(rec.subspan(kRecordHeaderSize), &m)) continue;
    if (a.kind == kActForeign) {
      work += IndexAndPush(m, a.pos) + 1;
      port_->Call(a.origin, DoneCall{a.id});
      continue;
    }
    auto it = inflight_.find(a.id);
    if (it == inflight_.end()) continue;
    Inflight& f = it->second;
    f.durable = true;
    PostDelivers(a.id, f, m);
    if (f.remaining != 0) {
      // Indexed now (durable here, so it will reach every recipient, if need be by a re-drive), pushed
      // to the sender's devices once every shard has stored it.
      work += IndexAndPush(m, a.pos, false) + 1;
      f.pending.assign(rec.begin(), rec.end());
      continue;
    }
    // Stored everywhere already: the SEND_ACK goes out before the PUSH of the same message to the
    // sending device.
    Finish(a.id);
    work += IndexAndPush(m, a.pos) + 1;
  }
  more_work_ = !actions_.empty() && actions_.front().end <= durable;
  store_.log().ReleaseDurable(actions_.empty() ? ~uint64_t{0} : actions_.front().lsn);
}

}  // namespace longlink::gateway::local
