// A third-party WebSocket client (the npm `ws` package) against the gateway: upgrade with longlink.v1, LOGIN,
// SEND to itself, SEND_ACK and PUSH, then a clean close. Prints one JSON line with what it saw.
//   node ws_node_client.js PORT [USER]
'use strict';
const path = require('path');
const WebSocket = require(path.join(__dirname, 'node', 'node_modules', 'ws'));

const port = Number(process.argv[2]);
const user = BigInt(process.argv[3] || '424242');
const LOGIN = 1, LOGIN_ACK = 2, SEND = 5, SEND_ACK = 6, PUSH = 7;

function frame(op, rid, body) {
  const b = Buffer.alloc(12 + body.length);
  b.writeUInt32BE(b.length, 0);
  b.writeUInt8(1, 4);
  b.writeUInt8(op, 5);
  b.writeUInt16BE(0, 6);
  b.writeUInt32BE(rid, 8);
  body.copy(b, 12);
  return b;
}

const out = {subprotocol: null, login_status: null, send_ack_status: null, push_payload: null, close_code: null};
const payload = Buffer.from('hello from node ws');
const ws = new WebSocket(`ws://127.0.0.1:${port}/`, ['longlink.v1']);
const timer = setTimeout(() => { out.error = 'timeout'; console.log(JSON.stringify(out)); process.exit(1); }, 10000);

ws.on('open', () => {
  out.subprotocol = ws.protocol;
  const login = Buffer.alloc(8 + 4 + 1 + 2);
  login.writeBigUInt64BE(user, 0);
  login.writeUInt32BE(1, 8);
  login.writeUInt8(3, 12);  // platform: web
  login.writeUInt16BE(0, 13);
  ws.send(frame(LOGIN, 1, login));
});
ws.on('message', (data, isBinary) => {
  if (!isBinary) { out.error = 'text message'; return; }
  const op = data.readUInt8(5);
  if (op === LOGIN_ACK) {
    out.login_status = data.readUInt16BE(12);
    const send = Buffer.alloc(1 + 8 + 8 + 4 + payload.length);
    send.writeUInt8(0, 0);
    send.writeBigUInt64BE(user, 1);
    send.writeBigUInt64BE(7n, 9);
    send.writeUInt32BE(payload.length, 17);
    payload.copy(send, 21);
    ws.send(frame(SEND, 2, send));
  } else if (op === SEND_ACK) {
    out.send_ack_status = data.readUInt16BE(12);
  } else if (op === PUSH) {
    const body = data.subarray(12);
    const n = body.readUInt32BE(53);
    out.push_payload = body.subarray(57, 57 + n).toString();
  }
  if (out.send_ack_status !== null && out.push_payload !== null && ws.readyState === WebSocket.OPEN) {
    ws.close(1000, 'done');
  }
});
ws.on('close', (code) => {
  out.close_code = code;
  clearTimeout(timer);
  console.log(JSON.stringify(out));
  process.exit(0);
});
ws.on('error', (e) => { out.error = String(e); });
