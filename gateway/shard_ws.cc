// Shard: the WebSocket transport (docs/protocol.md section 5.2). Only the framing differs from TCP: an
// upgraded connection's binary messages are longlink frames handed to the same HandleFrame, and Enqueue
// wraps every outgoing frame as one binary message.
//
// Receive path: recv buffer -> ConsumeUpgrade (HTTP head, accumulated in the carry only while it is
// incomplete) -> ConsumeWsFrames (frame headers checked before any payload is buffered; whole frames are
// unmasked in place in the receive buffer, only a partial frame is copied into the carry) -> MessageAssembler
// -> HandleWsMessage -> PeekFrame -> HandleFrame. A fragmented message is the only case that needs a buffer
// of its own, held in ws_messages_ from its first to its last fragment.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "absl/strings/ascii.h"
#include "gateway/shard.h"
#include "protocol/ws_upgrade.h"

namespace longlink::gateway {

namespace ws = longlink::protocol::ws;
namespace proto = longlink::protocol;

namespace {

// Size of a frame header, known from its first two bytes: the 7-bit length says whether 2 or 8 length
// bytes follow, the mask bit whether a 4-byte key does.
uint32_t WsHeaderSize(const uint8_t* first_two) {
  uint8_t len7 = first_two[1] & 0x7f;
  uint32_t n = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
  return n + ((first_two[1] & 0x80) ? 4 : 0);
}

CloseReason ReasonFor(ws::Error e) {
  switch (e) {
    case ws::Error::kFrameTooLarge:
    case ws::Error::kMessageTooLarge:
      return CloseReason::k_ws_message_too_large;
    case ws::Error::kTextNotAccepted:
      return CloseReason::k_ws_text_refused;
    case ws::Error::kInvalidUtf8:
      return CloseReason::k_ws_invalid_utf8;
    default:
      return CloseReason::k_ws_protocol_error;
  }
}

CloseReason ReasonForHttp(uint16_t status) {
  switch (status) {
    case 426:
      return CloseReason::k_ws_unsupported_version;
    case 431:
      return CloseReason::k_ws_upgrade_too_large;
    default:
      return CloseReason::k_ws_bad_upgrade;
  }
}

}  // namespace

uint16_t Shard::WsCloseCodeFor(CloseReason reason) {
  switch (reason) {
    case CloseReason::k_logout:
    case CloseReason::k_peer_closed:
      return static_cast<uint16_t>(ws::CloseCode::kNormal);
    case CloseReason::k_draining:
      return static_cast<uint16_t>(ws::CloseCode::kGoingAway);
    case CloseReason::k_bad_frame:
    case CloseReason::k_malformed_body:
    case CloseReason::k_ws_bad_message:
    case CloseReason::k_ws_protocol_error:
      return static_cast<uint16_t>(ws::CloseCode::kProtocolError);
    case CloseReason::k_ws_text_refused:
      return static_cast<uint16_t>(ws::CloseCode::kUnsupportedData);
    case CloseReason::k_ws_invalid_utf8:
      return static_cast<uint16_t>(ws::CloseCode::kInvalidPayload);
    case CloseReason::k_frame_too_large:
    case CloseReason::k_ws_message_too_large:
      return static_cast<uint16_t>(ws::CloseCode::kMessageTooBig);
    case CloseReason::k_kicked:
    case CloseReason::k_auth_expired:
    case CloseReason::k_not_logged_in:
    case CloseReason::k_auth_failed:
    case CloseReason::k_login_rejected:
      return static_cast<uint16_t>(ws::CloseCode::kPolicyViolation);
    default:
      return static_cast<uint16_t>(ws::CloseCode::kInternalError);
  }
}

// ---- handshake ----

void Shard::ConsumeUpgrade(uint32_t id, uint8_t* data, uint32_t len) {
  Conn& c = conns_[id];
  std::span<uint8_t> head(data, len);
  if (c.carry != nullptr) {
    // The head came in pieces. The carry stays within --ws-max-header-bytes plus one receive buffer: the
    // parser refuses a head that reaches the limit without ending.
    Carry* k = c.carry = Carry::Reserve(c.carry, c.carry->len + len);
    std::memcpy(k->data + k->len, data, len);
    k->len += len;
    head = std::span<uint8_t>(k->data, k->len);
  }
  ws::UpgradeOptions options;
  options.max_header_bytes = cfg_.ws_max_header_bytes;
  ws::UpgradeRequestResult r = ws::ParseUpgradeRequest(head, options);
  if (r.status == ws::UpgradeStatus::kNeedMore) {
    if (c.carry == nullptr) {
      Carry* k = Carry::New(std::max<uint32_t>(len, 512));
      std::memcpy(k->data, data, len);
      k->len = len;
      c.carry = k;
    }
    return;
  }
  if (r.status == ws::UpgradeStatus::kError) {
    uint16_t status = ws::HttpStatusFor(r.error);
    if (status == 0) status = 400;
    WsReject(id, status, ReasonForHttp(status), kWsUpgradeParseErrorBase + static_cast<size_t>(r.error));
    return;
  }
  ws::UpgradeRequest req = r.request;
  std::string_view path = req.path.substr(0, req.path.find('?'));
  bool echo = !cfg_.ws_echo_path.empty() && path == cfg_.ws_echo_path;
  if (!echo && path != cfg_.ws_path) {
    WsReject(id, 404, CloseReason::k_ws_bad_path, kWsUpgradeBadPath);
    return;
  }
  // Browsers always send Origin; other clients need not, and an allow-list cannot vouch for them anyway.
  if (req.has_origin && !OriginAllowed(req.origin, req.host)) {
    WsReject(id, 403, CloseReason::k_ws_bad_origin, kWsUpgradeBadOrigin);
    return;
  }
  // A client that does not offer longlink.v1 is still accepted (docs/protocol.md leaves it to the server):
  // the frames it must send are the same either way. The echo path never selects one.
  if (echo) req.subprotocol = {};
  uint8_t response[ws::kMaxResponseSize];
  size_t n = ws::WriteAcceptResponse(req, response);
  if (n == 0) {  // cannot happen for a request the parser accepted; refuse rather than assert
    WsReject(id, 400, CloseReason::k_ws_bad_upgrade, kWsUpgradeParseErrorBase);
    return;
  }
  EnqueueRaw(id, {}, {response, n}, false);
  stats_.ws_upgrades[echo ? kWsUpgradeEcho : kWsUpgradeOk].Inc();
  c.ws |= kWsOpen | (echo ? kWsEcho : 0);
  if (echo) {
    // No login on the echo path: the connection is live at once, held by the heartbeat timeout.
    c.state = ConnState::kActive;
    wheel_.Arm(TimerId(id, kTimerSession), NowTick() + (cfg_.heartbeat_timeout_ms + tick_ms_ - 1) / tick_ms_);
  }
  // Whatever followed the head is already WebSocket frames. The head's carry is detached first: parsing may
  // leave a partial frame in a new carry.
  Carry* k = c.carry;
  c.carry = nullptr;
  uint32_t rest = static_cast<uint32_t>(head.size() - req.header_size);
  if (rest > 0) ConsumeWsFrames(id, head.data() + req.header_size, rest);
  std::free(k);
}

bool Shard::OriginAllowed(std::string_view origin, std::string_view host) const {
  if (cfg_.ws_any_origin) return true;
  if (!cfg_.ws_allowed_origins.empty()) {
    return std::find(cfg_.ws_allowed_origins.begin(), cfg_.ws_allowed_origins.end(), origin) !=
           cfg_.ws_allowed_origins.end();
  }
  // Same host: "scheme://host[:port]" against "host[:port]", ports ignored (the web chat page is served by
  // the admin port, another port of the same host). "[v6]:port" keeps its brackets on both sides.
  auto host_of = [](std::string_view hp) {
    if (!hp.empty() && hp[0] == '[') return hp.substr(0, hp.find(']') + 1);
    return hp.substr(0, hp.find(':'));
  };
  size_t scheme = origin.find("://");
  if (scheme == std::string_view::npos) return false;  // "null" (a sandboxed page or a file) and the like
  std::string_view a = host_of(origin.substr(scheme + 3));
  std::string_view b = host_of(host);
  return !a.empty() && a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return absl::ascii_tolower(x) == absl::ascii_tolower(y); });
}

