// The WebSocket client of the ws and ws-echo transports (load_shard.h): the HTTP/1.1 upgrade and its 101,
// masked frames out, frames in (control frames answered or timed, fragments assembled, each binary message
// one longlink frame or, for ws-echo, one echo to time), and the close handshake.
#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "core/clock.h"
#include "core/frame_stream.h"
#include "loadgen/load_shard.h"
#include "protocol/ws_upgrade.h"

namespace longlink::loadgen {

namespace proto = longlink::protocol;
namespace ws = longlink::protocol::ws;

void LoadShard::Impl::SendUpgrade(uint32_t local) {
  Client& c = clients_[local];
  WsState& w = ws_[local];
  std::array<uint8_t, ws::kNonceSize> nonce;
  for (size_t i = 0; i < nonce.size(); i += 8) {
    uint64_t r = rng_();
    std::memcpy(nonce.data() + i, &r, 8);
  }
  w.key = ws::MakeClientKey(nonce);
  const Destination& t = TargetFor(c);
  ws::ClientUpgrade up;
  up.host = t.text;
  up.path = cfg_.ws_path;
  up.key = std::string_view(w.key.data(), w.key.size());
  up.subprotocols = cfg_.transport == Transport::kWebSocket ? ws::kSubprotocol : std::string_view();
  uint8_t req[1024];
  size_t n = ws::WriteUpgradeRequest(up, req);
  WriteRaw(local, req, static_cast<uint32_t>(n));
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

void LoadShard::Impl::QueueWs(uint32_t local, ws::Opcode opcode, std::span<const uint8_t> payload) {
  size_t need = payload.size() + ws::kMaxHeaderSize;
  if (need > ws_scratch_.size()) ws_scratch_.resize(need);
  size_t n = ws::EncodeMaskedFrame(opcode, true, payload, NextMask(), ws_scratch_);
  if (n == 0) return;
  WriteRaw(local, ws_scratch_.data(), static_cast<uint32_t>(n));
}

}  // namespace longlink::loadgen
