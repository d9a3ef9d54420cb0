// A minimal longlink chat client for the browser: the v1 protocol (docs/protocol.md) over WebSocket,
// one longlink frame per binary message (section 5.2). No build step, no dependencies.
"use strict";

// ---- Frames (docs/protocol.md sections 2 and 3): big-endian, 12-byte header ----

const VERSION = 1;
const HEADER_BYTES = 12;
const Op = {
  LOGIN: 1, LOGIN_ACK: 2, PING: 3, PONG: 4, SEND: 5, SEND_ACK: 6, PUSH: 7, PUSH_ACK: 8, SYNC: 9,
  SYNC_DONE: 10, KICK: 11, GOAWAY: 12, LOGOUT: 13, ERROR: 14, PRESENCE_SUBSCRIBE: 21, PRESENCE: 22,
};
const PLATFORM_WEB = 3;
const TARGET_USER = 0;
const SYNC_LIMIT = 256;
const SEND_STATUS = ["ok", "no such target", "rejected", "too large", "unavailable"];
const LOGIN_STATUS = ["ok", "auth failed", "bad request", "server busy"];
const KICK_REASON = { 1: "logged in elsewhere with this device id", 2: "kicked by an operator", 3: "credential expired" };

const utf8Encode = new TextEncoder();
const utf8Decode = new TextDecoder("utf-8");

// Builds a body field by field, then the frame around it.
class Writer {
  constructor() { this.parts = []; this.size = 0; }
  add(n, fill) {
    const b = new DataView(new ArrayBuffer(n));
    fill(b);
    this.parts.push(new Uint8Array(b.buffer));
    this.size += n;
    return this;
  }
  u8(v) { return this.add(1, (b) => b.setUint8(0, v)); }
  u16(v) { return this.add(2, (b) => b.setUint16(0, v)); }
  u32(v) { return this.add(4, (b) => b.setUint32(0, v)); }
  u64(v) { return this.add(8, (b) => b.setBigUint64(0, BigInt(v))); }
  raw(bytes) { this.parts.push(bytes); this.size += bytes.length; return this; }
  string(s) { const b = utf8Encode.encode(s); return this.u16(b.length).raw(b); }
  bytes(b) { return this.u32(b.length).raw(b); }
  frame(opcode, requestId) {
    const out = new Uint8Array(HEADER_BYTES + this.size);
    const h = new DataView(out.buffer);
    h.setUint32(0, out.length);
    h.setUint8(4, VERSION);
    h.setUint8(5, opcode);
    h.setUint16(6, 0);
    h.setUint32(8, requestId);
    let at = HEADER_BYTES;
    for (const p of this.parts) { out.set(p, at); at += p.length; }
    return out.buffer;
  }
}

// Reads a body; any overrun or trailing byte makes it malformed (section 1).
class Reader {
  constructor(view, offset) { this.v = view; this.at = offset; }
  need(n) { if (this.at + n > this.v.byteLength) throw new Error("malformed body"); const a = this.at; this.at += n; return a; }
  u8() { return this.v.getUint8(this.need(1)); }
  u16() { return this.v.getUint16(this.need(2)); }
  u32() { return this.v.getUint32(this.need(4)); }
  u64() { return this.v.getBigUint64(this.need(8)); }
  raw(n) { const a = this.need(n); return new Uint8Array(this.v.buffer, this.v.byteOffset + a, n); }
  string() { return utf8Decode.decode(this.raw(this.u16())); }
  bytes() { return this.raw(this.u32()); }
  end() { if (this.at !== this.v.byteLength) throw new Error("malformed body: trailing bytes"); }
}

