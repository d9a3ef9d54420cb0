// One gateway shard: a thread with its own io_uring, listener, buffer ring, timer wheel, connection table,
// registry and backend instance. Everything here is touched only by the shard's thread; other shards reach
// it through the ShardGrid, threads outside the shards through its Mailbox.
//
// The path of one message: multishot accept (direct descriptor) -> Conn -> multishot recv into the buffer
// ring -> SplitFrames cuts the stream (or, on the WebSocket listener, shard_ws.cc unwraps messages) ->
// HandleFrame (login, heartbeat) -> backend -> DeliverLocal on the owner shard -> Enqueue into the
// connection's output queue -> FlushSends batches the round's sends.
//
// The class is defined over several files, one per part of that path: shard.cc (thread, loop, completions,
// timers, drain), shard_io.cc (accept, receive, send, close), shard_session.cc (frames, login, moving a
// connection to its owner shard), shard_deliver.cc (pushes, kicks, cross-shard and mailbox calls) and
// shard_ws.cc (the WebSocket transport).
//
// Login moves a connection to its user's owner shard (hash of the user id) by passing the direct
// descriptor with IORING_MSG_SEND_FD, so all devices of a user, and later the user's inbox, live on one
// shard: pushing to a user touches only that shard and needs no lock.
#pragma once

#include <array>
#include <atomic>
#include <cassert>
#include <cstdint>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "core/buf_ring.h"
#include "core/mailbox.h"
#include "core/ring.h"
#include "core/shard_grid.h"
#include "core/timer_wheel.h"
#include "gateway/backend/backend.h"
#include "gateway/config.h"
#include "gateway/conn.h"
#include "gateway/login_guard.h"
#include "gateway/stats.h"
#include "protocol/websocket.h"

namespace longlink::gateway {

// State shared by all shards of one gateway process, read-only after start except where noted.
struct Shared {
  explicit Shared(uint32_t shards) : idle(new std::atomic<bool>[shards]) {
    for (uint32_t i = 0; i < shards; ++i) idle[i].store(false, std::memory_order_relaxed);
  }
  const Config* config = nullptr;
  core::ShardGrid* grid = nullptr;
  BackendFactory* backend_factory = nullptr;
  std::atomic<bool> draining{false};     // set by the signal handler thread
  std::atomic<uint32_t> started{0};      // shards that finished setup
  std::atomic<uint32_t> failed{0};       // shards whose setup failed
  // While draining, each shard publishes every round whether its backend is idle; connections close, and
  // loops end, once every shard is (see Shard::DrainRound).
  std::unique_ptr<std::atomic<bool>[]> idle;
};

class Shard final : public GatewayPort {
 public:
  // ws_listen_fd is -1 when --ws-port is off.
  Shard(uint32_t id, Shared* shared, int listen_fd, int ws_listen_fd);
  ~Shard() override;

  void Start();  // spawns the thread
  void Join();
  const ShardStats& stats() const { return stats_; }
  const absl::Status& setup_status() const { return setup_status_; }
  uint32_t id() const { return id_; }
  // Any thread: runs fn on this shard's thread with its backend (core/mailbox.h). False once stopped.
  bool RunOnShard(absl::AnyInvocable<void(Backend&) &&> fn);
  // The scrape thread: the depth of the queues into this shard, which it reads off the grid.
  void SetQueueDepth(size_t d) { stats_.cross_shard_queue_depth.Set(static_cast<int64_t>(d)); }
  // The scrape thread: the backend's statistics (nullptr before the shard started).
  const Backend* backend() const { return backend_.get(); }

  // GatewayPort
  uint32_t shard_id() const override { return id_; }
  uint32_t shard_count() const override { return shards_; }
  uint32_t OwnerShard(uint64_t user_id) const override;
  bool SendTo(const ConnRef& conn, std::span<const uint8_t> frame) override;
  void PushToUser(uint64_t user_id, uint32_t device_id, std::span<const uint8_t> frame) override;
  void PushToUsers(std::span<const uint64_t> user_ids, std::span<const uint8_t> frame) override;
  void Kick(uint64_t user_id, uint32_t device_id, protocol::KickReason reason, std::string_view message) override;
  void ObserveBackendLatency(double seconds) override { stats_.backend_latency_seconds.Observe(seconds); }
  void ObservePushDelaySeconds(double seconds) override { stats_.push_delay_seconds.Observe(seconds); }
  void SubmitFsync(int fd, uint32_t token) override;

