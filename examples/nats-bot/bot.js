#!/usr/bin/env node
// An example service on longlink's NATS wire contract (docs/nats-contract.md).
//
// It listens to <prefix>.ev.msg, the event every gateway publishes once a SEND is stored, and answers each
// one-to-one message sent to its own user id:
//   - "/push <text>": <text> goes back to the sending device as an unstored PUSH (<prefix>.svc.push);
//   - anything else: "bot: <text>" is sent back to the sender as the bot user (<prefix>.svc.send), so it is
//     stored in both inboxes, pushed to every online device of the sender and returned by SYNC.
//
// The reply's client_msg_id is the incoming message's server_msg_id: a retry after UNAVAILABLE, a second
// copy of this bot, or the same event seen twice all store the reply once.
//
// Usage: node bot.js [--nats-url=URL] [--prefix=ll] --bot-user=ID [--bot-device=1] [--queue=NAME]
// (or NATS_URL, LL_NATS_PREFIX, LL_BOT_USER, LL_BOT_DEVICE, LL_BOT_QUEUE; NATS_USER, NATS_PASSWORD or
// NATS_TOKEN for credentials). SIGTERM/SIGINT stop it cleanly.
"use strict";

const { connect, ErrorCode } = require("nats");

// ---- configuration ----

function parseArgs(argv, env) {
  const flags = {};
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(argv[i]);
    if (!m) throw new Error(`unexpected argument ${argv[i]}`);
    flags[m[1]] = m[2] !== undefined ? m[2] : argv[++i];
  }
  const known = ["nats-url", "prefix", "bot-user", "bot-device", "queue", "retry-for"];
  for (const k of Object.keys(flags)) {
    if (!known.includes(k)) throw new Error(`unknown flag --${k}`);
  }
  const cfg = {
    url: flags["nats-url"] || env.NATS_URL || "nats://127.0.0.1:4222",
    prefix: flags.prefix || env.LL_NATS_PREFIX || "ll",
    user: BigInt(flags["bot-user"] || env.LL_BOT_USER || 0),
    device: Number(flags["bot-device"] || env.LL_BOT_DEVICE || 1),
    queue: flags.queue || env.LL_BOT_QUEUE || "",
    // Retries of one reply stop after this long: well inside the gateway's --idempotency-window (5 min).
    retryForMs: Number(flags["retry-for"] || 60) * 1000,
  };
  if (!/^[A-Za-z0-9_]{1,64}$/.test(cfg.prefix)) throw new Error("--prefix: 1 to 64 of A-Z a-z 0-9 _");
  if (cfg.user <= 0n || cfg.user >= 1n << 64n) throw new Error("--bot-user: a user id from 1 to 2^64-1");
  if (!Number.isInteger(cfg.device) || cfg.device < 0 || cfg.device > 0xffffffff) {
    throw new Error("--bot-device: 0 to 2^32-1");
  }
  if (!cfg.queue) cfg.queue = `${cfg.prefix}-bot-${cfg.user}`;
  return cfg;
}

// ---- the contract's bodies (big-endian; bytes = u32 length + data) ----

const SendStatus = { OK: 0, NO_SUCH_TARGET: 1, REJECTED: 2, TOO_LARGE: 3, UNAVAILABLE: 4, RATE_LIMITED: 5 };
const STATUS_NAMES = Object.fromEntries(Object.entries(SendStatus).map(([k, v]) => [v, k]));
const KIND_USER = 0;

// <prefix>.ev.msg: a PUSH body (protocol.md 3.6) with seq 0; conv_id is the SEND's target.
function decodeEvent(b) {
  if (b.length < 57) return null;
  const n = b.readUInt32BE(53);
  if (b.length !== 57 + n) return null;
  return {
    seq: b.readBigUInt64BE(0),
    serverMsgId: b.readBigUInt64BE(8),
    fromUser: b.readBigUInt64BE(16),
    fromDevice: b.readUInt32BE(24),
    convKind: b.readUInt8(28),
    convId: b.readBigUInt64BE(29),
    clientMsgId: b.readBigUInt64BE(37),
    serverTimeMs: b.readBigUInt64BE(45),
    payload: b.subarray(57),
  };
}

// <prefix>.svc.send request: sender u64, device u32, target_kind u8, target u64, client_msg_id u64, payload.
function encodeSend(sender, device, targetKind, target, clientMsgId, payload) {
  const b = Buffer.alloc(33 + payload.length);
  b.writeBigUInt64BE(sender, 0);
  b.writeUInt32BE(device, 8);
  b.writeUInt8(targetKind, 12);
  b.writeBigUInt64BE(target, 13);
  b.writeBigUInt64BE(clientMsgId, 21);
  b.writeUInt32BE(payload.length, 29);
  payload.copy(b, 33);
  return b;
}

// Its reply: status u16, server_msg_id u64, server_time_ms u64.
function decodeSendReply(b) {
  if (b.length !== 18) return null;
  return { status: b.readUInt16BE(0), serverMsgId: b.readBigUInt64BE(2), serverTimeMs: b.readBigUInt64BE(10) };
}

// <prefix>.svc.push request: user u64, device u32 (0: every device), payload. Answered "OK" or "ERR".
function encodePush(user, device, payload) {
  const b = Buffer.alloc(16 + payload.length);
  b.writeBigUInt64BE(user, 0);
  b.writeUInt32BE(device, 8);
  b.writeUInt32BE(payload.length, 12);
  payload.copy(b, 16);
  return b;
}

// ---- the service ----

