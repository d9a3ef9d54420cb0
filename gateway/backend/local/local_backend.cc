#include "gateway/backend/local/local_backend.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <deque>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/clock.h"
#include "core/status.h"

namespace longlink::gateway::local {
namespace {

namespace proto = longlink::protocol;

// Cross-shard message kinds of this backend (BackendMessage::kind).
enum Kind : uint32_t {
  kDeliver = 1,        // ptr DeliverPayload, a = server_msg_id: store for these users, then DONE
  kDone,               // a = server_msg_id: the recipient shard's record is durable
  kGroupLookup,        // ptr LookupPayload: the group owner answers kGroupMembersReply
  kGroupMembersReply,  // ptr MembersPayload
  kGroupOpReq,         // ptr GroupOpPayload: create / join / leave / members, on the group owner
  kPresenceSub,        // a = watched user, b = subscriber, len = device, aux = request id
  kPresenceUnsub,
  kRedriveDone,        // the sender finished re-driving its unfinished messages
};

constexpr uint32_t kDeliverChunk = 1024;       // users per DELIVER (and per recipient record)
constexpr uint32_t kSyncMax = 256;             // PUSH frames per SYNC answer
constexpr size_t kTickBudget = 16384;          // inbox entries indexed and pushed per tick
constexpr size_t kCursorFlushPerTick = 4096;
// Batch fsync: an unwritten batch this large is written even while a group commit is still in flight.
constexpr size_t kBatchWriteBytes = 1u << 20;
constexpr size_t kMembersPage = 4096;          // ids per GROUP_REPLY to GROUP_MEMBERS
constexpr uint64_t kIdCounterMask = (uint64_t{1} << 40) - 1;
constexpr char kFormatLine[] = "longlink-local-format 1";

struct Payload {
  virtual ~Payload() = default;
};
struct DeliverPayload final : Payload {
  MsgHeader h;
  std::vector<uint8_t> payload;
  std::vector<uint64_t> users;
};
struct LookupPayload final : Payload {
  uint64_t group = 0;
  uint64_t sender = 0;  // 0: no membership check (admin, re-drive)
  uint64_t id = 0;
};
struct MembersPayload final : Payload {
  uint64_t id = 0;
  uint16_t status = 0;  // SendStatus
  std::vector<uint64_t> members;
};
enum GroupReqOp : uint8_t { kReqMembers = 0 };  // others are GroupOp values
struct GroupOpPayload final : Payload {
  uint8_t op = 0;
  uint64_t group = 0;
  uint64_t user = 0;
  uint32_t device = 0;
  uint32_t request_id = 0;
  uint64_t after = 0;
  std::function<void(uint16_t)> admin_done;
  std::function<void(uint16_t, std::vector<uint64_t>)> admin_members;
};

std::string ReadSmallFile(const std::string& path, bool* exists) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  *exists = fd >= 0;
  if (fd < 0) return {};
  char buf[256];
  ssize_t n = read(fd, buf, sizeof(buf));
  close(fd);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

absl::Status WriteFileDurably(const std::string& dir, const std::string& name, const std::string& text) {
  std::string tmp = dir + "/" + name + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("create ", tmp));
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && fsync(fd) == 0;
  int e = errno;
  close(fd);
  if (!ok) return ErrnoStatus(e, absl::StrCat("write ", tmp));
  std::string path = dir + "/" + name;
  if (rename(tmp.c_str(), path.c_str()) != 0) return ErrnoStatus(errno, absl::StrCat("rename ", path));
  int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return absl::OkStatus();
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

}  // namespace

// ---- factory ----

namespace {
uint32_t Cores() { return std::max(1u, std::thread::hardware_concurrency()); }
}  // namespace

LocalFactory::LocalFactory(const Config& config, uint16_t epoch, int lock_fd)
    : config_(config),
      lock_fd_(lock_fd),
      epoch_(epoch),
      shards_(config.shards),
      sync_pacer_(static_cast<uint64_t>(config.fsync_interval_us) * 1000 / Cores(), Cores()) {
  for (uint32_t i = 0; i < shards_; ++i) mailboxes_.push_back(std::make_unique<Mailbox>());
}

LocalFactory::~LocalFactory() {
  if (lock_fd_ >= 0) close(lock_fd_);
}

absl::StatusOr<std::unique_ptr<LocalFactory>> LocalFactory::Create(const Config& config) {
  const std::string& dir = config.data_dir;
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("--data-dir: ", dir, ": ", why));
  };
  if (config.shards > 256) {
    return absl::InvalidArgumentError("--shards: --backend=local supports at most 256 shards");
  }
  // mkdir -p
  for (size_t i = 1; i <= dir.size(); ++i) {
    if (i == dir.size() || dir[i] == '/') {
      std::string p = dir.substr(0, i);
      if (mkdir(p.c_str(), 0755) != 0 && errno != EEXIST) return bad(absl::StrCat("cannot create: ", std::strerror(errno)));
    }
  }
  struct stat st {};
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return bad("not a directory");
  if (access(dir.c_str(), W_OK | X_OK) != 0) return bad("not writable");
  // One gateway per data directory: two would interleave their logs.
  std::string lock_path = dir + "/LOCK";
  int lock_fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd < 0) return bad(absl::StrCat("cannot create LOCK: ", std::strerror(errno)));
  if (flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    close(lock_fd);
    return bad("in use by another longlink-gateway (LOCK is held)");
  }
  // The descriptor stays open (and the lock held) for the life of the factory.
  struct LockGuard {
    int fd;
    ~LockGuard() {
      if (fd >= 0) close(fd);
    }
  } guard{lock_fd};

  bool exists = false;
  std::string format = Trim(ReadSmallFile(dir + "/FORMAT", &exists));
  if (exists && format != kFormatLine) {
    return bad(absl::StrCat("holds data of another format ('", format, "'); this build writes '", kFormatLine,
                            "'"));
  }
  std::string shards_text = Trim(ReadSmallFile(dir + "/SHARDS", &exists));
  if (exists) {
    uint32_t n = 0;
    if (!absl::SimpleAtoi(shards_text, &n) || n != config.shards) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--shards: ", dir, " was written by a gateway with ", shards_text,
          " shards (users live on shard hash(user) % shards); start with --shards=", shards_text));
    }
  }
  if (!exists) {
    absl::Status s = WriteFileDurably(dir, "FORMAT", absl::StrCat(kFormatLine, "\n"));
    if (!s.ok()) return bad(s.message());
    s = WriteFileDurably(dir, "SHARDS", absl::StrCat(config.shards, "\n"));
    if (!s.ok()) return bad(s.message());
  }
  // The boot epoch is the top 16 bits of every server_msg_id: ids never repeat across restarts, even for
  // messages a crash lost after their ids went out.
  std::string epoch_text = Trim(ReadSmallFile(dir + "/EPOCH", &exists));
  uint32_t epoch = 0;
  if (exists && !absl::SimpleAtoi(epoch_text, &epoch)) return bad("EPOCH is not a number");
  epoch = (epoch + 1) & 0xffff;
  if (epoch == 0) epoch = 1;
  absl::Status s = WriteFileDurably(dir, "EPOCH", absl::StrCat(epoch, "\n"));
  if (!s.ok()) return bad(s.message());
  guard.fd = -1;
  return std::unique_ptr<LocalFactory>(new LocalFactory(config, static_cast<uint16_t>(epoch), lock_fd));
}