// Decodes one server frame into {op, requestId, ...fields}; throws on anything malformed.
function decodeFrame(buffer) {
  const v = new DataView(buffer);
  if (v.byteLength < HEADER_BYTES) throw new Error("short frame");
  const length = v.getUint32(0);
  if (v.getUint8(4) !== VERSION) throw new Error("unknown protocol version");
  if (length !== v.byteLength) throw new Error("frame length does not match the message");
  const f = { op: v.getUint8(5), requestId: v.getUint32(8) };
  const r = new Reader(v, HEADER_BYTES);
  switch (f.op) {
    case Op.LOGIN_ACK:
      Object.assign(f, { status: r.u16(), heartbeatIntervalMs: r.u32(), heartbeatTimeoutMs: r.u32(),
                         sessionId: r.u64(), serverTimeMs: r.u64(), message: r.string() });
      break;
    case Op.PONG: f.timestamp = r.u64(); break;
    case Op.SEND_ACK:
      Object.assign(f, { status: r.u16(), clientMsgId: r.u64(), serverMsgId: r.u64(), serverTimeMs: r.u64() });
      break;
    case Op.PUSH:
      Object.assign(f, { seq: r.u64(), serverMsgId: r.u64(), fromUser: r.u64(), fromDevice: r.u32(),
                         convKind: r.u8(), convId: r.u64(), clientMsgId: r.u64(), serverTimeMs: r.u64(),
                         payload: r.bytes() });
      break;
    case Op.SYNC_DONE: Object.assign(f, { maxSeq: r.u64(), hasMore: r.u8() }); break;
    case Op.KICK: Object.assign(f, { reason: r.u16(), message: r.string() }); break;
    case Op.GOAWAY: Object.assign(f, { reconnectDelayMs: r.u32(), reason: r.string() }); break;
    case Op.ERROR: Object.assign(f, { code: r.u16(), message: r.string() }); break;
    case Op.PRESENCE:
      Object.assign(f, { userId: r.u64(), online: r.u8(), devices: r.u32(), timeMs: r.u64() });
      break;
    default: return f;  // an opcode this page does not use: skipped (section 6.6)
  }
  r.end();
  return f;
}

// ---- The page ----

const $ = (id) => document.getElementById(id);

class ChatClient {
  constructor() {
    this.ws_ = null;
    this.nextRequestId_ = 1;
    // client_msg_id must be unique per device across page reloads, or the server would treat a new message as a
    // retry of an old one (6.5.1, idempotent SEND): start from the clock.
    this.nextClientMsgId_ = BigInt(Date.now()) * 1000n;
    this.resetSession_();
    this.watched_ = new Set();  // peers whose presence is shown (as strings)
  }

  resetSession_() {
    this.loggedIn_ = false;
    this.user_ = 0n;
    this.device_ = 0;
    this.haveSeq_ = 0n;       // highest seq held without a gap
    this.seenSeqs_ = new Set();  // seqs above haveSeq_ already shown (strings)
    this.ackedSeq_ = 0n;
    this.syncing_ = false;
    this.sent_ = new Map();   // client_msg_id (string) -> {li, acked, echoed}
    clearInterval(this.pingTimer_);
    clearTimeout(this.ackTimer_);
    this.pingTimer_ = null;
    this.ackTimer_ = null;
    this.lastHeard_ = 0;
  }

  setState(state, text) {
    const out = $("conn-state");
    out.dataset.state = state;
    out.textContent = text || state;
    const online = state === "online";
    $("login-btn").disabled = state !== "disconnected" && state !== "closed";
    $("logout-btn").disabled = !online;
    $("subscribe-btn").disabled = !online;
    $("send-btn").disabled = !online;
  }

  error(text) { $("last-error").textContent = text; }

  send_(opcode, writer) {
    const rid = this.nextRequestId_;
    this.nextRequestId_ = this.nextRequestId_ >= 0xffffffff ? 1 : this.nextRequestId_ + 1;  // never 0 (6.3)
    this.ws_.send((writer || new Writer()).frame(opcode, rid));
    return rid;
  }

