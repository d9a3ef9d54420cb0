// The inside of one load generator shard (LoadShard::Impl): the thread's ring, buffer ring, timer wheel and
// its share of the simulated clients, each a compact state machine driven by completions and timers.
//
// The class is declared once here and its methods are defined by concern, each file one part of a client's
// life:
//   load_shard.cc  the shard's run: setup, the event loop, completion dispatch, timers, joins and storms
//   client_io.cc   the socket: connect, receive, send, the weak-network link pump, close and reconnect
//   ws_client.cc   the WebSocket client: upgrade, frames, the close handshake
//   session.cc     the longlink session: LOGIN, the server's frames, SYNC, PUSH and PUSH_ACK, leaving
//   workload.cc    what an online client does on its own schedule: heartbeats, messages and their
//                  targets, group setup, payload sizes, background switches and link events
// Internal to the engine's files; the public face is LoadShard and Engine in engine.h.
#pragma once

#include <liburing.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <random>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "core/buf_ring.h"
#include "core/bytes.h"
#include "core/ring.h"
#include "core/timer_wheel.h"
#include "loadgen/engine.h"
#include "loadgen/histogram.h"
#include "loadgen/netsim.h"
#include "protocol/frame.h"
#include "protocol/websocket.h"
#include "protocol/ws_upgrade.h"

namespace longlink::loadgen {

class LoadShard::Impl {
 public:
  explicit Impl(LoadShard* shard) : s_(shard), e_(shard->engine_), cfg_(shard->engine_->config()) {}

  absl::Status Setup();
  void Loop();
  void PublishLive();

  std::mutex live_mu_;
  Histogram live_e2e_;
  Histogram live_heartbeat_;
  Histogram live_lag_;

 private:
  // The op of a request, in its user_data (core::PackUserData). kOpIgnore completions are not looked at.
  enum Op : uint8_t { kOpIgnore = 0, kOpSocket, kOpConnect, kOpRecv, kOpSend, kOpClose };

  // kUpgrading: a WebSocket client waits for the server's 101. kLeaving: LOGOUT is on its way; the client
  // closes once it is written (or the server closes first).
  enum class State : uint8_t { kWaiting, kConnecting, kUpgrading, kLoggingIn, kOnline, kLeaving, kClosing, kDone };

  // A connection is open and the client reads it.
  static bool Live(State s) {
    return s == State::kUpgrading || s == State::kLoggingIn || s == State::kOnline || s == State::kLeaving;
  }

  enum Flags : uint8_t {
    kRecvArmed = 1,
    kSendInflight = 2,
    kDirty = 4,
    kCloseInflight = 8,
    kReconnect = 16,
    kAckPending = 32,  // with ack_delay: the cursor moved since the last PUSH_ACK; it is due at ack_at
  };

  static constexpr uint64_t kMaxWsMessage = 16u << 20;
  static constexpr uint32_t kNoLink = 0xffffffffu;
  static constexpr uint64_t kLeaveFallbackNs = 2000000000ull;  // a LOGOUT that cannot be written in 2 s is dropped
  static constexpr uint32_t kSyncLimit = 100;
  // A generated payload starts with the intended send time (8 bytes) and the run id (8 bytes).
  static constexpr uint32_t kPayloadHeader = 16;
  // request_id of group setup requests: this tag, plus the group's position in the user's list.
  static constexpr uint32_t kGroupRequest = 0x40000000u;
  static constexpr uint64_t kTickNs = 1000000;  // 1 ms timer ticks
  static constexpr uint32_t kInitialBuffers = 64;
  static constexpr uint64_t kSocketUringOpSetsockopt = 3;  // SOCKET_URING_OP_SETSOCKOPT (kernel 6.7)

  static uint64_t NsToTick(uint64_t ns) { return (ns + kTickNs - 1) / kTickNs; }

