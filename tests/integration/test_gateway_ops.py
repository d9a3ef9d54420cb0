"""Operating the real gateway: SIGTERM drain, /metrics accounting, and resource limits (fixed-file table,
a tiny buffer ring, the plain ring fallback)."""
import os
import signal
import socket
import time
import unittest

import llclient as ll
from gwtest import GatewayTestCase, run_threads


class DrainTest(unittest.TestCase):
    def test_sigterm_sends_goaway_and_exits(self):
        gw = ll.Gateway("--drain-seconds=2", shards=2)
        clients = []
        try:
            self.assertEqual(gw.http_get("/readyz")[0], 200)
            for u in range(9000, 9012):
                c = ll.Client(gw.port)
                self.assertEqual(c.login(u, 1)["status"], 0)
                clients.append(c)
            idle = ll.Client(gw.port)  # connected, never logged in
            clients.append(idle)
            for c in clients[:-1]:
                c.ping(1)
            self.assertEqual(gw.metric("longlink_gateway_connections"), len(clients))
            start = time.monotonic()
            gw.proc.send_signal(signal.SIGTERM)
            delays = []
            for c in clients[:-1]:
                frames = c.wait_closed(5)
                self.assertEqual(len(frames), 1, frames)
                op, rid, goaway = frames[0]
                self.assertEqual((op, rid, goaway["reason"]), (ll.GOAWAY, 0, "draining"))
                self.assertGreaterEqual(goaway["reconnect_delay_ms"], 0)
                self.assertLess(goaway["reconnect_delay_ms"], 2000)
                delays.append(goaway["reconnect_delay_ms"])
            self.assertEqual(idle.wait_closed(5), [])
            self.assertGreater(len(set(delays)), 1, "every client got the same delay: %r" % delays)
            rc = gw.proc.wait(5)
            self.assertEqual(rc, 0)
            self.assertLess(time.monotonic() - start, 3.0)
        finally:
            for c in clients:
                c.close()
            gw.terminate()
        self.assertIn("SIGTERM received", gw.stderr_text)
        self.assertIn("drained, 0 connections left open", gw.stderr_text)

    def test_zero_drain_seconds_means_no_delay(self):
        gw = ll.Gateway("--drain-seconds=0", shards=2)
        clients = []
        try:
            for u in range(9050, 9056):
                c = ll.Client(gw.port)
                clients.append(c)
                c.login(u)
            gw.proc.send_signal(signal.SIGTERM)
            for c in clients:
                frames = c.wait_closed(5)
                self.assertEqual([(op, rid, f["reconnect_delay_ms"]) for op, rid, f in frames], [(ll.GOAWAY, 0, 0)])
            self.assertEqual(gw.proc.wait(5), 0)
        finally:
            for c in clients:
                c.close()
            gw.terminate()

    def test_stuck_client_cannot_hold_the_drain(self):
        # A client that stopped reading keeps its connection only until --write-timeout; meanwhile the
        # gateway reports not ready while /healthz stays up.
        gw = ll.Gateway("--drain-seconds=1", "--write-timeout=1500ms", "--max-frame-bytes=16384",
                        "--max-pending-bytes=67108864", shards=2)
        clients = []
        try:
            fine = ll.Client(gw.port)
            clients.append(fine)
            fine.login(9100)
            stuck = ll.Client(gw.port, rcvbuf=4096)
            clients.append(stuck)
            stuck.login(9101)
            payload = b"z" * (16384 - 33)
            chunk = b"".join(ll.frame(ll.SEND, ll.send_body(1, i, payload), request_id=i + 1) for i in range(64))
            for _ in range(10):  # 10 MiB of echoes, far more than the socket buffers hold
                stuck.send_raw(chunk)
            gw.wait_metric("longlink_gateway_pending_send_bytes", lambda v: v > 1 << 20, timeout=10)
            start = time.monotonic()
            gw.proc.send_signal(signal.SIGTERM)
            op, rid, goaway = fine.expect(ll.GOAWAY)
            self.assertEqual(fine.wait_closed(2), [])
            deadline = time.monotonic() + 1
            while gw.http_get("/readyz")[0] != 503:
                self.assertLess(time.monotonic(), deadline, "/readyz still ready while draining")
                time.sleep(0.02)
            self.assertEqual(gw.http_get("/healthz")[0], 200)
            self.assertIsNone(gw.proc.poll(), "exited while a connection still had output queued")
            rc = gw.proc.wait(10)
            elapsed = time.monotonic() - start
            self.assertEqual(rc, 0)
            self.assertGreater(elapsed, 1.0)
            self.assertLess(elapsed, 5.0)
        finally:
            for c in clients:
                c.close()
            gw.terminate()


