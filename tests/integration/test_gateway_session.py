"""Session rules against the real gateway: login, heartbeat, login timeout, duplicate devices, logout."""
import socket
import struct
import time
import unittest

import llclient as ll
from gwtest import GatewayTestCase


class LoginTest(GatewayTestCase):
    # Values no default has, so the LOGIN_ACK fields can only come from the flags.
    gateway_args = ("--heartbeat-interval=5s", "--heartbeat-timeout=17s")

    def test_login_ack_fields(self):
        before = self.snapshot()
        c = self.connect()
        c.send_raw(ll.frame(ll.LOGIN, ll.login_body(4242, 7, platform=2), request_id=0xC0FFEE))
        op, rid, ack = c.expect(ll.LOGIN_ACK)
        self.assertEqual(rid, 0xC0FFEE)
        self.assertEqual(ack["status"], 0)
        self.assertEqual(ack["heartbeat_interval_ms"], 5000)
        self.assertEqual(ack["heartbeat_timeout_ms"], 17000)
        self.assertEqual(ack["message"], "")
        self.assertLess(abs(ack["server_time_ms"] - time.time() * 1000), 5000)
        self.assertDelta(before, "longlink_gateway_logins_total", 1)
        self.assertDelta(before, "longlink_gateway_login_latency_seconds_count", 1)
        self.assertDelta(before, "longlink_gateway_sessions", 1)
        self.assertDelta(before, "longlink_gateway_frames_received_total", 1, opcode="login")
        self.assertDelta(before, "longlink_gateway_frames_sent_total", 1, opcode="login_ack")
        self.assertAlive(c)

    def test_many_users_spread_over_both_shards(self):
        before = self.snapshot()
        users = range(1000, 1040)
        clients, session_ids = [], set()
        for u in users:
            c = self.connect()
            ack = c.login(u, 1)
            self.assertEqual(ack["status"], 0)
            session_ids.add(ack["session_id"])
            clients.append(c)
        self.assertEqual(len(session_ids), len(users), "session ids must be unique")
        for c in clients:
            self.assertAlive(c)
        self.assertDelta(before, "longlink_gateway_accepts_total", len(users))
        self.assertDelta(before, "longlink_gateway_logins_total", len(users))
        self.assertDelta(before, "longlink_gateway_sessions", len(users))
        # Connections land on whichever shard the kernel picks and move to their user's shard at login.
        self.assertGreater(self.delta(before, "longlink_gateway_migrations_total"), 0)
        for shard in (0, 1):
            self.assertGreater(self.delta(before, "longlink_gateway_sessions", shard=shard), 0,
                               "no session on shard %d" % shard)
        for c in clients:
            c.close()
        self.assertDelta(before, "longlink_gateway_sessions", 0)
        self.assertDelta(before, "longlink_gateway_connections", 0)
        self.assertCloseDeltas(before, {})

    def test_ping_pong_echoes_timestamp_and_request_id(self):
        c = self.login(1100)
        before = self.snapshot()
        for rid, ts in ((1, 0), (0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF), (77, 0x0102030405060708), (0, 12345)):
            c.send_raw(ll.frame(ll.PING, ll.ping_body(ts), request_id=rid))
            self.assertEqual(c.expect_reply(ll.PONG, rid), {"timestamp": ts})
        self.assertDelta(before, "longlink_gateway_frames_received_total", 4, opcode="ping")
        self.assertDelta(before, "longlink_gateway_frames_sent_total", 4, opcode="pong")

    def test_frames_pipelined_behind_login(self):
        # LOGIN and the frames after it in one write: when the connection moves to its user's shard the
        # bytes after LOGIN travel with it and are answered there, in order.
        before = self.snapshot()
        for u in range(1200, 1220):
            c = self.connect()
            c.send_raw(ll.frame(ll.LOGIN, ll.login_body(u, 3), request_id=1) +
                       b"".join(ll.frame(ll.PING, ll.ping_body(u * 10 + i), request_id=2 + i) for i in range(3)) +
                       ll.frame(ll.SEND, ll.send_body(u, 99, b"after login"), request_id=9))
            self.assertEqual(c.expect_reply(ll.LOGIN_ACK, 1)["status"], 0)
            for i in range(3):
                self.assertEqual(c.expect_reply(ll.PONG, 2 + i)["timestamp"], u * 10 + i)
            got = c.expect_replies([(ll.SEND_ACK, 9), (ll.PUSH, 0)])
            self.assertEqual(got[(ll.SEND_ACK, 9)]["client_msg_id"], 99)
            self.assertEqual(got[(ll.PUSH, 0)]["payload"], b"after login")
        self.assertGreater(self.delta(before, "longlink_gateway_migrations_total"), 0)

    def test_second_login_on_a_connection_is_refused(self):
        c = self.login(1300, 1)
        before = self.snapshot()
        c.send_raw(ll.frame(ll.LOGIN, ll.login_body(1301, 2), request_id=55))
        err = c.expect_reply(ll.ERROR, 55)
        self.assertEqual(err["code"], 4)
        # The existing session continues unchanged, still as user 1300 device 1.
        self.assertAlive(c)
        rid = c.send(ll.SEND, ll.send_body(5, 6, b"x"))
        got = c.expect_replies([(ll.SEND_ACK, rid), (ll.PUSH, 0)])
        self.assertEqual(got[(ll.SEND_ACK, rid)]["status"], 0)
        push = got[(ll.PUSH, 0)]
        self.assertEqual((push["from_user"], push["from_device"]), (1300, 1))
        self.assertDelta(before, "longlink_gateway_logins_total", 0)
        self.assertDelta(before, "longlink_gateway_sessions", 0)
        self.assertCloseDeltas(before, {})

    def test_logout_closes_without_reply(self):
        c = self.login(1400)
        before = self.snapshot()
        c.send(ll.LOGOUT)
        self.assertClosedSilently(c)
        self.assertCloseDeltas(before, {"logout": 1})
        self.assertDelta(before, "longlink_gateway_sessions", -1)