  connect(url, user, device) {
    this.error("");
    this.resetSession_();
    this.user_ = user;
    this.device_ = device;
    this.setState("connecting", "connecting to " + url);
    let ws;
    try {
      ws = new WebSocket(url, "longlink.v1");
    } catch (e) {
      this.setState("closed", "closed");
      this.error("cannot connect: " + e.message);
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws_ = ws;
    ws.onopen = () => {
      this.setState("logging-in", "logging in as user " + user + ", device " + device);
      this.send_(Op.LOGIN, new Writer().u64(user).u32(device).u8(PLATFORM_WEB).string(""));
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws_) return;
      if (!(ev.data instanceof ArrayBuffer)) return this.fail_("the server sent a text message");
      this.lastHeard_ = Date.now();
      let f;
      try {
        f = decodeFrame(ev.data);
      } catch (e) {
        return this.fail_(e.message);  // 6.7: close on a malformed frame
      }
      this.onFrame_(f);
    };
    ws.onclose = (ev) => {
      if (ws !== this.ws_) return;
      this.resetSession_();
      this.setState("closed", "closed" + (ev.code ? " (" + ev.code + (ev.reason ? ": " + ev.reason : "") + ")" : ""));
    };
    ws.onerror = () => this.error("WebSocket error (is the gateway running with --ws-port at " + url + "?)");
  }

  fail_(why) {
    this.error(why);
    if (this.ws_) this.ws_.close(1002, why.slice(0, 100));
  }

  logout() {
    if (!this.ws_) return;
    if (this.loggedIn_) this.send_(Op.LOGOUT);
    this.ws_.close(1000, "logout");
  }

  onFrame_(f) {
    switch (f.op) {
      case Op.LOGIN_ACK: return this.onLoginAck_(f);
      case Op.PONG: return;
      case Op.SEND_ACK: return this.onSendAck_(f);
      case Op.PUSH: return this.onPush_(f);
      case Op.SYNC_DONE: return this.onSyncDone_(f);
      case Op.PRESENCE: return this.showPresence_(f.userId, f.online, f.devices);
      case Op.KICK:
        this.error("kicked: " + (KICK_REASON[f.reason] || "reason " + f.reason) + (f.message ? " (" + f.message + ")" : ""));
        return;
      case Op.GOAWAY:
        this.error("the server is going away (" + f.reason + "); log in again in " + f.reconnectDelayMs + " ms");
        return;
      case Op.ERROR: return this.error("server error " + f.code + (f.message ? ": " + f.message : ""));
      default: return;
    }
  }

  onLoginAck_(f) {
    if (f.status !== 0) {
      this.error("login refused: " + (LOGIN_STATUS[f.status] || "status " + f.status) + (f.message ? " (" + f.message + ")" : ""));
      return;  // the server closes the connection
    }
    this.loggedIn_ = true;
    this.setState("online", "online as user " + this.user_ + ", device " + this.device_ + " (session " + f.sessionId + ")");
    // Heartbeat (6.4): PING every interval; nothing heard for the timeout means the link is dead.
    this.pingTimer_ = setInterval(() => {
      if (Date.now() - this.lastHeard_ > f.heartbeatTimeoutMs) return this.fail_("no answer from the server");
      this.send_(Op.PING, new Writer().u64(Date.now()));
    }, Math.max(1000, f.heartbeatIntervalMs));
    this.sync_();
    if (this.watched_.size) this.subscribe_([...this.watched_].map(BigInt));
  }

  // ---- Presence ----

  watch(peer) {
    this.watched_.add(String(peer));
    this.showPresence_(peer, null, 0);
    this.subscribe_([peer]);
  }

  subscribe_(peers) {
    const ids = new Writer();
    for (const p of peers) ids.u64(p);
    const body = new Uint8Array(ids.size);
    let at = 0;
    for (const p of ids.parts) { body.set(p, at); at += p.length; }
    this.send_(Op.PRESENCE_SUBSCRIBE, new Writer().u8(1).bytes(body));
  }