class MetricsTest(GatewayTestCase):
    """A fresh gateway, so every counter can be checked for an exact value."""

    def test_accounting(self):
        gw = self.gw
        self.assertEqual(gw.http_get("/healthz"), (200, "ok\n"))
        self.assertEqual(gw.http_get("/readyz")[0], 200)
        m = self.snapshot()
        self.assertEqual(m.get("longlink_gateway_accepts_total"), 0)
        self.assertEqual(m.get("longlink_gateway_connections"), 0)
        self.assertEqual(m.get("longlink_gateway_ring_mode", mode="defer_taskrun"), 2)
        self.assertEqual(sorted(l["shard"] for l in m.labels("longlink_gateway_ring_mode")), ["0", "1"])

        sent_by_clients = 0
        received_by_clients = 0
        clients = []
        n, pings = 6, 4
        for i in range(n):
            c = self.connect()
            login = ll.frame(ll.LOGIN, ll.login_body(9500 + i, 1, token="t" * i), request_id=1)
            c.send_raw(login)
            sent_by_clients += len(login)
            c.expect_reply(ll.LOGIN_ACK, 1)
            received_by_clients += 40
            clients.append(c)
        self.gw.wait_metric("longlink_gateway_connections", lambda v: v == n)
        self.assertEqual(gw.metric("longlink_gateway_sessions"), n)
        for c in clients:
            for j in range(pings):
                c.ping(j)
                sent_by_clients += 20
                received_by_clients += 20
        unknown = ll.frame(99, b"", request_id=5)
        clients[0].send_raw(unknown)
        sent_by_clients += len(unknown)
        err = clients[0].expect_reply(ll.ERROR, 5)
        received_by_clients += 16 + len(err["message"].encode())

        gw.wait_metric("longlink_gateway_sent_bytes_total", lambda v: v == received_by_clients)
        m = self.snapshot()
        self.assertEqual(m.get("longlink_gateway_accepts_total"), n)
        self.assertEqual(m.get("longlink_gateway_received_bytes_total"), sent_by_clients)
        self.assertEqual(m.get("longlink_gateway_sent_bytes_total"), received_by_clients)
        self.assertEqual(m.get("longlink_gateway_frames_received_total", opcode="login"), n)
        self.assertEqual(m.get("longlink_gateway_frames_received_total", opcode="ping"), n * pings)
        self.assertEqual(m.get("longlink_gateway_frames_received_total", opcode="unknown"), 1)
        self.assertEqual(m.get("longlink_gateway_frames_received_total"), n + n * pings + 1)
        self.assertEqual(m.get("longlink_gateway_frames_sent_total", opcode="login_ack"), n)
        self.assertEqual(m.get("longlink_gateway_frames_sent_total", opcode="pong"), n * pings)
        self.assertEqual(m.get("longlink_gateway_frames_sent_total", opcode="error"), 1)
        self.assertEqual(m.get("longlink_gateway_logins_total"), n)
        self.assertEqual(m.get("longlink_gateway_login_latency_seconds_count"), n)
        self.assertEqual(m.get("longlink_gateway_login_latency_seconds_bucket", le="+Inf"), n)
        self.assertGreater(m.get("longlink_gateway_login_latency_seconds_sum"), 0)
        # The shard loops time their rounds (the gateway has run many by now: one per tick at least).
        self.assertGreater(m.get("longlink_gateway_loop_round_seconds_count"), n)
        self.assertGreater(m.get("longlink_gateway_loop_round_seconds_sum"), 0)
        self.assertEqual(m.get("longlink_gateway_loop_round_seconds_bucket", le="+Inf"),
                         m.get("longlink_gateway_loop_round_seconds_count"))
        self.assertEqual(m.get("longlink_gateway_connections"), n)
        self.assertEqual(m.get("longlink_gateway_sessions"), n)
        self.assertEqual(m.get("longlink_gateway_pending_send_bytes"), 0)
        self.assertGreater(m.get("process_resident_memory_bytes"), 1 << 20)
        for name in ("login_failures_total", "kicks_total", "heartbeat_timeouts_total", "slow_consumers_total",
                     "write_timeouts_total", "accept_errors_total", "fixed_table_full_total", "closes_total"):
            self.assertEqual(m.get("longlink_gateway_" + name), 0, name)

        for c in clients:
            c.close()
        gw.wait_metric("longlink_gateway_connections", lambda v: v == 0)
        m = self.snapshot()
        self.assertEqual(m.get("longlink_gateway_sessions"), 0)
        self.assertEqual(m.get("longlink_gateway_closes_total", reason="peer_closed"), n)
        self.assertEqual(m.get("longlink_gateway_closes_total"), n)
        self.assertEqual(m.get("longlink_gateway_accepts_total"), n)


