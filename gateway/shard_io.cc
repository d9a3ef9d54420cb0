// Shard: connections' I/O. Accepting into the fixed-file table, receiving into the shard's buffer ring and
// cutting the byte stream into frames, queueing and sending output, and closing.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/clock.h"
#include "core/frame_stream.h"
#include "core/user_data.h"
#include "gateway/shard.h"

namespace longlink::gateway {

using core::PackUserData;
namespace proto = longlink::protocol;

namespace {

// ArmAccept uses a multishot accept only while more fixed-file slots than this are free.
constexpr uint32_t kMultishotAcceptMinFreeSlots = 4096;
// Receive buffers the shard's ring grows by each time receives find it empty (up to --recv-buffers).
constexpr uint32_t kRecvBufferGrowth = 64;

}  // namespace

// ---- accept ----

void Shard::ArmAccept() {
  for (Acceptor& a : acceptors_) ArmAcceptOn(a);
}

void Shard::ArmAcceptOn(Acceptor& a) {
  if (a.armed || draining_ || a.fd < 0) return;
  // The kernel takes a connection off the backlog before it looks for a fixed-file slot, and closes it if
  // the table is full; so accept runs only while a slot is free, and pending connections wait in the
  // backlog otherwise. A multishot accept drains the whole backlog at once, so it runs only while more
  // slots are free than the backlog holds (net.core.somaxconn, 4096 by default); nearer the limit each
  // accept is one-shot.
  uint32_t free_slots = cfg_.max_conns_per_shard - std::min(slots_used_, cfg_.max_conns_per_shard);
  if (free_slots == 0) {
    if (!accept_paused_) stats_.fixed_table_full_total.Inc();
    accept_paused_ = true;
    return;
  }
  accept_paused_ = false;
  a.multishot = free_slots > kMultishotAcceptMinFreeSlots;
  io_uring_sqe* sqe = ring_.Sqe();
  if (a.multishot) {
    // Multishot accept straight into the fixed-file table (kernel 5.19).
    io_uring_prep_multishot_accept_direct(sqe, a.fd, nullptr, nullptr, 0);
  } else {
    // One-shot accept into a kernel-picked slot (kernel 5.19). liburing 2.3 adds 1 to the index, as its
    // multishot helper does, so this asks for IORING_FILE_INDEX_ALLOC.
    io_uring_prep_accept_direct(sqe, a.fd, nullptr, nullptr, 0, IORING_FILE_INDEX_ALLOC - 1);
  }
  io_uring_sqe_set_data64(sqe, PackUserData(a.op, 0, 0));
  a.armed = true;
}

void Shard::SlotTaken() {
  ++slots_used_;
  uint32_t free_slots = cfg_.max_conns_per_shard - std::min(slots_used_, cfg_.max_conns_per_shard);
  for (Acceptor& a : acceptors_) {
    if (a.armed && a.multishot && !a.cancel_sent && free_slots <= kMultishotAcceptMinFreeSlots) {
      // Near the limit: replace the multishot accept by one-shot ones (OnAccept re-arms on -ECANCELED).
      io_uring_sqe* sqe = ring_.Sqe();
      io_uring_prep_cancel64(sqe, PackUserData(a.op, 0, 0), 0);
      io_uring_sqe_set_data64(sqe, PackUserData(kOpIgnore, 0, 0));
      a.cancel_sent = true;
    }
  }
}

void Shard::SlotFreed() {
  --slots_used_;
  if (accept_paused_) ArmAccept();
}

void Shard::OnAccept(const io_uring_cqe* cqe, Acceptor& a) {
  if (!(cqe->flags & IORING_CQE_F_MORE)) {
    a.armed = false;
    a.cancel_sent = false;
  }
  if (cqe->res < 0) {
    if (cqe->res == -ENFILE) {
      // A connection moved in from another shard took the last slot first (that accepted connection is
      // lost). Stop accepting until a slot frees up.
      if (!accept_paused_) stats_.fixed_table_full_total.Inc();
      accept_paused_ = true;
      return;
    }
    if (cqe->res != -ECANCELED) stats_.accept_errors_total.Inc();
    if (!a.armed && !accept_paused_) ArmAcceptOn(a);
    return;
  }
  SlotTaken();
  if (!a.armed && !accept_paused_) ArmAcceptOn(a);
  uint32_t slot = static_cast<uint32_t>(cqe->res);
  uint32_t id = conns_.Alloc();
  if (id == kNoConn) {
    core::PrepCloseDirect(ring_, slot, PackUserData(kOpIgnore, 0, 0));
    SlotFreed();
    return;
  }
  size_t t = static_cast<size_t>(a.transport);
  stats_.accepts_total[t].Inc();
  stats_.connections[t].Add(1);
  Conn& c = conns_[id];
  c.file_slot = slot;
  // A WebSocket connection first answers the upgrade, within the same deadline as LOGIN.
  if (a.transport == Transport::kWs) c.ws = kWsTransport;
  c.state = ConnState::kAwaitLogin;
  c.last_rx_tick = static_cast<uint32_t>(NowTick());
  wheel_.Arm(TimerId(id, kTimerSession), NowTick() + (cfg_.login_timeout_ms + tick_ms_ - 1) / tick_ms_);
  ArmRecv(id);
}

// ---- receive ----

void Shard::ArmRecv(uint32_t id) {
  Conn& c = conns_[id];
  if (c.flags & kRecvArmed) return;
  io_uring_sqe* sqe = ring_.Sqe();
  if (c.state == ConnState::kActive) {
    // Multishot recv (kernel 6.0): one request feeds every read until it ends.
    io_uring_prep_recv_multishot(sqe, static_cast<int>(c.file_slot), nullptr, 0, 0);
    c.flags |= kMultishot;
  } else {
    // Before login a one-shot recv: nothing is left outstanding when the connection moves shards.
    io_uring_prep_recv(sqe, static_cast<int>(c.file_slot), nullptr, 0, 0);
    c.flags &= static_cast<uint8_t>(~kMultishot);
  }
  sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
  sqe->buf_group = bufs_.group_id();
  io_uring_sqe_set_data64(sqe, PackUserData(kOpRecv, c.gen, id));
  c.flags |= kRecvArmed;
}

void Shard::OnRecv(uint32_t id, const io_uring_cqe* cqe) {
  Conn& c = conns_[id];
  bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;
  if (!more) c.flags &= static_cast<uint8_t>(~kRecvArmed);
  if (cqe->res > 0) {
    uint16_t bid = static_cast<uint16_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
    stats_.received_bytes_total[TransportOf(id)].Inc(static_cast<uint64_t>(cqe->res));
    if (c.state == ConnState::kAwaitLogin || c.state == ConnState::kActive) {
      c.last_rx_tick = static_cast<uint32_t>(NowTick());
      Consume(id, bufs_.Buffer(bid), static_cast<uint32_t>(cqe->res));
    }
    bufs_.Recycle(bid);
  } else if (cqe->res == 0) {
    Close(id, CloseReason::k_peer_closed);
  } else if (cqe->res == -ENOBUFS) {
    // The buffer ring ran dry; buffers come back as this round's data is parsed. Re-arm after that.
    stats_.buffer_ring_exhausted_total.Inc();
    if (bufs_.Grow(kRecvBufferGrowth) > 0) stats_.recv_buffers.Set(bufs_.active());
    if (!(c.flags & kRecvStarved) && c.state != ConnState::kClosing) {
      c.flags |= kRecvStarved;
      starved_.push_back(id);
    }
  } else if (cqe->res != -ECANCELED) {
    Close(id, CloseReason::k_read_error);
  }
  Conn& c2 = conns_[id];
  if (c2.state == ConnState::kClosing) {
    MaybeFree(id);
    return;
  }
  if (!(c2.flags & kRecvArmed) && !(c2.flags & kRecvStarved) && !(c2.flags & kCloseAfterFlush) &&
      (c2.state == ConnState::kActive || c2.state == ConnState::kAwaitLogin) && cqe->res > 0) {
    ArmRecv(id);
  }
}

void Shard::Consume(uint32_t id, uint8_t* data, uint32_t len) {
  Conn& c = conns_[id];
  if (c.state != ConnState::kAwaitLogin && c.state != ConnState::kActive) return;
  // Closing after a flush, or draining (GOAWAY sent): what the client still sends is not read.
  if ((c.flags & kCloseAfterFlush) || draining_) return;
  if (c.ws & kWsTransport) {
    if (c.ws & kWsOpen) {
      ConsumeWsFrames(id, data, len);
    } else {
      ConsumeUpgrade(id, data, len);
    }
    return;
  }
  std::span<const uint8_t> rest;
  core::SplitResult r = core::SplitFrames(
      &c.carry, data, len, cfg_.max_frame_bytes,
      [&](const proto::Header& h, std::span<const uint8_t> body) { return HandleFrame(id, h, body); }, &rest);
  switch (r) {
    case core::SplitResult::kDone:
      return;
    case core::SplitResult::kStopped:
      KeepForMigration(id, rest);
      return;
    case core::SplitResult::kTooLarge:
      Close(id, CloseReason::k_frame_too_large);
      return;
    case core::SplitResult::kBadFrame:
      Close(id, CloseReason::k_bad_frame);
      return;
  }
}

// ---- output ----

bool Shard::Enqueue(uint32_t id, std::span<const uint8_t> bytes) {
  const Conn& c = conns_[id];
  if ((c.ws & kWsOpen) && !(c.ws & kWsEcho)) {
    // The one place longlink frames enter a connection's output, local or from another shard: on WebSocket
    // each becomes one unmasked binary message.
    uint8_t header[protocol::ws::kMaxHeaderSize];
    size_t hn = protocol::ws::EncodeFrameHeader(protocol::ws::Opcode::kBinary, true, bytes.size(), std::nullopt,
                                                header);
    return EnqueueRaw(id, {header, hn}, bytes, true);
  }
  return EnqueueRaw(id, {}, bytes, true);
}

bool Shard::EnqueueRaw(uint32_t id, std::span<const uint8_t> prefix, std::span<const uint8_t> bytes, bool frame) {
  Conn& c = conns_[id];
  if ((c.state != ConnState::kActive && c.state != ConnState::kAwaitLogin) || (c.flags & kCloseAfterFlush) ||
      (c.ws & kWsCloseSent)) {
    return false;
  }
  uint32_t n = static_cast<uint32_t>(prefix.size() + bytes.size());
  OutQueue* q = c.out;
  if (q == nullptr) q = c.out = new OutQueue();
  // The limit bounds the backlog, not one frame: a frame always joins a queue that is under the limit, so
  // a client that keeps up gets even a push larger than --max-frame-bytes (an echo adds its own fields).
  if (q->bytes() >= cfg_.max_pending_bytes) {
    stats_.slow_consumers_total.Inc();
    Close(id, CloseReason::k_slow_consumer);
    return false;
  }
  if (!prefix.empty()) q->Append(prefix.data(), static_cast<uint32_t>(prefix.size()));
  q->Append(bytes.data(), static_cast<uint32_t>(bytes.size()));
  stats_.pending_send_bytes.Add(n);
  if (frame && bytes.size() > 5) {
    uint8_t op = bytes[5];
    stats_.frames_out[TransportOf(id)][proto::IsKnownOpcode(op) ? op : 0].Inc();
  }
  if (!(c.flags & kDirty)) {
    c.flags |= kDirty;
    dirty_.push_back(id);
  }
  return true;
}

void Shard::FlushSends() {
  for (uint32_t id : dirty_) {
    Conn& c = conns_[id];
    if (!(c.flags & kDirty)) continue;
    c.flags &= static_cast<uint8_t>(~kDirty);
    if (c.state == ConnState::kFree || c.state == ConnState::kClosing) continue;
    if (!(c.flags & kSendInflight)) SubmitSend(id);
  }
  dirty_.clear();
}

void Shard::SubmitSend(uint32_t id) {
  Conn& c = conns_[id];
  OutQueue* q = c.out;
  if (q == nullptr) return;
  if (!q->Ready()) return;
  io_uring_sqe* sqe = ring_.Sqe();
  io_uring_prep_send(sqe, static_cast<int>(c.file_slot), q->send_data(), q->send_len(), MSG_NOSIGNAL);
  sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, PackUserData(kOpSend, c.gen, id));
  c.flags |= kSendInflight;
  wheel_.Arm(TimerId(id, kTimerWrite), NowTick() + (cfg_.write_timeout_ms + tick_ms_ - 1) / tick_ms_);
}

