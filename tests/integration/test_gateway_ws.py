"""The gateway's WebSocket transport (docs/protocol.md section 5.2) against third-party clients: the python
`websockets` package (Debian python3-websockets), the npm `ws` package (node), raw frames over a plain socket
for what well-behaved clients never send, and the loadgen's ws and ws-echo modes."""
import asyncio
import json
import os
import shutil
import struct
import subprocess
import tempfile
import time
import unittest

import websockets

import llclient as ll
from gwtest import GatewayTestCase

HERE = os.path.dirname(os.path.abspath(__file__))


def run(coro, timeout=20):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def lframe(op, body=b"", rid=1):
    return ll.frame(op, body, rid)


def unpack(msg):
    """(opcode, request_id, fields) of a binary message holding one longlink frame."""
    n, ver, op, flags, rid = ll.HEADER.unpack_from(msg)
    assert n == len(msg), (n, len(msg))
    return op, rid, ll.parse(op, msg[ll.HEADER.size:])


async def ws_login(port, user, device=1, **kw):
    ws = await websockets.connect("ws://127.0.0.1:%d/" % port, subprotocols=["longlink.v1"], ping_interval=None,
                                  **kw)
    await ws.send(lframe(ll.LOGIN, ll.login_body(user, device), 1))
    op, rid, ack = unpack(await ws.recv())
    assert (op, rid, ack["status"]) == (ll.LOGIN_ACK, 1, 0), (op, rid, ack)
    return ws


class WsTestCase(GatewayTestCase):
    gateway_args = ("--ws-port=0", "--backend=echo", "--ws-echo-path=/echo", "--ws-allowed-origins=https://ok.example",
                    "--max-frame-bytes=4096")

    def ws(self, path="/", upgrade=True):
        c = ll.WsClient(self.gw.ws_port, path=path, upgrade=upgrade)
        self.clients.append(c)
        return c

    def assertWsClosed(self, c, code, reason=None):
        got_code, got_reason, frames = c.wait_close_frame()
        self.assertEqual(got_code, code, (got_reason, frames))
        if reason is not None:
            self.assertEqual(got_reason, reason)
        self.assertIsNone(c.recv_frame(), "the gateway should close the TCP connection after its close frame")
        return frames