std::string LocalFactory::Describe() const {
  const char* f = config_.fsync == FsyncPolicy::kAlways ? "always" : config_.fsync == FsyncPolicy::kBatch ? "batch" : "none";
  return absl::StrCat("local data-dir=", config_.data_dir, " fsync=", f, " epoch=", epoch_);
}

void LocalFactory::RunOnShard(uint32_t shard, ShardCall call) {
  Mailbox& mb = *mailboxes_[shard];
  std::lock_guard<std::mutex> lock(mb.mu);
  mb.calls.push_back(std::move(call));
}

std::unique_ptr<Backend> LocalFactory::ForShard(GatewayPort* port) {
  return std::make_unique<LocalBackend>(this, port);
}

// ---- the per-shard backend ----

struct LocalBackend::Impl {
  struct Waiter {
    ConnRef conn;
    uint32_t request_id;
  };
  // A message that originated here and is not yet stored everywhere.
  struct Inflight {
    IdemKey key{0, 0, 0};
    uint64_t time_ms = 0;
    uint64_t start_ns = 0;
    uint32_t remaining = 0;  // DONEs still expected
    bool stored = false;     // the origin record is appended
    bool redrive = false;
    uint8_t conv_kind = 0;
    uint64_t target = 0;
    absl::InlinedVector<Waiter, 1> waiters;
    std::vector<uint64_t> remote;   // recipients on other shards, until the DELIVERs go out
    // Group SEND: the payload until the members arrive. Re-drive, or a stored message waiting for other
    // shards: the origin record.
    std::vector<uint8_t> pending;
    std::function<void(uint16_t, uint64_t)> admin_done;
  };
  enum ActKind : uint8_t { kActOrigin, kActForeign, kActGroupReply };
  // Something to do once the log is durable up to `end`, in log order.
  struct Action {
    uint64_t end;
    uint64_t lsn;
    uint32_t size;
    LogPos pos;
    ActKind kind;
    uint32_t origin;
    uint64_t id;
  };
  struct GroupReply {
    uint64_t user;
    uint32_t device;
    uint32_t request_id;
    uint64_t group;
    uint16_t status;
    std::function<void(uint16_t)> admin_done;
  };
  struct DeviceSession {
    uint32_t device;
    uint8_t platform;
    ConnRef conn;
    uint64_t since_ms;
  };

  Impl(LocalFactory* f, GatewayPort* p) : factory(f), port(p), cfg(f->config()) {}

  LocalFactory* factory;
  GatewayPort* port;
  const Config& cfg;
  LocalStore store;
  LocalStats stats;
  uint32_t self = 0;
  uint32_t shards = 1;
  uint64_t counter = 0;
  bool started = false;
  bool failed = false;
  bool fsync_inflight = false;
  bool more_work = false;
  uint64_t next_fsync_ns = 0;
  uint64_t fsync_started_ns = 0;
  uint64_t next_housekeeping_ms = 0;
  uint32_t redrive_outstanding = 0;
  uint32_t redrive_done_seen = 0;

  absl::flat_hash_map<uint64_t, Inflight> inflight;
  std::deque<Action> actions;
  std::deque<GroupReply> group_replies;
  absl::flat_hash_map<uint64_t, absl::InlinedVector<DeviceSession, 2>> sessions;
  absl::flat_hash_map<uint64_t, absl::flat_hash_set<uint64_t>> watchers;  // watched user -> subscribers
  std::vector<uint64_t> maybe_offline;
  std::vector<InboxSlot> slots;
  std::vector<uint8_t> frame;
  std::vector<uint8_t> read_buf;
  std::vector<ShardCall> calls;

  // ---- helpers ----

  uint64_t NewId() {
    return (static_cast<uint64_t>(factory->epoch()) << 48) | (static_cast<uint64_t>(self) << 40) |
           (++counter & kIdCounterMask);
  }
  uint32_t Owner(uint64_t id) const { return port->OwnerShard(id); }

  template <class Body>
  std::span<const uint8_t> Encode(uint32_t request_id, const Body& b) {
    size_t size = proto::FrameSize(b);
    if (size > frame.size()) frame.resize(size);
    size_t n = proto::Encode(request_id, b, frame);
    return {frame.data(), n};
  }

  void SendAck(const ConnRef& conn, uint32_t request_id, uint64_t cmid, uint16_t status, uint64_t id,
               uint64_t time_ms) {
    proto::SendAckBody ack;
    ack.status = status;
    ack.client_msg_id = cmid;
    ack.server_msg_id = id;
    ack.server_time_ms = time_ms;
    port->SendTo(conn, Encode(request_id, ack));
  }

