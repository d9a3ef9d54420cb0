"""scripts/netem.sh at small scale: 50 clients for 5 s over an impaired link (the 4g profile) between two
network namespaces; TCP retransmits what the link drops, so the ledger must show no acknowledged message lost.
Skipped when not root or when network namespaces cannot be created here."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(ROOT, "scripts", "netem.sh")


def build_dir():
    # The script wants <dir>/gateway/longlink-gateway and <dir>/loadgen/longlink-loadgen.
    gateway = os.environ.get("LONGLINK_GATEWAY")
    if gateway:
        return os.path.dirname(os.path.dirname(os.path.abspath(gateway)))
    return os.path.join(ROOT, "build")


def skip_reason():
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth, tc)"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    probe = "ll-probe-%d" % os.getpid()
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return "network namespaces unavailable: " + r.stderr.strip()
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class NetemTest(unittest.TestCase):
    def test_4g_profile_loses_nothing(self):
        reason = skip_reason()
        if reason:
            print("skipped: " + reason, file=sys.stderr)
            self.skipTest(reason)
        with tempfile.TemporaryDirectory() as tmp:
            report = os.path.join(tmp, "report.json")
            r = subprocess.run([SCRIPT, "--build-dir", build_dir(), "--ns-prefix", "ll-test", "--clients", "50",
                                "--seconds", "5", "--msg-rate", "1", "--profile", "4g", "--report-json", report],
                               capture_output=True, text=True, timeout=120)
            out = r.stdout + r.stderr
            if r.returncode == 3:
                print("skipped: " + out.strip().splitlines()[-1], file=sys.stderr)
                self.skipTest(out.strip().splitlines()[-1])
            self.assertEqual(r.returncode, 0, out)
            self.assertIn("result: ok", out)
            ledger = json.load(open(report))["ledger"]
            self.assertGreater(ledger["acked"], 100, out)
            self.assertEqual(ledger["lost"], 0, out)
            self.assertEqual(ledger["duplicates"], 0, out)
            self.assertEqual(ledger["delivered_unique"], ledger["expected_deliveries"], out)
            # The link really was impaired: the kernel's TCP retransmitted or probed for loss somewhere.
            self.assertRegex(out, r"TcpRetransSegs=[1-9]", out)
            r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
            self.assertNotIn("ll-test-", r.stdout, "namespaces left behind")


if __name__ == "__main__":
    unittest.main()
