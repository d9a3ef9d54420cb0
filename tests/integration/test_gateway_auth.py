"""--auth=token against the real gateway, with tokens from its own mint-token command."""
import os
import subprocess
import tempfile
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
        self.check_rejected(5203, 1, ll.mint_token(SECRET, 5203, 1, ttl="-1h"), "expired")

    def test_tampered_expiry(self):
        user, device, expiry, sig = ll.mint_token(SECRET, 5204, 1, ttl="-1h").split(".")
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
