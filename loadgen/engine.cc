#include "loadgen/engine.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>

#include "absl/strings/str_cat.h"
#include "core/buf_ring.h"
#include "core/bytes.h"
#include "core/clock.h"
#include "core/frame_stream.h"
#include "core/ring.h"
#include "core/status.h"
#include "core/timer_wheel.h"
#include "core/user_data.h"
#include "gateway/auth/token.h"
#include "protocol/frame.h"
#include "protocol/websocket.h"
#include "protocol/ws_upgrade.h"

namespace longlink::loadgen {

namespace proto = longlink::protocol;
namespace ws = longlink::protocol::ws;
using core::PackUserData;
using core::UnpackUserData;

namespace {

enum Op : uint8_t { kOpIgnore = 0, kOpSocket, kOpConnect, kOpRecv, kOpSend, kOpClose };

// kUpgrading: a WebSocket client waits for the server's 101. kLeaving: LOGOUT is on its way; the client
// closes once it is written (or the server closes first).
enum class State : uint8_t { kWaiting, kConnecting, kUpgrading, kLoggingIn, kOnline, kLeaving, kClosing, kDone };

bool Live(State s) {
  return s == State::kUpgrading || s == State::kLoggingIn || s == State::kOnline || s == State::kLeaving;
}

constexpr uint64_t kMaxWsMessage = 16u << 20;

enum Flags : uint8_t {
  kRecvArmed = 1,
  kSendInflight = 2,
  kDirty = 4,
  kCloseInflight = 8,
  kReconnect = 16,
  kAckPending = 32,  // with ack_delay: the cursor moved since the last PUSH_ACK; it is due at ack_at
};

constexpr uint32_t kNoLink = 0xffffffffu;
constexpr uint64_t kLeaveFallbackNs = 2000000000ull;  // a LOGOUT that cannot be written in 2 s is dropped
constexpr uint32_t kSyncLimit = 100;
// A generated payload starts with the intended send time (8 bytes) and the run id (8 bytes).
constexpr uint32_t kPayloadHeader = 16;
// request_id of group setup requests: this tag, plus the group's position in the user's list.
constexpr uint32_t kGroupRequest = 0x40000000u;
// IORING_OP_BIND (kernel 6.11): liburing 2.3 predates it, so its number is spelled out here.
constexpr uint8_t kOpBindOpcode = 56;
#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

constexpr uint64_t kTickNs = 1000000;  // 1 ms timer ticks
constexpr uint32_t kInitialBuffers = 64;
constexpr uint64_t kSocketUringOpSetsockopt = 3;  // SOCKET_URING_OP_SETSOCKOPT (kernel 6.7)
// How long closing every connection may take at the end: 5 s, plus 20 us per client of the run (closing a
// million loopback connections on two cores took about 10 s).
constexpr uint64_t kCloseBoundBaseNs = 5000000000ull;
constexpr uint64_t kCloseBoundPerClientNs = 20000;

uint64_t NsToTick(uint64_t ns) { return (ns + kTickNs - 1) / kTickNs; }

}  // namespace

// Per-client state, kept compact: a million of them must fit comfortably (about 200 bytes each, plus a
// Link for clients on a simulated weak network).
struct LoadShard::Client {
  uint32_t index;  // global client index: the ledger's device identity
  uint32_t gen;
  int32_t slot;
  State state;
  uint8_t flags;
  uint16_t attempts;
  uint32_t seq;            // last message sequence assigned
  uint32_t hb_ms;          // heartbeat interval in the foreground: the server's, or the adaptive one
  uint32_t hb_timeout_ms;  // the server's heartbeat timeout, from LOGIN_ACK
  uint32_t link;           // index into links_, or kNoLink
  uint8_t background;      // the app is in the background: it beats bg_multiplier times less often
  uint8_t hb_streak;       // PONGs in a row since the adaptive interval last changed
  uint8_t syncing;         // a SYNC is outstanding
  uint8_t leave;           // how the current leave_at takes the client down (Leave)
  uint8_t groups_done;     // this user's group memberships are in place (first device only)
  uint16_t groups_pending; // GROUP_CREATE/JOIN requests not answered yet
  uint64_t last_push_seq;  // highest inbox seq up to which every PUSH arrived (the PUSH_ACK cursor)
  uint64_t seen_above;     // bit i: seq last_push_seq + 2 + i arrived already (out of order)
  uint64_t high_seen;      // highest inbox seq any PUSH carried
  uint64_t sync_from;      // the cursor when the current chain of SYNCs began
  uint64_t t_connect;      // intended time of the current connect attempt
  uint64_t t_login;        // when LOGIN was queued
  uint64_t t_down;         // when the connection was lost (for reconnect time), 0 if none
  uint64_t t_sync;         // when the outstanding SYNC was sent
  uint64_t next_ping;      // intended time of the next PING
  uint64_t next_msg;       // intended time of the next SEND
  uint64_t ping_out;       // when the oldest unanswered PING was sent, 0 if none
  uint64_t leave_at;       // when the scenario takes this client down, kNever if it does not
  uint64_t next_bg;        // next foreground/background switch, kNever if none
  uint64_t ack_at;         // with ack_delay: when a pending PUSH_ACK goes out alone at the latest
  uint64_t sent_at[4];     // intended times of the last SENDs, by seq % 4, for SEND -> SEND_ACK latency
  core::Carry* carry;
  core::OutQueue* out;
};

class LoadShard::Impl {
 public:
  Impl(LoadShard* shard) : s_(shard), e_(shard->engine_), cfg_(shard->engine_->config()) {}

  absl::Status Setup();
  void Loop();
  void PublishLive();

  std::mutex live_mu_;
  Histogram live_e2e_;

 private:
  using Client = LoadShard::Client;

  void HandleCqe(const io_uring_cqe* cqe);
  void OnTimer(uint32_t id);
  void StartConnect(uint32_t local);
  void OnSocket(uint32_t local, const io_uring_cqe* cqe);
  void OnConnect(uint32_t local, const io_uring_cqe* cqe);
  void OnRecv(uint32_t local, const io_uring_cqe* cqe);
  void OnSend(uint32_t local, const io_uring_cqe* cqe);
  void Consume(uint32_t local, const uint8_t* data, uint32_t len);
  // WebSocket transports: the upgrade answer, then frames; each binary message is one longlink frame (or,
  // for ws-echo, an echo to time).
  void ConsumeWs(uint32_t local, const uint8_t* data, uint32_t len);
  bool OnWsFrame(uint32_t local, const ws::FrameHeader& h, std::span<const uint8_t> payload);
  void OnWsMessage(uint32_t local, std::span<const uint8_t> message);
  void OnUpgraded(uint32_t local, uint64_t now);
  // Logged in (or, for ws-echo, upgraded): counts it and starts the heartbeat and message schedules.
  void BecomeOnline(uint32_t local, uint64_t now);
  void SendWsClose(uint32_t local);
  // True if the client must wait for its output before closing (it is then kLeaving).
  bool CloseAfterFlush(uint32_t local, bool reconnect);
  void SendLogin(uint32_t local, uint64_t now);
  void QueueWs(uint32_t local, ws::Opcode opcode, std::span<const uint8_t> payload);
  void WriteRaw(uint32_t local, const uint8_t* data, uint32_t n);
  void HandleFrame(uint32_t local, const proto::Header& h, std::span<const uint8_t> body);
  void OnPush(uint32_t local, const proto::PushBody& push, uint64_t now);
  void QueuePushAck(uint32_t local);
  void StartGroupSetup(uint32_t local);
  void OnGroupReply(uint32_t local, uint32_t request_id, const proto::GroupReplyBody& reply);
  // The target of message `seq` of client `index`: a function of the two, so acks can recompute it.
  // False when the message cannot go yet (groups not set up).
  bool TargetOf(uint32_t index, uint32_t seq, uint8_t* kind, uint64_t* id) const;
  // Every device that must receive message `seq` of client `index`, into recipients_.
  void RecipientsOf(uint32_t index, uint32_t seq);
  void AddDevicesOf(uint64_t user);
  // page: the next page of the same answer (has_more), rather than a new round.
  void SendSync(uint32_t local, uint64_t after, uint64_t now, bool page = false);
  void Drive(uint32_t local, uint64_t now);
  void DriveEcho(uint32_t local, uint64_t now, bool running);
  uint64_t NextWake(const Client& c) const;
  void ArmTimer(uint32_t local, uint64_t at_ns) { wheel_.Arm(local, NsToTick(at_ns)); }
  // The link's timer: never moved later than it already is.
  void ArmLinkTimer(uint32_t local, uint64_t at_ns);
  void PumpLink(uint32_t local, uint64_t now);
  void ScheduleReconnect(uint32_t local, uint64_t now);
  // Waits for the client's next join after `after`, or finishes it.
  void NextJoin(uint32_t local, uint64_t after);
  void Close(uint32_t local, bool reconnect, bool reset = false);
  // Takes a client down the way the scenario says (LOGOUT, close or RST), reconnecting or not.
  void Drop(uint32_t local, Leave how, bool reconnect);
  void RunStorms(uint64_t now);
  void MaybeFinishClose(uint32_t local);
  template <class Body>
  void Queue(uint32_t local, uint32_t request_id, const Body& body);
  void Write(uint32_t local, const uint8_t* data, uint32_t n);
  void Flush();
  void SubmitSend(uint32_t local);
  void ArmRecv(uint32_t local);
  uint32_t PayloadSize();
  uint64_t UserOf(uint32_t index) const { return index / cfg_.devices_per_user + 1; }
  uint32_t DeviceOf(uint32_t index) const { return index % cfg_.devices_per_user + 1; }
  bool Running(uint64_t now) const { return now < e_->end_ns() && !e_->stop().load(std::memory_order_relaxed); }
  // The interval between PINGs now: longer in the background, but never past 80% of the server's timeout
  // (a client that knows the timeout does not get itself reaped).
  uint64_t HeartbeatNs(const Client& c) const {
    double ms = static_cast<double>(c.hb_ms) * (c.background ? cfg_.bg_multiplier : 1.0);
    if (c.hb_timeout_ms != 0) ms = std::min(ms, c.hb_timeout_ms * 0.8);
    return static_cast<uint64_t>(std::max(50.0, ms) * 1e6);
  }
  uint64_t DrawBackgroundSwitch(const Client& c, uint64_t now);
  Link* LinkOf(const Client& c) { return c.link == kNoLink ? nullptr : &links_[c.link]; }
  bool UsesWs() const { return cfg_.transport != Transport::kTcp; }
  ws::MaskKey NextMask() {
    uint64_t r = rng_();
    return ws::MaskKey{static_cast<uint8_t>(r), static_cast<uint8_t>(r >> 8), static_cast<uint8_t>(r >> 16),
                       static_cast<uint8_t>(r >> 24)};
  }
  uint32_t LinkTimerId(uint32_t local) const { return static_cast<uint32_t>(clients_.size()) + local; }