void Shard::OnSend(uint32_t id, const io_uring_cqe* cqe) {
  Conn& c = conns_[id];
  c.flags &= static_cast<uint8_t>(~kSendInflight);
  if (c.state == ConnState::kClosing) {
    MaybeFree(id);
    return;
  }
  if (cqe->res < 0) {
    Close(id, CloseReason::k_write_error);
    return;
  }
  OutQueue* q = c.out;
  uint32_t sent = static_cast<uint32_t>(cqe->res);
  stats_.sent_bytes_total[TransportOf(id)].Inc(sent);
  stats_.pending_send_bytes.Add(-static_cast<int64_t>(sent));
  if (!q->Sent(sent)) {
    SubmitSend(id);
    return;
  }
  wheel_.Cancel(TimerId(id, kTimerWrite));
  core::OutQueue::Free(q);
  c.out = nullptr;
  if (c.flags & kCloseAfterFlush) Close(id, c.reason);
}

void Shard::SendError(uint32_t id, uint32_t request_id, proto::ErrorCode code, std::string_view message) {
  proto::ErrorBody e;
  e.code = static_cast<uint16_t>(code);
  e.message = message;
  EnqueueFrame(id, request_id, e);
}

void Shard::CloseAfterFlush(uint32_t id, CloseReason reason) {
  Conn& c = conns_[id];
  if (c.state == ConnState::kClosing || c.state == ConnState::kFree || (c.flags & kCloseAfterFlush)) return;
  // On WebSocket the last thing sent is a close frame (unless an error path already queued its own).
  if ((c.ws & kWsOpen) && !(c.ws & kWsCloseSent)) WsSendClose(id, WsCloseCodeFor(reason), CloseReasonName(reason));
  EndSession(id);
  c.flags |= kCloseAfterFlush;
  c.reason = reason;
  wheel_.Cancel(TimerId(id, kTimerSession));
  if (c.out == nullptr || c.out->bytes() == 0) {
    Close(id, reason);
    return;
  }
  // Queued output goes out with this round's flush; the write timer bounds how long that may take.
  if (!(c.flags & kSendInflight)) {
    wheel_.Arm(TimerId(id, kTimerWrite), NowTick() + (cfg_.write_timeout_ms + tick_ms_ - 1) / tick_ms_);
  }
}

