"""--auth=token against the real gateway, with tokens from its own mint-token command."""
import os
import subprocess
import tempfile
import time
import unittest

import llclient as ll
from gwtest import GatewayTestCase

SECRET = "integration-secret"


class TokenAuthTest(GatewayTestCase):
    gateway_args = ("--auth=token", "--auth-secret=" + SECRET)

    def test_minted_token_logs_in(self):
        before = self.snapshot()
        for user, device in ((5000, 1), (5001, 7), (5002, 4294967295)):
            c = self.login(user, device, token=ll.mint_token(SECRET, user, device, ttl="1h"))
            self.assertAlive(c)
        self.assertDelta(before, "longlink_gateway_logins_total", 3)
        self.assertDelta(before, "longlink_gateway_login_failures_total", 0)

    def check_rejected(self, user, device, token, why):
        # A bystander of its own per check: reusing one user and device would kick the previous one.
        bystander_user = 5100 + len(self.clients)
        bystander = self.login(bystander_user, 1, token=ll.mint_token(SECRET, bystander_user, 1))
        before = self.snapshot()
        c = self.connect()
        c.send_raw(ll.frame(ll.LOGIN, ll.login_body(user, device, token), request_id=0x5151))
        frames = self.assertClosed(c)
        self.assertEqual(len(frames), 1, frames)
        op, rid, ack = frames[0]
        self.assertEqual((op, rid), (ll.LOGIN_ACK, 0x5151))
        self.assertEqual(ack["status"], 1)
        self.assertEqual(ack["message"], "authentication failed: " + why)
        self.assertDelta(before, "longlink_gateway_login_failures_total", 1)
        self.assertCloseDeltas(before, {"auth_failed": 1})
        self.assertDelta(before, "longlink_gateway_logins_total", 0)
        self.assertDelta(before, "longlink_gateway_sessions", 0)
        self.assertAlive(bystander)

    def test_wrong_secret(self):
        self.check_rejected(5200, 1, ll.mint_token("not-the-secret", 5200, 1), "bad_signature")

    def test_token_of_another_user(self):
        self.check_rejected(5201, 1, ll.mint_token(SECRET, 5299, 1), "wrong_user")

    def test_token_of_another_device(self):
        self.check_rejected(5202, 1, ll.mint_token(SECRET, 5202, 2), "wrong_device")

    def test_expired_token(self):
        self.check_rejected(5203, 1, ll.token_with_expiry(SECRET, 5203, 1, int(time.time()) - 3600), "expired")

    def test_python_token_matches_mint_token(self):
        expiry = int(ll.mint_token(SECRET, 5206, 3).split(".")[2])
        self.assertEqual(ll.token_with_expiry(SECRET, 5206, 3, expiry), ll.mint_token(SECRET, 5206, 3))

    def test_tampered_expiry(self):
        user, device, expiry, sig = ll.token_with_expiry(SECRET, 5204, 1, int(time.time()) - 3600).split(".")
        forged = ".".join((user, device, str(int(expiry) + 7200), sig))
        self.check_rejected(5204, 1, forged, "bad_signature")

    def test_garbage_and_empty_tokens(self):
        self.check_rejected(5205, 1, "not a token", "malformed")
        self.check_rejected(5205, 1, "", "malformed")

    def test_mint_token_needs_a_secret(self):
        out = subprocess.run([ll.gateway_binary(), "mint-token", "--user=1", "--device=1"], capture_output=True,
                             text=True, timeout=10)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("--auth-secret", out.stderr)