class ChurnTest(GatewayTestCase):
    def test_clients_vanishing_around_login_leave_nothing_behind(self):
        # Hang-ups at every stage of a login (before it, right after sending it while the connection may be
        # moving shards, after the ack), with FIN and with RST: the gauges return to where they were.
        before = self.snapshot()
        n = 0
        for i in range(150):
            c = ll.Client(self.gw.port)
            stage = i % 5
            if stage >= 1:
                c.send_raw(ll.frame(ll.LOGIN, ll.login_body(20000 + i, 1), request_id=1) +
                           (ll.frame(ll.PING, ll.ping_body(i), request_id=2) if stage == 2 else b""))
            if stage == 3:
                c.expect_reply(ll.LOGIN_ACK, 1)
            if stage == 4 or i % 2:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
            c.close()
            n += 1
        self.gw.wait_metric("longlink_gateway_connections",
                            lambda v: v == before.get("longlink_gateway_connections"), timeout=10)
        self.gw.wait_metric("longlink_gateway_sessions",
                            lambda v: v == before.get("longlink_gateway_sessions"), timeout=10)
        self.assertDelta(before, "longlink_gateway_accepts_total", n)
        # A reset is seen by whichever of the receive or the send (a LOGIN_ACK on its way) meets it first.
        self.assertCloseDeltas(before, {
            reason: self.delta(before, "longlink_gateway_closes_total", reason=reason)
            for reason in ("read_error", "write_error")})
        self.assertEqual(self.gw.metric("longlink_gateway_pending_send_bytes"), 0)
        self.assertAlive(self.login(20999))


class DuplicateDeviceTest(GatewayTestCase):
    def test_same_device_kicks_older_connection(self):
        for user in range(2000, 2006):  # several users, so the connections also meet after moving shards
            with self.subTest(user=user):
                before = self.snapshot()
                old = self.login(user, 1)
                other = self.login(user, 2)
                new = self.login(user, 1)
                frames = self.assertClosed(old)
                self.assertEqual(len(frames), 1, frames)
                op, rid, kick = frames[0]
                self.assertEqual((op, rid, kick["code"]), (ll.KICK, 0, 1))
                self.assertAlive(other)
                self.assertAlive(new)
                self.assertDelta(before, "longlink_gateway_kicks_total", 1)
                self.assertCloseDeltas(before, {"kicked": 1})
                self.assertDelta(before, "longlink_gateway_sessions", 2)
                # The user's messages now reach the two live devices only.
                rid = new.send(ll.SEND, ll.send_body(user, 31, b"after kick"))
                got = new.expect_replies([(ll.SEND_ACK, rid), (ll.PUSH, 0)])
                self.assertEqual(got[(ll.SEND_ACK, rid)]["status"], 0)
                for push in (got[(ll.PUSH, 0)], other.expect_reply(ll.PUSH, 0)):
                    self.assertEqual((push["from_device"], push["payload"]), (1, b"after kick"))

    def test_kicked_device_can_take_over_again(self):
        a = self.login(2100, 1)
        b = self.login(2100, 1)
        self.assertEqual(self.assertClosed(a)[0][0], ll.KICK)
        c = self.login(2100, 1)
        self.assertEqual(self.assertClosed(b)[0][0], ll.KICK)
        self.assertAlive(c)