class FixedFileTableTest(GatewayTestCase):
    shards = 1
    gateway_args = ("--max-conns-per-shard=8",)

    def test_excess_connections_wait_in_the_backlog(self):
        before = self.snapshot()
        first = [self.login(9600 + i) for i in range(8)]
        waiting = []
        for i in range(5):
            c = self.connect()  # the kernel completes the handshake; the gateway has not accepted yet
            c.send(ll.LOGIN, ll.login_body(9700 + i, 1))
            waiting.append(c)
        time.sleep(0.5)
        for c in waiting:
            with self.assertRaises(TimeoutError, msg="a connection past the table size was served or closed"):
                c.recv(0.05)
        for c in first:
            self.assertAlive(c)
        self.assertEqual(self.delta(before, "longlink_gateway_accepts_total"), 8)
        self.assertEqual(self.gw.metric("longlink_gateway_connections"), 8)
        self.assertGreater(self.gw.metric("longlink_gateway_fixed_table_full_total"), 0)

        for c in first[:5]:
            c.close()
        for c in waiting:
            op, rid, ack = c.expect(ll.LOGIN_ACK, timeout=5)
            self.assertEqual((rid, ack["status"]), (1, 0))
            self.assertAlive(c)
        for c in first[5:]:
            self.assertAlive(c)
        self.assertDelta(before, "longlink_gateway_accepts_total", 13)
        self.assertDelta(before, "longlink_gateway_connections", 8)
        self.assertCloseDeltas(before, {"peer_closed": 5})


class LargeFixedFileTableTest(GatewayTestCase):
    """A table big enough that accepting starts multishot and has to switch to one-shot near the limit."""
    shards = 1
    size = 4200
    gateway_args = ("--max-conns-per-shard=%d" % size, "--login-timeout=60s")

    def test_table_fills_without_losing_connections(self):
        before = self.snapshot()
        filler = [socket.create_connection(("127.0.0.1", self.gw.port), timeout=10) for _ in range(self.size)]
        try:
            self.gw.wait_metric("longlink_gateway_connections", lambda v: v == self.size, timeout=20)
            waiting = [self.connect() for _ in range(3)]
            for i, c in enumerate(waiting):
                c.send(ll.LOGIN, ll.login_body(9750 + i, 1))
            time.sleep(0.3)
            for c in waiting:
                with self.assertRaises(TimeoutError):
                    c.recv(0.05)
            self.assertEqual(self.delta(before, "longlink_gateway_accepts_total"), self.size)
            self.assertGreater(self.gw.metric("longlink_gateway_fixed_table_full_total"), 0)
            for s in filler[:3]:
                s.close()
            for c in waiting:
                op, rid, ack = c.expect(ll.LOGIN_ACK, timeout=5)
                self.assertEqual(ack["status"], 0)
        finally:
            for s in filler:
                s.close()
        self.gw.wait_metric("longlink_gateway_connections", lambda v: v == 3, timeout=20)
        self.assertDelta(before, "longlink_gateway_accepts_total", self.size + 3)
        self.assertCloseDeltas(before, {"peer_closed": self.size})


class TinyBufferRingTest(GatewayTestCase):
    gateway_args = ("--recv-buffers=1", "--recv-buffer-size=512")

    def test_concurrent_senders_lose_nothing(self):
        before = self.snapshot()
        users = list(range(9800, 9816))
        per_client = 40
        sent = []

        def client_run(user):
            c = self.login(user, 1)
            frames = [ll.frame(ll.SEND, ll.send_body(user, i, bytes([user & 0xFF, i]) * (50 + 7 * i)),
                               request_id=i + 1) for i in range(per_client)]
            data = b"".join(frames)
            sent.append(len(ll.frame(ll.LOGIN, ll.login_body(user, 1))) + len(data) + 20)
            for pos in range(0, len(data), 1500):
                c.send_raw(data[pos:pos + 1500])
            acks, pushes = [], []
            while len(acks) < per_client or len(pushes) < per_client:
                got = c.recv(20)
                assert got is not None, "connection of user %d lost" % user
                op, rid, f = got
                if op == ll.SEND_ACK:
                    assert rid == f["client_msg_id"] + 1 and f["status"] == 0, (rid, f)
                    acks.append(f["client_msg_id"])
                elif op == ll.PUSH:
                    pushes.append((f["client_msg_id"], f["payload"]))
                else:
                    raise AssertionError("unexpected frame %r" % (got,))
            assert acks == list(range(per_client)), acks
            assert pushes == [(i, bytes([user & 0xFF, i]) * (50 + 7 * i)) for i in range(per_client)]
            assert c.ping(user) == user

        run_threads([lambda u=u: client_run(u) for u in users], timeout=60)
        self.assertDelta(before, "longlink_gateway_frames_received_total", len(users) * per_client, opcode="send")
        self.assertDelta(before, "longlink_gateway_frames_sent_total", len(users) * per_client, opcode="push")
        self.assertDelta(before, "longlink_gateway_connections", len(users))
        self.assertDelta(before, "longlink_gateway_received_bytes_total", sum(sent))
        self.assertCloseDeltas(before, {})
        # One 512-byte buffer per shard for 16 busy connections: receives found the ring empty and waited.
        self.assertGreater(self.delta(before, "longlink_gateway_buffer_ring_exhausted_total"), 0)