class PythonWebsocketsTest(WsTestCase):
    """The python `websockets` client: what a well-behaved third-party client sees."""

    def test_login_ping_send_push_and_close(self):
        before = self.snapshot()

        async def go():
            ws = await ws_login(self.gw.ws_port, 9100, 2)
            self.assertEqual(ws.subprotocol, "longlink.v1")
            await ws.send(lframe(ll.PING, ll.ping_body(1234), 7))
            self.assertEqual(unpack(await ws.recv()), (ll.PONG, 7, {"timestamp": 1234}))
            await ws.send(lframe(ll.SEND, ll.send_body(55, 99, b"over websocket"), 8))
            got = {}
            for _ in range(2):
                op, rid, f = unpack(await ws.recv())
                got[op] = (rid, f)
            self.assertEqual(got[ll.SEND_ACK][0], 8)
            self.assertEqual(got[ll.SEND_ACK][1]["status"], 0)
            self.assertEqual(got[ll.PUSH][1]["payload"], b"over websocket")
            self.assertEqual(got[ll.PUSH][1]["from_user"], 9100)
            # A WebSocket ping gets a pong with the same payload.
            pong = await ws.ping(b"are you there")
            await asyncio.wait_for(pong, 5)
            await ws.close(1000, "bye")
            return ws.close_code

        self.assertEqual(run(go()), 1000)  # the gateway answered the close handshake with 1000
        self.assertDelta(before, "longlink_gateway_logins_total", 1)
        self.assertDelta(before, "longlink_gateway_accepts_total", 1, transport="ws")
        self.assertDelta(before, "longlink_gateway_accepts_total", 0, transport="tcp")
        self.assertDelta(before, "longlink_gateway_ws_upgrades_total", 1, result="ok")
        self.assertDelta(before, "longlink_gateway_frames_received_total", 1, opcode="send", transport="ws")
        self.assertDelta(before, "longlink_gateway_frames_sent_total", 1, opcode="push", transport="ws")
        self.assertDelta(before, "longlink_gateway_closes_total", 1, reason="peer_closed")
        self.assertGreater(self.delta(before, "longlink_gateway_received_bytes_total", transport="ws"), 0)
        self.assertGreater(self.delta(before, "longlink_gateway_sent_bytes_total", transport="ws"), 0)

    def test_sessions_gauge_by_transport_and_push_across_transports(self):
        async def go():
            ws = await ws_login(self.gw.ws_port, 9200, 1)
            tcp = self.login(9200, 2)
            self.gw.wait_metric("longlink_gateway_sessions", lambda v: v == 1, transport="ws")
            self.assertEqual(self.gw.metric("longlink_gateway_sessions", transport="tcp"), 1)
            self.assertEqual(self.gw.metric("longlink_gateway_connections", transport="ws"), 1)
            # A SEND over TCP pushes to the WebSocket device of the same user, and the other way round.
            rid = tcp.send(ll.SEND, ll.send_body(1, 5, b"tcp to ws"))
            self.assertEqual(tcp.expect_reply(ll.SEND_ACK, rid)["status"], 0)
            tcp.expect(ll.PUSH)
            op, _, push = unpack(await ws.recv())
            self.assertEqual((op, push["payload"]), (ll.PUSH, b"tcp to ws"))
            await ws.send(lframe(ll.SEND, ll.send_body(1, 6, b"ws to tcp"), 3))
            self.assertEqual(tcp.expect(ll.PUSH)[2]["payload"], b"ws to tcp")
            await ws.close()

        run(go())

    def test_fragmented_message_from_websockets(self):
        async def go():
            ws = await ws_login(self.gw.ws_port, 9300)
            msg = lframe(ll.SEND, ll.send_body(2, 1, b"x" * 1000), 4)
            # An iterable of bytes is sent as one fragmented message.
            await ws.send([msg[:10], msg[10:500], msg[500:]])
            ops = sorted([unpack(await ws.recv())[0] for _ in range(2)])
            self.assertEqual(ops, [ll.SEND_ACK, ll.PUSH])
            await ws.close()

        run(go())

    def test_duplicate_login_kicks_with_close_1008(self):
        async def go():
            first = await ws_login(self.gw.ws_port, 9400, 1)
            second = await ws_login(self.gw.ws_port, 9400, 1)
            op, _, kick = unpack(await first.recv())
            self.assertEqual(op, ll.KICK)
            with self.assertRaises(websockets.ConnectionClosed):
                await first.recv()
            self.assertEqual(first.close_code, 1008)
            await second.close()

        run(go())

    def test_echo_path_without_login(self):
        before = self.snapshot()

        async def go():
            async with websockets.connect("ws://127.0.0.1:%d/echo" % self.gw.ws_port, ping_interval=None) as ws:
                self.assertIsNone(ws.subprotocol)
                for payload in (b"\x00\x01binary", b"", bytes(range(256)) * 8):
                    await ws.send(payload)
                    self.assertEqual(await ws.recv(), payload)
                await ws.send("text comes back as text")
                self.assertEqual(await ws.recv(), "text comes back as text")

        run(go())
        self.assertDelta(before, "longlink_gateway_ws_upgrades_total", 1, result="echo")
        self.assertDelta(before, "longlink_gateway_logins_total", 0)