  LoadShard* s_;
  Engine* e_;
  const EngineConfig& cfg_;
  core::Ring ring_;
  core::BufRing bufs_;
  core::TimerWheel wheel_;
  std::vector<Client> clients_;
  std::vector<Link> links_;
  // Per-client WebSocket state, only for the WebSocket transports.
  struct WsState {
    ws::MessageAssembler assembler{kMaxWsMessage, /*accept_text=*/true};
    core::Carry* in = nullptr;  // bytes not parsed yet (the upgrade answer, partial frames)
    std::vector<uint8_t> message;  // a fragmented message being assembled
    ws::ClientKey key{};
  };
  std::vector<WsState> ws_;
  std::vector<uint8_t> ws_scratch_ = std::vector<uint8_t>(1024);
  std::vector<uint32_t> dirty_;
  std::mt19937_64 rng_;
  std::vector<uint8_t> scratch_ = std::vector<uint8_t>(1024);
  std::vector<uint8_t> payload_;
  std::vector<uint32_t> recipients_;
  uint32_t pumping_ = kNoLink;  // the client whose downlink PumpLink is delivering
  uint64_t next_live_ = 0;
  bool finishing_ = false;
  bool ended_ = false;  // the run's duration has passed (the grace period runs)
  size_t next_storm_ = 0;
  size_t done_ = 0;  // clients in State::kDone
  void SetDone(Client& c) {
    if (c.state != State::kDone) ++done_;
    c.state = State::kDone;
  }
};

LoadShard::LoadShard(Engine* engine, uint32_t id) : engine_(engine), id_(id), impl_(std::make_unique<Impl>(this)) {}

LoadShard::~LoadShard() { Join(); }

void LoadShard::Start() {
  thread_ = std::thread([this] {
    status_ = impl_->Setup();
    if (!status_.ok()) {
      std::fprintf(stderr, "longlink-loadgen: shard %u: %s\n", id_, status_.ToString().c_str());
      finished_.store(true, std::memory_order_release);
      return;
    }
    impl_->Loop();
    finished_.store(true, std::memory_order_release);
  });
}

void LoadShard::Join() {
  if (thread_.joinable()) thread_.join();
}

void LoadShard::CopyLive(Histogram* out) {
  std::lock_guard<std::mutex> lock(impl_->live_mu_);
  out->Merge(impl_->live_e2e_);
}

// The next [join, leave) interval of client `index` that starts at or after after_ns: false if none.
static bool NextInterval(const EngineConfig& cfg, uint32_t index, uint64_t start_ns, uint64_t after_ns, uint64_t* join_ns,
                  uint64_t* leave_ns, Leave* how) {
  auto at = [&](const Wave& w) {
    double offset = w.rate > 0 ? static_cast<double>(index - w.first) / w.rate : 0;
    return start_ns + w.start_ms * 1000000ull + static_cast<uint64_t>(offset * 1e9);
  };
  uint64_t best = kNever;
  for (const Wave& w : cfg.joins) {
    if (index < w.first || index - w.first >= w.count) continue;
    uint64_t t = at(w);
    if (t >= after_ns && t < best) best = t;
  }
  if (best == kNever) return false;
  *join_ns = best;
  *leave_ns = kNever;
  for (const Wave& w : cfg.leaves) {
    if (index < w.first || index - w.first >= w.count) continue;
    uint64_t t = at(w);
    if (t > best && t < *leave_ns) {
      *leave_ns = t;
      *how = w.leave;
    }
  }
  return true;
}

absl::Status LoadShard::Impl::Setup() {
  uint32_t mine = 0;
  for (uint32_t i = s_->id_; i < cfg_.clients; i += cfg_.shards) ++mine;
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  uint64_t table = mine + 64;
  if (rl.rlim_cur != RLIM_INFINITY && table > rl.rlim_cur) {
    return absl::InvalidArgumentError(
        absl::StrCat(mine, " clients on one shard exceed the open-files limit (", rl.rlim_cur,
                     "), which bounds each ring's fixed-file table: use more shards (--shards)"));
  }
  core::RingOptions ro;
  ro.sq_entries = 4096;
  ro.cq_entries = 16384;
  ro.fixed_files = static_cast<uint32_t>(table);
  RETURN_IF_ERROR(ring_.Init(ro));
  RETURN_IF_ERROR(bufs_.Init(ring_.raw(), 0, 4096, 2048, kInitialBuffers));
  wheel_ = core::TimerWheel(8192, core::MonoNanos() / kTickNs);
  // One timer per client, and a second one for clients on a simulated network (the link's releases).
  wheel_.Reserve(cfg_.network.empty() ? mine : 2 * mine);
  rng_.seed(cfg_.seed * 0x9e3779b97f4a7c15ull + s_->id_);
  clients_.resize(mine);
  if (UsesWs()) ws_.resize(mine);
  payload_.assign(std::max<uint32_t>(kPayloadHeader, cfg_.payload_max), 'x');
  // Bytes 8..15 of every payload name this run, so messages an earlier run left in the server's inboxes
  // (delivered by SYNC) are told apart from this run's, whose ids they would otherwise collide with.
  std::memcpy(payload_.data() + 8, &e_->run_id(), 8);
  uint32_t local = 0;
  const uint64_t now = core::MonoNanos();
  for (uint32_t i = s_->id_; i < cfg_.clients; i += cfg_.shards, ++local) {
    Client& c = clients_[local];
    std::memset(&c, 0, sizeof(c));
    c.index = i;
    c.slot = -1;
    c.state = State::kWaiting;
    c.link = kNoLink;
    c.next_bg = kNever;
    c.leave_at = kNever;
    // The network: a hash of the index and the seed picks the profile, so the same clients get the same
    // networks whatever the shard count.
    if (!cfg_.network.empty()) {
      uint64_t h = (static_cast<uint64_t>(i) + 1) * 0x9e3779b97f4a7c15ull ^ (cfg_.seed * 0xbf58476d1ce4e5b9ull);
      h ^= h >> 29;
      h *= 0x94d049bb133111ebull;
      double u = static_cast<double>(h >> 11) * 0x1.0p-53 * 100.0;
      double acc = 0;
      for (const NetShare& share : cfg_.network) {
        acc += share.percent;
        if (u < acc) {
          if (share.params.Any()) {
            c.link = static_cast<uint32_t>(links_.size());
            links_.emplace_back(&share.params, now, h ^ cfg_.seed);
          }
          break;
        }
      }
    }
    if (cfg_.bg_fraction > 0) {
      c.background = std::uniform_real_distribution<double>(0, 1)(rng_) < cfg_.bg_fraction ? 1 : 0;
    }
    c.hb_ms = cfg_.hb_initial_ms;
    NextJoin(local, 0);
  }
  return absl::OkStatus();
}

void LoadShard::Impl::NextJoin(uint32_t local, uint64_t after) {
  Client& c = clients_[local];
  uint64_t join = 0, leave = kNever;
  Leave how = Leave::kLogout;
  if (finishing_ || !NextInterval(cfg_, c.index, e_->start_ns(), after, &join, &leave, &how) ||
      join >= e_->end_ns()) {
    SetDone(c);
    return;
  }
  c.state = State::kWaiting;
  c.t_connect = join;
  c.leave_at = leave;
  c.leave = static_cast<uint8_t>(how);
  c.attempts = 0;
  ArmTimer(local, join);
}

void LoadShard::Impl::Loop() {
  const uint64_t grace_end = e_->end_ns() + cfg_.grace_ms * 1000000ull;
  for (;;) {
    uint64_t now = core::MonoNanos();
    if (!finishing_ && (now >= grace_end || e_->stop().load(std::memory_order_relaxed))) {
      finishing_ = true;
      for (uint32_t i = 0; i < clients_.size(); ++i) {
        Client& c = clients_[i];
        if (c.state == State::kOnline) s_->counters_.online_at_end.Inc();
        Link* link = LinkOf(c);

        if (c.state == State::kWaiting) SetDone(c);
        wheel_.Cancel(i);
        if (link != nullptr) wheel_.Cancel(LinkTimerId(i));
        if (UsesWs() && c.state == State::kOnline && (link == nullptr || !link->dead())) {
          SendWsClose(i);
          if (CloseAfterFlush(i, false)) continue;
        }
        Close(i, false);
      }
    }
    if (!ended_ && now >= e_->end_ns()) {
      // The run's duration is over: phones on dead links regain coverage. Half-open (zombie) and
      // black-holed connections are closed and reconnect in the grace period, SYNCing what they missed.
      ended_ = true;
      for (uint32_t i = 0; i < clients_.size(); ++i) {
        Client& c = clients_[i];
        Link* link = LinkOf(c);
        if (link == nullptr || !link->dead() || !Live(c.state)) continue;
        if (link->zombie()) s_->counters_.zombies_unreaped.Inc();
        c.attempts = 0;
        Close(i, true);
      }
    }
    if (finishing_ && done_ == clients_.size()) break;
    if (finishing_ && now >= grace_end + kCloseBoundBaseNs + kCloseBoundPerClientNs * cfg_.clients) {
      // Connections whose close did not complete within the bound (the peer never answered): count them
      // and stop, so the run always ends by itself.
      for (Client& c : clients_) {
        if (c.state != State::kDone) {
          s_->counters_.unclean_closes.Inc();
          SetDone(c);
        }
      }
      break;
    }
    // Sleep until the next timer is due (up to 50 ms), not a fixed tick: a run with more shards than
    // cores would otherwise wake every thread every millisecond for nothing.
    ring_.SubmitAndWait(kTickNs * (dirty_.empty() ? wheel_.IdleTicks(finishing_ ? 1 : 50) : 1));
    unsigned head;
    unsigned seen = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(ring_.raw(), head, cqe) {
      HandleCqe(cqe);
      ++seen;
    }
    io_uring_cq_advance(ring_.raw(), seen);
    wheel_.Advance(core::MonoNanos() / kTickNs, [this](uint32_t id) { OnTimer(id); });
    RunStorms(core::MonoNanos());
    bufs_.Commit();
    Flush();
    now = core::MonoNanos();
    if (now >= next_live_) {
      PublishLive();
      next_live_ = now + 500000000ull;
    }
  }
  ring_.Submit();
  PublishLive();
  uint64_t stalls = 0;
  for (const Link& l : links_) stalls += l.stalls();
  s_->counters_.stalls.Inc(stalls);
}

void LoadShard::Impl::PublishLive() {
  std::lock_guard<std::mutex> lock(live_mu_);
  live_e2e_.Reset();
  live_e2e_.Merge(s_->lat_.end_to_end);
}

void LoadShard::Impl::HandleCqe(const io_uring_cqe* cqe) {
  core::UserData ud = UnpackUserData(cqe->user_data);
  if (ud.op == kOpIgnore) return;
  if (ud.op == kOpRecv && (cqe->flags & IORING_CQE_F_BUFFER) &&
      (ud.slot >= clients_.size() || (clients_[ud.slot].gen & core::kGenMask) != ud.gen)) {
    bufs_.Recycle(static_cast<uint16_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
    return;
  }
  if (ud.slot >= clients_.size() || (clients_[ud.slot].gen & core::kGenMask) != ud.gen) {
    // A completion for an earlier connection of this client: only a socket that arrived late matters.
    if (ud.op == kOpSocket && cqe->res >= 0) {
      io_uring_sqe* sqe = ring_.Sqe();
      io_uring_prep_close_direct(sqe, static_cast<unsigned>(cqe->res));
      io_uring_sqe_set_data64(sqe, 0);
    }
    return;
  }
  switch (ud.op) {
    case kOpSocket:
      OnSocket(ud.slot, cqe);
      break;
    case kOpConnect:
      OnConnect(ud.slot, cqe);
      break;
    case kOpRecv:
      OnRecv(ud.slot, cqe);
      break;
    case kOpSend:
      OnSend(ud.slot, cqe);
      break;
    case kOpClose:
      clients_[ud.slot].flags &= static_cast<uint8_t>(~kCloseInflight);
      MaybeFinishClose(ud.slot);
      break;
    default:
      break;
  }
}

void LoadShard::Impl::OnTimer(uint32_t id) {
  uint64_t now = core::MonoNanos();
  if (id >= clients_.size()) {
    PumpLink(id - static_cast<uint32_t>(clients_.size()), now);
    return;
  }
  uint32_t local = id;
  Client& c = clients_[local];
  switch (c.state) {
    case State::kWaiting:
      if (now >= c.leave_at) {
        NextJoin(local, c.leave_at);
      } else if (Running(now) || (c.t_down != 0 && !finishing_)) {
        // New clients join only while the run lasts; one coming back from a lost connection also in the
        // grace period.
        StartConnect(local);
      } else {
        SetDone(c);
      }
      break;
    case State::kConnecting:
    case State::kUpgrading:
    case State::kLoggingIn:
      // No connection, 101 or LOGIN_ACK within the login timeout.
      s_->counters_.login_failures.Inc();
      Close(local, true);
      break;
    case State::kOnline:
      Drive(local, now);
      break;
    case State::kLeaving:
      Close(local, (c.flags & kReconnect) != 0);
      break;
    default:
      break;
  }
}

void LoadShard::Impl::StartConnect(uint32_t local) {
  Client& c = clients_[local];
  c.state = State::kConnecting;
  c.gen = (c.gen + 1) & core::kGenMask;
  const Destination& t = cfg_.targets[c.index % cfg_.targets.size()];
  io_uring_sqe* sqe = ring_.Sqe();
  // A socket straight into the fixed-file table (kernel 5.19): it never takes a plain descriptor.
  io_uring_prep_socket_direct_alloc(sqe, t.addr.ss_family, SOCK_STREAM, 0, 0);
  io_uring_sqe_set_data64(sqe, PackUserData(kOpSocket, c.gen, local));
  ArmTimer(local, core::MonoNanos() + cfg_.login_timeout_ms * 1000000ull);
}

void LoadShard::Impl::OnSocket(uint32_t local, const io_uring_cqe* cqe) {
  Client& c = clients_[local];
  if (cqe->res < 0) {
    s_->counters_.connect_errors.Inc();
    ScheduleReconnect(local, core::MonoNanos());
    return;
  }
  if (c.state != State::kConnecting) {
    // The attempt was abandoned (timeout or the run ended) while the socket was being made.
    io_uring_sqe* sqe = ring_.Sqe();
    io_uring_prep_close_direct(sqe, static_cast<unsigned>(cqe->res));
    io_uring_sqe_set_data64(sqe, 0);
    return;
  }
  c.slot = cqe->res;
  const uint32_t ndest = static_cast<uint32_t>(cfg_.targets.size());
  const Destination& t = cfg_.targets[c.index % ndest];
  io_uring_sqe* sqe;
  if (!cfg_.sources.empty()) {
    // Each (source, destination) pair has its own 64K ephemeral ports. IP_BIND_ADDRESS_NO_PORT defers the
    // port choice to connect(), which then picks it per 4-tuple instead of reserving it per address.
    // setsockopt on a direct descriptor is an IORING_OP_URING_CMD (kernel 6.7); bind is IORING_OP_BIND
    // (kernel 6.11); both are prepared by hand (liburing 2.3) and linked ahead of the connect.
    static const int kOne = 1;
    const Destination& src = cfg_.sources[(c.index / ndest) % cfg_.sources.size()];
    sqe = ring_.Sqe();
    io_uring_prep_rw(IORING_OP_URING_CMD, sqe, c.slot, nullptr, 0, 0);
    sqe->off = kSocketUringOpSetsockopt;
    sqe->addr = (static_cast<uint64_t>(IP_BIND_ADDRESS_NO_PORT) << 32) | IPPROTO_IP;
    sqe->file_index = sizeof(kOne);
    sqe->addr3 = reinterpret_cast<uint64_t>(&kOne);
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_LINK;
    io_uring_sqe_set_data64(sqe, 0);
    sqe = ring_.Sqe();
    io_uring_prep_rw(kOpBindOpcode, sqe, c.slot, &src.addr, 0, src.len);
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_LINK;
    io_uring_sqe_set_data64(sqe, 0);
  }
  sqe = ring_.Sqe();
  io_uring_prep_connect(sqe, c.slot, reinterpret_cast<const sockaddr*>(&t.addr), t.len);
  sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, PackUserData(kOpConnect, c.gen, local));
}

void LoadShard::Impl::OnConnect(uint32_t local, const io_uring_cqe* cqe) {
  Client& c = clients_[local];
  uint64_t now = core::MonoNanos();
  if (c.state != State::kConnecting) {
    // Closed (login timeout, end of run) while connecting; the close completes the client.
    MaybeFinishClose(local);
    return;
  }
  if (cqe->res < 0) {
    s_->counters_.connect_errors.Inc();
    Close(local, true);
    return;
  }
  s_->counters_.connects.Inc();
  s_->counters_.connected.Add(1);
  s_->lat_.connect.Record(now - std::min(now, c.t_connect));
  if (Link* link = LinkOf(c)) link->Reset(now);
  c.t_login = now;
  if (UsesWs()) {
    // The HTTP/1.1 upgrade first; LOGIN (or, for ws-echo, nothing) once the 101 arrives.
    WsState& w = ws_[local];
    std::array<uint8_t, ws::kNonceSize> nonce;
    for (size_t i = 0; i < nonce.size(); i += 8) {
      uint64_t r = rng_();
      std::memcpy(nonce.data() + i, &r, 8);
    }
    w.key = ws::MakeClientKey(nonce);
    const Destination& t = cfg_.targets[c.index % cfg_.targets.size()];
    ws::ClientUpgrade up;
    up.host = t.text;
    up.path = cfg_.ws_path;
    up.key = std::string_view(w.key.data(), w.key.size());
    up.subprotocols = cfg_.transport == Transport::kWebSocket ? ws::kSubprotocol : std::string_view();
    uint8_t req[1024];
    size_t n = ws::WriteUpgradeRequest(up, req);
    c.state = State::kUpgrading;
    WriteRaw(local, req, static_cast<uint32_t>(n));
    ArmRecv(local);
    return;
  }
  c.state = State::kLoggingIn;
  SendLogin(local, now);
  ArmRecv(local);
}

void LoadShard::Impl::SendLogin(uint32_t local, uint64_t now) {
  Client& c = clients_[local];
  proto::LoginBody login;
  login.user_id = UserOf(c.index);
  login.device_id = DeviceOf(c.index);
  login.platform = 2;
  std::string token;
  if (cfg_.auth_token) {
    token = auth::MintToken(cfg_.auth_secret, login.user_id, login.device_id, core::UnixMillis() / 1000 + 86400);
    login.token = token;
  }
  Queue(local, 1, login);
}

void LoadShard::Impl::ArmRecv(uint32_t local) {
  Client& c = clients_[local];
  io_uring_sqe* sqe = ring_.Sqe();
  io_uring_prep_recv_multishot(sqe, c.slot, nullptr, 0, 0);
  sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
  sqe->buf_group = bufs_.group_id();
  io_uring_sqe_set_data64(sqe, PackUserData(kOpRecv, c.gen, local));
  c.flags |= kRecvArmed;
}

void LoadShard::Impl::OnRecv(uint32_t local, const io_uring_cqe* cqe) {
  Client& c = clients_[local];
  if (!(cqe->flags & IORING_CQE_F_MORE)) c.flags &= static_cast<uint8_t>(~kRecvArmed);
  bool live = Live(c.state);
  uint64_t now = core::MonoNanos();
  if (cqe->res > 0) {
    uint16_t bid = static_cast<uint16_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
    if (live) {
      if (Link* link = LinkOf(c)) {
        // Through the simulated downlink: delayed, rate-limited, or dropped when the link is dead.
        link->Push(LinkParams::kDown, now, bufs_.Buffer(bid), static_cast<uint32_t>(cqe->res));
        PumpLink(local, now);
      } else {
        Consume(local, bufs_.Buffer(bid), static_cast<uint32_t>(cqe->res));
      }
    }
    bufs_.Recycle(bid);
  } else if (cqe->res == -ENOBUFS) {
    bufs_.Grow(kInitialBuffers);
  } else if (live) {
    // EOF or an error: the server closed us (or the network did).
    Link* link = LinkOf(c);
    if (link != nullptr && link->zombie()) {
      // The gateway reaped a half-open connection: how long it took is the measurement.
      s_->counters_.zombies_reaped.Inc();
      s_->lat_.zombie_reap.Record(now - link->zombie_since());
    } else if (c.state != State::kLeaving) {
      s_->counters_.disconnects.Inc();
    }
    Close(local, c.state != State::kLeaving || (c.flags & kReconnect));
  }
  Client& c2 = clients_[local];
  if (c2.state == State::kClosing) {
    MaybeFinishClose(local);
  } else if (!(c2.flags & kRecvArmed) &&
             Live(c2.state)) {
    ArmRecv(local);
  }
}

void LoadShard::Impl::Consume(uint32_t local, const uint8_t* data, uint32_t len) {
  if (UsesWs()) {
    ConsumeWs(local, data, len);
    return;
  }
  Client& c = clients_[local];
  std::span<const uint8_t> rest;
  core::SplitResult r = core::SplitFrames(
      &c.carry, data, len, 16u << 20,
      [&](const proto::Header& h, std::span<const uint8_t> body) {
        HandleFrame(local, h, body);
        State st = clients_[local].state;
        return Live(st);
      },
      &rest);
  if (r == core::SplitResult::kTooLarge || r == core::SplitResult::kBadFrame) {
    s_->counters_.protocol_errors.Inc();
    Close(local, true);
  }
}

void LoadShard::Impl::ConsumeWs(uint32_t local, const uint8_t* data, uint32_t len) {
  WsState& w = ws_[local];
  // Everything goes through the client's buffer: an upgrade answer or a frame may arrive in pieces.
  if (w.in == nullptr) w.in = core::Carry::New(std::max<uint32_t>(256, len));
  if (w.in->len + len > w.in->cap) w.in = core::Carry::Reserve(w.in, std::max(w.in->cap * 2, w.in->len + len));
  std::memcpy(w.in->data + w.in->len, data, len);
  w.in->len += len;
  uint64_t now = core::MonoNanos();
  size_t off = 0;
  if (clients_[local].state == State::kUpgrading) {
    std::string_view offered = cfg_.transport == Transport::kWebSocket ? ws::kSubprotocol : std::string_view();
    ws::UpgradeResponseResult r = ws::ParseUpgradeResponse(std::span<const uint8_t>(w.in->data, w.in->len),
                                                           std::string_view(w.key.data(), w.key.size()), offered);
    if (r.status == ws::UpgradeStatus::kNeedMore) return;
    if (r.status != ws::UpgradeStatus::kOk) {
      s_->counters_.protocol_errors.Inc();
      s_->counters_.login_failures.Inc();
      Close(local, true);
      return;
    }
    off = r.response.header_size;
    OnUpgraded(local, now);
  }
  while (Live(clients_[local].state)) {
    std::span<const uint8_t> rest(w.in->data + off, w.in->len - off);
    ws::HeaderResult hr = ws::ParseFrameHeader(rest, ws::Role::kClient, kMaxWsMessage);
    if (hr.status == ws::ParseStatus::kNeedMore) break;
    if (hr.status == ws::ParseStatus::kError) {
      s_->counters_.protocol_errors.Inc();
      Close(local, true);
      return;
    }
    const ws::FrameHeader& h = hr.header;
    if (rest.size() < h.header_size + h.payload_length) break;
    off += h.header_size + h.payload_length;
    if (!OnWsFrame(local, h, rest.subspan(h.header_size, h.payload_length))) return;
  }
  WsState& w2 = ws_[local];  // the frame handlers never resize ws_, but may free the buffer on close
  if (w2.in == nullptr) return;
  if (off >= w2.in->len) {
    w2.in->len = 0;
  } else if (off > 0) {
    std::memmove(w2.in->data, w2.in->data + off, w2.in->len - off);
    w2.in->len -= static_cast<uint32_t>(off);
  }
}

bool LoadShard::Impl::OnWsFrame(uint32_t local, const ws::FrameHeader& h, std::span<const uint8_t> payload) {
  WsState& w = ws_[local];
  switch (w.assembler.OnFrame(h, payload)) {
    case ws::MessageAssembler::Action::kControl: {
      uint64_t now = core::MonoNanos();
      if (h.opcode == static_cast<uint8_t>(ws::Opcode::kPing)) {
        QueueWs(local, ws::Opcode::kPong, payload);
      } else if (h.opcode == static_cast<uint8_t>(ws::Opcode::kPong)) {
        Client& c = clients_[local];
        if (payload.size() == 8) {
          uint64_t sent_at;
          std::memcpy(&sent_at, payload.data(), 8);
          s_->counters_.pongs.Inc();
          s_->lat_.heartbeat_rtt.Record(now - std::min(now, sent_at));
          c.ping_out = 0;
        }
      } else {
        // The server closes: answer the close handshake, then close and reconnect.
        SendWsClose(local);
        s_->counters_.disconnects.Inc();
        Close(local, true);
        return false;
      }
      return true;
    }
    case ws::MessageAssembler::Action::kMessage:
      OnWsMessage(local, payload);
      break;
    case ws::MessageAssembler::Action::kFragment:
      w.message.insert(w.message.end(), payload.begin(), payload.end());
      break;
    case ws::MessageAssembler::Action::kFinalFragment: {
      w.message.insert(w.message.end(), payload.begin(), payload.end());
      std::vector<uint8_t> message;
      message.swap(w.message);
      OnWsMessage(local, message);
      break;
    }
    case ws::MessageAssembler::Action::kError:
      s_->counters_.protocol_errors.Inc();
      Close(local, true);
      return false;
  }
  return Live(clients_[local].state);
}

void LoadShard::Impl::OnWsMessage(uint32_t local, std::span<const uint8_t> message) {
  uint64_t now = core::MonoNanos();
  if (cfg_.transport == Transport::kWebSocketEcho) {
    // An echo of one of our messages: its first 8 bytes are the intended send time.
    if (message.size() >= 8) {
      uint64_t sent_at;
      std::memcpy(&sent_at, message.data(), 8);
      s_->counters_.delivered.Inc();
      s_->counters_.acked.Inc();
      s_->lat_.end_to_end.Record(now - std::min(now, sent_at));
    }
    return;
  }
  // longlink.v1: each binary message carries exactly one longlink frame.
  core::Carry* carry = nullptr;
  std::span<const uint8_t> rest;
  int frames = 0;
  core::SplitResult r = core::SplitFrames(
      &carry, message.data(), static_cast<uint32_t>(message.size()), kMaxWsMessage,
      [&](const proto::Header& h, std::span<const uint8_t> body) {
        ++frames;
        HandleFrame(local, h, body);
        return Live(clients_[local].state);
      },
      &rest);
  if (carry != nullptr) {
    std::free(carry);
    frames = 0;  // a partial frame: not one whole frame per message
  }
  if (r == core::SplitResult::kTooLarge || r == core::SplitResult::kBadFrame || frames != 1) {
    s_->counters_.protocol_errors.Inc();
    Close(local, true);
  }
}

bool LoadShard::Impl::CloseAfterFlush(uint32_t local, bool reconnect) {
  Client& c = clients_[local];
  if (c.state != State::kOnline || !(c.flags & kSendInflight)) return false;
  // Output is still on its way: close once it is written (OnSend), as after a LOGOUT.
  s_->counters_.online.Add(-1);
  if (reconnect) {
    c.flags |= kReconnect;
    c.t_down = core::MonoNanos();
  } else {
    c.flags &= static_cast<uint8_t>(~kReconnect);
  }
  c.state = State::kLeaving;
  if (!finishing_) ArmTimer(local, core::MonoNanos() + kLeaveFallbackNs);
  return true;
}

void LoadShard::Impl::SendWsClose(uint32_t local) {
  uint8_t frame[ws::kMaxHeaderSize + 2];
  size_t n = ws::EncodeCloseFrame(static_cast<uint16_t>(ws::CloseCode::kNormal), "", NextMask(), frame);
  WriteRaw(local, frame, static_cast<uint32_t>(n));
  // Hand it to the kernel now: the close that follows queues its shutdown behind this send.
  Flush();
}

void LoadShard::Impl::OnUpgraded(uint32_t local, uint64_t now) {
  Client& c = clients_[local];
  if (cfg_.transport == Transport::kWebSocket) {
    c.state = State::kLoggingIn;
    SendLogin(local, now);
    return;
  }
  // ws-echo: the upgrade is the whole handshake.
  c.hb_ms = cfg_.ws_ping_ms;
  BecomeOnline(local, now);
  ArmTimer(local, NextWake(c));
}

void LoadShard::Impl::BecomeOnline(uint32_t local, uint64_t now) {
  Client& c = clients_[local];
  s_->counters_.logins.Inc();
  s_->counters_.online.Add(1);
  s_->lat_.login.Record(now - c.t_login);
  if (c.t_down != 0) {
    s_->lat_.reconnect.Record(now - c.t_down);
    c.t_down = 0;
  }
  c.state = State::kOnline;
  c.attempts = 0;
  c.ping_out = 0;
  // An ack still pending from the last connection is not owed any more: the SYNC after login starts from
  // the cursor, and the next push acknowledges it.
  c.flags &= static_cast<uint8_t>(~kAckPending);
  // Random phase so that clients do not beat in lockstep; the first SEND is due at a random point of the
  // first interval for the same reason.
  c.next_ping = now + rng_() % HeartbeatNs(c);
  if (cfg_.msg_rate_per_client > 0) {
    double interval_ns = 1e9 / cfg_.msg_rate_per_client;
    c.next_msg = now + static_cast<uint64_t>(std::uniform_real_distribution<double>(0, interval_ns)(rng_));
  } else {
    c.next_msg = kNever;
  }
}

void LoadShard::Impl::SendSync(uint32_t local, uint64_t after, uint64_t now, bool page) {
  Client& c = clients_[local];
  if (!page) c.sync_from = c.last_push_seq;
  proto::SyncBody sync;
  sync.after_seq = after;
  sync.limit = kSyncLimit;
  Queue(local, 2, sync);
  s_->counters_.syncs.Inc();
  c.syncing = 1;
  if (!page) c.t_sync = now;
}

void LoadShard::Impl::HandleFrame(uint32_t local, const proto::Header& h, std::span<const uint8_t> body) {
  Client& c = clients_[local];
  uint64_t now = core::MonoNanos();
  switch (static_cast<proto::Opcode>(h.opcode)) {
    case proto::Opcode::kLoginAck: {
      proto::LoginAckBody ack;
      if (!proto::Decode(body, &ack) || ack.status != 0) {
        s_->counters_.login_failures.Inc();
        Close(local, true);
        return;
      }
      if (c.state != State::kLoggingIn) return;
      c.hb_timeout_ms = ack.heartbeat_timeout_ms;
      if (cfg_.hb_adaptive) {
        // The learnt interval survives reconnects (as a smart-heartbeat client keeps it per network), but
        // never reaches the server's timeout.
        uint32_t cap = std::min<uint32_t>(cfg_.hb_max_ms, static_cast<uint32_t>(uint64_t{ack.heartbeat_timeout_ms} * 4 / 5));
        c.hb_ms = std::max<uint32_t>(50, std::min(c.hb_ms, cap));
      } else {
        c.hb_ms = std::max<uint32_t>(ack.heartbeat_interval_ms, 50);
      }
      c.hb_streak = 0;
      c.syncing = 0;
      c.seen_above = 0;
      BecomeOnline(local, now);
      if (cfg_.bg_switches_per_hour > 0 && c.next_bg == kNever) c.next_bg = DrawBackgroundSwitch(c, now);
      // SYNC from the last contiguous seq after every login: what arrived while offline comes now.
      if (cfg_.sync_on_reconnect) SendSync(local, c.last_push_seq, now);
      if (cfg_.message_targets == EngineConfig::Targets::kGroups && DeviceOf(c.index) == 1 && !c.groups_done) {
        StartGroupSetup(local);
      }
      ArmTimer(local, NextWake(c));
      return;
    }
    case proto::Opcode::kPong: {
      proto::PongBody pong;
      if (!proto::Decode(body, &pong)) {
        s_->counters_.protocol_errors.Inc();
        return;
      }
      s_->counters_.pongs.Inc();
      s_->lat_.heartbeat_rtt.Record(now - std::min(now, pong.timestamp));
      c.ping_out = 0;
      if (cfg_.hb_adaptive && ++c.hb_streak >= cfg_.hb_successes) {
        c.hb_streak = 0;
        uint32_t cap = std::min<uint32_t>(cfg_.hb_max_ms, static_cast<uint32_t>(uint64_t{c.hb_timeout_ms} * 4 / 5));
        uint32_t grown = std::min<uint32_t>(cap, c.hb_ms + cfg_.hb_step_ms);
        if (grown > c.hb_ms) {
          uint64_t before = HeartbeatNs(c);
          c.hb_ms = grown;
          c.next_ping = std::max(now, c.next_ping - before + HeartbeatNs(c));
          s_->counters_.hb_grows.Inc();
          if (c.state == State::kOnline) ArmTimer(local, NextWake(c));
        }
      }
      return;
    }
    case proto::Opcode::kSendAck: {
      proto::SendAckBody ack;
      if (!proto::Decode(body, &ack) || ack.status != 0) {
        s_->counters_.protocol_errors.Inc();
        return;
      }
      s_->counters_.acked.Inc();
      uint64_t id = e_->LedgerId(ack.client_msg_id);
      uint32_t acked_seq = MessageSeq(id);
      // Only the last four SENDs' times are kept: an ack more than four messages late is not timed.
      if (acked_seq + 4 > c.seq) s_->lat_.send_ack.Record(now - std::min(now, c.sent_at[acked_seq % 4]));
      RecipientsOf(c.index, acked_seq);
      s_->ledger_.Acked(id, recipients_);
      return;
    }
    case proto::Opcode::kPush: {
      proto::PushBody push;
      if (!proto::Decode(body, &push)) {
        s_->counters_.protocol_errors.Inc();
        return;
      }
      OnPush(local, push, now);
      return;
    }
    case proto::Opcode::kSyncDone: {
      proto::SyncDoneBody done;
      if (!proto::Decode(body, &done)) {
        s_->counters_.protocol_errors.Inc();
        return;
      }
      // The cursor moves only over PUSHes that arrived (OnPush), never to max_seq: a seq below max_seq
      // that this answer did not carry is stored but not yet deliverable, and jumping would drop it.
      if (done.has_more) {
        SendSync(local, std::max(c.last_push_seq, done.max_seq), now, /*page=*/true);
      } else if (c.last_push_seq < c.high_seen && c.last_push_seq > c.sync_from) {
        // Still behind what was seen, but this round made progress: go again from the cursor.
        SendSync(local, c.last_push_seq, now);
      } else {
        c.syncing = 0;
        s_->lat_.sync.Record(now - c.t_sync);
      }
      return;
    }
    case proto::Opcode::kGroupReply: {
      proto::GroupReplyBody reply;
      if (!proto::Decode(body, &reply)) {
        s_->counters_.protocol_errors.Inc();
        return;
      }
      OnGroupReply(local, h.request_id, reply);
      return;
    }
    case proto::Opcode::kPresence:
      return;
    case proto::Opcode::kKick:
      s_->counters_.kicks.Inc();
      Close(local, true);
      return;
    case proto::Opcode::kGoaway:
      Close(local, true);
      return;
    default:
      s_->counters_.protocol_errors.Inc();
      return;
  }
}

void LoadShard::Impl::OnPush(uint32_t local, const proto::PushBody& push, uint64_t now) {
  Client& c = clients_[local];
  if (push.seq != 0) {
    // The client's own dedup by inbox seq: a PUSH at or below the cursor, or one already seen above it,
    // was shown before (a SYNC overlapping live pushes). Only new seqs reach the ledger, whose duplicates
    // therefore count messages the server stored or sent twice under different seqs.
    if (push.seq <= c.last_push_seq) return;
    c.high_seen = std::max(c.high_seen, push.seq);
    uint64_t ahead = push.seq - c.last_push_seq - 2;  // bit index in seen_above when seq > cursor + 1
    if (push.seq > c.last_push_seq + 1 && ahead >= 64) {
      // Beyond the client's 64-message reorder window: not shown now; a SYNC from the cursor fetches it
      // in order (OnSyncDone keeps syncing while the cursor is behind what was seen).
      if (!c.syncing && cfg_.sync_on_reconnect) {
        s_->counters_.sync_gaps.Inc();
        SendSync(local, c.last_push_seq, now);
      }
      return;
    }
    if (push.seq > c.last_push_seq + 1) {
      if (c.seen_above & (uint64_t{1} << ahead)) return;
      c.seen_above |= uint64_t{1} << ahead;
    }
  }
  uint64_t run = 0;
  if (push.payload.size() >= kPayloadHeader) std::memcpy(&run, push.payload.data() + 8, 8);
  if (run != e_->run_id()) {
    // Not this run's message (an earlier run's, or someone else's): shown, acknowledged, not judged.
    s_->counters_.foreign.Inc();
  } else if (s_->ledger_.Delivered(c.index, e_->LedgerId(push.client_msg_id))) {
    s_->counters_.delivered.Inc();
    uint64_t sent_at;
    std::memcpy(&sent_at, push.payload.data(), 8);
    s_->lat_.end_to_end.Record(now - std::min(now, sent_at));
  } else {
    s_->counters_.duplicates.Inc();
  }
  if (push.seq == 0) return;
  if (push.seq == c.last_push_seq + 1) {
    // Contiguous: move the cursor over this seq and any that arrived early.
    c.last_push_seq = push.seq;
    while (c.seen_above & 1) {
      c.seen_above >>= 1;
      ++c.last_push_seq;
    }
    c.seen_above >>= 1;
    if (cfg_.push_ack) {
      if (cfg_.ack_delay_ms == 0 || (c.flags & kDirty)) {
        // At once, or the client is writing this round anyway: the ack rides along.
        QueuePushAck(local);
      } else if (!(c.flags & kAckPending)) {
        c.flags |= kAckPending;
        c.ack_at = now + cfg_.ack_delay_ms * 1000000ull;
        if (c.state == State::kOnline) ArmTimer(local, NextWake(c));
      }
    }
  } else if (!c.syncing && cfg_.sync_on_reconnect) {
    // A gap in the inbox sequence: the client rule is to SYNC from the last contiguous seq.
    s_->counters_.sync_gaps.Inc();
    SendSync(local, c.last_push_seq, now);
  }
}

namespace {
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
}  // namespace

bool LoadShard::Impl::TargetOf(uint32_t index, uint32_t seq, uint8_t* kind, uint64_t* id) const {
  const uint64_t h = Mix(cfg_.seed ^ (static_cast<uint64_t>(index) << 32 | seq));
  switch (cfg_.message_targets) {
    case EngineConfig::Targets::kSelf:
      *kind = static_cast<uint8_t>(proto::TargetKind::kUser);
      *id = UserOf(index);
      return true;
    case EngineConfig::Targets::kRandomUser:
      *kind = static_cast<uint8_t>(proto::TargetKind::kUser);
      *id = h % e_->users() + 1;
      return true;
    case EngineConfig::Targets::kGroups: {
      std::span<const uint32_t> groups = e_->GroupsOf(UserOf(index));
      if (groups.empty() || !e_->GroupsReady()) return false;
      *kind = static_cast<uint8_t>(proto::TargetKind::kGroup);
      *id = groups[h % groups.size()] + 1;
      return true;
    }
  }
  return false;
}

void LoadShard::Impl::AddDevicesOf(uint64_t user) {
  const uint64_t first = (user - 1) * cfg_.devices_per_user;
  for (uint64_t d = 0; d < cfg_.devices_per_user && first + d < cfg_.clients; ++d) {
    recipients_.push_back(static_cast<uint32_t>(first + d));
  }
}

void LoadShard::Impl::RecipientsOf(uint32_t index, uint32_t seq) {
  // The local backend's rule (docs/protocol.md 6.5.1): every device of every recipient user, and every
  // device of the sender (the sending device included).
  recipients_.clear();
  uint8_t kind = 0;
  uint64_t id = 0;
  if (!TargetOf(index, seq, &kind, &id)) return;
  AddDevicesOf(UserOf(index));
  if (kind == static_cast<uint8_t>(proto::TargetKind::kGroup)) {
    const uint32_t g = static_cast<uint32_t>(id - 1);
    for (uint32_t j = 0; j < e_->GroupMembers(); ++j) {
      uint64_t member = e_->GroupMember(g, j);
      if (member != UserOf(index)) AddDevicesOf(member);
    }
  } else if (id != UserOf(index)) {
    AddDevicesOf(id);
  }
}

void LoadShard::Impl::StartGroupSetup(uint32_t local) {
  Client& c = clients_[local];
  std::span<const uint32_t> groups = e_->GroupsOf(UserOf(c.index));
  c.groups_pending = static_cast<uint16_t>(std::min<size_t>(groups.size(), 0xffff));
  for (uint32_t k = 0; k < c.groups_pending; ++k) {
    // Create, which makes us the first member; if someone was first, join instead (OnGroupReply).
    proto::GroupCreateBody create;
    create.group_id = groups[k] + 1;
    Queue(local, kGroupRequest | k, create);
  }
  if (c.groups_pending == 0) c.groups_done = 1;
}

void LoadShard::Impl::OnGroupReply(uint32_t local, uint32_t request_id, const proto::GroupReplyBody& reply) {
  Client& c = clients_[local];
  if ((request_id & kGroupRequest) == 0 || c.groups_done || c.groups_pending == 0) return;
  const auto status = static_cast<proto::GroupStatus>(reply.status);
  if (status == proto::GroupStatus::kAlreadyExists) {
    proto::GroupJoinBody join;
    join.group_id = reply.group_id;
    Queue(local, request_id, join);
    return;
  }
  if (status != proto::GroupStatus::kOk) s_->counters_.protocol_errors.Inc();
  if (--c.groups_pending == 0) {
    c.groups_done = 1;
    e_->GroupsJoined();
  }
}

uint64_t LoadShard::Impl::DrawBackgroundSwitch(const Client& c, uint64_t now) {
  // Time in each state is exponential; the means keep bg_fraction of the clients in the background and
  // make bg_switches_per_hour switches per client per hour on average.
  double f = cfg_.bg_fraction;
  if (f <= 0 || f >= 1 || cfg_.bg_switches_per_hour <= 0) return kNever;
  double mean_h = 2.0 * (c.background ? f : 1.0 - f) / cfg_.bg_switches_per_hour;
  double s = std::exponential_distribution<double>(1.0 / (mean_h * 3600.0))(rng_);
  return now + static_cast<uint64_t>(s * 1e9);
}

uint64_t LoadShard::Impl::NextWake(const Client& c) const {
  uint64_t t = std::min(c.leave_at, c.next_bg);
  const Link* link = c.link == kNoLink ? nullptr : &links_[c.link];
  if (link != nullptr) {
    t = std::min({t, link->next_flap(), link->next_zombie()});
    if (link->zombie()) return t;  // a half-open client does nothing else
  }
  t = std::min(t, c.next_ping);
  t = std::min(t, c.next_msg);
  if (c.flags & kAckPending) t = std::min(t, c.ack_at);
  if (c.ping_out != 0) t = std::min<uint64_t>(t, c.ping_out + cfg_.pong_timeout_ms * 1000000ull);
  return t;
}

void LoadShard::Impl::Drive(uint32_t local, uint64_t now) {
  Client& c = clients_[local];
  if (now >= c.leave_at) {
    s_->counters_.leaves.Inc();
    Drop(local, static_cast<Leave>(c.leave), false);
    return;
  }
  Link* link = LinkOf(c);
  if (link != nullptr && !Running(now)) {
    // The run is over: no new network events in the grace period, only what is in flight settles.
    link->NoMoreFlap();
    link->NoMoreZombie();
  }
  if (link != nullptr) {
    if (now >= link->next_flap()) {
      // The radio drops: an abrupt close or an RST, and the app reconnects.
      s_->counters_.flaps.Inc();
      link->DrawFlap(now);
      if (link->zombie()) s_->counters_.zombies_unreaped.Inc();
      Close(local, true, link->Uniform() < 0.5);
      return;
    }
    if (now >= link->next_zombie()) {
      // The phone leaves coverage: it stops reading and writing and never closes. Only the gateway's
      // heartbeat timeout can end this connection; OnRecv times how long that takes.
      s_->counters_.zombies.Inc();
      link->BecomeZombie(now);
      link->NoMoreZombie();
      wheel_.Cancel(LinkTimerId(local));
      ArmTimer(local, NextWake(c));
      return;
    }
    if (link->zombie()) {
      ArmTimer(local, NextWake(c));
      return;
    }
  }
  if (now >= c.next_bg) {
    uint64_t before = HeartbeatNs(c);
    c.background ^= 1;
    s_->counters_.bg_switches.Inc();
    uint64_t after = HeartbeatNs(c);
    // The next PING moves with the interval, but not into the past: that would count as generator lag.
    c.next_ping = std::max(now, c.next_ping + after - before);
    c.next_bg = DrawBackgroundSwitch(c, now);
  }
  if (c.ping_out != 0 && now >= c.ping_out + cfg_.pong_timeout_ms * 1000000ull) {
    // No PONG in time: the connection is dead as far as the app can tell (a black hole, a stall, a dead
    // server). Close it and reconnect; an adaptive client also shortens its interval.
    s_->counters_.pong_timeouts.Inc();
    if (cfg_.hb_adaptive) {
      c.hb_ms = std::max<uint32_t>(cfg_.hb_initial_ms, static_cast<uint32_t>(c.hb_ms * cfg_.hb_backoff));
      c.hb_streak = 0;
      s_->counters_.hb_backoffs.Inc();
    }
    s_->counters_.disconnects.Inc();
    Close(local, true);
    return;
  }
  bool running = Running(now);
  if (cfg_.transport == Transport::kWebSocketEcho) {
    DriveEcho(local, now, running);
    return;
  }
  while (c.next_ping <= now) {
    proto::PingBody ping;
    ping.timestamp = c.next_ping;  // intended time: the round trip is measured from it
    Queue(local, 0, ping);
    s_->counters_.pings.Inc();
    s_->lat_.lag.Record(now - c.next_ping);
    s_->lat_.heartbeat_interval.Record(HeartbeatNs(c));
    if (c.ping_out == 0) c.ping_out = now;  // the timeout runs from when it left, not from when it was due
    c.next_ping += HeartbeatNs(c);
  }
  if (cfg_.msg_rate_per_client > 0) {
    double interval_ns = 1e9 / cfg_.msg_rate_per_client;
    while (c.next_msg <= now && running) {
      proto::SendBody send;
      uint32_t seq = c.seq + 1;
      if (!TargetOf(c.index, seq, &send.target_kind, &send.target_id)) {
        // Group messages start once every member has joined: until then this send time passes unused.
        c.next_msg += static_cast<uint64_t>(interval_ns);
        continue;
      }
      c.seq = seq;
      const uint64_t id = MakeMessageId(c.index, seq);
      send.client_msg_id = e_->WireId(id);
      std::memcpy(payload_.data(), &c.next_msg, 8);  // the intended send time rides to the receiver
      c.sent_at[seq % 4] = c.next_msg;
      uint32_t size = PayloadSize();
      send.payload = std::span<const uint8_t>(payload_.data(), size);
      Queue(local, seq, send);
      s_->ledger_.Sent(id);
      s_->counters_.sent.Inc();
      s_->counters_.payload_bytes.Inc(size);
      s_->lat_.lag.Record(now - c.next_msg);
      c.next_msg += static_cast<uint64_t>(interval_ns);
    }
    if (!running) c.next_msg = kNever;
  }
  // A delayed PUSH_ACK goes out when due, or now if this round writes a frame anyway.
  if ((c.flags & kAckPending) && (now >= c.ack_at || (c.flags & kDirty))) QueuePushAck(local);
  ArmTimer(local, NextWake(c));
}

void LoadShard::Impl::QueuePushAck(uint32_t local) {
  Client& c = clients_[local];
  c.flags &= static_cast<uint8_t>(~kAckPending);
  proto::PushAckBody pa;
  pa.seq = c.last_push_seq;
  Queue(local, 0, pa);
  s_->counters_.push_acks.Inc();
}

void LoadShard::Impl::DriveEcho(uint32_t local, uint64_t now, bool running) {
  Client& c = clients_[local];
  while (c.next_ping <= now) {
    // A WebSocket ping whose payload is its intended time: the pong carries it back.
    uint8_t stamp[8];
    std::memcpy(stamp, &c.next_ping, 8);
    QueueWs(local, ws::Opcode::kPing, stamp);
    s_->counters_.pings.Inc();
    s_->lat_.lag.Record(now - c.next_ping);
    s_->lat_.heartbeat_interval.Record(HeartbeatNs(c));
    if (c.ping_out == 0) c.ping_out = now;  // the timeout runs from when it left, not from when it was due
    c.next_ping += HeartbeatNs(c);
  }
  if (cfg_.msg_rate_per_client > 0) {
    double interval_ns = 1e9 / cfg_.msg_rate_per_client;
    while (c.next_msg <= now && running) {
      std::memcpy(payload_.data(), &c.next_msg, 8);
      uint32_t size = PayloadSize();
      QueueWs(local, ws::Opcode::kBinary, std::span<const uint8_t>(payload_.data(), size));
      s_->counters_.sent.Inc();
      s_->counters_.payload_bytes.Inc(size);
      s_->lat_.lag.Record(now - c.next_msg);
      c.next_msg += static_cast<uint64_t>(interval_ns);
    }
    if (!running) c.next_msg = kNever;
  }
  ArmTimer(local, NextWake(c));
}

uint32_t LoadShard::Impl::PayloadSize() {
  const uint32_t lo = std::max<uint32_t>(
      cfg_.transport == Transport::kWebSocketEcho ? 8 : kPayloadHeader, cfg_.payload_min);
  const uint32_t hi = std::max<uint32_t>(lo, cfg_.payload_max);
  switch (cfg_.payload_dist) {
    case PayloadDist::kFixed:
      return hi;
    case PayloadDist::kUniform:
      return std::uniform_int_distribution<uint32_t>(lo, hi)(rng_);
    case PayloadDist::kLognormal: {
      double v = std::lognormal_distribution<double>(std::log(std::max(1.0, cfg_.payload_median)),
                                                     cfg_.payload_sigma)(rng_);
      return static_cast<uint32_t>(std::clamp<double>(std::round(v), lo, hi));
    }
  }
  return hi;
}

template <class Body>
void LoadShard::Impl::Queue(uint32_t local, uint32_t request_id, const Body& body) {
  size_t size = proto::FrameSize(body);
  if (size > scratch_.size()) scratch_.resize(size);
  size_t n = proto::Encode(request_id, body, scratch_);
  if (n == 0) return;
  if (UsesWs()) {
    QueueWs(local, ws::Opcode::kBinary, std::span<const uint8_t>(scratch_.data(), n));
    return;
  }
  WriteRaw(local, scratch_.data(), static_cast<uint32_t>(n));
}

void LoadShard::Impl::QueueWs(uint32_t local, ws::Opcode opcode, std::span<const uint8_t> payload) {
  size_t need = payload.size() + ws::kMaxHeaderSize;
  if (need > ws_scratch_.size()) ws_scratch_.resize(need);
  size_t n = ws::EncodeMaskedFrame(opcode, true, payload, NextMask(), ws_scratch_);
  if (n == 0) return;
  WriteRaw(local, ws_scratch_.data(), static_cast<uint32_t>(n));
}

void LoadShard::Impl::WriteRaw(uint32_t local, const uint8_t* data, uint32_t n) {
  Client& c = clients_[local];
  if (Link* link = LinkOf(c)) {
    // Through the simulated uplink; PumpLink hands the bytes to the socket when they are due.
    uint64_t now = core::MonoNanos();
    link->Push(LinkParams::kUp, now, data, n);
    uint64_t due = link->NextDue(now);
    if (pumping_ == local) {
      // Written while PumpLink hands this client its downlink bytes (a PUSH_ACK, a PONG answer): the
      // pump passes the uplink on when it is done. Pumping again here would hand out the downlink chunk
      // the outer pump is still holding a second time.
    } else if (due <= now) {
      PumpLink(local, now);
    } else {
      ArmLinkTimer(local, due);
    }
    return;
  }
  Write(local, data, n);
}

void LoadShard::Impl::Write(uint32_t local, const uint8_t* data, uint32_t n) {
  Client& c = clients_[local];
  core::OutQueue* q = c.out;
  if (q == nullptr) q = c.out = new core::OutQueue();
  q->Append(data, n);
  if (!(c.flags & kDirty)) {
    c.flags |= kDirty;
    dirty_.push_back(local);
  }
}

void LoadShard::Impl::ArmLinkTimer(uint32_t local, uint64_t at_ns) {
  if (at_ns == kNever) return;
  uint32_t id = LinkTimerId(local);
  uint64_t tick = NsToTick(at_ns);
  if (wheel_.Expiry(id) > tick) wheel_.Arm(id, tick);
}

void LoadShard::Impl::PumpLink(uint32_t local, uint64_t now) {
  Client& c = clients_[local];
  Link* link = LinkOf(c);
  if (link == nullptr) return;
  if (!Live(c.state)) {
    link->DropPending();
    return;
  }
  link->Pop(LinkParams::kUp, now, [&](const uint8_t* data, uint32_t n) { Write(local, data, n); });
  pumping_ = local;
  link->Pop(LinkParams::kDown, now, [&](const uint8_t* data, uint32_t n) {
    State st = clients_[local].state;
    if (Live(st)) Consume(local, data, n);
  });
  pumping_ = kNoLink;
  // A frame the client answered while consuming went into the uplink: pass it on if it is due too.
  link->Pop(LinkParams::kUp, now, [&](const uint8_t* data, uint32_t n) { Write(local, data, n); });
  wheel_.Cancel(LinkTimerId(local));
  ArmLinkTimer(local, link->NextDue(now));
}

void LoadShard::Impl::Flush() {
  for (uint32_t local : dirty_) {
    Client& c = clients_[local];
    c.flags &= static_cast<uint8_t>(~kDirty);
    if (Live(c.state) &&
        !(c.flags & kSendInflight)) {
      SubmitSend(local);
    }
  }
  dirty_.clear();
}

void LoadShard::Impl::SubmitSend(uint32_t local) {
  Client& c = clients_[local];
  core::OutQueue* q = c.out;
  if (q == nullptr) return;
  if (!q->Ready()) return;
  uint32_t len = q->send_len();
  // Fragmentation: a weak link cuts writes into small pieces, so frames reach the gateway split.
  if (const Link* link = LinkOf(c); link != nullptr && link->params().max_segment != 0) {
    len = std::min(len, link->params().max_segment);
  }
  io_uring_sqe* sqe = ring_.Sqe();
  io_uring_prep_send(sqe, c.slot, q->send_data(), len, MSG_NOSIGNAL);
  sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, PackUserData(kOpSend, c.gen, local));
  c.flags |= kSendInflight;
}