 protected:
  void PostCall(uint32_t shard, uint16_t kind, const void* body, size_t size, ShardPayload* payload) override;

 private:
  enum Op : uint8_t {
    kOpIgnore = 0,
    kOpAccept,
    kOpAcceptWs,
    kOpRecv,
    kOpSend,
    kOpClose,
    kOpWake,
    kOpMigrateOut,
    kOpMigrateIn,
    kOpFsync,    // slot: the backend's token
    kOpMailbox,  // the read of the mailbox's eventfd
    kOpPeerAddrCheck,   // FIXED_FD_INSTALL to check a LOGIN's source address
    kOpPeerAddrFailed,  // FIXED_FD_INSTALL to count a failed login against its source address
  };
  // Kinds of core::ShardMessage: the gateway's own (bodies in shard_deliver.cc), then backend calls
  // (kBackendCall + the backend's kind).
  enum MsgKind : uint16_t { kMsgMigrate = 1, kMsgPush, kMsgPushMany, kMsgKick, kBackendCall = 0x100 };
  enum TimerKind : uint32_t { kTimerSession = 0, kTimerWrite = 1 };

  struct OutgoingMigration {
    uint32_t owner;
    uint32_t request_id;
    uint32_t token;
    uint64_t start_ns;
  };
  // A login moving here: the descriptor (msg_ring) and the login record (grid) arrive in either order.
  struct MigrateMsg {
    uint64_t user;
    uint64_t start_ns;  // LOGIN received, for the login latency; the top bit says the connection is WebSocket
    uint32_t device;
    uint32_t request_id;
    uint32_t token_platform;  // 24 bits pairing the record with its descriptor | the platform << 24
    uint32_t expiry;          // --auth=token: the token's expiry, Unix seconds
  };
  static constexpr uint64_t kMigrateWsBit = uint64_t{1} << 63;  // monotonic nanoseconds stay far below
  struct PendingMigration {
    int32_t slot = -1;           // fixed-file slot on this shard once the descriptor arrived
    bool have_record = false;
    MigrateMsg record{};
    Carry* carry = nullptr;  // bytes that followed LOGIN, owned by the sending shard
    uint16_t from = 0;
  };

  // One listening socket (TCP longlink or WebSocket) and the state of the accept armed on it.
  struct Acceptor {
    int fd = -1;
    Op op = kOpAccept;
    Transport transport = Transport::kTcp;
    bool armed = false;
    bool multishot = false;    // the armed accept is multishot
    bool cancel_sent = false;  // the multishot accept is being replaced by one-shot ones
  };
  // A fragmented WebSocket message being put together; exists only between its first and last fragment.
  struct WsMessage {
    explicit WsMessage(const protocol::ws::MessageAssembler& a) : assembler(a) {}
    protocol::ws::MessageAssembler assembler;
    std::vector<uint8_t> data;
  };

  void Run();
  absl::Status Setup();
  void Loop();
  void HandleCqe(const io_uring_cqe* cqe);

  void ArmAccept();
  void ArmAcceptOn(Acceptor& a);
  void OnAccept(const io_uring_cqe* cqe, Acceptor& a);
  // Book-keeping of fixed-file slots in use (accepted or moved in), which gates accepting.
  void SlotTaken();
  void SlotFreed();
  void ArmRecv(uint32_t id);
  void OnRecv(uint32_t id, const io_uring_cqe* cqe);
  void OnSend(uint32_t id, const io_uring_cqe* cqe);
  void OnClose(uint32_t id);

  // Parses bytes received on a connection. Stops early if the connection closes or starts moving shards.
  // data is writable: WebSocket payloads are unmasked in place.
  void Consume(uint32_t id, uint8_t* data, uint32_t len);
  // Parsing stopped with bytes left: a connection moving shards takes them along.
  void KeepForMigration(uint32_t id, std::span<const uint8_t> rest);