class RawWebSocketTest(WsTestCase):
    """Raw frames over a plain socket: fragmentation, control frames between fragments, protocol errors."""

    def test_fragmented_message_with_ping_in_between(self):
        c = self.ws()
        c.login(9500)
        msg = lframe(ll.SEND, ll.send_body(2, 1, b"fragmented payload"), 11)
        c.send_frame(ll.WS_BINARY, msg[:5], fin=False)
        c.send_frame(ll.WS_PING, b"mid")
        c.send_frame(ll.WS_CONT, msg[5:20], fin=False)
        c.send_frame(ll.WS_CONT, msg[20:], fin=True)
        self.assertEqual(c.recv_frame(), (ll.WS_PONG, True, b"mid"))
        self.assertEqual(c.expect_reply(ll.SEND_ACK, 11)["status"], 0)
        self.assertEqual(c.expect(ll.PUSH)[2]["payload"], b"fragmented payload")

    def test_frames_split_across_reads_and_many_per_read(self):
        c = self.ws()
        c.login(9510)
        data = b"".join(ll.ws_frame(ll.WS_BINARY, lframe(ll.PING, ll.ping_body(i), 100 + i)) for i in range(50))
        for i in range(0, len(data), 7):  # byte-dribbled: every frame is split, headers included
            c.sock.sendall(data[i:i + 7])
            time.sleep(0.001)
        for i in range(50):
            self.assertEqual(c.expect_reply(ll.PONG, 100 + i)["timestamp"], i)
        c.sock.sendall(data)  # and all at once
        for i in range(50):
            self.assertEqual(c.expect_reply(ll.PONG, 100 + i)["timestamp"], i)

    def test_login_in_the_same_segment_as_the_upgrade(self):
        c = self.ws(upgrade=False)
        req = ll.ws_upgrade_request()
        self.assertEqual(c.handshake(req + ll.ws_frame(ll.WS_BINARY, lframe(ll.LOGIN, ll.login_body(9520, 1), 1))),
                         101)
        self.assertEqual(c.expect_reply(ll.LOGIN_ACK, 1)["status"], 0)
        self.assertEqual(c.ping(5), 5)

    def test_client_close_is_answered_with_the_same_code(self):
        before = self.snapshot()
        c = self.ws()
        c.login(9530)
        c.send_frame(ll.WS_CLOSE, struct.pack(">H", 4001) + b"app reason")
        self.assertWsClosed(c, 4001)
        c2 = self.ws()
        c2.send_frame(ll.WS_CLOSE)  # empty close body: answered with 1000
        self.assertWsClosed(c2, 1000)
        self.assertDelta(before, "longlink_gateway_closes_total", 2, reason="peer_closed")

    def check_error(self, send, code, reason, error=None, client=None):
        before = self.snapshot()
        c = client or self.ws()
        send(c)
        self.assertWsClosed(c, code)
        self.assertDelta(before, "longlink_gateway_closes_total", 1, reason=reason)
        if error:
            self.assertDelta(before, "longlink_gateway_ws_protocol_errors_total", 1, error=error)
            self.assertEqual(c.close_reason, error)

    def test_unmasked_frame_is_1002(self):
        self.check_error(lambda c: c.send_frame(ll.WS_BINARY, lframe(ll.PING, ll.ping_body()), mask=False), 1002,
                         "ws_protocol_error", "unmasked")

    def test_text_frame_is_1003(self):
        self.check_error(lambda c: c.send_frame(ll.WS_TEXT, b"hello"), 1003, "ws_text_refused", "text_not_accepted")

    def test_oversize_frame_is_1009_before_its_payload(self):
        # Only the header: the gateway refuses on the announced length.
        self.check_error(lambda c: c.sock.sendall(ll.ws_frame(ll.WS_BINARY, b"", length=1 << 20)[:-4] + b"\0" * 4),
                         1009, "ws_message_too_large", "frame_too_large")

    def test_oversize_fragmented_message_is_1009(self):
        def send(c):
            c.send_frame(ll.WS_BINARY, b"a" * 3000, fin=False)
            c.send_frame(ll.WS_CONT, b"b" * 3000, fin=True)
        self.check_error(send, 1009, "ws_message_too_large", "message_too_large")

    def test_reserved_bits_unknown_opcode_and_bad_sequences_are_1002(self):
        cases = [
            (lambda c: c.send_frame(ll.WS_BINARY, b"x", rsv=4), "reserved_bits"),
            (lambda c: c.send_frame(0x3, b"x"), "unknown_opcode"),
            (lambda c: c.send_frame(ll.WS_PING, b"x", fin=False), "fragmented_control"),
            (lambda c: c.send_frame(ll.WS_PING, b"x" * 126), "control_too_long"),
            (lambda c: c.send_frame(ll.WS_CONT, b"x"), "unexpected_continuation"),
            (lambda c: (c.send_frame(ll.WS_BINARY, b"x", fin=False), c.send_frame(ll.WS_BINARY, b"y")),
             "expected_continuation"),
            (lambda c: c.send_frame(ll.WS_CLOSE, b"\x03"), "bad_close_length"),
            (lambda c: c.send_frame(ll.WS_CLOSE, struct.pack(">H", 1005)), "bad_close_code"),
        ]
        for send, error in cases:
            with self.subTest(error=error):
                self.check_error(send, 1002, "ws_protocol_error", error)

    def test_message_that_is_not_one_longlink_frame_is_1002(self):
        for payload in (b"\x00\x00\x00\x0c\x01", lframe(ll.PING, ll.ping_body()) * 2,
                        lframe(ll.PING, ll.ping_body())[:-1], ll.frame(ll.PING, ll.ping_body(), version=9)):
            with self.subTest(payload=payload):
                self.check_error(lambda c: c.send_frame(ll.WS_BINARY, payload), 1002, "ws_bad_message")

    def test_longlink_frame_too_large_inside_a_message_is_1009(self):
        self.check_error(lambda c: c.send_frame(ll.WS_BINARY, ll.frame(ll.SEND, b"", length=5000)), 1009,
                         "frame_too_large")

    def test_first_message_must_be_login(self):
        before = self.snapshot()
        c = self.ws()
        c.send(ll.PING, ll.ping_body())
        code, _, frames = c.wait_close_frame()
        self.assertEqual(code, 1008)
        self.assertEqual([f[0] for f in frames], [ll.ERROR])
        self.assertDelta(before, "longlink_gateway_closes_total", 1, reason="not_logged_in")

    def test_logout_closes_with_1000(self):
        c = self.ws()
        c.login(9540)
        c.send(ll.LOGOUT, b"")
        self.assertWsClosed(c, 1000)