class HeartbeatTest(GatewayTestCase):
    gateway_args = ("--heartbeat-interval=250ms", "--heartbeat-timeout=1s")

    def test_silent_client_is_closed(self):
        before = self.snapshot()
        c = self.login(3000)
        start = time.monotonic()
        self.assertClosedSilently(c, timeout=5)
        elapsed = time.monotonic() - start
        self.assertGreaterEqual(elapsed, 0.9)
        self.assertLess(elapsed, 4.0)
        self.assertDelta(before, "longlink_gateway_heartbeat_timeouts_total", 1)
        self.assertCloseDeltas(before, {"heartbeat_timeout": 1})
        self.assertDelta(before, "longlink_gateway_sessions", 0)

    def test_client_pinging_at_the_interval_stays(self):
        before = self.snapshot()
        pinger = self.login(3100)
        acker = self.login(3101)  # any frame counts as a sign of life, not only PING
        silent = self.login(3102)
        deadline = time.monotonic() + 2.5  # two and a half heartbeat timeouts
        n = 0
        while time.monotonic() < deadline:
            n += 1
            self.assertEqual(pinger.ping(n), n)
            acker.send(ll.PUSH_ACK, struct.pack(">Q", n))
            time.sleep(0.25)
        self.assertClosedSilently(silent, timeout=1)
        self.assertAlive(pinger)
        self.assertAlive(acker)
        self.assertDelta(before, "longlink_gateway_heartbeat_timeouts_total", 1)
        self.assertCloseDeltas(before, {"heartbeat_timeout": 1})


class LoginTimeoutTest(GatewayTestCase):
    gateway_args = ("--login-timeout=400ms",)

    def check_closed_for_login_timeout(self, c, before):
        start = time.monotonic()
        self.assertClosedSilently(c)
        self.assertLess(time.monotonic() - start, 3.0)
        self.assertCloseDeltas(before, {"login_timeout": 1})
        self.assertDelta(before, "longlink_gateway_connections", 0)

    def test_silent_connection_is_closed(self):
        before = self.snapshot()
        start = time.monotonic()
        c = self.connect()
        self.check_closed_for_login_timeout(c, before)
        self.assertGreaterEqual(time.monotonic() - start, 0.35)
        self.assertDelta(before, "longlink_gateway_accepts_total", 1)

    def test_partial_header_is_closed(self):
        before = self.snapshot()
        c = self.connect()
        c.send_raw(ll.frame(ll.LOGIN, ll.login_body(4000, 1))[:7])
        self.check_closed_for_login_timeout(c, before)

    def test_partial_login_is_closed(self):
        before = self.snapshot()
        c = self.connect()
        c.send_raw(ll.frame(ll.LOGIN, ll.login_body(4001, 1, token="abc"))[:20])
        self.check_closed_for_login_timeout(c, before)

    def test_login_dribbled_past_the_deadline_is_closed(self):
        # The deadline runs from accept: a LOGIN sent a byte at a time cannot stretch it.
        before = self.snapshot()
        c = self.connect()
        data = ll.frame(ll.LOGIN, ll.login_body(4002, 1, token="x" * 20))
        closed = False
        for i in range(len(data)):
            try:
                c.send_raw(data[i:i + 1])
            except OSError:
                closed = True
                break
            time.sleep(0.03)
        if not closed:
            frames = self.assertClosed(c)
            self.assertEqual(frames, [])
        self.assertCloseDeltas(before, {"login_timeout": 1})
        self.assertDelta(before, "longlink_gateway_logins_total", 0)

    def test_login_in_time_outlives_the_login_timeout(self):
        before = self.snapshot()
        c = self.login(4003)
        time.sleep(0.9)
        self.assertAlive(c)
        self.assertCloseDeltas(before, {})


if __name__ == "__main__":
    unittest.main()
