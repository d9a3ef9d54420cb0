"""longlink-loadgen against the real gateway: a clean run, thresholds, bad input, the report."""
import json
import os
import subprocess
import tempfile
import unittest

import llclient as ll


def loadgen_binary():
    path = os.environ.get("LONGLINK_LOADGEN")
    if path:
        return path
    return os.path.join(ll.ROOT, "build", "loadgen", "longlink-loadgen")


def run_loadgen(*args, timeout=120):
    return subprocess.run([loadgen_binary(), *args], capture_output=True, text=True, timeout=timeout)


SCENARIO = """
name: it
target:
  addresses: [127.0.0.1:{port}]
clients: {clients}
connect_rate: 1000
duration: {duration}
phases:
  - kind: ramp
  - kind: hold
    duration: {hold}
messaging:
  rate_per_client: {rate}
  targets: self
  payload:
    distribution: fixed
    size: 64
thresholds:
{thresholds}
output:
  live_interval: 1s
"""


STORM = """
name: storm-it
target:
  addresses: [127.0.0.1:{port}]
clients: 400
connect_rate: 1000
duration: 6s
phases:
  - kind: ramp
    duration: 1s
  - kind: hold
    duration: 1s
  - kind: storm
    percent: 50
    drop: reset
    duration: 3s
  - kind: hold
    duration: 1s
messaging:
  rate_per_client: 1
  targets: self
reconnect:
  initial: 100ms
  max: 1s
  multiplier: 2
thresholds:
  - lost == 0
  - reconnect_p99_ms < 3000
"""


CHURN = """
name: churn-it
target:
  addresses: [127.0.0.1:{port}]
clients: 400
connect_rate: 1000
duration: 7s
phases:
  - kind: ramp
    duration: 1s
  - kind: churn
    percent: 5
    drop: close
    duration: 4s
  - kind: hold
    duration: 2s
messaging:
  rate_per_client: 1
  targets: self
reconnect:
  initial: 100ms
  max: 500ms
"""


class LoadgenTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.gw = ll.Gateway("--heartbeat-interval=1s", "--heartbeat-timeout=5s", shards=2)
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.gw.terminate()
        cls.tmp.cleanup()

    def scenario(self, clients=300, duration="4s", rate=2, thresholds=("lost == 0",)):
        path = os.path.join(self.tmp.name, "s%d.yaml" % len(os.listdir(self.tmp.name)))
        with open(path, "w") as f:
            f.write(SCENARIO.format(port=self.gw.port, clients=clients, duration=duration, rate=rate,
                                    hold="%gs" % (float(duration.rstrip("s")) - clients / 1000.0),
                                    thresholds="\n".join("  - " + t for t in thresholds)))
        return path

    def test_clean_run_loses_nothing_and_reports_json(self):
        before_logins = self.gw.metric("longlink_gateway_logins_total")
        report = os.path.join(self.tmp.name, "report.json")
        r = run_loadgen("--scenario=" + self.scenario(), "--report-json=" + report, "--shards=2")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("result        ok", r.stdout)
        self.assertRegex(r.stderr, r"t=\s*1\.\d+s connected=\d+ online=\d+")  # the live line
        with open(report) as f:
            rep = json.load(f)
        led = rep["ledger"]
        self.assertGreater(led["sent"], 1000)
        self.assertEqual(led["acked"], led["sent"])
        self.assertEqual(led["delivered_unique"], led["expected_deliveries"])
        self.assertEqual(led["lost"], 0)
        self.assertEqual(led["duplicates"], 0)
        self.assertEqual(rep["metrics"]["connect_attempts"], 300)
        self.assertEqual(rep["latency_ms"]["login"]["count"], 300)
        self.assertGreater(rep["latency_ms"]["heartbeat_rtt"]["count"], 300)  # 1 s interval, 4 s run
        self.assertGreater(rep["latency_ms"]["end_to_end"]["count"], 1000)
        self.assertTrue(rep["valid"])
        self.assertEqual(rep["thresholds"], [{"threshold": "lost == 0", "measured": True, "observed": 0,
                                              "held": True}])
        self.assertIn("clients: 300", rep["scenario"])
        self.assertGreaterEqual(self.gw.metric("longlink_gateway_logins_total") - before_logins, 300)

    def test_storm_fully_reconnects(self):
        path = os.path.join(self.tmp.name, "storm.yaml")
        with open(path, "w") as f:
            f.write(STORM.format(port=self.gw.port))
        def resets():  # a reset is seen by whichever of the receive or a send in flight meets it first
            return sum(self.gw.metric("longlink_gateway_closes_total", reason=r) for r in ("read_error", "write_error"))
        before_resets = resets()
        report = os.path.join(self.tmp.name, "storm.json")
        r = run_loadgen("--scenario=" + path, "--report-json=" + report, "--shards=2")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(report) as f:
            rep = json.load(f)
        m = rep["metrics"]
        # About half of the 400 clients lose their connection at once (by RST) and all of them come back.
        self.assertGreater(m["storm_drops"], 120)
        self.assertLess(m["storm_drops"], 280)
        self.assertGreaterEqual(m["reconnects"], m["storm_drops"])
        self.assertEqual(rep["latency_ms"]["reconnect"]["count"], m["storm_drops"])
        self.assertEqual(m["online_at_end"], 400)
        self.assertEqual(rep["ledger"]["lost"], 0)
        self.assertEqual(rep["ledger"]["duplicates"], 0)
        # The gateway saw resets, not orderly closes, for the dropped cohort.
        self.assertEqual(resets() - before_resets, m["storm_drops"])

    def test_churn_reconnects_continuously(self):
        path = os.path.join(self.tmp.name, "churn.yaml")
        with open(path, "w") as f:
            f.write(CHURN.format(port=self.gw.port))
        report = os.path.join(self.tmp.name, "churn.json")
        r = run_loadgen("--scenario=" + path, "--report-json=" + report, "--shards=2")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(report) as f:
            rep = json.load(f)
        m = rep["metrics"]
        # 5% of ~400 connected clients per second for 4 s: about 80 drops, each followed by a reconnect.
        self.assertGreater(m["storm_drops"], 30)
        self.assertLess(m["storm_drops"], 170)
        self.assertEqual(rep["latency_ms"]["reconnect"]["count"], m["storm_drops"])
        self.assertEqual(m["online_at_end"], 400)
        self.assertEqual(rep["ledger"]["lost"], 0)

    def test_violated_threshold_exits_1(self):
        r = run_loadgen("--scenario=" + self.scenario(clients=50, duration="2s",
                                                      thresholds=("e2e_p50_ms < 0.000001", "lost == 0")))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("VIOLATED", r.stdout)
        self.assertIn("result        thresholds violated", r.stdout)

    def test_flags_only_run(self):
        r = run_loadgen("--target=127.0.0.1:%d" % self.gw.port, "--clients=100", "--connect-rate=500",
                        "--duration=2s", "--rate=1", "--shards=1")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("100 attempts, 0 errors, 0 login errors", r.stdout)

    def test_unreachable_target_reports_connect_errors(self):
        # A port nobody listens on: every attempt is refused and retried with backoff; the run ends by itself.
        r = run_loadgen("--target=127.0.0.1:1", "--clients=5", "--connect-rate=100", "--duration=2s",
                        "--shards=1")
        self.assertIn("result", r.stdout)
        self.assertNotIn(" 0 errors,", r.stdout)

    def test_bad_scenario_file_names_the_field(self):
        path = os.path.join(self.tmp.name, "bad.yaml")
        with open(path, "w") as f:
            f.write("target:\n  addresses: [127.0.0.1:7000]\nclients: 10\nphases:\n  - kind: ramp\n    duration: fast\n")
        r = run_loadgen("--scenario=" + path)
        self.assertEqual(r.returncode, 2)
        self.assertIn("phases[0].duration", r.stderr)
        r = run_loadgen("--scenario=" + os.path.join(self.tmp.name, "missing.yaml"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("missing.yaml", r.stderr)

    def test_bad_flag_exits_2(self):
        r = run_loadgen("--target=127.0.0.1:notaport", "--clients=1")
        self.assertEqual(r.returncode, 2)
        self.assertIn("target", r.stderr)


if __name__ == "__main__":
    unittest.main()