function log(line) {
  process.stdout.write(`nats-bot: ${line}\n`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class Bot {
  constructor(nc, cfg) {
    this.nc = nc;
    this.cfg = cfg;
    this.stopping = false;
    this.pending = new Set();
    this.subjects = {
      events: `${cfg.prefix}.ev.msg`,
      send: `${cfg.prefix}.svc.send`,
      push: `${cfg.prefix}.svc.push`,
    };
  }

  async start() {
    // A queue group: several copies of the bot share the events (and the idempotent reply covers overlaps).
    this.sub = this.nc.subscribe(this.subjects.events, { queue: this.cfg.queue });
    // Once the server has the subscription, events are ours (ev.msg reaches only live subscribers).
    await this.nc.flush();
    log(`ready: user ${this.cfg.user} device ${this.cfg.device} on ${this.subjects.events} ` +
        `(queue ${this.cfg.queue}, ${this.nc.getServer()})`);
    for await (const m of this.sub) {
      const ev = decodeEvent(Buffer.from(m.data));
      if (ev === null) {
        log(`skipped a malformed event (${m.data.length} bytes)`);
        continue;
      }
      // One-to-one messages to the bot, not its own (its replies are events too).
      if (ev.convKind !== KIND_USER || ev.convId !== this.cfg.user || ev.fromUser === this.cfg.user) continue;
      const p = this.handle(ev).catch((e) => log(`message ${ev.serverMsgId}: ${e.message}`));
      this.pending.add(p);
      p.finally(() => this.pending.delete(p));
    }
  }

  async handle(ev) {
    const text = ev.payload.toString("utf8");
    const who = `${ev.fromUser}/${ev.fromDevice}`;
    if (text.startsWith("/push ")) {
      const body = encodePush(ev.fromUser, ev.fromDevice, Buffer.from(text.slice(6), "utf8"));
      const answer = await this.request(this.subjects.push, body, 5000);
      const ok = answer !== null && Buffer.from(answer).toString() === "OK";
      log(`${who}: pushed ${JSON.stringify(text.slice(6))} to the device: ${ok ? "OK" : "not relayed"}`);
      return;
    }
    const payload = Buffer.from(`bot: ${text}`, "utf8");
    const body = encodeSend(this.cfg.user, this.cfg.device, KIND_USER, ev.fromUser, ev.serverMsgId, payload);
    const deadline = Date.now() + this.cfg.retryForMs;
    let delay = 200;
    for (let attempt = 1; ; attempt++) {
      // The gateway answers within its --nats-send-timeout (8 s by default).
      const answer = await this.request(this.subjects.send, body, 10000);
      const reply = answer === null ? null : decodeSendReply(Buffer.from(answer));
      const status = reply === null ? SendStatus.UNAVAILABLE : reply.status;
      if (status === SendStatus.OK) {
        log(`${who}: replied, server_msg_id ${reply.serverMsgId}` + (attempt > 1 ? ` (attempt ${attempt})` : ""));
        return;
      }
      const retryable = status === SendStatus.UNAVAILABLE || status === SendStatus.RATE_LIMITED;
      if (!retryable) {
        log(`${who}: reply refused: ${STATUS_NAMES[status] || status}`);
        return;
      }
      if (this.stopping || Date.now() + delay > deadline) {
        log(`${who}: reply not stored after ${attempt} attempts (${STATUS_NAMES[status]}); giving up`);
        return;
      }
      await sleep(delay);
      delay = Math.min(delay * 2, 5000);
    }
  }

  // The reply's data, or null when nobody answered in time (no gateway, or NATS unreachable).
  async request(subject, body, timeoutMs) {
    try {
      const m = await this.nc.request(subject, body, { timeout: timeoutMs });
      return m.data;
    } catch (e) {
      if (e.code === ErrorCode.NoResponders || e.code === ErrorCode.Timeout ||
          e.code === ErrorCode.Disconnect || e.code === ErrorCode.ConnectionClosed ||
          e.code === ErrorCode.ConnectionDraining) {
        return null;
      }
      throw e;
    }
  }

  // Takes no new events, lets the replies under way finish (bounded), then drains the connection.
  async stop(graceMs) {
    if (this.stopping) return;
    this.stopping = true;
    if (this.sub) this.sub.unsubscribe();
    await Promise.race([Promise.allSettled([...this.pending]), sleep(graceMs)]);
    await this.nc.drain();
  }
}

async function main() {
  let cfg;
  try {
    cfg = parseArgs(process.argv.slice(2), process.env);
  } catch (e) {
    process.stderr.write(`nats-bot: ${e.message}\n`);
    process.exit(2);
  }
  let bot = null;
  let exitCode = 0;
  const onSignal = (sig) => {
    log(`${sig}: stopping`);
    if (bot === null) process.exit(0);  // still connecting: nothing under way
    bot.stop(3000).catch((e) => {
      log(`stop: ${e.message}`);
      exitCode = 1;
    });
  };
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
  const nc = await connect({
    servers: cfg.url.split(","),
    name: `longlink-nats-bot ${cfg.user}`,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    // Credentials from the environment only (never on the command line).
    user: process.env.NATS_USER || undefined,
    pass: process.env.NATS_PASSWORD || undefined,
    token: process.env.NATS_TOKEN || undefined,
  });
  (async () => {
    for await (const s of nc.status()) {
      if (s.type === "disconnect" || s.type === "reconnect" || s.type === "error") log(`nats ${s.type} ${s.data}`);
    }
  })().catch(() => {});
  bot = new Bot(nc, cfg);
  await bot.start();  // returns once the subscription ends (stop, or the connection closed)
  const err = await nc.closed();
  if (err) {
    log(`connection closed: ${err.message}`);
    exitCode = 1;
  }
  log("stopped");
  process.exit(exitCode);
}

main().catch((e) => {
  process.stderr.write(`nats-bot: ${e.message}\n`);
  process.exit(1);
});
