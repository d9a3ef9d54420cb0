"""Malformed input against the real gateway: each case closes (or answers) only the offending connection,
with the documented reason, while a well-behaved client on the same gateway keeps working."""
import struct
import time
import unittest

import llclient as ll
from gwtest import GatewayTestCase

MAX_FRAME = 1024


def header(length, opcode=ll.PING, version=1, request_id=0):
    return ll.HEADER.pack(length, version, opcode, 0, request_id)


class MalformedInputTest(GatewayTestCase):
    gateway_args = ("--max-frame-bytes=%d" % MAX_FRAME,)

    def setUp(self):
        super().setUp()
        self.bystander = self.login(6000 + self.rng.randrange(1000), 9)
        self.before = self.snapshot()

    def tearDown(self):
        # Whatever the case did, the well-behaved client still gets answers.
        self.assertAlive(self.bystander)
        super().tearDown()

    def logged_in(self, user=7000):
        return self.login(user + self.rng.randrange(1000))

    # ---- header-level errors: closed at once, nothing sent ----

    def test_frame_above_max_closes_before_body(self):
        c = self.logged_in()
        c.send_raw(header(MAX_FRAME + 1, ll.SEND, request_id=3))  # the body is never sent
        self.assertClosedSilently(c)
        self.assertCloseDeltas(self.before, {"frame_too_large": 1})

    def test_huge_length_before_login(self):
        c = self.connect()
        c.send_raw(header(0xFFFFFFFF, ll.LOGIN))
        self.assertClosedSilently(c)
        self.assertCloseDeltas(self.before, {"frame_too_large": 1})

    def test_frame_at_max_is_accepted(self):
        c = self.logged_in()
        payload = bytes(range(256)) * 4
        payload = payload[:MAX_FRAME - 33]
        rid = c.send(ll.SEND, ll.send_body(1, 2, payload))
        self.assertEqual(c.expect_reply(ll.SEND_ACK, rid)["status"], 0)
        self.assertEqual(c.expect_reply(ll.PUSH, 0)["payload"], payload)
        self.assertCloseDeltas(self.before, {})

    def test_oversize_header_split_across_writes(self):
        c = self.logged_in()
        h = header(MAX_FRAME + 100, ll.SEND)
        c.send_raw(h[:3])
        time.sleep(0.05)
        c.send_raw(h[3:])
        self.assertClosedSilently(c)
        self.assertCloseDeltas(self.before, {"frame_too_large": 1})

    def test_bad_version(self):
        c = self.logged_in()
        c.send_raw(header(20, ll.PING, version=2) + struct.pack(">Q", 1))
        self.assertClosedSilently(c)
        self.assertCloseDeltas(self.before, {"bad_frame": 1})

    def test_bad_version_split_across_writes(self):
        c = self.logged_in()
        h = header(20, ll.PING, version=0)
        c.send_raw(h[:5])
        time.sleep(0.05)
        c.send_raw(h[5:])
        self.assertClosedSilently(c)
        self.assertCloseDeltas(self.before, {"bad_frame": 1})

    def test_garbage_before_login(self):
        c = self.connect()
        c.send_raw(b"GET / HTTP/1.1\r\nHost: longlink\r\n\r\n")
        self.assertClosedSilently(c)
        self.assertCloseDeltas(self.before, {"bad_frame": 1})

    def test_garbage_after_login(self):
        c = self.logged_in()
        c.send_raw(bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03, 0xAA, 0xBB]))
        self.assertClosedSilently(c)
        self.assertCloseDeltas(self.before, {"bad_frame": 1})

    def test_length_below_header_size(self):
        for length in (11, 0):
            with self.subTest(length=length):
                before = self.snapshot()
                c = self.logged_in()
                c.send_raw(header(length))
                self.assertClosedSilently(c)
                self.assertCloseDeltas(before, {"bad_frame": 1})

    def test_frames_after_a_bad_header_are_not_handled(self):
        c = self.logged_in()
        c.send_raw(ll.frame(ll.PING, ll.ping_body(1), request_id=1) + header(5) +
                   ll.frame(ll.PING, ll.ping_body(2), request_id=2))
        frames = self.assertClosed(c)
        # The close is immediate, so the answer to the first PING may or may not have left yet; the PING
        # after the bad header is never handled.
        self.assertIn(frames, ([], [(ll.PONG, 1, {"timestamp": 1})]))
        self.assertDelta(self.before, "longlink_gateway_frames_received_total", 1, opcode="ping")
        self.assertCloseDeltas(self.before, {"bad_frame": 1})

    # ---- body-level errors ----

    def check_malformed(self, c, opcode, body, name):
        c.send_raw(ll.frame(opcode, body, request_id=0xBAD))
        frames = self.assertClosed(c)
        self.assertEqual(len(frames), 1, frames)
        op, rid, err = frames[0]
        self.assertEqual((op, rid, err["code"]), (ll.ERROR, 0xBAD, 2))
        self.assertEqual(err["message"], "malformed %s body" % name)

    def test_malformed_send_bodies(self):
        good = ll.send_body(1, 2, b"hello")
        cases = {
            "short": good[:10],
            "payload length past the end": good[:17] + struct.pack(">I", 6) + b"hello",
            "trailing byte": good + b"\0",
            "empty": b"",
        }
        for what, body in cases.items():
            with self.subTest(what):
                before = self.snapshot()
                c = self.logged_in()
                self.check_malformed(c, ll.SEND, body, "send")
                self.assertCloseDeltas(before, {"malformed_body": 1})
                self.assertDelta(before, "longlink_gateway_sessions", 0)  # +1 login, -1 close

    def test_malformed_ping_and_logout(self):
        c = self.logged_in()
        self.check_malformed(c, ll.PING, b"\0" * 7, "ping")
        c = self.logged_in()
        self.check_malformed(c, ll.LOGOUT, b"\0", "logout")
        self.assertCloseDeltas(self.before, {"malformed_body": 2})

    def test_malformed_login(self):
        c = self.connect()
        self.check_malformed(c, ll.LOGIN, ll.login_body(7500, 1, "tok")[:-1], "login")
        self.assertCloseDeltas(self.before, {"malformed_body": 1})
        self.assertDelta(self.before, "longlink_gateway_login_failures_total", 1)
        self.assertDelta(self.before, "longlink_gateway_logins_total", 0)

    def test_first_frame_not_login(self):
        for opcode in (ll.PING, ll.SEND, 200):
            with self.subTest(opcode=opcode):
                before = self.snapshot()
                c = self.connect()
                c.send_raw(ll.frame(opcode, ll.ping_body(5), request_id=0x77))
                frames = self.assertClosed(c)
                self.assertEqual(len(frames), 1, frames)
                op, rid, err = frames[0]
                self.assertEqual((op, rid, err["code"]), (ll.ERROR, 0x77, 3))
                self.assertCloseDeltas(before, {"not_logged_in": 1})

    # ---- errors that keep the connection ----

    def test_unknown_opcode_keeps_connection(self):
        c = self.logged_in()
        for opcode, rid in ((200, 0x1234), (15, 9), (0, 10), (255, 11)):
            c.send_raw(ll.frame(opcode, b"whatever body", request_id=rid))
            err = c.expect_reply(ll.ERROR, rid)
            self.assertEqual(err["code"], 1, opcode)
        self.assertAlive(c)
        self.assertDelta(self.before, "longlink_gateway_frames_received_total", 4, opcode="unknown")
        self.assertDelta(self.before, "longlink_gateway_frames_sent_total", 4, opcode="error")
        self.assertCloseDeltas(self.before, {})

    def test_server_only_opcode_is_unsupported(self):
        c = self.logged_in()
        for opcode in (ll.LOGIN_ACK, ll.SEND_ACK, ll.PUSH, ll.SYNC_DONE, ll.KICK, ll.GOAWAY, ll.ERROR):
            rid = c.send(opcode, b"\0" * 8)
            self.assertEqual(c.expect_reply(ll.ERROR, rid)["code"], 5, ll.NAMES[opcode])
        # A PONG from a client is accepted silently.
        c.send(ll.PONG, ll.ping_body(3))
        self.assertAlive(c)
        self.assertCloseDeltas(self.before, {})


if __name__ == "__main__":
    unittest.main()