  void Fail(const absl::Status& st) {
    if (failed) return;
    failed = true;
    std::fprintf(stderr, "longlink-gateway: shard %u: storage failed, refusing new messages: %s\n", self,
                 st.ToString().c_str());
  }

  // ---- storing ----

  // Appends the origin record: inbox slots for `local` users, seq-0 slots naming `remote` users (not for
  // groups, whose members are looked up again on a re-drive).
  void StoreOrigin(uint64_t id, Inflight& f, const MsgHeader& hdr, std::span<const uint8_t> payload,
                   std::span<const uint64_t> local, std::vector<uint64_t> remote, bool record_remote) {
    slots.clear();
    for (uint64_t u : local) slots.push_back(InboxSlot{u, store.AssignSeq(u)});
    if (record_remote) {
      for (uint64_t u : remote) slots.push_back(InboxSlot{u, 0});
    }
    MsgHeader h = hdr;
    h.flags = kMsgOrigin;
    h.origin_shard = static_cast<uint16_t>(self);
    Appended a = store.AppendMsg(h, payload, slots);
    uint32_t size = static_cast<uint32_t>(a.end - a.lsn);
    if (f.key.user != 0) store.PutIdem(f.key, IdemValue{id, f.time_ms, a.pos.segment});
    store.AddPending(id, a.pos, size);
    f.remote = std::move(remote);
    f.stored = true;
    actions.push_back(Action{a.end, a.lsn, size, a.pos, kActOrigin, 0, id});
    ++stats.records;
    stats.inbox_entries += local.size();
  }

  // Indexes a durable record's inbox entries (in log order, so every inbox stays contiguous) and pushes
  // them to online devices, now or (index only) later with Push.
  size_t IndexAndPush(const MsgView& m, LogPos pos, bool push_now = true) {
    uint32_t prefix = MsgPrefixSize(static_cast<uint32_t>(m.payload.size()));
    for (uint32_t i = 0; i < m.slot_count; ++i) {
      InboxSlot s = m.slot(i);
      if (s.seq != 0) store.IndexDurable(s.user, s.seq, pos, prefix, m.h.server_time_ms);
    }
    return push_now ? Push(m) : m.slot_count;
  }

  size_t Push(const MsgView& m) {
    proto::PushBody push;
    push.server_msg_id = m.h.server_msg_id;
    push.from_user = m.h.from_user;
    push.from_device = m.h.from_device;
    push.conv_kind = m.h.conv_kind;
    push.client_msg_id = m.h.client_msg_id;
    push.server_time_ms = m.h.server_time_ms;
    push.payload = m.payload;
    size_t n = 0;
    for (uint32_t i = 0; i < m.slot_count; ++i) {
      InboxSlot s = m.slot(i);
      if (s.seq == 0) continue;
      ++n;
      if (!sessions.contains(s.user)) continue;
      push.seq = s.seq;
      push.conv_id = ConvId(m.h, s.user);
      port->PushToUser(s.user, 0, Encode(0, push));
      ++stats.pushes;
    }
    return n;
  }

  static uint64_t ConvId(const MsgHeader& h, uint64_t inbox_owner) {
    if (h.conv_kind == static_cast<uint8_t>(proto::TargetKind::kGroup)) return h.target_id;
    return inbox_owner == h.from_user ? h.target_id : h.from_user;
  }

  // Posts the DELIVERs of a message whose origin record is durable: per shard, in chunks.
  void PostDelivers(uint64_t id, Inflight& f, const MsgView& m) {
    if (f.remote.empty()) return;
    std::vector<uint64_t>& r = f.remote;
    std::sort(r.begin(), r.end(), [this](uint64_t a, uint64_t b) {
      uint32_t sa = Owner(a), sb = Owner(b);
      return sa != sb ? sa < sb : a < b;
    });
    r.erase(std::unique(r.begin(), r.end()), r.end());
    size_t i = 0;
    while (i < r.size()) {
      uint32_t shard = Owner(r[i]);
      auto* p = new DeliverPayload();
      p->h = m.h;
      p->payload.assign(m.payload.begin(), m.payload.end());
      while (i < r.size() && Owner(r[i]) == shard && p->users.size() < kDeliverChunk) p->users.push_back(r[i++]);
      ++f.remaining;
      port->PostToShard(shard, BackendMessage{kDeliver, id, 0, p, 0, 0, 0});
    }
    std::vector<uint64_t>().swap(f.remote);
  }

  void Finish(uint64_t id) {
    auto it = inflight.find(id);
    if (it == inflight.end()) return;
    Inflight& f = it->second;
    store.Complete(id);
    for (const Waiter& w : f.waiters) {
      SendAck(w.conn, w.request_id, f.key.client_msg_id, static_cast<uint16_t>(proto::SendStatus::kOk), id,
              f.time_ms);
    }
    if (f.start_ns != 0) port->ObserveBackendLatency(static_cast<double>(core::MonoNanos() - f.start_ns) * 1e-9);
    if (f.admin_done) f.admin_done(static_cast<uint16_t>(proto::SendStatus::kOk), id);
    MsgView m;
    if (!f.redrive && !f.pending.empty() &&
        DecodeMsg(std::span<const uint8_t>(f.pending).subspan(kRecordHeaderSize), &m)) {
      Push(m);
    }
    bool redrive = f.redrive;
    inflight.erase(it);
    if (redrive) stats.redriven++;
  }

  void FailSend(uint64_t id, uint16_t status) {
    auto it = inflight.find(id);
    if (it == inflight.end()) return;
    Inflight& f = it->second;
    for (const Waiter& w : f.waiters) SendAck(w.conn, w.request_id, f.key.client_msg_id, status, 0, f.time_ms);
    if (f.key.user != 0) store.EraseIdem(f.key);
    if (f.admin_done) f.admin_done(status, 0);
    inflight.erase(it);
  }