void LoadShard::Impl::OnSend(uint32_t local, const io_uring_cqe* cqe) {
  Client& c = clients_[local];
  c.flags &= static_cast<uint8_t>(~kSendInflight);
  if (c.state == State::kClosing) {
    MaybeFinishClose(local);
    return;
  }
  if (cqe->res < 0) {
    if (c.state != State::kLeaving) s_->counters_.disconnects.Inc();
    Close(local, c.state != State::kLeaving || (c.flags & kReconnect));
    return;
  }
  core::OutQueue* q = c.out;
  if (!q->Sent(static_cast<uint32_t>(cqe->res))) {
    SubmitSend(local);
    return;
  }
  core::OutQueue::Free(q);
  c.out = nullptr;
  // The LOGOUT is written: the session is over from the client's side.
  if (c.state == State::kLeaving) Close(local, (c.flags & kReconnect) != 0);
}

void LoadShard::Impl::Drop(uint32_t local, Leave how, bool reconnect) {
  Client& c = clients_[local];
  if (c.state != State::kOnline) {
    Close(local, reconnect, how == Leave::kReset);
    return;
  }
  if (how == Leave::kLogout && cfg_.transport == Transport::kWebSocketEcho) {
    // An echo server knows no LOGOUT: a WebSocket close is the orderly goodbye.
    SendWsClose(local);
    if (!CloseAfterFlush(local, reconnect)) Close(local, reconnect);
    return;
  }
  switch (how) {
    case Leave::kLogout: {
      if (c.flags & kAckPending) QueuePushAck(local);  // an orderly goodbye settles the cursor first
      proto::LogoutBody logout;
      Queue(local, 0, logout);
      s_->counters_.online.Add(-1);
      if (reconnect) {
        c.flags |= kReconnect;
        c.t_down = core::MonoNanos();
      } else {
        c.flags &= static_cast<uint8_t>(~kReconnect);
      }
      c.state = State::kLeaving;
      ArmTimer(local, core::MonoNanos() + kLeaveFallbackNs);
      break;
    }
    case Leave::kClose:
      Close(local, reconnect);
      break;
    case Leave::kReset:
      Close(local, reconnect, true);
      break;
  }
}