  showPresence_(user, online, devices) {
    const id = "presence-" + user;
    let li = $(id);
    if (!li) {
      li = document.createElement("li");
      li.id = id;
      $("presence-list").append(li);
    }
    if (online === null) {
      li.dataset.online = "";
      li.textContent = "user " + user + ": ...";
      return;
    }
    li.dataset.online = online ? "1" : "0";
    li.textContent = "user " + user + ": " + (online ? "online" + (devices > 1 ? " (" + devices + " devices)" : "") : "offline");
  }

  // ---- Sending ----

  sendText(to, text) {
    const cmid = this.nextClientMsgId_++;
    const li = this.addMessage_({ sent: true, peer: to, text, seq: null });
    li.id = "sent-" + cmid;
    this.sent_.set(String(cmid), { li, acked: false, echoed: false });
    this.setSentState_(li, "sending", "sending");
    this.send_(Op.SEND, new Writer().u8(TARGET_USER).u64(to).u64(cmid).bytes(utf8Encode.encode(text)));
  }

  onSendAck_(f) {
    const m = this.sent_.get(String(f.clientMsgId));
    if (!m) return;
    if (f.status !== 0) {
      this.setSentState_(m.li, "failed", "failed: " + (SEND_STATUS[f.status] || "status " + f.status));
      return;
    }
    m.acked = true;
    m.li.dataset.serverMsgId = String(f.serverMsgId);
    this.updateSent_(m);
  }

  // stored: SEND_ACK(OK), i.e. in every recipient's inbox. delivered: stored, and the server's push of it also
  // reached this device (6.5.1: the sending device gets its own message). The two may arrive in either order.
  updateSent_(m) {
    if (m.acked && m.echoed) {
      this.setSentState_(m.li, "delivered", "delivered");
    } else if (m.acked) {
      this.setSentState_(m.li, "stored", "stored (id " + m.li.dataset.serverMsgId + ")");
    }
  }

  setSentState_(li, state, text) {
    li.dataset.state = state;
    li.querySelector(".state").textContent = text;
  }

  // ---- Receiving: PUSH, PUSH_ACK, SYNC (6.5 and the client rule in 6.5.1) ----

  onPush_(f) {
    if (f.seq !== 0n) {
      if (f.seq <= this.haveSeq_ || this.seenSeqs_.has(String(f.seq))) return;  // a duplicate
      this.seenSeqs_.add(String(f.seq));
      if (f.seq > this.haveSeq_ + 1n && !this.syncing_) this.sync_();  // a gap: fetch what is missing
      this.advance_();
    }
    const own = f.fromUser === this.user_ && f.fromDevice === this.device_;
    const mine = own ? this.sent_.get(String(f.clientMsgId)) : null;
    if (mine) {
      mine.echoed = true;
      if (f.seq !== 0n && !mine.li.dataset.seq) {
        mine.li.dataset.seq = String(f.seq);
        const s = document.createElement("span");
        s.className = "meta seq";
        s.textContent = "seq " + f.seq;
        mine.li.querySelector(".who").after(s);
      }
      this.updateSent_(mine);
      return;
    }
    const text = utf8Decode.decode(f.payload);
    if (f.fromUser === this.user_) {
      // Sent earlier, or from another device of this user (history from SYNC).
      const li = this.addMessage_({ sent: true, peer: f.convId, text, seq: f.seq });
      this.setSentState_(li, "delivered", f.fromDevice === this.device_ ? "delivered" : "from device " + f.fromDevice);
    } else {
      this.addMessage_({ sent: false, peer: f.fromUser, text, seq: f.seq });
    }
  }

  sync_() {
    this.syncing_ = true;
    this.send_(Op.SYNC, new Writer().u64(this.haveSeq_).u32(SYNC_LIMIT));
  }