class TokenExpiryTest(GatewayTestCase):
    """A session lives as long as its token plus --token-grace; a second LOGIN with a fresh token (same user and
    device) renews it; then KICK(AUTH_EXPIRED)."""
    gateway_args = ("--auth=token", "--auth-secret=" + SECRET, "--token-grace=1s", "--heartbeat-interval=1s",
                    "--heartbeat-timeout=5s")

    def beat_until_closed(self, c, seconds):
        """PINGs every 300 ms for up to `seconds`; returns the frames that came with the close, or None if the
        connection stayed open."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                c.send(ll.PING, ll.ping_body(1))
                got = c.recv(0.3)
            except (OSError, TimeoutError):
                got = ()
            if got is None:
                return []
            if got and got[0] == ll.KICK:
                return [got] + (self.assertClosed(c) or [])
        return None

    def test_session_is_kicked_at_expiry_plus_grace(self):
        before = self.snapshot()
        users = (5400, 5401, 5402, 5403)  # on both shards: some sessions moved to their owner shard
        clients = [self.login(u, 1, token=ll.token_with_expiry(SECRET, u, 1, int(time.time()) + 2)) for u in users]
        start = time.monotonic()
        for c in clients:
            frames = self.beat_until_closed(c, 8)
            self.assertIsNotNone(frames, "still open 8 s after a 2 s token with 1 s grace")
            kicks = [f for f in frames if f[0] == ll.KICK]
            self.assertEqual(len(kicks), 1, frames)
            self.assertEqual(kicks[0][2]["code"], 3)  # KICK reason AUTH_EXPIRED
        self.assertGreater(time.monotonic() - start, 1.5, "not before the token's expiry")
        self.assertDelta(before, "longlink_gateway_sessions_expired_total", len(users))
        self.assertDelta(before, "longlink_gateway_closes_total", len(users), reason="auth_expired")

    def test_a_fresh_token_renews_the_session(self):
        before = self.snapshot()
        c = self.login(5410, 2, token=ll.token_with_expiry(SECRET, 5410, 2, int(time.time()) + 2))
        time.sleep(1)
        rid = c.send(ll.LOGIN, ll.login_body(5410, 2, ll.mint_token(SECRET, 5410, 2, ttl="1h")))
        ack = c.expect_reply(ll.LOGIN_ACK, rid)
        self.assertEqual(ack["status"], 0, ack)
        self.assertIsNone(self.beat_until_closed(c, 4), "renewed: alive past the first token's expiry + grace")
        self.assertDelta(before, "longlink_gateway_token_refreshes_total", 1)
        self.assertDelta(before, "longlink_gateway_sessions_expired_total", 0)
        # Another user's token on this session is refused as before; a bad token closes it.
        rid = c.send(ll.LOGIN, ll.login_body(5411, 2, ll.mint_token(SECRET, 5411, 2)))
        self.assertEqual(c.expect_reply(ll.ERROR, rid)["code"], 4)  # ALREADY_LOGGED_IN
        rid = c.send(ll.LOGIN, ll.login_body(5410, 2, ll.token_with_expiry("wrong", 5410, 2, int(time.time()) + 60)))
        self.assertEqual(c.expect_reply(ll.LOGIN_ACK, rid)["status"], 1)
        self.assertClosed(c)


class LoginThrottleTest(GatewayTestCase):
    """Failed logins per source address: past --max-login-failures an address's logins (even good ones) are
    refused for --login-block; other addresses are not affected."""
    shards = 1
    gateway_args = ("--auth=token", "--auth-secret=" + SECRET, "--max-login-failures=5", "--login-block=2s")

    def attempt(self, user, token, source="127.0.0.1"):
        c = ll.Client(self.gw.port, source=source)
        self.clients.append(c)
        c.send_raw(ll.frame(ll.LOGIN, ll.login_body(user, 1, token), request_id=3))
        op, rid, ack = c.recv(5)
        self.assertEqual((op, rid), (ll.LOGIN_ACK, 3))
        return ack

    def test_an_address_failing_too_often_is_refused_for_a_while(self):
        before = self.snapshot()
        for i in range(6):
            self.assertEqual(self.attempt(5500, "bad-%d" % i)["status"], 1)
        # The failures are counted once each connection's address is learned (asynchronously).
        self.wait_until(lambda: self.gw.metric("longlink_gateway_login_blocked_addresses") == 1, what="blocked")
        refused = self.attempt(5500, ll.mint_token(SECRET, 5500, 1))
        self.assertEqual(refused["status"], 3, refused)  # SERVER_BUSY
        self.assertIn("too many failed logins", refused["message"])
        self.assertDelta(before, "longlink_gateway_login_throttled_total", 1)
        self.assertDelta(before, "longlink_gateway_closes_total", 1, reason="login_throttled")
        # Another source address logs in meanwhile; the blocked one again after the block.
        self.assertEqual(self.attempt(5501, ll.mint_token(SECRET, 5501, 1), source="127.0.0.2")["status"], 0)
        time.sleep(2.2)
        self.assertEqual(self.attempt(5502, ll.mint_token(SECRET, 5502, 1))["status"], 0)


class TokenAuthSecretFileTest(GatewayTestCase):
    """The secret read from a file, trailing newline stripped, matches tokens minted with the bare secret."""

    @classmethod
    def setUpClass(cls):
        fd, cls.secret_path = tempfile.mkstemp(prefix="longlink-secret-")
        with os.fdopen(fd, "w") as f:
            f.write("file-secret\n")
        cls.gateway_args = ("--auth=token", "--auth-secret-file=" + cls.secret_path)
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            os.unlink(cls.secret_path)

    def test_file_secret(self):
        c = self.login(5300, 2, token=ll.mint_token("file-secret", 5300, 2))
        self.assertAlive(c)
        bad = self.connect()
        ack = bad.login(5301, 2, token=ll.mint_token("file-secret\n", 5301, 2))
        self.assertEqual(ack["status"], 1)
        self.assertEqual(self.assertClosed(bad), [])


if __name__ == "__main__":
    unittest.main()