void LoadShard::Impl::Close(uint32_t local, bool reconnect, bool reset) {
  Client& c = clients_[local];
  if (c.state == State::kClosing || c.state == State::kDone || c.state == State::kWaiting) return;
  uint64_t now = core::MonoNanos();
  if (c.state == State::kOnline) {
    s_->counters_.online.Add(-1);
    if (reconnect) c.t_down = now;
  }
  if (Live(c.state)) {
    s_->counters_.connected.Add(-1);
  }
  s_->counters_.closes.Inc();
  if (Link* link = LinkOf(c)) {
    if (link->nat_dead()) s_->counters_.nat_blackholes.Inc();
    link->DropPending();
    wheel_.Cancel(LinkTimerId(local));
  }
  c.state = State::kClosing;
  // Reconnects go on in the grace period after the run: a client that lost its connection near the end
  // comes back and SYNCs what it missed, so the ledger can judge it.
  if (reconnect && !finishing_ && !e_->stop().load(std::memory_order_relaxed)) {
    c.flags |= kReconnect;
  } else {
    c.flags &= static_cast<uint8_t>(~kReconnect);
  }
  if (c.slot >= 0 && reset) {
    // An abrupt drop: SO_LINGER {1, 0} makes the close send RST. setsockopt on a direct descriptor is an
    // IORING_OP_URING_CMD (kernel 6.7), prepared by hand as liburing 2.3 has no helper; the receive is
    // cancelled by its user_data (not shutdown, which would send FIN first).
    static const linger kAbort = {1, 0};
    io_uring_sqe* sqe = ring_.Sqe();
    io_uring_prep_rw(IORING_OP_URING_CMD, sqe, c.slot, nullptr, 0, 0);
    sqe->off = kSocketUringOpSetsockopt;  // cmd_op
    sqe->addr = (static_cast<uint64_t>(SO_LINGER) << 32) | SOL_SOCKET;  // level, optname
    sqe->file_index = sizeof(kAbort);  // optlen
    sqe->addr3 = reinterpret_cast<uint64_t>(&kAbort);  // optval
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_HARDLINK;
    io_uring_sqe_set_data64(sqe, 0);
    if (c.flags & kRecvArmed) {
      sqe = ring_.Sqe();
      io_uring_prep_cancel64(sqe, PackUserData(kOpRecv, c.gen, local), 0);
      sqe->flags |= IOSQE_IO_HARDLINK;
      io_uring_sqe_set_data64(sqe, 0);
    }
    if (c.flags & kSendInflight) {
      sqe = ring_.Sqe();
      io_uring_prep_cancel64(sqe, PackUserData(kOpSend, c.gen, local), 0);
      sqe->flags |= IOSQE_IO_HARDLINK;
      io_uring_sqe_set_data64(sqe, 0);
    }
    sqe = ring_.Sqe();
    io_uring_prep_close_direct(sqe, static_cast<unsigned>(c.slot));
    io_uring_sqe_set_data64(sqe, PackUserData(kOpClose, c.gen, local));
    c.flags |= kCloseInflight;
  } else if (c.slot >= 0) {
    // Shutdown ends the outstanding receive and send at once (no per-request cancel lookup), then close.
    io_uring_sqe* sqe = ring_.Sqe();
    io_uring_prep_shutdown(sqe, c.slot, SHUT_RDWR);
    sqe->flags |= IOSQE_FIXED_FILE;
    sqe->flags |= IOSQE_IO_HARDLINK;
    io_uring_sqe_set_data64(sqe, 0);
    sqe = ring_.Sqe();
    io_uring_prep_close_direct(sqe, static_cast<unsigned>(c.slot));
    io_uring_sqe_set_data64(sqe, PackUserData(kOpClose, c.gen, local));
    c.flags |= kCloseInflight;
  }
  MaybeFinishClose(local);
}