  onSyncDone_(f) {
    // The answer held every message kept up to max_seq: anything older is gone (retention), not missing.
    if (f.maxSeq > this.haveSeq_) this.haveSeq_ = f.maxSeq;
    this.advance_();
    if (f.hasMore) {
      this.send_(Op.SYNC, new Writer().u64(f.maxSeq).u32(SYNC_LIMIT));
      return;
    }
    this.syncing_ = false;
    for (const s of this.seenSeqs_) {
      if (BigInt(s) > this.haveSeq_ + 1n) return this.sync_();  // a gap opened meanwhile
    }
  }

  advance_() {
    for (const s of [...this.seenSeqs_]) if (BigInt(s) <= this.haveSeq_) this.seenSeqs_.delete(s);
    while (this.seenSeqs_.has(String(this.haveSeq_ + 1n))) {
      this.haveSeq_ += 1n;
      this.seenSeqs_.delete(String(this.haveSeq_));
    }
    // PUSH_ACK is cumulative (3.7): one for everything up to haveSeq_, at most every 100 ms.
    if (this.haveSeq_ > this.ackedSeq_ && !this.ackTimer_) {
      this.ackTimer_ = setTimeout(() => {
        this.ackTimer_ = null;
        if (!this.loggedIn_ || this.haveSeq_ <= this.ackedSeq_) return;
        this.ackedSeq_ = this.haveSeq_;
        this.send_(Op.PUSH_ACK, new Writer().u64(this.ackedSeq_));
      }, 100);
    }
  }

  // ---- The message list, in seq order (messages not yet stored at the end) ----

  addMessage_({ sent, peer, text, seq }) {
    const li = document.createElement("li");
    li.className = sent ? "sent" : "received";
    if (seq !== null) li.dataset.seq = String(seq);
    li.dataset.peer = String(peer);
    const who = document.createElement("span");
    who.className = "meta who";
    who.textContent = sent ? "to " + peer : "from " + peer;
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    li.append(body, who);
    if (seq !== null && seq !== 0n) {
      const s = document.createElement("span");
      s.className = "meta seq";
      s.textContent = "seq " + seq;
      li.append(s);
    }
    if (sent) {
      const st = document.createElement("span");
      st.className = "state";
      li.append(st);
    }
    const list = $("messages");
    let before = null;
    if (seq !== null) {
      for (const other of list.children) {
        if (!other.dataset.seq || BigInt(other.dataset.seq) > seq) { before = other; break; }
      }
    }
    list.insertBefore(li, before);
    return li;
  }
}

// ---- Wiring ----

function positiveBigInt(input) {
  const v = input.value.trim();
  if (!/^[0-9]+$/.test(v)) return null;
  const n = BigInt(v);
  return n > 0n && n < (1n << 64n) ? n : null;
}

window.addEventListener("DOMContentLoaded", () => {
  const client = new ChatClient();
  window.longlinkChat = client;  // for the console
  const params = new URLSearchParams(location.search);
  $("ws-url").value = params.get("ws") || "";
  for (const [param, id] of [["user", "user-id"], ["device", "device-id"], ["peer", "peer-id"]]) {
    if (params.get(param)) $(id).value = params.get(param);
  }
  client.setState("disconnected");

  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const user = positiveBigInt($("user-id"));
    const device = Number($("device-id").value);
    if (user === null) return client.error("the user id must be a positive integer");
    if (!Number.isInteger(device) || device < 0 || device > 0xffffffff) return client.error("bad device id");
    client.connect($("ws-url").value.trim(), user, device);
  });
  $("logout-btn").addEventListener("click", () => client.logout());
  $("presence-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const peer = positiveBigInt($("peer-id"));
    if (peer === null) return client.error("the peer id must be a positive integer");
    client.watch(peer);
  });
  $("send-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const to = positiveBigInt($("to-id"));
    const text = $("msg-text").value;
    if (to === null) return client.error("the recipient must be a positive integer user id");
    if (!text) return;
    client.sendText(to, text);
    $("msg-text").value = "";
    $("msg-text").focus();
  });
});