void Shard::WsReject(uint32_t id, uint16_t http_status, CloseReason reason, size_t result) {
  stats_.ws_upgrades[std::min(result, kWsUpgradeResults - 1)].Inc();
  uint8_t response[ws::kMaxResponseSize];
  size_t n = ws::WriteRejectResponse(http_status, response);
  if (n > 0) EnqueueRaw(id, {}, {response, n}, false);
  CloseAfterFlush(id, reason);
}

// ---- frames ----

void Shard::ConsumeWsFrames(uint32_t id, uint8_t* data, uint32_t len) {
  const uint64_t max_payload = cfg_.ws_max_message_bytes;
  while (len > 0) {
    Conn& c = conns_[id];
    if (c.carry != nullptr) {
      // Finish the partial frame in the carry: first its header, whose size follows from two bytes.
      Carry* k = c.carry;
      for (;;) {
        uint32_t need = k->len < 2 ? 2 : WsHeaderSize(k->data);
        if (k->len >= need) break;
        uint32_t take = std::min(len, need - k->len);
        std::memcpy(k->data + k->len, data, take);
        k->len += take;
        data += take;
        len -= take;
        if (k->len < need) return;
      }
      ws::HeaderResult hr = ws::ParseFrameHeader({k->data, k->len}, ws::Role::kServer, max_payload);
      if (hr.status == ws::ParseStatus::kError) {
        WsFail(id, hr.error);
        return;
      }
      if (hr.status != ws::ParseStatus::kOk) return;
      ws::MessageAssembler fresh(cfg_.ws_max_message_bytes, WsAcceptsText(id));
      ws::Error pre = WsAssembler(id, fresh).Precheck(hr.header);
      if (pre != ws::Error::kNone) {
        WsFail(id, pre);
        return;
      }
      uint32_t total = hr.header.header_size + static_cast<uint32_t>(hr.header.payload_length);
      k = c.carry = Carry::Reserve(k, total);
      uint32_t take = std::min(len, total - k->len);
      std::memcpy(k->data + k->len, data, take);
      k->len += take;
      data += take;
      len -= take;
      if (k->len < total) return;
      // The carry holds exactly one frame. Detach it first: the handler may close the connection.
      c.carry = nullptr;
      bool go_on = HandleWsFrame(id, hr.header,
                                 {k->data + hr.header.header_size, static_cast<size_t>(hr.header.payload_length)});
      std::free(k);
      if (!go_on) {
        KeepForMigration(id, {data, len});
        return;
      }
      continue;
    }
    ws::HeaderResult hr = ws::ParseFrameHeader({data, len}, ws::Role::kServer, max_payload);
    if (hr.status == ws::ParseStatus::kError) {
      WsFail(id, hr.error);
      return;
    }
    if (hr.status == ws::ParseStatus::kNeedMore) {
      Carry* k = Carry::New(std::max<uint32_t>(len, ws::kMaxHeaderSize));
      std::memcpy(k->data, data, len);
      k->len = len;
      c.carry = k;
      return;
    }
    // Refuse an out-of-sequence or oversize frame before buffering any of its payload.
    ws::MessageAssembler fresh(cfg_.ws_max_message_bytes, WsAcceptsText(id));
    ws::Error pre = WsAssembler(id, fresh).Precheck(hr.header);
    if (pre != ws::Error::kNone) {
      WsFail(id, pre);
      return;
    }
    // payload_length <= max_payload <= 16 MiB (ParseFrameHeader checked it), so this cannot overflow.
    uint32_t total = hr.header.header_size + static_cast<uint32_t>(hr.header.payload_length);
    if (total > len) {
      Carry* k = Carry::New(total);
      std::memcpy(k->data, data, len);
      k->len = len;
      c.carry = k;
      return;
    }
    bool go_on = HandleWsFrame(id, hr.header,
                               {data + hr.header.header_size, static_cast<size_t>(hr.header.payload_length)});
    data += total;
    len -= total;
    if (!go_on) {
      KeepForMigration(id, {data, len});
      return;
    }
  }
}

