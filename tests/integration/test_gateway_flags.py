"""Bad command lines: the gateway refuses to start, exits non-zero and names the offending flag."""
import resource
import subprocess
import unittest

import llclient as ll

BASE = ["--port=0", "--metrics-port=0", "--bind=127.0.0.1", "--metrics-bind=127.0.0.1", "--shards=1", "--auth=none"]


class BadFlagsTest(unittest.TestCase):
    def run_gateway(self, *args):
        try:
            return subprocess.run([ll.gateway_binary()] + BASE + list(args), capture_output=True, text=True,
                                  timeout=10)
        except subprocess.TimeoutExpired:
            self.fail("the gateway started (or hung) with %r" % (args,))

    def check_refused(self, args, names, status=2):
        """Exits with `status` (any non-zero one if None), never listens, and stderr names the flag (in any
        of the given spellings)."""
        out = self.run_gateway(*args)
        if status is None:
            self.assertNotEqual(out.returncode, 0, "started with %r" % (args,))
        else:
            self.assertEqual(out.returncode, status, "%r: %s" % (args, out.stderr))
        self.assertNotIn("listening", out.stdout)
        self.assertTrue(any(n in out.stderr for n in names), "%r not named in: %s" % (names, out.stderr))

    def test_help_lists_the_gateway_and_every_backend_flag(self):
        out = subprocess.run([ll.gateway_binary(), "--help"], capture_output=True, text=True, timeout=10)
        text = out.stdout + out.stderr
        # The gateway's own, the registry's, and each backend's (defined in its own folder).
        for flag in ("--port", "--shards", "--admin_port", "--ws_port", "--backend", "--data_dir", "--fsync",
                     "--fsync_interval_ms", "--retention", "--max_inbox", "--idempotency_window", "--segment_bytes"):
            self.assertIn(flag + " ", text, flag)
        self.assertIn("gateway/backend/local/local_config.cc", text)
        self.assertNotIn("--flagfile", text, "Abseil's own flags belong to --helpfull")

    def test_each_bad_flag_is_named(self):
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        cases = [
            (["--shards=-1"], ["--shards"]),
            (["--shards=5000"], ["--shards"]),
            (["--auth=bogus"], ["--auth"]),
            (["--auth=token"], ["--auth"]),  # no secret
            (["--auth=token", "--auth-secret-file=/nonexistent/secret"], ["--auth-secret-file"]),
            (["--heartbeat-interval=2s", "--heartbeat-timeout=1s"], ["--heartbeat-timeout"]),
            (["--heartbeat-interval=1s", "--heartbeat-timeout=1s"], ["--heartbeat-timeout"]),
            (["--login-timeout=1ms"], ["--login-timeout"]),
            (["--write-timeout=-5s"], ["--write-timeout"]),
            (["--max-conns-per-shard=%d" % (nofile + 1)], ["--max-conns-per-shard"]),
            (["--max-conns-per-shard=-3"], ["--max-conns-per-shard"]),
            (["--backend=nope"], ["--backend"]),
            (["--max-frame-bytes=10"], ["--max-frame-bytes"]),
            (["--max-frame-bytes=65536", "--max-pending-bytes=4096"], ["--max-pending-bytes"]),
            (["--recv-buffers=3"], ["--recv-buffers"]),
            (["--recv-buffer-size=100"], ["--recv-buffer-size"]),
            (["--queue-capacity=1"], ["--queue-capacity"]),
            (["--ring-entries=1"], ["--ring-entries"]),
            (["--drain-seconds=-1"], ["--drain-seconds"]),
            (["--metrics-port=-2"], ["--metrics-port"]),
            (["--bind=not-an-address"], ["--bind"]),
            (["--web-root=" + ll.ROOT + "/web"], ["--web-root"]),  # no --admin-port to serve it
            (["--admin-port=0", "--web-root=/nonexistent/web"], ["--web-root"]),
            (["--admin-port=0", "--web-root=" + ll.ROOT + "/README.md"], ["--web-root"]),  # not a directory
        ]
        for args, names in cases:
            with self.subTest(args=args):
                self.check_refused(args, names)

    def test_flags_the_parser_rejects(self):
        # Unknown flags and unparsable values are refused by Abseil's parser itself, which exits with 1 and
        # names the flag with underscores.
        cases = [
            (["--no-such-flag=1"], ["no-such-flag", "no_such_flag"]),
            (["--bogus"], ["bogus"]),
            (["--login-timeout=soon"], ["login-timeout", "login_timeout"]),
            (["--shards=two"], ["shards"]),
        ]
        for args, names in cases:
            with self.subTest(args=args):
                self.check_refused(args, names, status=None)

    def test_max_conns_at_the_open_files_limit_starts(self):
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        gw = ll.Gateway("--max-conns-per-shard=%d" % nofile, shards=1)
        self.assertEqual(gw.terminate(), 0)

    def test_token_auth_is_the_default_and_needs_a_secret(self):
        out = subprocess.run([ll.gateway_binary(), "--port=0", "--metrics-port=-1", "--bind=127.0.0.1"],
                             capture_output=True, text=True, timeout=10)
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn("--auth: token (the default) needs --auth-secret", out.stderr)
        self.assertNotIn("listening", out.stdout)

    def test_exposed_settings_are_warned_about(self):
        gw = ll.Gateway("--auth=none", "--bind=0.0.0.0", "--admin-port=0", "--admin-bind=0.0.0.0", shards=1)
        self.assertEqual(gw.terminate(), 0)
        self.assertIn("WARNING: --auth=none on 0.0.0.0", gw.stderr_text)
        self.assertIn("WARNING: the admin API on 0.0.0.0 has no --admin-token", gw.stderr_text)
        gw = ll.Gateway("--auth=none", "--admin-port=0", shards=1)  # loopback: nothing to warn about
        self.assertEqual(gw.terminate(), 0)
        self.assertNotIn("WARNING", gw.stderr_text)

    def test_mint_token_refuses_a_token_that_is_already_expired(self):
        for ttl in ("-10s", "0s"):
            out = subprocess.run([ll.gateway_binary(), "mint-token", "--auth-secret=s", "--user=1", "--device=1",
                                  "--ttl=" + ttl], capture_output=True, text=True, timeout=10)
            self.assertEqual(out.returncode, 2, ttl)
            self.assertIn("--ttl", out.stderr)
            self.assertEqual(out.stdout, "")

    def test_unknown_command(self):
        out = subprocess.run([ll.gateway_binary(), "frobnicate"], capture_output=True, text=True, timeout=10)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("frobnicate", out.stderr)


if __name__ == "__main__":
    unittest.main()
