"""longlink-loadgen against the real gateway: a clean run, thresholds, bad input, the report."""
import json
import os
import subprocess
import sys
import tempfile
import time
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

    def test_lost_messages_are_named(self):
        # The echo backend acknowledges a SEND and pushes it back to its sender only: every message to another
        # user is acknowledged and never delivered, and the report must say which.
        gw = ll.Gateway("--backend=echo", shards=1)
        try:
            path = os.path.join(self.tmp.name, "lost.yaml")
            with open(path, "w") as f:
                f.write(SCENARIO.format(port=gw.port, clients=10, duration="2s", rate=5, hold="1.9s",
                                        thresholds="  - lost == 0").replace("targets: self", "targets: random_user")
                        .replace("output:", "grace: 0s\noutput:"))
            report = os.path.join(self.tmp.name, "lost.json")
            r = run_loadgen("--scenario=" + path, "--report-json=" + report)
        finally:
            gw.terminate()
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        with open(report) as f:
            led = json.load(f)["ledger"]
        self.assertGreater(led["lost"], 20, led)
        sample = led["lost_sample"]
        self.assertEqual(len(sample), 20, led)
        for x in sample:
            self.assertTrue(1 <= x["sender_user"] <= 10 and 1 <= x["recipient_user"] <= 10, x)
            self.assertEqual((x["sender_device"], x["recipient_device"]), (1, 1), x)
            # The client_msg_id on the wire keeps the sender's index and seq in its low bits of each half.
            self.assertEqual(x["client_msg_id"] & 0xffffff, x["seq"], x)
            self.assertEqual((x["client_msg_id"] >> 32) & 0xffffff, x["sender_user"] - 1, x)
        lines = [l for l in r.stdout.splitlines() if l.startswith("  lost ")]
        self.assertEqual(len(lines), 21, r.stdout)
        x = sample[0]
        self.assertEqual(lines[0].split(None, 1)[1], "user %d device 1 message %d (client_msg_id %d) to user %d device 1"
                         % (x["sender_user"], x["seq"], x["client_msg_id"], x["recipient_user"]))
        self.assertEqual(lines[-1].split(None, 1)[1], "... and %d more" % (led["lost"] - 20))

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


WEAK = """
name: weak-it
target:
  addresses: [127.0.0.1:{port}]
clients: {clients}
connect_rate: 1000
duration: {duration}
phases:
  - kind: ramp
    duration: 1s
  - kind: hold
    duration: {hold}
heartbeat:
{heartbeat}
messaging:
  rate_per_client: {rate}
  targets: self
  payload:
    distribution: lognormal
    median: 200
    sigma: 1.0
    min: 8
    max: 8000
reconnect:
  initial: 100ms
  max: 1s
network:
{network}
"""