  // Per-client state, kept compact: a million of them must fit comfortably (about 200 bytes each, plus a
  // Link for clients on a simulated weak network).
  struct Client {
    uint32_t index;  // global client index: the ledger's device identity
    uint32_t gen;
    int32_t slot;
    State state;
    uint8_t flags;
    uint16_t attempts;
    uint32_t seq;             // last message sequence assigned
    uint32_t hb_ms;           // heartbeat interval in the foreground: the server's, or the adaptive one
    uint32_t hb_timeout_ms;   // the server's heartbeat timeout, from LOGIN_ACK
    uint32_t link;            // index into links_, or kNoLink
    uint8_t background;       // the app is in the background: it beats bg_multiplier times less often
    uint8_t hb_streak;        // PONGs in a row since the adaptive interval last changed
    uint8_t syncing;          // a SYNC is outstanding
    uint8_t leave;            // how the current leave_at takes the client down (Leave)
    uint8_t groups_done;      // this user's group memberships are in place (first device only)
    uint8_t hop;              // gateways moved on from after failures: the target is (index + hop) % targets
    uint16_t groups_pending;  // GROUP_CREATE/JOIN requests not answered yet
    uint64_t last_push_seq;   // highest inbox seq up to which every PUSH arrived (the PUSH_ACK cursor)
    uint64_t seen_above;      // bit i: seq last_push_seq + 2 + i arrived already (out of order)
    uint64_t high_seen;       // highest inbox seq any PUSH carried
    uint64_t sync_from;       // the cursor when the current chain of SYNCs began
    uint64_t t_connect;       // intended time of the current connect attempt
    uint64_t t_login;         // when LOGIN was queued
    uint64_t t_down;          // when the connection was lost (for reconnect time), 0 if none
    uint64_t t_sync;          // when the outstanding SYNC was sent
    uint64_t next_ping;       // intended time of the next PING
    uint64_t next_msg;        // intended time of the next SEND
    uint64_t ping_out;        // when the oldest unanswered PING was sent, 0 if none
    uint64_t leave_at;        // when the scenario takes this client down, kNever if it does not
    uint64_t next_bg;         // next foreground/background switch, kNever if none
    uint64_t ack_at;          // with ack_delay: when a pending PUSH_ACK goes out alone at the latest
    uint64_t sent_at[4];      // intended times of the last SENDs, by seq % 4, for SEND -> SEND_ACK latency
    core::Carry* carry;
    core::OutQueue* out;
  };

  // load_shard.cc: the run.
  void HandleCqe(const io_uring_cqe* cqe);
  void OnTimer(uint32_t id);
  // Waits for the client's next join after `after`, or finishes it.
  void NextJoin(uint32_t local, uint64_t after);
  void RunStorms(uint64_t now);

  // client_io.cc: the socket.
  void StartConnect(uint32_t local);
  void OnSocket(uint32_t local, const io_uring_cqe* cqe);
  void OnConnect(uint32_t local, const io_uring_cqe* cqe);
  void ArmRecv(uint32_t local);
  void OnRecv(uint32_t local, const io_uring_cqe* cqe);
  void Consume(uint32_t local, const uint8_t* data, uint32_t len);
  void WriteRaw(uint32_t local, const uint8_t* data, uint32_t n);
  void Write(uint32_t local, const uint8_t* data, uint32_t n);
  // The link's timer: never moved later than it already is.
  void ArmLinkTimer(uint32_t local, uint64_t at_ns);
  void PumpLink(uint32_t local, uint64_t now);
  void Flush();
  void SubmitSend(uint32_t local);
  void OnSend(uint32_t local, const io_uring_cqe* cqe);
  // True if the client must wait for its output before closing (it is then kLeaving).
  bool CloseAfterFlush(uint32_t local, bool reconnect);
  // An online client starts leaving (LOGOUT or a close queued): no longer online, maybe reconnecting later.
  void BeginLeaving(uint32_t local, bool reconnect);
  void Close(uint32_t local, bool reconnect, bool reset = false);
  void MaybeFinishClose(uint32_t local);
  void ScheduleReconnect(uint32_t local, uint64_t now);

  // ws_client.cc: WebSocket transports: the upgrade answer, then frames; each binary message is one longlink
  // frame (or, for ws-echo, an echo to time).
  void SendUpgrade(uint32_t local);
  void ConsumeWs(uint32_t local, const uint8_t* data, uint32_t len);
  bool OnWsFrame(uint32_t local, const protocol::ws::FrameHeader& h, std::span<const uint8_t> payload);
  void OnWsMessage(uint32_t local, std::span<const uint8_t> message);
  void OnUpgraded(uint32_t local, uint64_t now);
  void SendWsClose(uint32_t local);
  void QueueWs(uint32_t local, protocol::ws::Opcode opcode, std::span<const uint8_t> payload);