  // WebSocket transport (shard_ws.cc).
  void ConsumeUpgrade(uint32_t id, uint8_t* data, uint32_t len);
  void ConsumeWsFrames(uint32_t id, uint8_t* data, uint32_t len);
  bool HandleWsFrame(uint32_t id, const protocol::ws::FrameHeader& h, std::span<uint8_t> payload);
  bool HandleWsControl(uint32_t id, uint8_t opcode, std::span<const uint8_t> payload);
  bool HandleWsMessage(uint32_t id, protocol::ws::Opcode opcode, std::span<const uint8_t> message);
  // The MessageAssembler of a connection: its fragmented message's, or `fresh` between messages.
  protocol::ws::MessageAssembler& WsAssembler(uint32_t id, protocol::ws::MessageAssembler& fresh);
  void WsReject(uint32_t id, uint16_t http_status, CloseReason reason, size_t result);
  // --ws-allowed-origins: a browser's Origin against the list, or (by default) against the Host header.
  bool OriginAllowed(std::string_view origin, std::string_view host) const;
  void WsFail(uint32_t id, protocol::ws::Error e);
  void WsFailWith(uint32_t id, uint16_t code, CloseReason reason);
  void WsSendClose(uint32_t id, uint16_t code, std::string_view reason);
  static uint16_t WsCloseCodeFor(CloseReason reason);
  // The echo path echoes text too: it stands in for any WebSocket echo server in benchmarks.
  bool WsAcceptsText(uint32_t id) { return cfg_.ws_accept_text || (conns_[id].ws & kWsEcho); }
  size_t TransportOf(uint32_t id) { return (conns_[id].ws & kWsTransport) ? 1 : 0; }
  // Handles one whole frame. Returns false if parsing must stop (closed or moving).
  bool HandleFrame(uint32_t id, const protocol::Header& h, std::span<const uint8_t> body);
  bool HandleLogin(uint32_t id, const protocol::Header& h, std::span<const uint8_t> body);
  // The login guard (login_guard.h): learns a connection's source address (async), to check a LOGIN or to
  // count a failed one.
  void LearnAddress(uint32_t id, Op purpose);
  void OnPeerAddress(const io_uring_cqe* cqe, Op purpose);
  void LoginFailed(uint32_t id);
  void CompleteLogin(uint32_t id, uint32_t request_id, uint64_t start_ns);
  void StartMigration(uint32_t id, uint32_t owner, uint32_t request_id, uint64_t start_ns);
  void OnMigrateOut(uint32_t id, const io_uring_cqe* cqe);
  void OnMigrateIn(const io_uring_cqe* cqe);
  void FinishMigrateIn(uint64_t key, PendingMigration& p);

  template <class Body>
  bool EnqueueFrame(uint32_t id, uint32_t request_id, const Body& body);
  // Queues one longlink frame; on a WebSocket connection wrapped as one binary message.
  bool Enqueue(uint32_t id, std::span<const uint8_t> bytes);
  // Queues prefix + bytes as they are. `frame` says bytes is a longlink frame (for frames_sent_total).
  bool EnqueueRaw(uint32_t id, std::span<const uint8_t> prefix, std::span<const uint8_t> bytes, bool frame);
  void FlushSends();
  void SubmitSend(uint32_t id);

  void SendError(uint32_t id, uint32_t request_id, protocol::ErrorCode code, std::string_view message);
  // Closes at once: cancels the connection's requests and closes the descriptor.
  void Close(uint32_t id, CloseReason reason);
  // Stops reading and closes once queued output is flushed (bounded by the write timeout).
  void CloseAfterFlush(uint32_t id, CloseReason reason);
  void MaybeFree(uint32_t id);
  void EndSession(uint32_t id);