void Shard::Close(uint32_t id, CloseReason reason) {
  Conn& c = conns_[id];
  if (c.state == ConnState::kClosing || c.state == ConnState::kFree) return;
  if (c.flags & kCloseAfterFlush) reason = c.reason;
  EndSession(id);
  stats_.closes[static_cast<size_t>(reason)].Inc();
  stats_.connections[TransportOf(id)].Add(-1);
  c.reason = reason;
  c.state = ConnState::kClosing;
  wheel_.Cancel(TimerId(id, kTimerSession));
  wheel_.Cancel(TimerId(id, kTimerWrite));
  // Shutdown ends the outstanding receive and send at once, then the descriptor is closed (core/ring.h).
  core::PrepShutdownAndClose(ring_, c.file_slot, PackUserData(kOpClose, c.gen, id));
  c.flags |= kCloseInflight;
}

void Shard::OnClose(uint32_t id) {
  conns_[id].flags &= static_cast<uint8_t>(~kCloseInflight);
  SlotFreed();
  MaybeFree(id);
}

void Shard::MaybeFree(uint32_t id) {
  Conn& c = conns_[id];
  if (c.state != ConnState::kClosing) return;
  if (c.flags & (kRecvArmed | kSendInflight | kCloseInflight)) return;
  if (c.out != nullptr) {
    stats_.pending_send_bytes.Add(-static_cast<int64_t>(c.out->bytes()));
    core::OutQueue::Free(c.out);
    c.out = nullptr;
  }
  if (c.carry != nullptr) {
    std::free(c.carry);
    c.carry = nullptr;
  }
  if (c.state == ConnState::kClosing && !pending_logins_.empty()) pending_logins_.erase(id);
  if (c.ws & kWsFragmented) {
    ws_messages_.erase(id);
    if (ws_messages_.empty() && ws_messages_.bucket_count() > 64) ws_messages_.rehash(0);
  }
  conns_.Free(id);
}

}  // namespace longlink::gateway