ws::MessageAssembler& Shard::WsAssembler(uint32_t id, ws::MessageAssembler& fresh) {
  if (conns_[id].ws & kWsFragmented) {
    auto it = ws_messages_.find(id);
    if (it != ws_messages_.end()) return it->second->assembler;
  }
  // Between messages the assembler holds no state worth keeping, so idle connections keep none.
  return fresh;
}

bool Shard::HandleWsFrame(uint32_t id, const ws::FrameHeader& h, std::span<uint8_t> payload) {
  ws::Unmask(payload, h.mask_key);
  ws::MessageAssembler fresh(cfg_.ws_max_message_bytes, WsAcceptsText(id));
  ws::MessageAssembler& a = WsAssembler(id, fresh);
  switch (a.OnFrame(h, payload)) {
    case ws::MessageAssembler::Action::kError:
      WsFail(id, a.error());
      return false;
    case ws::MessageAssembler::Action::kControl:
      return HandleWsControl(id, h.opcode, payload);
    case ws::MessageAssembler::Action::kMessage:
      return HandleWsMessage(id, a.message_opcode(), payload);
    case ws::MessageAssembler::Action::kFragment: {
      Conn& c = conns_[id];
      if (!(c.ws & kWsFragmented)) {
        // The first fragment: only now does the connection get a message buffer.
        ws_messages_[id] = std::make_unique<WsMessage>(fresh);
        c.ws |= kWsFragmented;
      }
      std::vector<uint8_t>& buf = ws_messages_[id]->data;
      buf.insert(buf.end(), payload.begin(), payload.end());
      return true;
    }
    case ws::MessageAssembler::Action::kFinalFragment: {
      auto it = ws_messages_.find(id);
      if (it == ws_messages_.end()) {  // the assembler says a message was open, so this cannot happen
        WsFail(id, ws::Error::kUnexpectedContinuation);
        return false;
      }
      // Detach the message first: handling it may close the connection, which frees ws_messages_ entries.
      std::unique_ptr<WsMessage> m = std::move(it->second);
      ws_messages_.erase(it);
      conns_[id].ws &= static_cast<uint8_t>(~kWsFragmented);
      m->data.insert(m->data.end(), payload.begin(), payload.end());
      return HandleWsMessage(id, m->assembler.message_opcode(), m->data);
    }
  }
  return false;
}