class LoadgenWeakNetworkTest(unittest.TestCase):
    """Simulated weak networks, zombies, heartbeats and phases against a gateway with a 3 s timeout."""

    TIMEOUT_MS = 3000

    @classmethod
    def setUpClass(cls):
        cls.gw = ll.Gateway("--heartbeat-interval=1s", "--heartbeat-timeout=3s", shards=2)
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.gw.terminate()
        cls.tmp.cleanup()

    def run_weak(self, name, network, clients=200, duration=6, rate=1.0, heartbeat="  mode: fixed", extra=()):
        path = os.path.join(self.tmp.name, name + ".yaml")
        with open(path, "w") as f:
            f.write(WEAK.format(port=self.gw.port, clients=clients, duration="%ds" % duration,
                                hold="%ds" % (duration - 1), rate=rate, heartbeat=heartbeat, network=network))
        report = os.path.join(self.tmp.name, name + ".json")
        r = run_loadgen("--scenario=" + path, "--report-json=" + report, "--shards=2", *extra)
        with open(report) as f:
            rep = json.load(f)
        return r, rep

    def test_zombies_are_reaped_within_the_heartbeat_timeout(self):
        before = self.gw.metric("longlink_gateway_heartbeat_timeouts_total")
        # A clean link on which each connection turns half-open after 4 s on average.
        r, rep = self.run_weak("zombies", """  mix:
    wifi: 100
  profiles:
    wifi:
      stall_probability: 0
      flaps_per_hour: 0
      zombies_per_hour: 900
      nat_idle_timeout: 0s
""", clients=200, duration=8, rate=0)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        m = rep["metrics"]
        reap = rep["latency_ms"]["zombie_reap"]
        self.assertGreater(m["zombies"], 40, r.stdout)
        self.assertGreater(m["zombies_reaped"], 20, r.stdout)
        self.assertEqual(m["zombies"], m["zombies_reaped"] + m["zombies_unreaped"], r.stdout)
        self.assertEqual(reap["count"], m["zombies_reaped"])
        # The gateway reaps a silent connection one timeout after the last frame it got; the last PING went
        # out at most one interval (1 s) before the client fell silent. So the reap takes between
        # timeout - interval and timeout, plus the gateway's 20 ms timer tick and scheduling.
        self.assertLessEqual(reap["max"], self.TIMEOUT_MS + 250, r.stdout)
        self.assertGreaterEqual(reap["p50"], self.TIMEOUT_MS - 1000 - 50, r.stdout)
        self.assertIn("zombie_reap", r.stdout)
        # Every reaped zombie was a heartbeat timeout at the gateway.
        self.assertGreaterEqual(self.gw.metric("longlink_gateway_heartbeat_timeouts_total") - before,
                                m["zombies_reaped"])
        # Reaped zombies came back (the phone regained coverage) and the rest were online at the end.
        self.assertEqual(rep["ledger"]["lost"], 0)

    def test_weak_network_mix_loses_nothing(self):
        before_bad = sum(self.gw.metric("longlink_gateway_closes_total", reason=r)
                         for r in ("bad_frame", "frame_too_large"))
        # Latency, jitter, thin bandwidth, stalls and 64-byte write fragments, but no drops: every
        # acknowledged message must arrive, and the gateway must reassemble every split frame.
        r, rep = self.run_weak("mix", """  mix:
    3g: 40
    edge: 30
    lossy: 30
  profiles:
    3g: {flaps_per_hour: 0, zombies_per_hour: 0, nat_idle_timeout: 0s}
    edge: {flaps_per_hour: 0, zombies_per_hour: 0, nat_idle_timeout: 0s}
    lossy: {flaps_per_hour: 0, zombies_per_hour: 0, nat_idle_timeout: 0s, stall_probability: 0.2,
            stall_duration: 500ms}
""", clients=200, duration=8, rate=1.0)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        m = rep["metrics"]
        led = rep["ledger"]
        self.assertGreater(led["acked"], 500)
        self.assertEqual(led["lost"], 0)
        self.assertEqual(led["duplicates"], 0)
        self.assertGreater(m["stalls"], 20)
        self.assertEqual(m["protocol_errors"], 0, r.stdout)
        self.assertEqual(sum(self.gw.metric("longlink_gateway_closes_total", reason=r)
                             for r in ("bad_frame", "frame_too_large")), before_bad)
        # The simulated latency shows: 3G/EDGE round trips are hundreds of milliseconds.
        self.assertGreater(rep["latency_ms"]["heartbeat_rtt"]["p50"], 150)
        self.assertGreater(rep["latency_ms"]["end_to_end"]["p99"], 400)
        self.assertIn("network ", r.stdout)

    def test_flaps_reconnect_and_sync(self):
        r, rep = self.run_weak("flaps", """  mix:
    4g: 100
  profiles:
    4g: {flaps_per_hour: 1800, zombies_per_hour: 0, nat_idle_timeout: 0s, stall_probability: 0}
""", clients=200, duration=6, rate=0.5)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        m = rep["metrics"]
        self.assertGreater(m["flaps"], 50, r.stdout)
        self.assertGreaterEqual(m["reconnects"], m["flaps"] - 5)
        self.assertGreaterEqual(m["syncs"], m["connect_attempts"] - m["connect_errors"] - 5)
        self.assertEqual(rep["ledger"]["duplicates"], 0)

    def test_adaptive_heartbeat_grows_and_backs_off_after_a_nat_timeout(self):
        # The interval grows from 1 s by 1 s per answered PING (capped at 80% of the 3 s timeout); once it
        # passes the NAT's 1.5 s idle limit the mapping expires, the PONG never comes, the client reconnects
        # and halves its interval.
        r, rep = self.run_weak("adaptive", """  mix:
    wifi: 100
  profiles:
    wifi: {flaps_per_hour: 0, zombies_per_hour: 0, stall_probability: 0, nat_idle_timeout: 1500ms}
""", clients=100, duration=10, rate=0, heartbeat="""  mode: adaptive
  initial: 1s
  step: 1s
  max: 5s
  backoff: 0.5
  successes_per_step: 1
  pong_timeout: 1s""")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        m = rep["metrics"]
        self.assertGreater(m["heartbeat_grows"], 50, r.stdout)
        self.assertGreater(m["nat_blackholes"], 20, r.stdout)
        self.assertGreater(m["heartbeat_backoffs"], 20, r.stdout)
        self.assertGreater(m["heartbeat_failures"], 20, r.stdout)
        interval = rep["latency_ms"]["heartbeat_interval"]
        self.assertLessEqual(interval["max"], 0.8 * self.TIMEOUT_MS * 1.01)
        self.assertGreaterEqual(interval["max"], 1900)

    def test_background_apps_beat_less_often(self):
        r, rep = self.run_weak("background", "  mix:\n    none: 100", clients=200, duration=6, rate=0,
                               heartbeat="""  mode: fixed
  background:
    fraction: 0.5
    interval_multiplier: 2
    switches_per_hour: 3600""")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        m = rep["metrics"]
        self.assertGreater(m["background_switches"], 100)
        interval = rep["latency_ms"]["heartbeat_interval"]
        self.assertAlmostEqual(interval["p50"] if interval["p50"] > 1500 else interval["p99"], 2000, delta=30)
        self.assertAlmostEqual(interval["p50"] if interval["p50"] < 1500 else 1000, 1000, delta=30)
        self.assertEqual(m["heartbeat_failures"], 0)

    def test_spike_and_drain_phases(self):
        path = os.path.join(self.tmp.name, "phases.yaml")
        with open(path, "w") as f:
            f.write("""name: phases-it
target:
  addresses: [127.0.0.1:%d]
clients: 600
connect_rate: 1000
duration: 10s
phases:
  - kind: ramp
    target: 400
  - kind: hold
    duration: 1s
  - kind: spike
    clients: 200
    connect_rate: 400
    duration: 3s
  - kind: drain
    target: 100
    duration: 3s
  - kind: hold
    duration: 2s
messaging:
  rate_per_client: 1
  targets: self
""" % self.gw.port)
        logouts = self.gw.metric("longlink_gateway_closes_total", reason="logout")
        report = os.path.join(self.tmp.name, "phases.json")
        r = run_loadgen("--scenario=" + path, "--report-json=" + report, "--shards=2")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(report) as f:
            rep = json.load(f)
        m = rep["metrics"]
        self.assertEqual(m["connected_peak"], 600)
        self.assertEqual(m["leaves"], 500)  # 200 at the end of the spike, 300 drained
        self.assertEqual(m["online_at_end"], 100)
        self.assertEqual(m["disconnects"], 0)
        self.assertEqual(rep["ledger"]["lost"], 0)
        # Spike and drain leave with LOGOUT: the gateway counted each as a logout close.
        self.gw.wait_metric("longlink_gateway_closes_total", lambda v: v - logouts >= 500, reason="logout")

    def test_source_addresses_are_bound(self):
        path = os.path.join(self.tmp.name, "sources.yaml")
        with open(path, "w") as f:
            f.write("""target:
  addresses: [127.0.0.1:%d]
  source_addresses: [127.0.0.2, 127.0.0.3]
clients: 100
duration: 4s
""" % self.gw.port)
        proc = subprocess.Popen([loadgen_binary(), "--scenario=" + path, "--shards=1"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 10
            counts = {}
            while time.monotonic() < deadline:
                time.sleep(0.5)
                out = subprocess.run(["ss", "-Htn", "state", "established", "( dport = :%d )" % self.gw.port],
                                     capture_output=True, text=True).stdout
                counts = {}
                for line in out.splitlines():
                    src = line.split()[2].rsplit(":", 1)[0]
                    counts[src] = counts.get(src, 0) + 1
                if sum(counts.values()) == 100:
                    break
            self.assertEqual(counts, {"127.0.0.2": 50, "127.0.0.3": 50})
        finally:
            out, err = proc.communicate(timeout=30)
        self.assertEqual(proc.returncode, 0, out + err)


GROUPS = """
name: groups-it
target:
  addresses: [127.0.0.1:{port}]
clients: 400
connect_rate: 1000
duration: 6s
auth:
  devices_per_user: 2
messaging:
  rate_per_client: 1
  targets: {targets}
  groups: {{count: 20, size: 30}}
reconnect:
  initial: 100ms
  max: 1s
thresholds:
  - lost == 0
  - duplicates == 0
"""


def check_clean_ledger(test, r, rep, min_acked=1000):
    """The run exited 0, acknowledged enough messages, and the ledger found none lost or repeated."""
    test.assertEqual(r.returncode, 0, r.stdout + r.stderr)
    led = rep["ledger"]
    test.assertGreater(led["acked"], min_acked)
    test.assertEqual(led["lost"], 0)
    test.assertEqual(led["duplicates"], 0)
    return led


class LoadgenLocalBackendTest(unittest.TestCase):
    """The ledger judging the embedded IM backend: groups, random users, and runs over kept data."""

    @classmethod
    def setUpClass(cls):
        cls.gw = ll.Gateway("--backend=local", "--heartbeat-interval=2s", "--heartbeat-timeout=6s", shards=2)
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.gw.terminate()
        cls.tmp.cleanup()

    def run_targets(self, targets, name, extra=""):
        path = os.path.join(self.tmp.name, name + ".yaml")
        text = GROUPS.format(port=self.gw.port, targets=targets)
        if targets != "groups":
            text = text.replace("  groups: {count: 20, size: 30}\n", extra)
        with open(path, "w") as f:
            f.write(text)
        report = os.path.join(self.tmp.name, name + ".json")
        r = run_loadgen("--scenario=" + path, "--report-json=" + report, "--shards=2")
        with open(report) as f:
            return r, json.load(f)

    def test_group_fan_out_reaches_every_member_device(self):
        r, rep = self.run_targets("groups", "groups")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        led = rep["ledger"]
        # 20 groups of 30 users with 2 devices each: every message reaches 60 devices.
        self.assertGreater(led["acked"], 500)
        self.assertEqual(led["expected_deliveries"], 60 * led["acked"])
        self.assertEqual(led["delivered_unique"], led["expected_deliveries"])
        self.assertEqual(led["lost"], 0)
        self.assertEqual(led["duplicates"], 0)
        self.assertEqual(led["delivered_to_non_recipient"], 0)
        self.assertEqual(rep["metrics"]["protocol_errors"], 0)

    def test_random_users_twice_on_the_same_data(self):
        # The second run finds the first run's messages in the inboxes (SYNC from 0 after login): they are
        # shown but not judged, and its own messages, with fresh client_msg_ids, are not taken for retries.
        for run in (1, 2):
            r, rep = self.run_targets("random_user", "random%d" % run)
            led = check_clean_ledger(self, r, rep)
            self.assertEqual(led["delivered_unique"], led["expected_deliveries"])
            if run == 2:
                self.assertGreater(rep["metrics"]["foreign_deliveries"], 1000)

    def test_delayed_cumulative_push_acks(self):
        # ack_delay: each device acknowledges once for everything received so far, with its next SEND or
        # PING or a second after the first push it covers. Fewer PUSH_ACKs than pushes reach the gateway,
        # every one of them a frame it counts, and the ledger still finds nothing lost or repeated.
        # (absent until the gateway has received a first one)
        before = self.gw.snapshot().get("longlink_gateway_frames_received_total", default=0, opcode="push_ack")
        r, rep = self.run_targets("random_user", "ackdelay", extra="  ack_delay: 1s\n")
        led = check_clean_ledger(self, r, rep)
        self.assertEqual(led["delivered_unique"], led["expected_deliveries"])
        acks = rep["metrics"]["push_acks"]
        self.assertGreater(acks, 0)
        self.assertLess(acks, 0.6 * led["delivered_unique"], rep["metrics"])
        got = self.gw.wait_metric("longlink_gateway_frames_received_total", lambda v: v - before >= acks,
                                  opcode="push_ack") - before
        self.assertEqual(got, acks)


class LoadgenUserRangeTest(unittest.TestCase):
    """auth.first_user_id: two generators with disjoint user ranges share one gateway, groups included."""

    def test_two_generators_with_disjoint_user_ranges(self):
        gw = ll.Gateway("--backend=local", "--admin-port=0", "--heartbeat-interval=2s", "--heartbeat-timeout=6s",
                        shards=2)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                reports = []
                for first in (1, 100_001):
                    path = os.path.join(tmp, "range%d.yaml" % first)
                    with open(path, "w") as f:
                        f.write(GROUPS.format(port=gw.port, targets="groups")
                                .replace("  devices_per_user: 2\n", "  devices_per_user: 2\n  first_user_id: %d\n" % first))
                    report = os.path.join(tmp, "range%d.json" % first)
                    r = run_loadgen("--scenario=" + path, "--report-json=" + report, "--shards=2")
                    with open(report) as f:
                        rep = json.load(f)
                    led = check_clean_ledger(self, r, rep, min_acked=500)
                    self.assertEqual(led["delivered_to_non_recipient"], 0)
                    self.assertEqual(rep["metrics"]["foreign_deliveries"], 0, "the other range's messages are not seen")
                    reports.append(rep)
            # 200 users each: 1..200 and 100,001..100,200; groups 1..20 and 100,001..100,020.
            for user in (1, 200, 100_001, 100_200):
                status, u = gw.admin("GET", "/v1/users/%d" % user)
                self.assertEqual(status, 200, u)
                self.assertGreater(u["last_seq"], 0, user)
            for user in (201, 100_000, 100_201):
                self.assertEqual(gw.admin("GET", "/v1/users/%d" % user)[1]["last_seq"], 0, user)
            for group in (20, 100_020):
                status, g = gw.admin("GET", "/v1/groups/%d" % group)
                self.assertEqual((status, g["count"]), (200, 30), group)
            self.assertEqual(gw.admin("GET", "/v1/groups/100021")[0], 404)
        finally:
            self.assertEqual(gw.terminate(), 0, gw.stderr_text)


class LoadgenSyncBudgetTest(unittest.TestCase):
    """More shards than cores with batch fsync: the shards' group commits share one budget per process."""

    def test_group_commits_share_the_process_budget(self):
        shards = 4 * (os.cpu_count() or 1)
        interval = 0.02  # 20 ms: each shard alone could sync 50 times a second
        gw = ll.Gateway("--backend=local", "--fsync=batch", "--fsync-interval-ms=20", "--admin-port=0",
                        "--admin-token=t", "--heartbeat-interval=2s", "--heartbeat-timeout=6s", shards=shards)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "budget.yaml")
                with open(path, "w") as f:
                    f.write(GROUPS.format(port=gw.port, targets="random_user")
                            .replace("  groups: {count: 20, size: 30}\n", ""))
                before = gw.snapshot().get("longlink_backend_local_fsync_seconds_count")
                start = time.monotonic()
                r = run_loadgen("--scenario=" + path, "--report-json=" + os.path.join(tmp, "r.json"), "--shards=2")
                elapsed = time.monotonic() - start
                syncs = gw.snapshot().get("longlink_backend_local_fsync_seconds_count") - before
                with open(os.path.join(tmp, "r.json")) as f:
                    rep = json.load(f)
            check_clean_ledger(self, r, rep)
            # Every shard had traffic, so unpaced they would have synced up to shards / interval a second;
            # the process keeps to cores / interval (plus one burst of `cores`).
            cores = os.cpu_count() or 1
            self.assertLessEqual(syncs, cores * (elapsed / interval + 1), (syncs, elapsed))
            self.assertGreater(syncs, 0)
            status, stats = gw.admin("GET", "/v1/stats", token="t")
            self.assertEqual(status, 200, stats)
            self.assertGreater(sum(s["fsync_waits"] for s in stats["shards"]), 0, stats)
            self.assertEqual(sum(s["fsyncs"] for s in stats["shards"]), gw.snapshot().get(
                "longlink_backend_local_fsync_seconds_count"))
        finally:
            self.assertEqual(gw.terminate(), 0, gw.stderr_text)


ECHO_SERVER = r"""
import asyncio, sys, websockets
errors = []
async def echo(ws, path=None):
    try:
        async for m in ws:
            await ws.send(m)
    except websockets.ConnectionClosedError as e:
        errors.append(repr(e))
async def main():
    async with websockets.serve(echo, "127.0.0.1", 0, max_size=None, ping_interval=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    print("unclean closes:", len(errors), flush=True)
asyncio.run(main())
"""


class LoadgenWebSocketEchoTest(unittest.TestCase):
    """--protocol=ws-echo against a third-party WebSocket echo server (python3-websockets)."""

    def test_ws_echo_against_python_websockets(self):
        server = subprocess.Popen([sys.executable, "-c", ECHO_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        try:
            port = int(server.stdout.readline())
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "echo.yaml")
                with open(path, "w") as f:
                    f.write("""target:
  addresses: [127.0.0.1:%d]
  protocol: ws-echo
  ws_path: /echo
  ws_ping_interval: 500ms
clients: 100
duration: 4s
messaging:
  rate_per_client: 2
  payload: {distribution: uniform, min: 8, max: 3000}
""" % port)
                report = os.path.join(tmp, "echo.json")
                r = run_loadgen("--scenario=" + path, "--report-json=" + report, "--shards=2")
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                with open(report) as f:
                    rep = json.load(f)
        finally:
            out, err = server.communicate(input="", timeout=30)
        m = rep["metrics"]
        self.assertEqual(m["connect_attempts"], 100)
        self.assertEqual(m["protocol_errors"], 0)
        self.assertGreater(m["echo_sent"], 400)
        self.assertEqual(m["echo_received"], m["echo_sent"])
        self.assertEqual(rep["latency_ms"]["end_to_end"]["count"], m["echo_sent"])
        self.assertGreater(m["pongs"], 300)  # WebSocket pings every 500 ms, answered by the server
        self.assertEqual(m["pongs"], rep["latency_ms"]["heartbeat_rtt"]["count"])
        self.assertIn("echo          ", r.stdout)
        # Every client ended with a close handshake.
        self.assertIn("unclean closes: 0", out, err)


if __name__ == "__main__":
    unittest.main()
