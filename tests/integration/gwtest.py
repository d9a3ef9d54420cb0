"""Common ground for the gateway integration tests: one real gateway process per test class, clients that
are closed after each test, and assertions on frames, closes and metric deltas."""
import random
import sys
import threading
import time
import unittest

import llclient as ll

CLOSE_REASONS = ("auth_expired", "auth_failed", "bad_frame", "draining", "frame_too_large", "heartbeat_timeout", "kicked",
                 "login_rejected", "login_timeout", "logout", "malformed_body", "migrate_failed", "not_logged_in",
                 "peer_closed", "read_error", "slow_consumer", "write_error", "write_timeout", "ws_bad_message",
                 "ws_bad_origin", "ws_bad_path", "ws_bad_upgrade", "ws_invalid_utf8", "ws_message_too_large",
                 "ws_protocol_error", "ws_text_refused", "ws_unsupported_version", "ws_upgrade_too_large")


class GatewayTestCase(unittest.TestCase):
    """Starts one gateway for the class with `gateway_args`; checks it shuts down cleanly afterwards."""

    gateway_args = ()
    shards = 2

    @classmethod
    def setUpClass(cls):
        cls.gw = ll.Gateway(*cls.gateway_args, shards=cls.shards)

    @classmethod
    def tearDownClass(cls):
        rc = cls.gw.terminate()
        if rc != 0:
            sys.stderr.write(cls.gw.stderr_text or "")
            raise AssertionError("gateway exited with %r after %s" % (rc, cls.__name__))

    def setUp(self):
        self.clients = []
        self.rng = random.Random(self.id())
        m = self.gw.snapshot()
        self.baseline = {g: m.get(g) for g in ("longlink_gateway_connections", "longlink_gateway_sessions")}

    def tearDown(self):
        for c in self.clients:
            c.close()
        # Let the gateway finish closing this test's connections, so the next test's deltas start clean.
        for gauge, value in self.baseline.items():
            if self.gw.proc.poll() is None:
                self.gw.wait_metric(gauge, lambda v, value=value: v == value, timeout=10)

    # ---- clients ----

    def connect(self, **kw):
        c = ll.Client(self.gw.port, **kw)
        self.clients.append(c)
        return c

    def login(self, user, device=1, token="", **kw):
        """A logged-in client; fails the test unless LOGIN_ACK has status 0."""
        c = self.connect(**kw)
        ack = c.login(user, device, token)
        self.assertEqual(ack["status"], 0, ack)
        return c

    def assertAlive(self, client):
        """The connection answers a PING with the right PONG."""
        ts = self.rng.getrandbits(64)
        self.assertEqual(client.ping(ts), ts)

    def assertClosed(self, client, timeout=5.0):
        """Reads to EOF; returns the frames that came before it as (opcode, request_id, fields)."""
        try:
            return client.wait_closed(timeout)
        except TimeoutError:
            self.fail("the gateway did not close the connection within %.1fs" % timeout)

    def assertClosedSilently(self, client, timeout=5.0):
        frames = self.assertClosed(client, timeout)
        self.assertEqual(frames, [], "expected a close without any frame")

    # ---- metrics ----

    def snapshot(self):
        return self.gw.snapshot()

    def delta(self, before, name, **labels):
        return self.gw.metric(name, **labels) - before.get(name, 0.0, **labels)

    def assertDelta(self, before, name, expected, timeout=3.0, **labels):
        """Checks the metric moved by exactly `expected` since `before`, waiting up to `timeout` for the
        gateway's threads to catch up (counters and gauges alike)."""
        deadline = time.monotonic() + timeout
        while True:
            d = self.delta(before, name, **labels)
            if d == expected or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        self.assertEqual(d, expected, "%s%r moved by %r, expected %r" % (name, labels, d, expected))

    def assertCloseDeltas(self, before, expected, timeout=3.0):
        """Checks closes_total moved by exactly `expected` ({reason: n}) for every reason except peer_closed,
        which depends on how the test's own clients hang up."""
        for reason, n in expected.items():
            self.assertDelta(before, "longlink_gateway_closes_total", n, timeout, reason=reason)
        for reason in CLOSE_REASONS:
            if reason in expected or reason == "peer_closed":
                continue
            self.assertEqual(self.delta(before, "longlink_gateway_closes_total", reason=reason), 0,
                             "unexpected closes with reason %s" % reason)

    def wait_until(self, predicate, timeout=5.0, what="condition"):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                self.fail("%s not reached within %.1fs" % (what, timeout))
            time.sleep(0.02)


def run_threads(fns, timeout=30.0):
    """Runs each function on its own thread; re-raises the first exception; fails on a hung thread."""
    errors = []

    def wrap(fn):
        def run():
            try:
                fn()
            except BaseException as e:  # noqa: B902 - reported to the test thread
                errors.append(e)
        return run

    threads = [threading.Thread(target=wrap(fn), daemon=True) for fn in fns]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        raise AssertionError("worker threads still running after %.1fs" % timeout)
    if errors:
        raise errors[0]