bool Shard::HandleWsControl(uint32_t id, uint8_t opcode, std::span<const uint8_t> payload) {
  switch (static_cast<ws::Opcode>(opcode)) {
    case ws::Opcode::kPing: {
      // The ping's bytes already stamped last_rx_tick in OnRecv, so it counts as a heartbeat like a longlink
      // PING; the pong carries the same payload (at most 125 bytes).
      uint8_t header[ws::kMaxHeaderSize];
      size_t hn = ws::EncodeFrameHeader(ws::Opcode::kPong, true, payload.size(), std::nullopt, header);
      if (hn > 0) EnqueueRaw(id, {header, hn}, payload, false);
      return conns_[id].state == ConnState::kActive || conns_[id].state == ConnState::kAwaitLogin;
    }
    case ws::Opcode::kClose: {
      ws::ClosePayload cp;
      uint16_t code = static_cast<uint16_t>(ws::CloseCode::kNormal);
      if (ws::ParseClosePayload(payload, &cp) == ws::Error::kNone &&
          cp.code != static_cast<uint16_t>(ws::CloseCode::kNoStatus)) {
        code = cp.code;
      }
      WsSendClose(id, code, {});
      CloseAfterFlush(id, CloseReason::k_peer_closed);
      return false;
    }
    default:  // unsolicited pongs are accepted and ignored
      return true;
  }
}

bool Shard::HandleWsMessage(uint32_t id, ws::Opcode opcode, std::span<const uint8_t> message) {
  if (conns_[id].ws & kWsEcho) {
    uint8_t header[ws::kMaxHeaderSize];
    size_t hn = ws::EncodeFrameHeader(opcode, true, message.size(), std::nullopt, header);
    if (hn > 0) EnqueueRaw(id, {header, hn}, message, false);
    return conns_[id].state == ConnState::kActive;
  }
  // Text (when accepted, already UTF-8 checked) is handled exactly like binary: one message, one frame.
  proto::Header h;
  proto::FrameStatus st = proto::PeekFrame(message, cfg_.max_frame_bytes, &h);
  if (st == proto::FrameStatus::kTooLarge) {
    WsFailWith(id, static_cast<uint16_t>(ws::CloseCode::kMessageTooBig), CloseReason::k_frame_too_large);
    return false;
  }
  if (st != proto::FrameStatus::kOk || h.length != message.size()) {
    WsFailWith(id, static_cast<uint16_t>(ws::CloseCode::kProtocolError), CloseReason::k_ws_bad_message);
    return false;
  }
  return HandleFrame(id, h, message.subspan(proto::kHeaderSize));
}

// ---- closing ----

void Shard::WsFail(uint32_t id, ws::Error e) {
  stats_.ws_errors[std::min(static_cast<size_t>(e), kWsErrors - 1)].Inc();
  WsSendClose(id, static_cast<uint16_t>(ws::CloseCodeFor(e)), ws::ErrorName(e));
  CloseAfterFlush(id, ReasonFor(e));
}

void Shard::WsFailWith(uint32_t id, uint16_t code, CloseReason reason) {
  WsSendClose(id, code, CloseReasonName(reason));
  CloseAfterFlush(id, reason);
}

void Shard::WsSendClose(uint32_t id, uint16_t code, std::string_view reason) {
  Conn& c = conns_[id];
  if (!(c.ws & kWsOpen) || (c.ws & kWsCloseSent)) return;
  uint8_t frame[2 + 2 + ws::kMaxControlPayload];
  if (reason.size() > ws::kMaxCloseReason) reason = reason.substr(0, ws::kMaxCloseReason);
  size_t n = ws::EncodeCloseFrame(code, reason, std::nullopt, frame);
  if (n == 0) n = ws::EncodeCloseFrame(static_cast<uint16_t>(ws::CloseCode::kProtocolError), {}, std::nullopt, frame);
  if (n > 0) EnqueueRaw(id, {}, {frame, n}, false);
  conns_[id].ws |= kWsCloseSent;
}

}  // namespace longlink::gateway