void LoadShard::Impl::RunStorms(uint64_t now) {
  while (next_storm_ < cfg_.storms.size() &&
         now >= e_->start_ns() + cfg_.storms[next_storm_].at_ms * 1000000ull) {
    const StormEvent& storm = cfg_.storms[next_storm_++];
    if (!Running(now)) continue;
    // A storm's cohort is chosen by a hash of the client index, so it is the same clients whatever the
    // shard count; churn draws a fresh random cohort every second.
    uint64_t bound = static_cast<uint64_t>(storm.fraction * 10000.0);
    for (uint32_t local = 0; local < clients_.size(); ++local) {
      Client& c = clients_[local];
      if (c.state != State::kOnline) continue;
      uint64_t h = storm.random ? rng_() : (c.index + 1) * 0x9e3779b97f4a7c15ull;
      if ((h >> 32) % 10000 >= bound) continue;
      s_->counters_.storm_drops.Inc();
      Drop(local, storm.leave, true);
    }
  }
}

void LoadShard::Impl::MaybeFinishClose(uint32_t local) {
  Client& c = clients_[local];
  if (c.state != State::kClosing) return;
  if (c.flags & (kRecvArmed | kSendInflight | kCloseInflight)) return;
  if (c.out != nullptr) {
    core::OutQueue::Free(c.out);
    c.out = nullptr;
  }
  if (c.carry != nullptr) {
    std::free(c.carry);
    c.carry = nullptr;
  }
  c.slot = -1;
  c.syncing = 0;
  if (UsesWs()) {
    WsState& w = ws_[local];
    std::free(w.in);
    w.in = nullptr;
    w.assembler.Reset();
    std::vector<uint8_t>().swap(w.message);
  }
  if (finishing_) {
    SetDone(c);
  } else if (c.flags & kReconnect) {
    c.flags &= static_cast<uint8_t>(~kReconnect);
    ScheduleReconnect(local, core::MonoNanos());
  } else {
    NextJoin(local, std::max(core::MonoNanos(), c.leave_at == kNever ? 0 : c.leave_at));
  }
}