class DefaultOriginTest(GatewayTestCase):
    """Without --ws-allowed-origins a browser page may open a session only from the gateway's own host (any
    port: the web chat page comes from the admin port); clients that send no Origin are not affected."""
    gateway_args = ("--ws-port=0", "--backend=echo")

    def handshake(self, origin=None, host="127.0.0.1:8080"):
        c = ll.WsClient(self.gw.ws_port, upgrade=False)
        self.clients.append(c)
        return c.handshake(ll.ws_upgrade_request(host=host, origin=origin))

    def test_same_host_only(self):
        self.assertEqual(self.handshake(), 101)
        self.assertEqual(self.handshake("http://127.0.0.1:9000"), 101)
        self.assertEqual(self.handshake("https://127.0.0.1"), 101)
        self.assertEqual(self.handshake("http://CHAT.example:1", host="chat.example"), 101)
        self.assertEqual(self.handshake("http://[::1]:9000", host="[::1]:7001"), 101)
        for origin in ("https://evil.example", "http://127.0.0.2:8080", "null", "http://127.0.0.1.evil.example"):
            with self.subTest(origin=origin):
                self.assertEqual(self.handshake(origin), 403)


class AnyOriginTest(GatewayTestCase):
    gateway_args = ("--ws-port=0", "--backend=echo", "--ws-allowed-origins=*")

    def test_star_allows_any(self):
        c = ll.WsClient(self.gw.ws_port, upgrade=False)
        self.clients.append(c)
        self.assertEqual(c.handshake(ll.ws_upgrade_request(origin="https://anywhere.example")), 101)


