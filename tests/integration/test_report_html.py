"""The loadgen's HTML report and live metrics: a short run with messaging, weak networks and zombies against
the real gateway, its /metrics scraped while it runs and after it ends, and the HTML report it writes opened
in headless Chromium (no console errors, every chart drawn).

LONGLINK_REPORT_SCREENSHOT=PATH saves a full-page screenshot of the report there (docs/img/report.png)."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

import llclient as ll
from test_loadgen import loadgen_binary
from test_web_chat import CHROMEDRIVER, CHROMIUM, browser_unavailable

SCENARIO = """
name: report-it
target:
  addresses: [127.0.0.1:{port}]
clients: 300
connect_rate: 150
duration: 12s
phases:
  - kind: ramp
  - kind: hold
    duration: 10s
messaging:
  rate_per_client: 2
  targets: random_user
network:
  mix:
    wifi: 50
    4g: 50
  profiles:
    4g: {{flaps_per_hour: 300, zombies_per_hour: 200, nat_idle_timeout: 0s}}
reconnect:
  initial: 100ms
  max: 1s
thresholds:
  - lost == 0
  - duplicates == 0
  - e2e_p99_ms < 5000
output:
  metrics_port: 0
  metrics_linger: 3s
  live_interval: 0s
"""


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        return ll.Metrics(r.read().decode())


class ReportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="longlink-report-")
        cls.gw = ll.Gateway("--heartbeat-interval=1s", "--heartbeat-timeout=3s", shards=2)
        path = os.path.join(cls.tmp, "s.yaml")
        with open(path, "w") as f:
            f.write(SCENARIO.format(port=cls.gw.port))
        cls.html = os.path.join(cls.tmp, "report.html")
        cls.json = os.path.join(cls.tmp, "report.json")
        proc = subprocess.Popen([loadgen_binary(), "--scenario=" + path, "--report-html=" + cls.html,
                                 "--report-json=" + cls.json, "--shards=1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # The endpoint's port is printed on stderr first.
            line = proc.stderr.readline()
            m = re.search(r"127\.0\.0\.1:(\d+)/metrics", line)
            if not m:
                raise AssertionError("no metrics port in %r" % line)
            port = int(m.group(1))
            time.sleep(6)
            cls.during = scrape(port)
            # After the report is written the final figures stay up for metrics_linger.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                cls.after = scrape(port)
                if cls.after.get("longlink_loadgen_run_finished", 0) == 1:
                    break
                time.sleep(0.2)
            out, err = proc.communicate(timeout=30)
            cls.stdout = out
            cls.rc = proc.returncode
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        with open(cls.json) as f:
            cls.report = json.load(f)

    @classmethod
    def tearDownClass(cls):
        rc = cls.gw.terminate()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if rc != 0:
            raise AssertionError("gateway exited with %r" % rc)

    def test_run_passed(self):
        self.assertEqual(self.rc, 0, self.stdout)
        self.assertGreater(self.report["metrics"]["zombies"], 0, self.stdout)
        self.assertGreater(self.report["metrics"]["flaps"], 0, self.stdout)

    def test_live_metrics_during_the_run(self):
        m = self.during
        self.assertEqual(m.get("longlink_loadgen_run_finished", -1), 0)
        self.assertGreater(m.get("longlink_loadgen_online", 0), 100)
        self.assertEqual(m.get("longlink_loadgen_clients", 0), 300)
        self.assertGreater(m.get("longlink_loadgen_target_online", 0), 100)
        self.assertGreater(m.get("longlink_loadgen_messages_sent_total", 0), 100)
        self.assertGreater(m.get("longlink_loadgen_end_to_end_seconds_count", 0), 100)
        self.assertGreater(m.get("longlink_loadgen_heartbeat_rtt_seconds_count", 0), 10)
        self.assertGreater(m.get("longlink_loadgen_generator_lag_seconds_count", 0), 10)
        self.assertGreater(m.get("process_resident_memory_bytes", 0), 1 << 20)
        # One run_id on every longlink_loadgen_ series, and the info series names the scenario.
        run_ids = {labels.get("run_id") for name, labels, _ in m.samples if name.startswith("longlink_loadgen_")}
        self.assertEqual(len(run_ids), 1, run_ids)
        run_id = run_ids.pop()
        self.assertTrue(run_id.startswith("report-it-"), run_id)
        self.assertEqual(m.get("longlink_loadgen_run_info", 0, run_id=run_id, scenario="report-it"), 1)

    def test_final_metrics_after_the_run(self):
        a = self.after
        self.assertEqual(a.get("longlink_loadgen_run_finished", 0), 1)
        self.assertEqual(a.get("longlink_loadgen_run_valid", 0), 1)
        self.assertEqual(a.get("longlink_loadgen_run_passed", 0), 1)
        self.assertEqual(a.get("longlink_loadgen_messages_lost", -1), 0)
        self.assertEqual(a.get("longlink_loadgen_messages_acked_total", 0), self.report["ledger"]["acked"])
        self.assertEqual(a.get("longlink_loadgen_end_to_end_seconds_count", 0),
                         self.report["latency_ms"]["end_to_end"]["count"])
        self.assertEqual(a.get("longlink_loadgen_zombies_reaped_total", 0), self.report["metrics"]["zombies_reaped"])

    def test_html_is_self_contained(self):
        with open(self.html) as f:
            page = f.read()
        self.assertTrue(page.startswith("<!DOCTYPE html>"))
        # Nothing is fetched when the page is opened: no scripts, stylesheets, images or fonts from elsewhere.
        self.assertNotRegex(page, r"(?i)<script|<link|src=|url\(|@import|https?://")
        self.assertIn("PASS", page)
        self.assertLess(len(page), 2 << 20)

    def test_report_in_headless_chromium(self):
        reason = browser_unavailable()
        if reason:
            print("SKIP report browser test: " + reason, flush=True)
            self.skipTest(reason)
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,900",
                    "--disable-dev-shm-usage", "--user-data-dir=" + os.path.join(self.tmp, "profile")):
            opts.add_argument(arg)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER, log_path=os.path.join(self.tmp, "driver.log")),
                                  options=opts)
        try:
            driver.set_page_load_timeout(30)
            driver.get("file://" + self.html)
            self.assertEqual(driver.find_element("id", "verdict").text, "PASS")
            charts = driver.execute_script("""
                return Array.from(document.querySelectorAll('figure.chart')).map(f => {
                  const svg = f.querySelector('svg');
                  const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
                  const paths = Array.from(f.querySelectorAll('path.series'));
                  return {title: f.dataset.title, width: box.width, height: box.height,
                          series: paths.length,
                          drawn: paths.filter(p => p.getTotalLength() > 50).length,
                          points: paths.map(p => (p.getAttribute('d').match(/[ML]/g) || []).length)};
                });""")
            titles = [c["title"] for c in charts]
            for want in ("Clients online vs target", "Connects and logins", "Messages",
                         "Latency percentiles of each second", "Errors and reconnects", "Weak-network events",
                         "Percentile spectrum"):
                self.assertIn(want, titles)
            for c in charts:
                self.assertGreater(c["width"], 500, c)
                self.assertGreater(c["height"], 100, c)
                self.assertGreater(c["series"], 0, c)
                # Every chart shows at least one line with a visible extent, and a time chart one point a
                # second.
                self.assertGreater(c["drawn"], 0, c)
                if c["title"] != "Percentile spectrum":
                    self.assertGreaterEqual(max(c["points"]), 10, c)
            rows = driver.execute_script(
                "return Array.from(document.querySelectorAll('#thresholds td:last-child')).map(t => t.textContent)")
            self.assertEqual(rows, ["pass", "pass", "pass"])
            ledger = driver.find_element("id", "ledger").text
            self.assertIn("lost (acknowledged, never delivered) 0", ledger)
            errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
            self.assertEqual(errors, [])
            shot = os.environ.get("LONGLINK_REPORT_SCREENSHOT")
            if shot:
                height = driver.execute_script("return document.documentElement.scrollHeight")
                driver.set_window_size(1100, height + 40)
                driver.save_screenshot(shot)
        finally:
            driver.quit()


if __name__ == "__main__":
    unittest.main()