  // session.cc: the longlink session.
  void SendLogin(uint32_t local, uint64_t now);
  // Logged in (or, for ws-echo, upgraded): counts it and starts the heartbeat and message schedules.
  void BecomeOnline(uint32_t local, uint64_t now);
  void HandleFrame(uint32_t local, const protocol::Header& h, std::span<const uint8_t> body);
  void OnPush(uint32_t local, const protocol::PushBody& push, uint64_t now);
  void QueuePushAck(uint32_t local);
  // page: the next page of the same answer (has_more), rather than a new round.
  void SendSync(uint32_t local, uint64_t after, uint64_t now, bool page = false);
  // Takes a client down the way the scenario says (LOGOUT, close or RST), reconnecting or not.
  void Drop(uint32_t local, Leave how, bool reconnect);
  template <class Body>
  void Queue(uint32_t local, uint32_t request_id, const Body& body);

  // workload.cc: the client's own schedule.
  void Drive(uint32_t local, uint64_t now);
  void PingSent(Client& c, uint64_t now);
  void DriveEcho(uint32_t local, uint64_t now, bool running);
  uint64_t NextWake(const Client& c) const;
  uint64_t DrawBackgroundSwitch(const Client& c, uint64_t now);
  // The target of message `seq` of client `index`: a function of the two, so acks can recompute it.
  // False when the message cannot go yet (groups not set up).
  bool TargetOf(uint32_t index, uint32_t seq, uint8_t* kind, uint64_t* id) const;
  // Every device that must receive message `seq` of client `index`, into recipients_.
  void RecipientsOf(uint32_t index, uint32_t seq);
  void AddDevicesOf(uint64_t user);
  void StartGroupSetup(uint32_t local);
  void OnGroupReply(uint32_t local, uint32_t request_id, const protocol::GroupReplyBody& reply);
  uint32_t PayloadSize();

  void ArmTimer(uint32_t local, uint64_t at_ns) { wheel_.Arm(local, NsToTick(at_ns)); }
  // The gateway a client connects to: spread by index, moved one on after each failure (a client whose
  // gateway went away reconnects to another one, as a mobile client behind a load balancer does).
  const Destination& TargetFor(const Client& c) const {
    return cfg_.targets[(c.index + c.hop) % cfg_.targets.size()];
  }
  uint64_t UserOf(uint32_t index) const { return index / cfg_.devices_per_user + 1; }
  // A user or group number of the engine (1-based) as the gateway knows it (auth.first_user_id).
  uint64_t Wire(uint64_t id) const { return id + cfg_.first_user_id - 1; }
  uint32_t DeviceOf(uint32_t index) const { return index % cfg_.devices_per_user + 1; }
  bool Running(uint64_t now) const { return now < e_->end_ns() && !e_->stop().load(std::memory_order_relaxed); }
  // The interval between PINGs now: longer in the background, but never past 80% of the server's timeout
  // (a client that knows the timeout does not get itself reaped).
  uint64_t HeartbeatNs(const Client& c) const {
    double ms = static_cast<double>(c.hb_ms) * (c.background ? cfg_.bg_multiplier : 1.0);
    if (c.hb_timeout_ms != 0) ms = std::min(ms, c.hb_timeout_ms * 0.8);
    return static_cast<uint64_t>(std::max(50.0, ms) * 1e6);
  }
  Link* LinkOf(const Client& c) { return c.link == kNoLink ? nullptr : &links_[c.link]; }
  bool UsesWs() const { return cfg_.transport != Transport::kTcp; }
  protocol::ws::MaskKey NextMask() {
    uint64_t r = rng_();
    return protocol::ws::MaskKey{static_cast<uint8_t>(r), static_cast<uint8_t>(r >> 8), static_cast<uint8_t>(r >> 16),
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
    protocol::ws::MessageAssembler assembler{kMaxWsMessage, /*accept_text=*/true};
    core::Carry* in = nullptr;     // bytes not parsed yet (the upgrade answer, partial frames)
    std::vector<uint8_t> message;  // a fragmented message being assembled
    protocol::ws::ClientKey key{};
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

// Encodes a longlink frame and hands it to the client's transport. A template over the frame bodies, so it
// lives here for every file that sends a frame.
template <class Body>
void LoadShard::Impl::Queue(uint32_t local, uint32_t request_id, const Body& body) {
  size_t size = protocol::FrameSize(body);
  if (size > scratch_.size()) scratch_.resize(size);
  size_t n = protocol::Encode(request_id, body, scratch_);
  if (n == 0) return;
  if (UsesWs()) {
    QueueWs(local, protocol::ws::Opcode::kBinary, std::span<const uint8_t>(scratch_.data(), n));
    return;
  }
  WriteRaw(local, scratch_.data(), static_cast<uint32_t>(n));
}

}  // namespace longlink::loadgen
