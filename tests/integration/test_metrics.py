"""/metrics of a live gateway: clean for `promtool check metrics` (Debian's prometheus package), no series twice,
the backend's own scope (longlink_backend_<name>_*) with every statistic the backend declares, build information
and the standard process families, for each backend."""
import os
import re
import shutil
import subprocess
import time
import unittest

import llclient as ll
from test_local_messaging import LocalClient, users_on_distinct_shards

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def declared(path, macro):
    """Metric names declared in one X-macro list of a source file (the C(name, ...) rows)."""
    with open(os.path.join(ROOT, path)) as f:
        text = f.read()
    m = re.search(r"#define %s\([A-Z]\)(.*?)\n\n" % macro, text, re.S)
    assert m, "%s not found in %s" % (macro, path)
    return re.findall(r"\b[A-Z]\((\w+),", m.group(1))


class MetricsTest(unittest.TestCase):
    def promtool(self, text):
        if shutil.which("promtool") is None:
            self.skipTest("promtool is not installed (scripts/deps.sh installs the prometheus package)")
        out = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                             timeout=30)
        return out.returncode, (out.stdout + out.stderr).strip()

    def check_scrape(self, text):
        rc, problems = self.promtool(text)
        self.assertEqual((rc, problems), (0, ""), "promtool check metrics")
        seen = set()
        for line in text.splitlines():
            if line.startswith("#") or not line:
                continue
            series = line.rsplit(" ", 1)[0]
            self.assertNotIn(series, seen, "a series appears twice")
            seen.add(series)
        m = ll.Metrics(text)
        self.assertGreater(m.get("process_open_fds"), 0)
        self.assertGreater(m.get("process_max_fds"), m.get("process_open_fds"))
        self.assertGreater(m.get("process_resident_memory_bytes"), 1 << 20)
        self.assertGreater(m.get("process_start_time_seconds"), 1.6e9)
        return m

    def traffic(self, gw):
        a, b = users_on_distinct_shards(2, 31_000, shards=2)
        sa = LocalClient(ll.Client(gw.port), a, 1)
        sa.c.login(a)
        sb = LocalClient(ll.Client(gw.port), b, 1)
        sb.c.login(b)
        for i in range(5):
            sa.send_acked(b, i + 1, b"metrics %d" % i)
        ws = ll.WsClient(gw.ws_port)
        ws.login(a, 2)
        ws.close()
        sa.c.close()
        sb.c.close()

    def test_local_backend(self):
        gw = ll.Gateway("--ws-port=0", shards=2)
        try:
            self.traffic(gw)
            gw.wait_metric("longlink_backend_local_sends_total", lambda v: v == 5)
            m = self.check_scrape(gw.metrics())
            build = m.labels("longlink_build_info")
            self.assertEqual(len(build), 1)
            self.assertEqual(build[0]["backend"], "local")
            self.assertRegex(build[0]["version"], r"^\d+\.\d+\.\d+")
            self.assertEqual(m.get("longlink_build_info"), 1)
            # Every statistic the local backend declares is exported in its own scope, per shard summed.
            path = "gateway/backend/local/local_backend.h"
            names = (declared(path, "LONGLINK_LOCAL_COUNTERS") + declared(path, "LONGLINK_LOCAL_GAUGES"))
            self.assertIn("redrive_duplicates_total", names)
            for n in names:
                m.get("longlink_backend_local_" + n)
            # Each fsync bumps the counter and the histogram one after the other, and the disconnects above
            # may still be syncing while a scrape reads them: they must agree once the storage is quiet.
            deadline = time.monotonic() + 10
            synced = m
            while (synced.get("longlink_backend_local_fsync_seconds_count") !=
                   synced.get("longlink_backend_local_fsyncs_total")) and time.monotonic() < deadline:
                time.sleep(0.1)
                synced = self.check_scrape(gw.metrics())
            self.assertEqual(synced.get("longlink_backend_local_fsync_seconds_count"),
                             synced.get("longlink_backend_local_fsyncs_total"))
            self.assertGreater(synced.get("longlink_backend_local_fsyncs_total"), 0)
            self.assertGreaterEqual(m.get("longlink_backend_local_records_total"), 5)
            self.assertEqual(m.get("longlink_backend_local_storage_failed"), 0)
            # The gateway's declared lists, too; the fsync histogram is no longer the gateway's.
            for macro in ("LONGLINK_GATEWAY_COUNTERS", "LONGLINK_GATEWAY_SHARD_GAUGES", "LONGLINK_GATEWAY_HISTOGRAMS"):
                for n in declared("gateway/stats.h", macro):
                    m.get("longlink_gateway_" + n + ("_count" if n.endswith("_seconds") else ""))
            self.assertEqual(len(m.labels("longlink_gateway_draining")), 2)
            self.assertEqual(m.get("longlink_gateway_draining"), 0)
            with self.assertRaises(KeyError):
                m.get("longlink_gateway_fsync_seconds_count")
            # Unused WebSocket upgrade results are not exported as repeated "unknown" series.
            self.assertNotIn("unknown", [l["result"] for l in m.labels("longlink_gateway_ws_upgrades_total")])
        finally:
            self.assertEqual(gw.terminate(), 0)

    def test_echo_backend(self):
        gw = ll.Gateway("--backend=echo", "--ws-port=0", shards=2)
        try:
            c = ll.Client(gw.port)
            c.login(5)
            c.send(ll.SEND, ll.send_body(5, 1, b"x"))
            c.expect(ll.SEND_ACK)
            c.close()
            gw.wait_metric("longlink_backend_echo_echoes_total", lambda v: v == 1)
            m = self.check_scrape(gw.metrics())
            self.assertEqual(m.labels("longlink_build_info")[0]["backend"], "echo")
            self.assertEqual([n for n, _, _ in m.samples if n.startswith("longlink_backend_local")], [])
        finally:
            self.assertEqual(gw.terminate(), 0)


if __name__ == "__main__":
    unittest.main()