  // ---- durability ----

  void Flush() {
    if (failed) return;
    // With batch fsync nothing waits for a record before its group commit, so the batch goes to the file
    // only when that commit can start (one pwrite per fsync instead of one per loop round), or once it is
    // large enough that holding it would just delay the copy.
    uint64_t now_ns = 0;
    bool sync_now = false;
    if (cfg.fsync == FsyncPolicy::kBatch) {
      now_ns = core::MonoNanos();
      int fd;
      uint64_t lsn;
      sync_now = !fsync_inflight && now_ns >= next_fsync_ns &&
                 (store.log().pending_bytes() != 0 || store.log().NextSync(&fd, &lsn));
      uint64_t retry_ns;
      if (sync_now && !factory->sync_pacer().TryTake(now_ns, &retry_ns)) {
        // The process's sync budget is spent for now (more shards than cores): grow the batch meanwhile.
        next_fsync_ns = retry_ns;
        ++stats.fsync_waits;
        sync_now = false;
      }
      if (!sync_now && store.log().pending_bytes() < kBatchWriteBytes) return;
    }
    absl::Status st = store.log().Write();
    if (!st.ok()) {
      Fail(st);
      return;
    }
    switch (cfg.fsync) {
      case FsyncPolicy::kNone:
        store.log().TreatWrittenAsDurable();
        break;
      case FsyncPolicy::kAlways: {
        int fd;
        uint64_t lsn;
        if (store.log().NextSync(&fd, &lsn)) {
          uint64_t start = core::MonoNanos();
          st = store.log().SyncNow();
          port->ObserveFsync(static_cast<double>(core::MonoNanos() - start) * 1e-9);
          ++stats.fsyncs;
          if (!st.ok()) Fail(st);
        }
        break;
      }
      case FsyncPolicy::kBatch:
        if (sync_now) StartFsync(now_ns);
        break;
    }
  }

  void StartFsync(uint64_t now_ns) {
    int fd;
    uint64_t lsn;
    if (!store.log().NextSync(&fd, &lsn)) return;
    port->SubmitFsync(fd, lsn);
    fsync_inflight = true;
    fsync_started_ns = now_ns;
    next_fsync_ns = now_ns + static_cast<uint64_t>(cfg.fsync_interval_us) * 1000;
    ++stats.fsyncs;
  }