void LoadShard::Impl::ScheduleReconnect(uint32_t local, uint64_t now) {
  Client& c = clients_[local];
  if (finishing_ || e_->stop().load(std::memory_order_relaxed)) {
    SetDone(c);
    return;
  }
  // Exponential backoff with full jitter: uniform in [0, min(max, initial * multiplier^attempts)].
  double cap = std::min<double>(cfg_.reconnect_max_ms,
                                cfg_.reconnect_initial_ms * std::pow(cfg_.reconnect_multiplier, c.attempts));
  ++c.attempts;
  uint64_t delay_ns = static_cast<uint64_t>(std::uniform_real_distribution<double>(0, cap)(rng_) * 1e6);
  if (c.t_down == 0) c.t_down = now;
  s_->counters_.reconnects.Inc();
  c.state = State::kWaiting;
  c.t_connect = now + delay_ns;
  ArmTimer(local, c.t_connect);
}

Engine::Engine(EngineConfig config) : config_(std::move(config)) {
  run_id_ = std::random_device{}() | (static_cast<uint64_t>(std::random_device{}()) << 32) | 1;
  const uint32_t devices = std::max<uint32_t>(1, config_.devices_per_user);
  users_ = (config_.clients + devices - 1) / devices;
  if (config_.message_targets == EngineConfig::Targets::kGroups && users_ > 0 && config_.group_count > 0) {
    // Memberships as a compressed table user -> groups, from the arithmetic rule in EngineConfig.
    std::vector<uint32_t> count(users_ + 1, 0);
    for (uint32_t g = 0; g < config_.group_count; ++g) {
      for (uint32_t j = 0; j < GroupMembers(); ++j) ++count[GroupMember(g, j)];
    }
    group_offsets_.assign(users_ + 1, 0);
    for (uint64_t u = 1; u <= users_; ++u) group_offsets_[u] = group_offsets_[u - 1] + count[u];
    user_groups_.resize(group_offsets_[users_]);
    std::vector<uint32_t> fill(group_offsets_.begin(), group_offsets_.end() - 1);
    for (uint32_t g = 0; g < config_.group_count; ++g) {
      for (uint32_t j = 0; j < GroupMembers(); ++j) user_groups_[fill[GroupMember(g, j) - 1]++] = g;
    }
    for (uint64_t u = 1; u <= users_; ++u) users_with_groups_ += count[u] > 0 ? 1 : 0;
  }
  if (config_.joins.empty()) {
    config_.joins.push_back(Wave{0, config_.clients, 0, config_.connect_rate, Leave::kLogout});
  }
  // The shards exist from the start (idle until Run) so a metrics endpoint may read them at any time.
  for (uint32_t i = 0; i < config_.shards; ++i) shards_.push_back(std::make_unique<LoadShard>(this, i));
}
Engine::~Engine() = default;