  void ArmMailbox();
  void OnMailbox(const io_uring_cqe* cqe);
  void DeliverLocal(uint64_t user_id, uint32_t device_id, std::span<const uint8_t> frame);
  void KickLocal(uint64_t user_id, uint32_t device_id, protocol::KickReason reason, std::string_view message);
  void OnShardMessage(const core::ShardMessage& m);
  void Post(uint32_t to, core::ShardMessage m);
  // Hands a payload that came with a message of `kind` back to the shard that allocated it.
  void Release(uint16_t to, uint16_t kind, void* owned);

  void OnTimer(uint32_t timer_id);
  // When an active session's timer is due: its heartbeat deadline, or earlier its token's expiry + grace.
  uint64_t SessionDeadlineTick(uint32_t id);
  // A second LOGIN on a live session: a token refresh (same user and device, --auth=token) or an error.
  bool HandleRelogin(uint32_t id, const protocol::Header& h, std::span<const uint8_t> body);
  uint64_t NowTick() const;
  uint32_t TimerId(uint32_t id, TimerKind k) const { return id * 2 + k; }
  Session SessionOf(uint32_t id);

  void StartDrain();
  // Each round while draining: publishes whether the backend is idle, closes the connections once every
  // shard's backend is (or the deadline passed). True when the loop may end.
  bool DrainRound();
  bool AllShardsIdle() const;
  void SendGoaway(uint32_t id);
  // Only the shard's own thread may touch its state; debug builds check it at the entry points.
  void AssertOwner() const { assert(std::this_thread::get_id() == owner_); }
  // Runs every couple of seconds from the loop: cheap, bounded chores.
  void Housekeeping();

  const uint32_t id_;
  Shared* const shared_;
  const Config& cfg_;
  const uint32_t shards_;
  std::thread thread_;
  std::thread::id owner_;
  absl::Status setup_status_;

  core::Ring ring_;
  core::BufRing bufs_;
  core::TimerWheel wheel_;
  core::ShardOutbox outbox_;
  core::Mailbox mailbox_;
  absl::Status mailbox_init_;
  uint64_t mailbox_buf_ = 0;  // the eventfd read lands here
  bool mailbox_armed_ = false;
  std::vector<core::Mailbox::Call> mailbox_calls_;
  ConnTable conns_;
  Registry registry_;
  std::unique_ptr<Backend> backend_;
  ShardStats stats_;

  std::vector<uint32_t> dirty_;         // connections with output to flush this round
  std::vector<uint32_t> starved_;       // connections whose recv must be re-armed after -ENOBUFS
  absl::flat_hash_map<uint64_t, PendingMigration> migrations_in_;
  absl::flat_hash_map<uint32_t, OutgoingMigration> outgoing_;
  absl::flat_hash_map<uint32_t, std::unique_ptr<WsMessage>> ws_messages_;  // conns with kWsFragmented
  // A LOGIN waiting for its source address to be checked (kCheckingAddress).
  struct PendingLogin {
    protocol::Header header;
    std::vector<uint8_t> body;
  };
  absl::flat_hash_map<uint32_t, PendingLogin> pending_logins_;
  LoginGuard login_guard_;
  uint32_t next_migration_ = 0;
  uint64_t next_session_ = 0;
  uint64_t rng_state_;

  std::array<Acceptor, 2> acceptors_;  // [0] TCP, [1] WebSocket (fd -1 when off)
  bool accept_paused_ = false;  // fixed-file table full
  uint32_t slots_used_ = 0;          // fixed-file slots holding a descriptor
  bool draining_ = false;
  bool drain_close_pending_ = false;  // GOAWAY sent; connections close once every backend is idle
  bool drain_forced_ = false;         // the drain deadline passed and every connection was closed
  uint64_t drain_deadline_tick_ = 0;
  uint64_t next_housekeeping_tick_ = 0;
  uint32_t tick_ms_;
  std::vector<uint8_t> scratch_;
};

template <class Body>
bool Shard::EnqueueFrame(uint32_t id, uint32_t request_id, const Body& body) {
  size_t size = protocol::FrameSize(body);
  if (size > scratch_.size()) scratch_.resize(size);
  size_t n = protocol::Encode(request_id, body, scratch_);
  if (n == 0) return false;
  return Enqueue(id, {scratch_.data(), n});
}

}  // namespace longlink::gateway