class UpgradeTest(WsTestCase):
    """The HTTP handshake: statuses for a wrong path, a bad Origin, a bad version, a too large head."""

    def reject(self, request, status, reason, result):
        before = self.snapshot()
        c = self.ws(upgrade=False)
        self.assertEqual(c.handshake(request), status)
        self.assertEqual(c.headers.get("connection", "").lower(), "close")
        self.assertIsNone(c.recv_frame(), "the gateway should close after an error answer")
        self.assertDelta(before, "longlink_gateway_closes_total", 1, reason=reason)
        self.assertDelta(before, "longlink_gateway_ws_upgrades_total", 1, result=result)
        return c

    def test_wrong_path_is_404(self):
        self.reject(ll.ws_upgrade_request("/nope"), 404, "ws_bad_path", "bad_path")

    def test_bad_origin_is_403(self):
        self.reject(ll.ws_upgrade_request(origin="https://evil.example"), 403, "ws_bad_origin", "bad_origin")
        c = self.ws(upgrade=False)
        self.assertEqual(c.handshake(ll.ws_upgrade_request(origin="https://ok.example")), 101)

    def test_bare_lf_head_is_400_at_once(self):
        """LF-only line endings are refused when they arrive, not held until the login timeout."""
        start = time.monotonic()
        self.reject(b"GET / HTTP/1.1\nHost: x\nUpgrade: websocket\n", 400, "ws_bad_upgrade", "malformed")
        self.assertLess(time.monotonic() - start, 3)

    def test_version_is_426(self):
        c = self.reject(ll.ws_upgrade_request(version="8"), 426, "ws_unsupported_version", "unsupported_version")
        self.assertEqual(c.headers.get("sec-websocket-version"), "13")

    def test_malformed_requests_are_400(self):
        self.reject(b"POST / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "ws_bad_upgrade", "bad_method")
        self.reject(ll.ws_upgrade_request(key="short"), 400, "ws_bad_upgrade", "bad_key")

    def test_too_large_head_is_431(self):
        self.reject(ll.ws_upgrade_request(extra="X-Pad: " + "a" * 9000 + "\r\n"), 431, "ws_upgrade_too_large",
                    "header_too_large")

    def test_not_http_at_all_is_refused(self):
        before = self.snapshot()
        c = self.ws(upgrade=False)
        c.sock.sendall(lframe(ll.LOGIN, ll.login_body(1, 1)))  # a longlink client on the wrong port
        self.assertEqual(c.handshake(b""), 400)
        self.assertDelta(before, "longlink_gateway_closes_total", 1, reason="ws_bad_upgrade")

    def test_head_in_pieces_and_without_subprotocol(self):
        c = self.ws(upgrade=False)
        req = ll.ws_upgrade_request(subprotocol=None)
        body, last = req[:-1], req[-1:]
        for i in range(0, len(body), 13):
            c.sock.sendall(body[i:i + 13])
            time.sleep(0.002)
        self.assertEqual(c.handshake(last), 101)
        self.assertNotIn("sec-websocket-protocol", c.headers)  # accepted without one
        self.assertEqual(c.login(9600)["status"], 0)


class TextAndTimeoutsTest(GatewayTestCase):
    """--ws-accept-text, and the deadlines: upgrade under --login-timeout, heartbeats by WebSocket ping."""

    gateway_args = ("--ws-port=0", "--backend=echo", "--ws-accept-text", "--login-timeout=500ms",
                    "--heartbeat-interval=300ms", "--heartbeat-timeout=900ms")

    def ws(self, upgrade=True):
        c = ll.WsClient(self.gw.ws_port, upgrade=upgrade)
        self.clients.append(c)
        return c

    def test_text_with_valid_utf8_is_a_frame_and_bad_utf8_is_1007(self):
        c = self.ws()
        c.send_frame(ll.WS_TEXT, lframe(ll.LOGIN, ll.login_body(0x2541, 1), 1))  # every byte ASCII: valid UTF-8
        self.assertEqual(c.expect_reply(ll.LOGIN_ACK, 1)["status"], 0)
        before = self.gw.snapshot()
        c.send_frame(ll.WS_TEXT, b"\xc3\x28 not utf-8")
        code, reason, _ = c.wait_close_frame()
        self.assertEqual((code, reason), (1007, "invalid_utf8"))
        deadline = time.monotonic() + 3
        while self.gw.metric("longlink_gateway_closes_total", reason="ws_invalid_utf8") - \
                before.get("longlink_gateway_closes_total", reason="ws_invalid_utf8") != 1:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.02)

    def test_upgrade_must_finish_within_the_login_timeout(self):
        c = self.ws(upgrade=False)
        c.sock.sendall(b"GET / HTTP/1.1\r\n")
        t0 = time.monotonic()
        self.assertIsNone(c.recv_frame(timeout=5))
        self.assertLess(time.monotonic() - t0, 3)

    def test_websocket_pings_alone_keep_the_session(self):
        async def go():
            ws = await websockets.connect("ws://127.0.0.1:%d/" % self.gw.ws_port, subprotocols=["longlink.v1"],
                                          ping_interval=0.2, ping_timeout=5)
            await ws.send(lframe(ll.LOGIN, ll.login_body(9710, 1), 1))
            self.assertEqual(unpack(await ws.recv())[0], ll.LOGIN_ACK)
            await asyncio.sleep(2.5)  # almost 3x --heartbeat-timeout, without any longlink PING
            await ws.send(lframe(ll.SEND, ll.send_body(1, 1, b"still here"), 2))
            ops = sorted([unpack(await ws.recv())[0] for _ in range(2)])
            self.assertEqual(ops, [ll.SEND_ACK, ll.PUSH])
            await ws.close()
            # Without pings the same session times out.
            silent = await websockets.connect("ws://127.0.0.1:%d/" % self.gw.ws_port, subprotocols=["longlink.v1"],
                                              ping_interval=None)
            await silent.send(lframe(ll.LOGIN, ll.login_body(9711, 1), 1))
            await silent.recv()
            with self.assertRaises(websockets.ConnectionClosed):
                await asyncio.wait_for(silent.recv(), 5)

        before = self.gw.snapshot()
        run(go())
        self.assertEqual(self.gw.metric("longlink_gateway_closes_total", reason="heartbeat_timeout") -
                         before.get("longlink_gateway_closes_total", reason="heartbeat_timeout"), 1)