def all_threads_stopped(pid):
    """True when every thread of the process is in the stopped state (T) after a SIGSTOP."""
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            continue
        if state not in ("T", "t"):
            return False
    return True


class GrowingBufferRingTest(GatewayTestCase):
    """The receive ring starts with 64 buffers per shard and grows when receives find it empty.

    A plain ring runs all pending receives at once when the stopped gateway resumes; with DEFER_TASKRUN
    the kernel hands completions over in smaller batches and the ring rarely runs dry."""
    gateway_args = ("--recv-buffers=1024", "--recv-buffer-size=512", "--force-plain-ring")
    shards = 1

    def test_ring_grows_under_a_burst_and_loses_nothing(self):
        import os
        import signal
        import struct
        before = self.snapshot()
        self.assertEqual(self.gw.metric("longlink_gateway_recv_buffers"), 64)
        clients = [self.login(9700 + i, 1) for i in range(200)]
        # With the gateway stopped, every connection gets data; on resume all 200 receives complete in one
        # round, more than the 64 buffers the ring holds.
        os.kill(self.gw.proc.pid, signal.SIGSTOP)
        try:
            # The signal is delivered asynchronously: a shard still running would take the first PINGs in
            # small rounds. Wait until every thread of the gateway is stopped.
            deadline = time.monotonic() + 10
            while not all_threads_stopped(self.gw.proc.pid):
                self.assertLess(time.monotonic(), deadline, "the gateway did not stop")
                time.sleep(0.005)
            for i, c in enumerate(clients):
                c.send_raw(ll.frame(ll.PING, struct.pack(">Q", i), request_id=7))
        finally:
            os.kill(self.gw.proc.pid, signal.SIGCONT)
        for i, c in enumerate(clients):
            op, rid, f = c.expect(ll.PONG, timeout=10)
            self.assertEqual((rid, f["timestamp"]), (7, i))
        self.assertGreater(self.delta(before, "longlink_gateway_buffer_ring_exhausted_total"), 0)
        self.assertGreater(self.gw.metric("longlink_gateway_recv_buffers"), 64)
        self.assertLessEqual(self.gw.metric("longlink_gateway_recv_buffers"), 1024)
        self.assertCloseDeltas(before, {})


class Ipv6Test(GatewayTestCase):
    gateway_args = ("--bind=::1",)

    def test_ipv6_listener(self):
        c = ll.Client(self.gw.port, host="::1")
        self.clients.append(c)
        self.assertEqual(c.login(9950)["status"], 0)
        self.assertAlive(c)


class PlainRingTest(GatewayTestCase):
    gateway_args = ("--force-plain-ring",)

    def test_plain_ring_serves(self):
        self.assertIn("ring=plain", self.gw.banner)
        m = self.snapshot()
        self.assertEqual(m.get("longlink_gateway_ring_mode", mode="plain"), 2)
        self.assertEqual(m.get("longlink_gateway_ring_mode", mode="defer_taskrun", default=0.0), 0)
        before = m
        for u in range(9900, 9910):
            c = self.login(u)
            self.assertAlive(c)
            rid = c.send(ll.SEND, ll.send_body(1, 2, b"plain"))
            self.assertEqual(c.expect_reply(ll.SEND_ACK, rid)["status"], 0)
            self.assertEqual(c.expect_reply(ll.PUSH, 0)["payload"], b"plain")
        self.assertDelta(before, "longlink_gateway_logins_total", 10)
        self.assertGreater(self.delta(before, "longlink_gateway_migrations_total"), 0)


if __name__ == "__main__":
    unittest.main()
