"""SEND through the echo backend against the real gateway: acks, pushes to every device of the sender, TCP
stream splitting, and the slow-consumer and write-timeout limits."""
import struct
import threading
import time
import unittest

import llclient as ll
from gwtest import GatewayTestCase


def collect(client, count, timeout=10.0):
    """The next `count` frames as (opcode, request_id, fields)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        got = client.recv(max(0.01, deadline - time.monotonic()))
        if got is None:
            raise AssertionError("connection closed after %d of %d frames" % (len(out), count))
        out.append(got)
    return out


class EchoSendTest(GatewayTestCase):
    def send_and_check(self, sender, user, device, kind, target, cmid, payload, others=()):
        rid = self.rng.randrange(1, 1 << 32)
        sender.send_raw(ll.frame(ll.SEND, ll.send_body(target, cmid, payload, kind=kind), request_id=rid))
        frames = collect(sender, 2)
        by_op = {op: (r, f) for op, r, f in frames}
        self.assertEqual(sorted(by_op), [ll.SEND_ACK, ll.PUSH], frames)
        ack_rid, ack = by_op[ll.SEND_ACK]
        self.assertEqual(ack_rid, rid)
        self.assertEqual(ack["status"], 0)
        self.assertEqual(ack["client_msg_id"], cmid)
        self.assertNotEqual(ack["server_msg_id"], 0)
        self.assertLess(abs(ack["server_time_ms"] - time.time() * 1000), 5000)
        expected_push = dict(seq=0, server_msg_id=ack["server_msg_id"], from_user=user, from_device=device,
                             conv_kind=kind, conv_id=target, client_msg_id=cmid,
                             server_time_ms=ack["server_time_ms"], payload=payload)
        self.assertEqual(by_op[ll.PUSH], (0, expected_push))
        for other in others:
            self.assertEqual(other.expect_reply(ll.PUSH, 0), expected_push)
        return ack

    def test_send_ack_and_push(self):
        before = self.snapshot()
        c = self.login(8000, 3)
        ids = set()
        for i, payload in enumerate((b"hello", b"", bytes(range(256)) * 10)):
            ack = self.send_and_check(c, 8000, 3, 0, 8001, 0xABC000 + i, payload)
            ids.add(ack["server_msg_id"])
        ack = self.send_and_check(c, 8000, 3, 1, 77, 0xFFFFFFFFFFFFFFFF, b"to a group")
        ids.add(ack["server_msg_id"])
        self.assertEqual(len(ids), 4, "server_msg_id must differ per message")
        self.assertDelta(before, "longlink_gateway_frames_received_total", 4, opcode="send")
        self.assertDelta(before, "longlink_gateway_frames_sent_total", 4, opcode="send_ack")
        self.assertDelta(before, "longlink_gateway_frames_sent_total", 4, opcode="push")
        self.assertDelta(before, "longlink_gateway_backend_latency_seconds_count", 4)

    def test_largest_payload(self):
        c = self.login(8050)
        payload = bytes((i * 7) & 0xFF for i in range(65536 - 33))
        self.send_and_check(c, 8050, 1, 0, 1, 1, payload)

    def test_push_reaches_every_device_of_the_sender(self):
        for user in range(8100, 8106):
            with self.subTest(user=user):
                d1 = self.login(user, 1)
                d2 = self.login(user, 2)
                d3 = self.login(user, 3)
                stranger = self.login(user + 1000, 1)
                self.send_and_check(d1, user, 1, 0, 42, 500, b"from d1", others=(d2, d3))
                self.send_and_check(d3, user, 3, 0, 42, 501, b"from d3", others=(d1, d2))
                # Nobody else got a push: the next frame each sees is its own PONG.
                for c in (stranger, d1, d2, d3):
                    self.assertAlive(c)

    def test_sync_and_push_ack(self):
        # Echo keeps no inbox: SYNC ends at once; PUSH_ACK gets no answer.
        c = self.login(8060)
        c.send_raw(ll.frame(ll.PUSH_ACK, struct.pack(">Q", 3), request_id=40) +
                   ll.frame(ll.SYNC, struct.pack(">QI", 0, 100), request_id=41))
        self.assertEqual(c.expect_reply(ll.SYNC_DONE, 41), {"max_seq": 0, "has_more": 0})
        self.assertAlive(c)

    def test_frames_written_one_byte_at_a_time(self):
        before = self.snapshot()
        for user in range(8200, 8206):  # several users, so some logins move shards mid-stream
            with self.subTest(user=user):
                c = self.connect()
                data = (ll.frame(ll.LOGIN, ll.login_body(user, 1), request_id=1) +
                        ll.frame(ll.SEND, ll.send_body(9, 10, b"dribbled payload"), request_id=2) +
                        ll.frame(ll.PING, ll.ping_body(user), request_id=3))
                for i in range(len(data)):
                    c.send_raw(data[i:i + 1])
                    time.sleep(0.001)
                frames = collect(c, 4)
                self.assertEqual([(op, rid) for op, rid, _ in frames],
                                 [(ll.LOGIN_ACK, 1), (ll.SEND_ACK, 2), (ll.PUSH, 0), (ll.PONG, 3)])
                self.assertEqual(frames[2][2]["payload"], b"dribbled payload")
                self.assertEqual(frames[3][2]["timestamp"], user)
        self.assertDelta(before, "longlink_gateway_logins_total", 6)
        self.assertCloseDeltas(before, {})

    def test_many_frames_in_one_write(self):
        c = self.login(8300)
        data = b""
        expected = []
        for i in range(300):
            rid = 100 + i
            if i % 3 == 0:
                data += ll.frame(ll.SEND, ll.send_body(1, i, b"m%d" % i), request_id=rid)
                expected += [(ll.SEND_ACK, rid, i), (ll.PUSH, 0, b"m%d" % i)]
            else:
                data += ll.frame(ll.PING, ll.ping_body(i), request_id=rid)
                expected.append((ll.PONG, rid, i))
        c.send_raw(data)
        frames = collect(c, len(expected))
        got = []
        for op, rid, f in frames:
            got.append((op, rid, {ll.SEND_ACK: f.get("client_msg_id"), ll.PUSH: f.get("payload"),
                                  ll.PONG: f.get("timestamp")}[op]))
        self.assertEqual(got, expected)
        self.assertAlive(c)

    def test_stream_cut_at_random_points(self):
        c = self.login(8400)
        frames = [ll.frame(ll.SEND, ll.send_body(1, i, bytes([i]) * self.rng.randrange(0, 3000)), request_id=i + 1)
                  for i in range(60)]
        data = b"".join(frames)
        pos = 0
        while pos < len(data):
            n = self.rng.choice((1, 2, 5, 11, 12, 13, 100, 1000, 4096, 9000))
            c.send_raw(data[pos:pos + n])
            pos += n
        got = collect(c, 120)
        acks = [f["client_msg_id"] for op, _, f in got if op == ll.SEND_ACK]
        pushes = [(f["client_msg_id"], f["payload"]) for op, _, f in got if op == ll.PUSH]
        self.assertEqual(acks, list(range(60)))
        self.assertEqual(pushes, [(i, frames[i][12 + 21:]) for i in range(60)])


class SlowConsumerTest(GatewayTestCase):
    gateway_args = ("--max-frame-bytes=16384", "--max-pending-bytes=65536", "--write-timeout=60s")

    def test_reader_that_never_reads_is_closed(self):
        bystander = self.login(8500, 1)
        before = self.snapshot()
        slow = self.login(8501, 1, rcvbuf=4096)
        payload = b"s" * (16384 - 33)
        chunk = b"".join(ll.frame(ll.SEND, ll.send_body(1, i, payload), request_id=i + 1) for i in range(64))
        stop = threading.Event()
        outcome = {}

        def flood():
            sent = 0
            try:
                while sent < 256 << 20 and not stop.is_set():
                    slow.sock.sendall(chunk)
                    sent += len(chunk)
                outcome["error"] = None
            except OSError as e:  # the gateway closed the connection
                outcome["error"] = e
            outcome["sent"] = sent

        t = threading.Thread(target=flood, daemon=True)
        slow.sock.settimeout(30)
        t.start()
        try:
            self.gw.wait_metric("longlink_gateway_slow_consumers_total",
                                lambda v: v >= before.get("longlink_gateway_slow_consumers_total") + 1, timeout=30)
        except BaseException:
            stop.set()
            raise
        # The flood goes on until its own writes fail: stopping it here would race the close.
        t.join(30)
        stop.set()
        self.assertFalse(t.is_alive(), "the flooding client never noticed the close")
        self.assertIsInstance(outcome.get("error"), OSError, outcome)
        self.assertDelta(before, "longlink_gateway_slow_consumers_total", 1)
        self.assertCloseDeltas(before, {"slow_consumer": 1})
        # Its queue is gone with it.
        self.gw.wait_metric("longlink_gateway_pending_send_bytes", lambda v: v == 0, timeout=5)
        self.assertDelta(before, "longlink_gateway_sessions", 0)
        self.assertAlive(bystander)

    def test_reader_that_keeps_up_is_not_closed(self):
        # A client reading as fast as it writes never trips the limit, even with frames at the size limit.
        before = self.snapshot()
        c = self.login(8600, 1)
        payload = b"f" * (16384 - 33)
        for i in range(200):
            rid = c.send(ll.SEND, ll.send_body(1, i, payload))
            self.assertEqual(c.expect_reply(ll.SEND_ACK, rid)["client_msg_id"], i)
            self.assertEqual(len(c.expect_reply(ll.PUSH, 0)["payload"]), len(payload))
        self.assertDelta(before, "longlink_gateway_slow_consumers_total", 0)


class WriteTimeoutTest(GatewayTestCase):
    gateway_args = ("--write-timeout=600ms", "--max-frame-bytes=16384", "--max-pending-bytes=67108864")
    payload = b"w" * (16384 - 33)

    def queue_echoes(self, c, count):
        c.send_raw(b"".join(ll.frame(ll.SEND, ll.send_body(1, i, self.payload), request_id=i + 1)
                            for i in range(count)))

    def test_stuck_reader_is_closed(self):
        bystander = self.login(8800)
        before = self.snapshot()
        c = self.login(8801, rcvbuf=4096)
        self.queue_echoes(c, 512)  # 8 MiB of echoes that are never read
        self.gw.wait_metric("longlink_gateway_write_timeouts_total",
                            lambda v: v == before.get("longlink_gateway_write_timeouts_total") + 1, timeout=10)
        self.assertCloseDeltas(before, {"write_timeout": 1})
        self.gw.wait_metric("longlink_gateway_pending_send_bytes", lambda v: v == 0)
        self.assertAlive(bystander)

    def test_reader_pausing_less_than_the_timeout_stays(self):
        # The gateway sees progress when a send completes, and TCP completes a send into a full socket only
        # once a good part of the socket buffer has drained. A reader that stops for less than the timeout
        # and then catches up in bursts is never closed, however long the backlog lasts.
        before = self.snapshot()
        c = self.login(8802, rcvbuf=4096)
        count = 1024
        writer = threading.Thread(target=self.queue_echoes, args=(c, count), daemon=True)  # ~16 MiB of echoes
        writer.start()
        c.sock.settimeout(5)
        reader = ll.Reader()
        frames = []
        for _ in range(8):  # more than two timeouts in all
            time.sleep(0.15)
            got = 0
            while got < 1 << 20:
                data = c.sock.recv(1 << 20)
                self.assertTrue(data, "closed after %d frames" % len(frames))
                got += len(data)
                frames += reader.feed(data)
        self.assertGreater(self.gw.metric("longlink_gateway_pending_send_bytes"), 0, "the backlog ran out early")
        writer.join(10)
        while len(frames) < 2 * count:
            data = c.sock.recv(1 << 20)
            self.assertTrue(data, "closed after %d frames" % len(frames))
            frames += reader.feed(data)
        self.assertEqual(sum(1 for op, _, _ in frames if op == ll.PUSH), count)
        self.assertEqual([ll.parse(op, b)["client_msg_id"] for op, _, b in frames if op == ll.SEND_ACK],
                         list(range(count)))
        self.assertDelta(before, "longlink_gateway_write_timeouts_total", 0)
        self.assertCloseDeltas(before, {})


class PendingLimitAtFrameLimitTest(GatewayTestCase):
    # --max-pending-bytes may equal --max-frame-bytes; a client that reads promptly must still get its
    # echo of a frame at the size limit (the PUSH is larger than the SEND it echoes).
    gateway_args = ("--max-frame-bytes=16384", "--max-pending-bytes=16384")

    def test_frame_at_the_limit_is_delivered(self):
        before = self.snapshot()
        c = self.login(8700, 1)
        payload = b"p" * (16384 - 33)
        for i in range(5):
            rid = c.send(ll.SEND, ll.send_body(1, i, payload))
            self.assertEqual(c.expect_reply(ll.SEND_ACK, rid)["status"], 0)
            self.assertEqual(c.expect_reply(ll.PUSH, 0)["payload"], payload)
        self.assertCloseDeltas(before, {})


if __name__ == "__main__":
    unittest.main()