class DrainTest(unittest.TestCase):
    def test_drain_sends_goaway_then_close_1001(self):
        gw = ll.Gateway("--ws-port=0", "--backend=echo", "--drain-seconds=0")
        try:
            c = ll.WsClient(gw.ws_port)
            c.login(9800)
            gw.proc.send_signal(15)
            code, _, frames = c.wait_close_frame(timeout=10)
            self.assertEqual([f[0] for f in frames], [ll.GOAWAY])
            self.assertEqual(code, 1001)
        finally:
            self.assertEqual(gw.terminate(), 0)


class NodeWsClientTest(unittest.TestCase):
    """The npm `ws` package as the client (tests/integration/ws_node_client.js)."""

    def test_node_ws_client(self):
        node, npm = shutil.which("node"), shutil.which("npm")
        if not node or not npm:
            self.skipTest("node/npm not installed")
        prefix = os.path.join(HERE, "node")
        if not os.path.isdir(os.path.join(prefix, "node_modules", "ws")):
            r = subprocess.run([npm, "ci", "--prefix", prefix, "--no-audit", "--no-fund"], capture_output=True,
                               text=True, timeout=300)
            if r.returncode != 0:
                self.skipTest("npm ci failed (no registry?): " + r.stderr[-500:])
        with ll.Gateway("--ws-port=0", "--backend=echo") as gw:
            r = subprocess.run([node, os.path.join(HERE, "ws_node_client.js"), str(gw.ws_port), "424242"],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            out = json.loads(r.stdout.strip().splitlines()[-1])
            self.assertEqual(out, {"subprotocol": "longlink.v1", "login_status": 0, "send_ack_status": 0,
                                   "push_payload": "hello from node ws", "close_code": 1000})
            self.assertEqual(gw.metric("longlink_gateway_closes_total", reason="peer_closed"), 1)


def loadgen_binary():
    return os.environ.get("LONGLINK_LOADGEN") or os.path.join(ll.ROOT, "build", "loadgen", "longlink-loadgen")


class LoadgenWsTest(unittest.TestCase):
    """The loadgen's WebSocket client modes against the gateway."""

    def run_loadgen(self, scenario):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "s.yaml")
            with open(path, "w") as f:
                f.write(scenario)
            report = os.path.join(tmp, "r.json")
            r = subprocess.run([loadgen_binary(), "--scenario=" + path, "--report-json=" + report, "--shards=2"],
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            with open(report) as f:
                return json.load(f)

    def test_protocol_ws_loses_nothing(self):
        with ll.Gateway("--ws-port=0", "--backend=echo", "--heartbeat-interval=1s", "--heartbeat-timeout=5s") as gw:
            rep = self.run_loadgen("""target:
  addresses: [127.0.0.1:%d]
  protocol: ws
clients: 200
connect_rate: 1000
duration: 4s
messaging:
  rate_per_client: 1
  targets: self
thresholds:
  - lost == 0
""" % gw.ws_port)
            led = rep["ledger"]
            self.assertGreater(led["sent"], 200)
            self.assertEqual(led["lost"], 0)
            self.assertEqual(led["acked"], led["sent"])
            self.assertEqual(gw.metric("longlink_gateway_logins_total"), 200)
            self.assertEqual(gw.metric("longlink_gateway_accepts_total", transport="ws"), 200)

    def test_protocol_ws_echo(self):
        with ll.Gateway("--ws-port=0", "--backend=echo", "--ws-echo-path=/echo") as gw:
            rep = self.run_loadgen("""target:
  addresses: [127.0.0.1:%d]
  protocol: ws-echo
  ws_path: /echo
  ws_ping_interval: 500ms
clients: 100
duration: 4s
messaging:
  rate_per_client: 2
  payload: {distribution: uniform, min: 8, max: 3000}
""" % gw.ws_port)
            m = rep["metrics"]
            self.assertEqual(m["protocol_errors"], 0)
            self.assertGreater(m["echo_sent"], 400)
            self.assertEqual(m["echo_received"], m["echo_sent"])
            self.assertGreater(m["pongs"], 300)
            self.assertEqual(gw.metric("longlink_gateway_ws_upgrades_total", result="echo"), 100)


if __name__ == "__main__":
    unittest.main()