  void ProcessDurable() {
    uint64_t durable = store.log().durable_lsn();
    size_t work = 0;
    while (!actions.empty() && actions.front().end <= durable && work < kTickBudget) {
      Action a = actions.front();
      actions.pop_front();
      if (a.kind == kActGroupReply) {
        GroupReply r = std::move(group_replies.front());
        group_replies.pop_front();
        ReplyGroup(r.user, r.device, r.request_id, r.group, r.status, {}, false, r.admin_done);
        ++work;
        continue;
      }
      std::span<const uint8_t> rec = store.log().Bytes(a.lsn, a.size);
      MsgView m;
      if (rec.size() != a.size || !DecodeMsg(rec.subspan(kRecordHeaderSize), &m)) continue;
      if (a.kind == kActForeign) {
        work += IndexAndPush(m, a.pos) + 1;
        port->PostToShard(a.origin, BackendMessage{kDone, a.id, 0, nullptr, 0, 0, 0});
        continue;
      }
      auto it = inflight.find(a.id);
      if (it == inflight.end()) continue;
      Inflight& f = it->second;
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
    more_work = !actions.empty() && actions.front().end <= durable;
    store.log().ReleaseDurable(actions.empty() ? ~uint64_t{0} : actions.front().lsn);
  }

  // ---- SEND ----

  void OnSend(const Session& s, uint32_t request_id, const proto::SendBody& body) {
    IdemKey key{s.user_id, s.device_id, body.client_msg_id};
    if (const IdemValue* v = store.FindIdem(key)) {
      ++stats.duplicate_sends;
      auto it = inflight.find(v->server_msg_id);
      if (it != inflight.end()) {
        it->second.waiters.push_back(Waiter{s.conn, request_id});
      } else {
        SendAck(s.conn, request_id, body.client_msg_id, 0, v->server_msg_id, v->server_time_ms);
      }
      return;
    }
    if (failed) {
      SendAck(s.conn, request_id, body.client_msg_id, static_cast<uint16_t>(proto::SendStatus::kUnavailable), 0,
              core::UnixMillis());
      return;
    }
    bool group = body.target_kind == static_cast<uint8_t>(proto::TargetKind::kGroup);
    if (body.target_id == 0 || (!group && body.target_kind != static_cast<uint8_t>(proto::TargetKind::kUser))) {
      SendAck(s.conn, request_id, body.client_msg_id, static_cast<uint16_t>(proto::SendStatus::kNoSuchTarget), 0,
              core::UnixMillis());
      return;
    }
    ++stats.sends;
    uint64_t id = NewId();
    Inflight& f = inflight[id];
    f.key = key;
    f.time_ms = core::UnixMillis();
    f.start_ns = core::MonoNanos();
    f.conv_kind = body.target_kind;
    f.target = body.target_id;
    f.waiters.push_back(Waiter{s.conn, request_id});
    if (group) {
      f.pending.assign(body.payload.begin(), body.payload.end());
      store.PutIdem(key, IdemValue{id, f.time_ms, store.log().active_segment()});
      auto* p = new LookupPayload();
      p->group = body.target_id;
      p->sender = s.user_id;
      p->id = id;
      port->PostToShard(Owner(body.target_id), BackendMessage{kGroupLookup, 0, 0, p, 0, 0, 0});
      return;
    }
    MsgHeader h = Header(f, id);
    uint64_t local[2];
    size_t nlocal = 0;
    std::vector<uint64_t> remote;
    local[nlocal++] = s.user_id;
    if (body.target_id != s.user_id) {
      if (Owner(body.target_id) == self) {
        local[nlocal++] = body.target_id;
      } else {
        remote.push_back(body.target_id);
      }
    }
    StoreOrigin(id, f, h, body.payload, std::span<const uint64_t>(local, nlocal), std::move(remote), true);
  }

  MsgHeader Header(const Inflight& f, uint64_t id) const {
    MsgHeader h;
    h.server_msg_id = id;
    h.from_user = f.key.user;
    h.from_device = f.key.device;
    h.conv_kind = f.conv_kind;
    h.target_id = f.target;
    h.client_msg_id = f.key.client_msg_id;
    h.server_time_ms = f.time_ms;
    return h;
  }

  void OnMembers(const MembersPayload& p) {
    auto it = inflight.find(p.id);
    if (it == inflight.end()) return;
    Inflight& f = it->second;
    if (f.redrive) {
      --redrive_outstanding;
      MsgView m;
      if (p.status == 0 && DecodeMsg(std::span<const uint8_t>(f.pending).subspan(kRecordHeaderSize), &m)) {
        for (uint64_t u : p.members) {
          if (Owner(u) != self) f.remote.push_back(u);
        }
        PostDelivers(p.id, f, m);
      }
      std::vector<uint8_t>().swap(f.pending);
      if (f.remaining == 0) Finish(p.id);
      if (redrive_outstanding == 0) BroadcastRedriveDone();
      return;
    }
    if (p.status != 0) {
      FailSend(p.id, p.status);
      return;
    }
    if (failed) {
      FailSend(p.id, static_cast<uint16_t>(proto::SendStatus::kUnavailable));
      return;
    }
    std::vector<uint64_t> local;
    std::vector<uint64_t> remote;
    for (uint64_t u : p.members) (Owner(u) == self ? local : remote).push_back(u);
    std::vector<uint8_t> payload = std::move(f.pending);
    f.pending.clear();
    StoreOrigin(p.id, f, Header(f, p.id), payload, local, std::move(remote), false);
  }

  // ---- start: re-drive what a crash left unfinished ----

  void Redrive() {
    std::vector<std::pair<uint64_t, PendingOrigin>> todo(store.pending().begin(), store.pending().end());
    std::sort(todo.begin(), todo.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [id, po] : todo) {
      std::vector<uint8_t> rec;
      MsgView m;
      if (!store.ReadRecord(po.pos, po.size, &rec) ||
          !DecodeMsg(std::span<const uint8_t>(rec).subspan(kRecordHeaderSize), &m)) {
        store.Complete(id);  // unreadable: nothing to re-drive
        continue;
      }
      Inflight& f = inflight[id];
      f.key = IdemKey{m.h.from_user, m.h.from_device, m.h.client_msg_id};
      f.time_ms = m.h.server_time_ms;
      f.conv_kind = m.h.conv_kind;
      f.target = m.h.target_id;
      f.redrive = true;
      f.stored = true;
      if (m.h.conv_kind == static_cast<uint8_t>(proto::TargetKind::kGroup)) {
        f.pending = std::move(rec);
        ++redrive_outstanding;
        auto* p = new LookupPayload();
        p->group = m.h.target_id;
        p->id = id;
        port->PostToShard(Owner(m.h.target_id), BackendMessage{kGroupLookup, 0, 0, p, 0, 0, 0});
        continue;
      }
      for (uint32_t i = 0; i < m.slot_count; ++i) {
        InboxSlot s = m.slot(i);
        if (s.seq == 0) f.remote.push_back(s.user);
      }
      PostDelivers(id, f, m);
      if (f.remaining == 0) Finish(id);
    }
    if (redrive_outstanding == 0) BroadcastRedriveDone();
  }

  void BroadcastRedriveDone() {
    for (uint32_t s = 0; s < shards; ++s) port->PostToShard(s, BackendMessage{kRedriveDone, 0, 0, nullptr, 0, 0, 0});
  }

  // ---- cross-shard ----

  void OnDeliver(const BackendMessage& bm) {
    const auto& p = *static_cast<const DeliverPayload*>(bm.ptr);
    uint64_t id = bm.a;
    if (store.SeenForeign(id)) {
      ++stats.redrive_duplicates;
      port->PostToShard(bm.from, BackendMessage{kDone, id, 0, nullptr, 0, 0, 0});
      return;
    }
    if (failed) return;  // the origin re-drives it after a restart
    slots.clear();
    for (uint64_t u : p.users) slots.push_back(InboxSlot{u, store.AssignSeq(u)});
    MsgHeader h = p.h;
    h.flags = 0;
    Appended a = store.AppendMsg(h, p.payload, slots);
    actions.push_back(Action{a.end, a.lsn, static_cast<uint32_t>(a.end - a.lsn), a.pos, kActForeign, bm.from, id});
    ++stats.records;
    stats.inbox_entries += p.users.size();
  }

  void OnLookup(const BackendMessage& bm) {
    const auto& p = *static_cast<const LookupPayload*>(bm.ptr);
    auto* r = new MembersPayload();
    r->id = p.id;
    const absl::btree_set<uint64_t>* members = store.Members(p.group);
    if (members == nullptr) {
      r->status = static_cast<uint16_t>(proto::SendStatus::kNoSuchTarget);
    } else if (p.sender != 0 && !members->contains(p.sender)) {
      r->status = static_cast<uint16_t>(proto::SendStatus::kRejected);
    } else {
      r->members.assign(members->begin(), members->end());
    }
    port->PostToShard(bm.from, BackendMessage{kGroupMembersReply, 0, 0, r, 0, 0, 0});
  }

  void ReplyGroup(uint64_t user, uint32_t device, uint32_t request_id, uint64_t group, uint16_t status,
                  std::span<const uint8_t> members, bool has_more, const std::function<void(uint16_t)>& admin_done) {
    if (admin_done) {
      admin_done(status);
      return;
    }
    proto::GroupReplyBody r;
    r.status = status;
    r.group_id = group;
    r.has_more = has_more ? 1 : 0;
    r.members = members;
    port->PushToUser(user, device, Encode(request_id, r));
  }

  void OnGroupOp(const BackendMessage& bm) {
    auto& p = *static_cast<GroupOpPayload*>(bm.ptr);
    if (p.op == kReqMembers) {
      const absl::btree_set<uint64_t>* members = store.Members(p.group);
      if (p.admin_members) {
        std::vector<uint64_t> all;
        if (members != nullptr) all.assign(members->begin(), members->end());
        p.admin_members(members == nullptr ? static_cast<uint16_t>(proto::GroupStatus::kNoSuchGroup) : 0, std::move(all));
        return;
      }
      std::vector<uint8_t> ids;
      bool more = false;
      if (members != nullptr) {
        for (auto it = members->upper_bound(p.after); it != members->end(); ++it) {
          if (ids.size() / proto::kIdSize == kMembersPage) {
            more = true;
            break;
          }
          ids.resize(ids.size() + proto::kIdSize);
          proto::PutId(ids.data() + ids.size() - proto::kIdSize, *it);
        }
      }
      ReplyGroup(p.user, p.device, p.request_id, p.group,
                 members == nullptr ? static_cast<uint16_t>(proto::GroupStatus::kNoSuchGroup) : 0, ids, more, {});
      return;
    }
    uint16_t status;
    if (failed) {
      status = static_cast<uint16_t>(proto::GroupStatus::kUnavailable);
    } else if (p.op == kGroupCreate) {
      status = store.CreateGroup(p.group, p.user);
    } else if (p.op == kGroupAdd) {
      status = store.AddMember(p.group, p.user);
    } else {
      status = store.RemoveMember(p.group, p.user);
    }
    uint64_t end = store.log().appended_lsn();
    if (status != 0 || end <= store.log().durable_lsn()) {
      // Nothing written (an error, or a join of a member): answer now.
      ReplyGroup(p.user, p.device, p.request_id, p.group, status, {}, false, p.admin_done);
      return;
    }
    group_replies.push_back(GroupReply{p.user, p.device, p.request_id, p.group, status, p.admin_done});
    actions.push_back(Action{end, end, 0, LogPos{}, kActGroupReply, 0, 0});
  }

  // ---- presence ----

  void SendPresence(uint64_t to_user, uint32_t device, uint32_t request_id, uint64_t user) {
    proto::PresenceBody b;
    b.user_id = user;
    auto it = sessions.find(user);
    b.devices = it == sessions.end() ? 0 : static_cast<uint32_t>(it->second.size());
    b.online = b.devices > 0 ? 1 : 0;
    b.time_ms = core::UnixMillis();
    port->PushToUser(to_user, device, Encode(request_id, b));
  }

  void PresenceChanged(uint64_t user, bool online) {
    auto it = watchers.find(user);
    if (it == watchers.end() || it->second.empty()) return;
    std::vector<uint64_t> to(it->second.begin(), it->second.end());
    proto::PresenceBody b;
    b.user_id = user;
    b.online = online ? 1 : 0;
    b.devices = online ? 1 : 0;
    b.time_ms = core::UnixMillis();
    port->PushToUsers(to, Encode(0, b));
    stats.presence_events += to.size();
  }
};

LocalBackend::LocalBackend(LocalFactory* factory, GatewayPort* port) : impl_(std::make_unique<Impl>(factory, port)) {}
LocalBackend::~LocalBackend() = default;

const LocalStats& LocalBackend::stats() const { return impl_->stats; }
const LocalStore& LocalBackend::store() const { return impl_->store; }
size_t LocalBackend::online_users() const { return impl_->sessions.size(); }
uint32_t LocalBackend::shard_id() const { return impl_->self; }

absl::Status LocalBackend::Start() {
  Impl& m = *impl_;
  m.self = m.port->shard_id();
  m.shards = m.port->shard_count();
  StoreOptions so;
  so.dir = absl::StrCat(m.cfg.data_dir, "/shard-", m.self);
  so.segment_bytes = m.cfg.segment_bytes;
  so.retention_ms = m.cfg.retention_ms;
  so.idempotency_window_ms = m.cfg.idempotency_window_ms;
  so.max_inbox = m.cfg.max_inbox;
  absl::Status st = m.store.Open(so);
  if (!st.ok()) {
    if (st.code() == absl::StatusCode::kFailedPrecondition || st.code() == absl::StatusCode::kPermissionDenied) {
      return absl::InvalidArgumentError(absl::StrCat("--data-dir: ", st.message()));
    }
    return st;
  }
  // The snapshot Open wrote must be on disk before anything is acknowledged on top of it.
  st = m.store.log().Write();
  if (st.ok()) st = m.store.log().SyncNow();
  return st;
}

LoginVerdict LocalBackend::OnLogin(const Session& s) {
  Impl& m = *impl_;
  auto& devs = m.sessions[s.user_id];
  devs.push_back(Impl::DeviceSession{s.device_id, s.platform, s.conn, core::UnixMillis()});
  if (devs.size() == 1) m.PresenceChanged(s.user_id, true);
  return LoginVerdict::kAllow;
}

void LocalBackend::OnDisconnect(const Session& s) {
  Impl& m = *impl_;
  auto it = m.sessions.find(s.user_id);
  if (it == m.sessions.end()) return;
  auto& devs = it->second;
  for (size_t i = 0; i < devs.size(); ++i) {
    if (devs[i].conn.id == s.conn.id && devs[i].conn.gen == s.conn.gen) {
      devs.erase(devs.begin() + static_cast<ptrdiff_t>(i));
      break;
    }
  }
  if (devs.empty()) {
    m.sessions.erase(it);
    // Decided at the end of the round: a device replacing itself (same device logs in again) is not a
    // presence change.
    m.maybe_offline.push_back(s.user_id);
  }
}

void LocalBackend::OnSend(const Session& s, uint32_t request_id, const protocol::SendBody& body) {
  impl_->OnSend(s, request_id, body);
}

void LocalBackend::OnSync(const Session& s, uint32_t request_id, const protocol::SyncBody& body) {
  Impl& m = *impl_;
  ++m.stats.syncs;
  const Inbox* in = m.store.FindInbox(s.user_id);
  uint32_t limit = body.limit == 0 ? kSyncMax : std::min(body.limit, kSyncMax);
  size_t byte_budget = std::max<size_t>(m.cfg.max_pending_bytes / 2, 64 * 1024);
  proto::SyncDoneBody done;
  if (in != nullptr) {
    size_t i = in->UpperBound(body.after_seq);
    uint32_t sent = 0;
    size_t bytes = 0;
    uint64_t last = 0;
    proto::PushBody push;
    while (i < in->size() && sent < limit && bytes < byte_budget) {
      const InboxEntry& e = in->at(i);
      MsgView mv;
      if (!m.store.ReadMessage(e, &m.read_buf, &mv)) break;
      push.seq = e.seq;
      push.server_msg_id = mv.h.server_msg_id;
      push.from_user = mv.h.from_user;
      push.from_device = mv.h.from_device;
      push.conv_kind = mv.h.conv_kind;
      push.conv_id = Impl::ConvId(mv.h, s.user_id);
      push.client_msg_id = mv.h.client_msg_id;
      push.server_time_ms = mv.h.server_time_ms;
      push.payload = mv.payload;
      std::span<const uint8_t> f = m.Encode(0, push);
      if (!m.port->SendTo(s.conn, f)) break;
      bytes += f.size();
      last = e.seq;
      ++sent;
      ++i;
    }
    m.stats.sync_pushes += sent;
    done.max_seq = sent != 0 ? last : in->durable_seq();
    done.has_more = i < in->size() ? 1 : 0;
  }
  m.port->SendTo(s.conn, m.Encode(request_id, done));
}

void LocalBackend::OnPushAck(const Session& s, const protocol::PushAckBody& body) {
  Impl& m = *impl_;
  const Inbox* in = m.store.FindInbox(s.user_id);
  if (in == nullptr) return;
  // Written to the log in the background (a few thousand cursors per tick), never on the ack path.
  m.store.SetCursor(s.user_id, s.device_id, std::min(body.seq, in->durable_seq()));
}

Backend::FrameVerdict LocalBackend::OnFrame(const Session& s, const protocol::Header& h,
                                            std::span<const uint8_t> body) {
  Impl& m = *impl_;
  auto group_op = [&](uint8_t op, uint64_t group, uint64_t after) {
    auto* p = new GroupOpPayload();
    p->op = op;
    p->group = group;
    p->user = s.user_id;
    p->device = s.device_id;
    p->request_id = h.request_id;
    p->after = after;
    m.port->PostToShard(m.Owner(group), BackendMessage{kGroupOpReq, 0, 0, p, 0, 0, 0});
    return FrameVerdict::kHandled;
  };
  switch (static_cast<proto::Opcode>(h.opcode)) {
    case proto::Opcode::kGroupCreate: {
      proto::GroupCreateBody b;
      if (!proto::Decode(body, &b)) return FrameVerdict::kMalformed;
      return group_op(kGroupCreate, b.group_id, 0);
    }
    case proto::Opcode::kGroupJoin: {
      proto::GroupJoinBody b;
      if (!proto::Decode(body, &b)) return FrameVerdict::kMalformed;
      return group_op(kGroupAdd, b.group_id, 0);
    }
    case proto::Opcode::kGroupLeave: {
      proto::GroupLeaveBody b;
      if (!proto::Decode(body, &b)) return FrameVerdict::kMalformed;
      return group_op(kGroupRemove, b.group_id, 0);
    }
    case proto::Opcode::kGroupMembers: {
      proto::GroupMembersBody b;
      if (!proto::Decode(body, &b)) return FrameVerdict::kMalformed;
      return group_op(kReqMembers, b.group_id, b.after_user);
    }
    case proto::Opcode::kPresenceSubscribe: {
      proto::PresenceSubscribeBody b;
      if (!proto::Decode(body, &b)) return FrameVerdict::kMalformed;
      size_t n = b.user_ids.size() / proto::kIdSize;
      for (size_t i = 0; i < n; ++i) {
        uint64_t target = proto::IdAt(b.user_ids, i);
        m.port->PostToShard(m.Owner(target), BackendMessage{b.subscribe ? kPresenceSub : kPresenceUnsub, target,
                                                            s.user_id, nullptr, s.device_id, h.request_id, 0});
      }
      return FrameVerdict::kHandled;
    }
    default:
      return FrameVerdict::kNotMine;
  }
}

void LocalBackend::OnShardMessage(const BackendMessage& bm) {
  Impl& m = *impl_;
  switch (bm.kind) {
    case kDeliver:
      m.OnDeliver(bm);
      return;
    case kDone: {
      auto it = m.inflight.find(bm.a);
      if (it == m.inflight.end()) return;
      if (it->second.remaining > 0 && --it->second.remaining == 0) m.Finish(bm.a);
      return;
    }
    case kGroupLookup:
      m.OnLookup(bm);
      return;
    case kGroupMembersReply:
      m.OnMembers(*static_cast<const MembersPayload*>(bm.ptr));
      return;
    case kGroupOpReq:
      m.OnGroupOp(bm);
      return;
    case kPresenceSub:
    case kPresenceUnsub: {
      if (bm.kind == kPresenceSub) {
        m.watchers[bm.a].insert(bm.b);
      } else {
        auto it = m.watchers.find(bm.a);
        if (it != m.watchers.end()) {
          it->second.erase(bm.b);
          if (it->second.empty()) m.watchers.erase(it);
        }
      }
      m.SendPresence(bm.b, bm.len, bm.aux, bm.a);
      return;
    }
    case kRedriveDone:
      if (++m.redrive_done_seen == m.shards) m.store.ForgetForeign();
      return;
    default:
      return;
  }
}

void LocalBackend::ReleaseShardPayload(void* ptr) { delete static_cast<Payload*>(ptr); }

void LocalBackend::OnTick(uint64_t now_ms) {
  Impl& m = *impl_;
  if (!m.started) {
    m.started = true;
    m.Redrive();
  }
  {
    LocalFactory::Mailbox& mb = *m.factory->mailboxes_[m.self];
    std::lock_guard<std::mutex> lock(mb.mu);
    m.calls.swap(mb.calls);
  }
  for (ShardCall& c : m.calls) c(*this);
  m.calls.clear();
  if (!m.maybe_offline.empty()) {
    for (uint64_t u : m.maybe_offline) {
      if (!m.sessions.contains(u)) m.PresenceChanged(u, false);
    }
    m.maybe_offline.clear();
  }
  m.store.FlushCursors(kCursorFlushPerTick);
  if (now_ms >= m.next_housekeeping_ms) {
    m.next_housekeeping_ms = now_ms + 1000;
    m.store.Sweep(core::UnixMillis(), 4096);
    m.store.RetireIdem(core::UnixMillis());
    m.store.Compact();
  }
  m.Flush();
  m.ProcessDurable();
}

uint64_t LocalBackend::MaxWaitNs(uint64_t now_ns) {
  Impl& m = *impl_;
  if (m.more_work) return 0;
  if (m.cfg.fsync == FsyncPolicy::kBatch && !m.fsync_inflight && !m.failed) {
    int fd;
    uint64_t lsn;
    if (m.store.log().pending_bytes() != 0 || m.store.log().NextSync(&fd, &lsn)) {
      return m.next_fsync_ns > now_ns ? m.next_fsync_ns - now_ns : 0;
    }
  }
  return ~uint64_t{0};
}

void LocalBackend::OnFsyncDone(uint64_t token, int res) {
  Impl& m = *impl_;
  m.fsync_inflight = false;
  m.port->ObserveFsync(static_cast<double>(core::MonoNanos() - m.fsync_started_ns) * 1e-9);
  if (res < 0) {
    m.Fail(ErrnoStatus(res, "fdatasync"));
    return;
  }
  m.store.log().Synced(token);
}

void LocalBackend::OnStop() {
  Impl& m = *impl_;
  m.store.FlushCursors(~size_t{0});
  if (m.failed) return;
  absl::Status st = m.store.log().Write();
  if (st.ok()) st = m.store.log().SyncNow();
  if (!st.ok()) m.Fail(st);
}

// ---- admin ----

void LocalBackend::AdminPush(std::vector<uint64_t> users, uint64_t group, std::vector<uint8_t> payload,
                             std::function<void(uint16_t, uint64_t)> done) {
  Impl& m = *impl_;
  if (m.failed) {
    done(static_cast<uint16_t>(proto::SendStatus::kUnavailable), 0);
    return;
  }
  uint64_t id = m.NewId();
  Impl::Inflight& f = m.inflight[id];
  f.time_ms = core::UnixMillis();
  f.admin_done = std::move(done);
  if (group != 0) {
    f.conv_kind = static_cast<uint8_t>(proto::TargetKind::kGroup);
    f.target = group;
    f.pending = std::move(payload);
    auto* p = new LookupPayload();
    p->group = group;
    p->id = id;
    m.port->PostToShard(m.Owner(group), BackendMessage{kGroupLookup, 0, 0, p, 0, 0, 0});
    return;
  }
  std::sort(users.begin(), users.end());
  users.erase(std::unique(users.begin(), users.end()), users.end());
  std::vector<uint64_t> local, remote;
  for (uint64_t u : users) {
    if (u != 0) (m.Owner(u) == m.self ? local : remote).push_back(u);
  }
  m.StoreOrigin(id, f, m.Header(f, id), payload, local, std::move(remote), true);
}

void LocalBackend::AdminGroupOp(uint8_t op, uint64_t group, uint64_t user, std::function<void(uint16_t)> done) {
  GroupOpPayload p;
  p.op = op;
  p.group = group;
  p.user = user;
  p.admin_done = std::move(done);
  impl_->OnGroupOp(BackendMessage{kGroupOpReq, 0, 0, &p, 0, 0, impl_->self});
}

void LocalBackend::AdminGroupMembers(uint64_t group, std::function<void(uint16_t, std::vector<uint64_t>)> done) {
  GroupOpPayload p;
  p.op = kReqMembers;
  p.group = group;
  p.admin_members = std::move(done);
  impl_->OnGroupOp(BackendMessage{kGroupOpReq, 0, 0, &p, 0, 0, impl_->self});
}

std::string LocalBackend::AdminUserJson(uint64_t user) const {
  const Impl& m = *impl_;
  std::string out = absl::StrCat("{\"user\":", user, ",\"shard\":", m.self);
  auto it = m.sessions.find(user);
  absl::StrAppend(&out, ",\"online\":", it != m.sessions.end() ? "true" : "false", ",\"devices\":[");
  if (it != m.sessions.end()) {
    bool first = true;
    for (const auto& d : it->second) {
      absl::StrAppend(&out, first ? "" : ",", "{\"device\":", d.device, ",\"platform\":", d.platform,
                      ",\"since_ms\":", d.since_ms, ",\"cursor\":", m.store.Cursor(user, d.device), "}");
      first = false;
    }
  }
  const Inbox* in = m.store.FindInbox(user);
  absl::StrAppend(&out, "],\"last_seq\":", in != nullptr ? in->durable_seq() : 0,
                  ",\"inbox_size\":", in != nullptr ? in->size() : 0, "}");
  return out;
}

size_t LocalBackend::AdminKick(uint64_t user, uint32_t device) {
  size_t n = 0;
  auto it = impl_->sessions.find(user);
  if (it != impl_->sessions.end()) {
    for (const auto& d : it->second) n += (device == 0 || d.device == device) ? 1 : 0;
  }
  impl_->port->Kick(user, device, proto::KickReason::kAdmin, "kicked by an operator");
  return n;
}

}  // namespace longlink::gateway::local