namespace {
uint64_t ResidentBytes() {
  long pages = 0, resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  int n = std::fscanf(f, "%ld %ld", &pages, &resident);
  std::fclose(f);
  return n == 2 ? static_cast<uint64_t>(resident) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE)) : 0;
}
}  // namespace

absl::Status Engine::Run(uint64_t live_interval_ms) {
  bool live_line = live_interval_ms > 0;
  rss_start_ = rss_peak_ = ResidentBytes();
  if (config_.targets.empty()) return absl::InvalidArgumentError("no target");
  start_ns_ = core::MonoNanos() + 50000000ull;
  end_ns_ = start_ns_ + config_.duration_ms * 1000000ull;
  for (auto& s : shards_) s->Start();
  uint64_t last_sent = 0, last_delivered = 0, last_connects = 0;
  uint64_t next = start_ns_ + live_interval_ms * 1000000ull;
  bool done = false;
  while (!done) {
    usleep(100000);
    uint64_t now = core::MonoNanos();
    done = true;
    int64_t online_now = 0;
    for (auto& s : shards_) {
      done = done && s->finished();
      online_now += s->counters().online.Get();
    }
    online_peak_ = std::max<uint64_t>(online_peak_, static_cast<uint64_t>(std::max<int64_t>(0, online_now)));
    rss_peak_ = std::max(rss_peak_, ResidentBytes());
    if (live_line && now >= next) {
      next += live_interval_ms * 1000000ull;
      uint64_t connected = 0, online = 0, sent = 0, delivered = 0, errors = 0, reconnects = 0, connects = 0;
      Histogram e2e;
      for (auto& s : shards_) {
        const ShardCounters& c = s->counters();
        connected += static_cast<uint64_t>(std::max<int64_t>(0, c.connected.Get()));
        online += static_cast<uint64_t>(std::max<int64_t>(0, c.online.Get()));
        sent += c.sent.Get();
        delivered += c.delivered.Get();
        errors += c.connect_errors.Get() + c.login_failures.Get() + c.protocol_errors.Get();
        reconnects += c.reconnects.Get();
        connects += c.connects.Get();
        s->CopyLive(&e2e);
      }
      std::fprintf(stderr,
                   "t=%5.1fs connected=%lu online=%lu connect/s=%lu msg/s sent=%lu delivered=%lu e2e p50=%.2fms "
                   "p99=%.2fms errors=%lu reconnects=%lu\n",
                   static_cast<double>(now - start_ns_) / 1e9, connected, online,
                   static_cast<unsigned long>(static_cast<double>(connects - last_connects) * 1000.0 / live_interval_ms),
                   static_cast<unsigned long>(static_cast<double>(sent - last_sent) * 1000.0 / live_interval_ms),
                   static_cast<unsigned long>(static_cast<double>(delivered - last_delivered) * 1000.0 / live_interval_ms), static_cast<double>(e2e.ValueAtPercentile(50)) / 1e6,
                   static_cast<double>(e2e.ValueAtPercentile(99)) / 1e6, errors, reconnects);
      last_sent = sent;
      last_delivered = delivered;
      last_connects = connects;
    }
  }
  for (auto& s : shards_) s->Join();
  for (auto& s : shards_) {
    if (!s->status().ok()) return s->status();
  }
  return absl::OkStatus();
}

absl::Status ParseTarget(const std::string& text, Destination* out) {
  std::string host;
  std::string port;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return absl::InvalidArgumentError(absl::StrCat("target '", text, "': expected [v6-address]:port"));
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("target '", text, "': expected host:port"));
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  char* end = nullptr;
  long p = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p <= 0 || p > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("target '", text, "': bad port '", port, "'"));
  }
  if (host == "localhost") host = "127.0.0.1";
  std::memset(&out->addr, 0, sizeof(out->addr));
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out->addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out->addr);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(p));
    out->len = sizeof(*v4);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(p));
    out->len = sizeof(*v6);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("target '", text, "': '", host, "' is not an IP address"));
  }
  out->text = text;
  return absl::OkStatus();
}

}  // namespace longlink::loadgen
