"""Monitoring, proven end to end: the Grafana dashboards, the Prometheus configuration and alert rules of
dashboards/, and the metrics the programs export.

- Static: the dashboard JSON (fixed and unique uids, unique panel ids, the datasource variable on every panel
  and query, units, $__rate_interval in every rate, the job/instance/quantile (and run_id) variables, every
  selector filtered by them), the generated JSON matching dashboards/generate.py, Grafana provisioning, the
  alerts' runbook sections in docs/operations.md and their promtool unit tests, the systemd unit and sysctls.
- Live: a real Prometheus on loopback (temporary TSDB, 1 s scrapes) fed by the real gateway and a ~20 s loadgen
  run with messaging, weak networks and zombies. Every panel query of every dashboard, with its template
  variables resolved the way Grafana would (label_values through the API), is evaluated through
  /api/v1/query and /api/v1/query_range: no query may fail, every query of every panel must return series
  (NO_DATA_EXPECTED lists the exceptions, with the reason), and every metric name the dashboards and rules
  use must be exported by a target. Every alert expression is evaluated over the whole run: after a healthy
  run none fires.
- Conventions: each /metrics passes `promtool check metrics`, has HELP on every family, _total counters, base
  units, no per-user/connection/address label; label values stay few and the series count does not grow
  with the number of clients (two runs of different sizes compared); Prometheus's own count of series per
  metric name after the run stays under MAX_SERIES_PER_NAME.
- scripts/monitor.sh against a running gateway, bounded with --duration.

NATS: the panels that read only longlink_backend_nats_* and longlink_nats_server_* are evaluated against a
NATS-backed gateway the test starts itself on a single JetStream nats-server (natsfix.py), with a second,
smaller loadgen run through it; without nats-server 2.10 they are skipped with a printed notice. Instead of
its own, LONGLINK_NATS_GATEWAY_METRICS=host:port[,host:port]
names the metrics endpoints of running NATS-backed gateways: Prometheus scrapes them in the gateway job and
the NATS panels must then show data too; LONGLINK_NATS_GATEWAY_ADDR=host:port[,...] names their client
listeners, and a second, smaller loadgen run (NATS_SCENARIO, users of their own) sends through them during
the main run (without it, their panels see only what other traffic they carry). The NATS gateways' users and
the local gateway's are different systems, so no run spans both."""
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

import llclient as ll
import natsfix
from test_loadgen import loadgen_binary

ROOT = ll.ROOT
DASH_DIR = os.path.join(ROOT, "dashboards")
PROM_DIR = os.path.join(DASH_DIR, "prometheus")
DASHBOARDS = ["gateway-overview.json", "backends.json", "capacity-test.json"]
OPERATIONS = os.path.join(ROOT, "docs", "operations.md")
GATEWAY_JOB = "longlink-gateway"
LOADGEN_JOB = "longlink-loadgen"
SCRAPE = "1s"
# Grafana's $__rate_interval is max($__interval + scrape interval, 4 x scrape interval): 4 s at a 1 s scrape.
RATE_INTERVAL = "4s"
NATS_PREFIXES = ("longlink_backend_nats_", "longlink_nats_server_")
# Metrics the alert rules read that a gateway build may not export yet: each such alert is proven by its promtool
# unit test, and the live test prints which are missing instead of failing (once exported, they are checked
# like every other name).
AWAITED = {
    "longlink_gateway_ready": "0/1 gauge mirroring /readyz (LonglinkGatewayNotReady)",
    "longlink_gateway_max_connections": "gauge: a shard's fixed-file table size (LonglinkFixedTableNearFull "
                                        "falls back to the open-files limit, the default size)",
    "longlink_gateway_memory_bytes": "gauge: the gateway cgroup's memory.current (LonglinkMemoryNearLimit)",
    "longlink_gateway_memory_limit_bytes": "gauge: the gateway cgroup's memory.max (LonglinkMemoryNearLimit)",
}
# Panels (dashboard file, panel title) allowed to return no series after a healthy local-backend run, each with
# the condition the run lacks. Keep this short: a panel belongs here only when the test cannot make its data.
NO_DATA_EXPECTED = {}
# Series one metric name may have in Prometheus after the run (histograms: buckets x shards x labels). The
# largest today is a histogram's _bucket (24 buckets x 2 shards x a few labels): far below this unless a label
# carries per-client values.
MAX_SERIES_PER_NAME = 400
# Label names that would carry one value per user, device, connection or address.
FORBIDDEN_LABELS = {"user", "user_id", "uid", "device", "device_id", "conn", "conn_id", "connection",
                    "connection_id", "session", "session_id", "client", "client_id", "addr", "address", "ip",
                    "peer", "remote", "port", "token", "msg_id", "message_id"}
MAX_LABEL_VALUES = 40
# The loadgen's labels that name the run: one value per process, different in every run.
PER_RUN_LABELS = {"run_id", "scenario"}
NON_BASE_UNITS = re.compile(r"_(ms|msec|millis|milliseconds|us|usec|micros|microseconds|ns|nanoseconds|minutes|"
                            r"hours|days|kb|kib|mb|mib|gb|gib|percent)(_|$)")
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or",
                "unless", "le", "inf", "nan"}

MAIN_SCENARIO = """
name: monitoring
target:
  addresses: [{addresses}]
clients: 300
connect_rate: 150
duration: 20s
phases:
  - kind: ramp
  - kind: hold
    duration: 18s
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
output:
  metrics_linger: 8s
  live_interval: 0s
"""

NATS_SCENARIO = """
name: monitoring-nats
target:
  addresses: [{addresses}]
auth:
  first_user_id: 200001
clients: 100
connect_rate: 100
duration: 20s
messaging:
  rate_per_client: 1
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
output:
  live_interval: 0s
"""

SMALL_SCENARIO = """
name: monitoring-small
target:
  addresses: [{addresses}]
auth:
  first_user_id: 100001
clients: 20
connect_rate: 100
duration: 3s
messaging:
  rate_per_client: 1
  targets: random_user
network:
  mix:
    wifi: 50
    4g: 50
  profiles:
    4g: {{flaps_per_hour: 300, zombies_per_hour: 200, nat_idle_timeout: 0s}}
output:
  metrics_linger: 5s
  live_interval: 0s
"""


def binary_or_none(name):
    path = shutil.which(name)
    return path if path and os.access(path, os.X_OK) else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def env_list(name):
    """host:port entries of a comma-separated environment variable."""
    out = [x.strip() for x in os.environ.get(name, "").split(",") if x.strip()]
    for x in out:
        if not re.fullmatch(r"[^\s/:]+:\d+", x):
            raise AssertionError("%s: %r is not host:port" % (name, x))
    return out


def nats_gateways():
    """(metrics endpoints, client listeners) of the NATS-backed gateways that join the live run."""
    return env_list("LONGLINK_NATS_GATEWAY_METRICS"), env_list("LONGLINK_NATS_GATEWAY_ADDR")


def metric_names(expr):
    """Metric names a PromQL expression reads (label values, label names and functions left out)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\$\{?\w+\}?", " ", expr)
    expr = re.sub(r"\{[^}]*\}", "{}", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for m in re.finditer(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", expr):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_WORDS or re.fullmatch(r"\d.*", word):
            continue
        if word.startswith("$") or word.startswith("__"):
            continue
        names.add(word)
    return names


def is_nats_only(names):
    return bool(names) and all(n.startswith(NATS_PREFIXES) for n in names)


def load_dashboards():
    out = {}
    for name in DASHBOARDS:
        with open(os.path.join(DASH_DIR, name)) as f:
            out[name] = json.load(f)
    return out


def data_panels(dash):
    return [p for p in dash["panels"] if p.get("type") != "row"]


def parse_exposition(text):
    """Families of a /metrics text: {name: {"type", "help", "samples": [(sample name, labels)]}}."""
    fams = {}
    for line in text.splitlines():
        m = re.match(r"# (HELP|TYPE) (\S+) ?(.*)", line)
        if m:
            fam = fams.setdefault(m.group(2), {"type": None, "help": None, "samples": []})
            fam["help" if m.group(1) == "HELP" else "type"] = m.group(3)
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? \S+", line)
        if not m:
            continue
        name = m.group(1)
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        fam_name = name
        if name not in fams:
            for suffix in ("_bucket", "_sum", "_count"):
                if name.endswith(suffix) and name[:-len(suffix)] in fams:
                    fam_name = name[:-len(suffix)]
        fams.setdefault(fam_name, {"type": None, "help": None, "samples": []})["samples"].append((name, labels))
    return fams


def label_values(fams):
    """{(family, label): set of values} over every sample."""
    out = {}
    for fam, info in fams.items():
        for _, labels in info["samples"]:
            for k, v in labels.items():
                out.setdefault((fam, k), set()).add(v)
    return out


class Prometheus:
    """A real Prometheus on loopback with the repository's configuration and rules, a temporary TSDB, the given
    scrape interval and targets."""

    def __init__(self, workdir, gateways, loadgens, scrape=SCRAPE):
        self.dir = workdir
        os.makedirs(os.path.join(workdir, "targets"), exist_ok=True)
        with open(os.path.join(PROM_DIR, "prometheus.yml")) as f:
            config = f.read()
        for key in ("scrape_interval", "scrape_timeout", "evaluation_interval"):
            config, n = re.subn(r"(?m)^(\s+%s:)\s*\S+" % key, r"\g<1> " + scrape, config)
            if n != 1:
                raise AssertionError("prometheus.yml has %d global %s lines" % (n, key))
        with open(os.path.join(workdir, "prometheus.yml"), "w") as f:
            f.write(config)
        shutil.copy(os.path.join(PROM_DIR, "alerts.yml"), os.path.join(workdir, "alerts.yml"))
        # file_sd reads YAML, and JSON is YAML.
        for name, targets in (("gateways.yml", gateways), ("loadgen.yml", loadgens)):
            with open(os.path.join(workdir, "targets", name), "w") as f:
                json.dump([{"targets": targets}] if targets else [], f)
        self.log = open(os.path.join(workdir, "prometheus.log"), "w")
        self.proc = None
        for _ in range(3):  # the port was free a moment ago; another process may take it first
            self.port = free_port()
            self.proc = subprocess.Popen(
                [binary_or_none("prometheus"), "--config.file=" + os.path.join(workdir, "prometheus.yml"),
                 "--storage.tsdb.path=" + os.path.join(workdir, "data"),
                 "--web.listen-address=127.0.0.1:%d" % self.port, "--storage.tsdb.retention.time=1d",
                 "--log.level=warn"], stdout=self.log, stderr=subprocess.STDOUT)
            if self._wait_ready():
                break
            self.stop()
        else:
            raise AssertionError("prometheus did not start: %s" % self.log_text())
        self.url = "http://127.0.0.1:%d" % self.port
        self.started = time.time()

    def _wait_ready(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                http_get("http://127.0.0.1:%d/-/ready" % self.port, timeout=2)
                return True
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.1)
        return False

    def log_text(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()[-3000:]

    def api(self, path, **params):
        query = urllib.parse.urlencode(params, doseq=True)
        url = "%s/api/v1/%s%s" % (self.url, path, "?" + query if query else "")
        try:
            body = http_get(url)
        except urllib.error.HTTPError as e:
            body = e.read().decode()
        reply = json.loads(body)
        if reply.get("status") != "success":
            raise PromError("%s: %s %s" % (path, reply.get("errorType"), reply.get("error")))
        return reply["data"]

    def query(self, expr, at):
        return self.api("query", query=expr, time="%.3f" % at)

    def query_range(self, expr, start, end, step=1):
        return self.api("query_range", query=expr, start="%.3f" % start, end="%.3f" % end, step=str(step))

    def targets(self):
        return self.api("targets", state="active")["activeTargets"]

    def wait_targets_up(self, job, count, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            up = [t for t in self.targets() if t["labels"]["job"] == job and t["health"] == "up"]
            if len(up) >= count:
                return
            if time.monotonic() > deadline:
                raise AssertionError("%s: %d of %d targets up: %r" % (job, len(up), count, self.targets()))
            time.sleep(0.2)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class PromError(Exception):
    pass


class Loadgen:
    """longlink-loadgen with a scenario and its metrics endpoint on a given port (0: any)."""

    def __init__(self, workdir, scenario, name, metrics_port=0, extra=()):
        path = os.path.join(workdir, name + ".yaml")
        with open(path, "w") as f:
            f.write(scenario)
        self.proc = subprocess.Popen([loadgen_binary(), "--scenario=" + path, "--shards=1",
                                      "--metrics-port=%d" % metrics_port, *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        m = re.search(r"127\.0\.0\.1:(\d+)/metrics", line)
        if not m:
            self.proc.kill()
            raise AssertionError("no metrics port from the loadgen: %r %s" % (line, self.proc.stderr.read()))
        self.port = int(m.group(1))

    def metrics(self):
        return http_get("http://127.0.0.1:%d/metrics" % self.port)

    def wait_finished(self, timeout):
        """The /metrics text once run_finished is 1 (the endpoint lingers after the run)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.metrics()
            if re.search(r"^longlink_loadgen_run_finished\{[^}]*\} 1$", text, re.M):
                return text
            if time.monotonic() > deadline:
                raise AssertionError("the loadgen run did not finish in %ss" % timeout)
            time.sleep(0.2)

    def finish(self, timeout=60):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode, out, err

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


def substitute(expr, values):
    def repl(m):
        name = m.group(1) or m.group(2)
        if name not in values:
            raise AssertionError("unknown template variable $%s in %s" % (name, expr))
        return values[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, expr)


def has_finite_point(result):
    return any(math.isfinite(float(v)) for series in result for _, v in series["values"])


def regex_literal(value):
    """A label value as a regex inside a PromQL string, escaped the way Grafana formats variable values."""
    return re.escape(value).replace("\\", "\\\\")


class StaticMonitoringTest(unittest.TestCase):
    """The files of dashboards/, deploy/ and docs/operations.md, without running anything but promtool's
    parser and dashboards/generate.py."""

    @classmethod
    def setUpClass(cls):
        cls.dashboards = load_dashboards()
        with open(os.path.join(PROM_DIR, "alerts.yml")) as f:
            cls.alerts_text = f.read()
        cls.alert_names = re.findall(r"^\s+- alert: (\w+)$", cls.alerts_text, re.M)

    def test_generated_json_is_up_to_date(self):
        r = subprocess.run(["python3", os.path.join(DASH_DIR, "generate.py"), "--check"], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_uids_and_panel_ids_are_unique(self):
        uids = [d["uid"] for d in self.dashboards.values()]
        self.assertEqual(len(uids), len(set(uids)), uids)
        for name, d in self.dashboards.items():
            self.assertRegex(d["uid"], r"^longlink-[a-z-]+$", name)
            self.assertGreaterEqual(d["schemaVersion"], 39, name)
            self.assertIsNone(d.get("id"), name)
            ids = [p["id"] for p in d["panels"]]
            self.assertEqual(len(ids), len(set(ids)), name)
            titles = [p["title"] for p in data_panels(d)]
            self.assertEqual(len(titles), len(set(titles)), "%s: duplicate titles" % name)

    def test_panels_do_not_overlap(self):
        for name, d in self.dashboards.items():
            taken = {}
            for p in d["panels"]:
                g = p["gridPos"]
                self.assertLessEqual(g["x"] + g["w"], 24, (name, p["title"]))
                for x in range(g["x"], g["x"] + g["w"]):
                    for y in range(g["y"], g["y"] + g["h"]):
                        self.assertNotIn((x, y), taken, "%s: %r overlaps %r" % (name, p["title"], taken.get((x, y))))
                        taken[(x, y)] = p["title"]

    def test_every_panel_uses_the_datasource_variable_and_sets_a_unit(self):
        ds = {"type": "prometheus", "uid": "${datasource}"}
        for name, d in self.dashboards.items():
            for p in data_panels(d):
                where = "%s: %s" % (name, p["title"])
                self.assertEqual(p.get("datasource"), ds, where)
                self.assertTrue(p.get("targets"), where)
                for t in p["targets"]:
                    self.assertEqual(t.get("datasource"), ds, where)
                    self.assertTrue(t.get("expr"), where)
                self.assertTrue(p["fieldConfig"]["defaults"].get("unit"), where)
                self.assertTrue(p.get("description"), where)
                if p["type"] == "heatmap":
                    self.assertEqual(p["options"]["calculate"], False, where)
                    self.assertTrue(p["options"]["yAxis"].get("unit"), where)
                    for t in p["targets"]:
                        self.assertEqual(t["format"], "heatmap", where)
                        self.assertIn("_bucket", t["expr"], where)

    def test_every_range_is_the_rate_interval(self):
        for name, d in self.dashboards.items():
            for p in data_panels(d):
                for t in p["targets"]:
                    expr = t["expr"]
                    ranges = re.findall(r"\[([^\]]*)\]", re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr))
                    for r in ranges:
                        self.assertEqual(r, "$__rate_interval", "%s: %s: %s" % (name, p["title"], expr))
                    if re.search(r"\b(rate|irate|increase|delta|idelta|\w+_over_time)\(", expr):
                        self.assertTrue(ranges, expr)
                    self.assertNotRegex(expr, r"\b(irate|delta)\(", "counters take rate or increase")

    def test_every_selector_uses_the_variables(self):
        for name, d in self.dashboards.items():
            run = any(v["name"] == "run_id" for v in d["templating"]["list"])
            for p in data_panels(d):
                for t in p["targets"]:
                    expr = t["expr"]
                    where = "%s: %s: %s" % (name, p["title"], expr)
                    # Every metric read has a selector, and every selector the dashboard's variables.
                    for metric in metric_names(expr):
                        self.assertRegex(expr, re.escape(metric) + r"\{", where)
                    # Every selector, also those that match names by regex ({__name__=~"..."}).
                    for m in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\{([^}]*)\}", expr):
                        metric, matchers = m.group(1) or "", m.group(2)
                        self.assertIn('job=~"$job"', matchers, where)
                        self.assertIn('instance=~"$instance"', matchers, where)
                        if run and metric.startswith("longlink_loadgen_"):
                            self.assertIn('run_id=~"$run_id"', matchers, where)

    def test_variables(self):
        for name, d in self.dashboards.items():
            vs = {v["name"]: v for v in d["templating"]["list"]}
            self.assertEqual(vs["datasource"]["type"], "datasource", name)
            self.assertEqual(vs["datasource"]["query"], "prometheus", name)
            for v in ("job", "instance"):
                self.assertEqual(vs[v]["type"], "query", name)
                self.assertEqual(vs[v]["datasource"], {"type": "prometheus", "uid": "${datasource}"}, name)
                self.assertTrue(vs[v]["multi"] and vs[v]["includeAll"], (name, v))
                self.assertRegex(vs[v]["definition"], r"^label_values\(", (name, v))
            self.assertEqual(vs["instance"]["allValue"], ".*", name)
            self.assertEqual(vs["quantile"]["type"], "custom", name)
            self.assertEqual(vs["quantile"]["current"]["value"], "0.99", name)
            if name == "capacity-test.json":
                self.assertEqual(vs["run_id"]["type"], "query", name)
                self.assertIn("longlink_loadgen_run_info", vs["run_id"]["definition"])

    def test_provisioning(self):
        with open(os.path.join(DASH_DIR, "provisioning", "datasources", "longlink-prometheus.yaml")) as f:
            ds = f.read()
        with open(os.path.join(PROM_DIR, "prometheus.yml")) as f:
            prom = f.read()
        scrape = re.search(r"(?m)^\s+scrape_interval:\s*(\S+)", prom).group(1)
        self.assertRegex(ds, r"(?m)^\s+uid: longlink-prometheus$")
        self.assertRegex(ds, r"(?m)^\s+type: prometheus$")
        self.assertRegex(ds, r"(?m)^\s+timeInterval: %s$" % re.escape(scrape))
        with open(os.path.join(DASH_DIR, "provisioning", "dashboards", "longlink.yaml")) as f:
            prov = f.read()
        self.assertRegex(prov, r"(?m)^\s+type: file$")
        self.assertRegex(prov, r"(?m)^\s+path: /usr/local/share/longlink/dashboards$")
        for job in (GATEWAY_JOB, LOADGEN_JOB):
            self.assertRegex(prom, r"(?m)^\s+- job_name: %s$" % job)

    def test_alerts_have_runbooks_and_unit_tests(self):
        self.assertGreaterEqual(len(self.alert_names), 20)
        self.assertEqual(len(self.alert_names), len(set(self.alert_names)))
        with open(OPERATIONS) as f:
            headings = set(re.findall(r"^### (\w+)$", f.read(), re.M))
        with open(os.path.join(ROOT, "tests", "monitoring", "alerts_test.yml")) as f:
            tests = f.read()
        for name in self.alert_names:
            self.assertIn('runbook_url: "docs/operations.md#%s"' % name.lower(), self.alerts_text, name)
            self.assertIn(name, headings, "docs/operations.md has no '### %s' section" % name)
            # One evaluation expecting it to fire, one expecting silence.
            evals = re.findall(r"alertname: %s\n\s+exp_alerts:(.*)" % name, tests)
            self.assertIn("", [e.strip() for e in evals], "%s: no firing case" % name)
            self.assertIn("[]", [e.strip() for e in evals], "%s: no quiet case" % name)
        for block in re.split(r"\n\s+- alert: ", self.alerts_text)[1:]:
            for key in ("expr:", "for:", "summary:", "description:", "runbook_url:"):
                self.assertIn(key, block, block.split("\n")[0])
            self.assertRegex(block, r"\n\s+severity: (critical|warning)\n", block.split("\n")[0])

    def test_systemd_unit(self):
        with open(os.path.join(ROOT, "deploy", "longlink-gateway.service")) as f:
            unit = f.read()
        for line in ("LimitNOFILE=1048576", "KillSignal=SIGTERM", "Restart=on-failure", "NoNewPrivileges=yes",
                     "ProtectSystem=strict", "DynamicUser=yes", "StateDirectory=longlink"):
            self.assertRegex(unit, r"(?m)^%s$" % re.escape(line))
        stop = int(re.search(r"(?m)^TimeoutStopSec=(\d+)s$", unit).group(1))
        self.assertGreater(stop, 10 + 15, "--drain-seconds + --write-timeout defaults")
        self.assertRegex(unit, r"(?m)^ExecStart=/usr/local/bin/longlink-gateway ")
        with open(os.path.join(ROOT, "deploy", "99-longlink.conf")) as f:
            sysctl = f.read()
        nr_open = int(re.search(r"(?m)^fs\.nr_open = (\d+)$", sysctl).group(1))
        self.assertGreaterEqual(nr_open, 1048576)
        for line in sysctl.splitlines():
            if not line or line.startswith("#"):
                continue
            key = line.split("=")[0].strip()
            optional = key.startswith("-")
            path = "/proc/sys/" + key.lstrip("-").replace(".", "/")
            if not optional:
                self.assertTrue(os.path.exists(path), "unknown sysctl %s" % key)

    def test_promtool_accepts_the_configuration(self):
        promtool = binary_or_none("promtool")
        if promtool is None:
            self.skipTest("promtool not installed (Debian package prometheus)")
        r = subprocess.run(["bash", os.path.join(ROOT, "tests", "monitoring", "check.sh"), promtool],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


@unittest.skipIf(binary_or_none("prometheus") is None or binary_or_none("promtool") is None,
                 "prometheus/promtool not installed (Debian package prometheus)")
class LiveMonitoringTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.nice(10)  # gateway, loadgen and Prometheus inherit it: the machine is shared
        cls.tmp = tempfile.mkdtemp(prefix="longlink-monitoring-")
        cls.gateways = []
        cls.nats_cluster = None
        cls.nats_gw = None
        cls.prom = None
        cls.loadgen = None
        try:
            cls._run()
        except BaseException:
            cls._cleanup()
            raise

    @classmethod
    def _run(cls):
        hb = ("--heartbeat-interval=1s", "--heartbeat-timeout=3s")
        cls.gateways.append(ll.Gateway(*hb, shards=2))
        cls.nats_metrics, nats_addrs = nats_gateways()
        if not cls.nats_metrics and natsfix.server_version() >= (2, 10, 0):
            # A NATS-backed gateway of its own on a single JetStream server, re-exporting the server's monitoring.
            cls.nats_cluster = natsfix.NatsCluster(1).start()
            cls.nats_gw = ll.Gateway("--backend=nats", "--nats-url=" + cls.nats_cluster.urls, "--nats-replicas=1",
                                     "--nats-monitor-urls=" + cls.nats_cluster.monitor_urls, *hb, shards=2)
            cls.nats_metrics = ["127.0.0.1:%d" % cls.nats_gw.metrics_port]
            nats_addrs = ["127.0.0.1:%d" % cls.nats_gw.port]
        cls.nats = bool(cls.nats_metrics)
        cls.nats_loadgen = None
        addresses = ", ".join("127.0.0.1:%d" % g.port for g in cls.gateways)
        gw_targets = ["127.0.0.1:%d" % g.metrics_port for g in cls.gateways] + cls.nats_metrics
        lg_port = free_port()
        cls.prom = Prometheus(os.path.join(cls.tmp, "prometheus"), gw_targets, ["127.0.0.1:%d" % lg_port])

        # While Prometheus discovers its targets (a few seconds): a small run for the label comparison.
        small = Loadgen(cls.tmp, SMALL_SCENARIO.format(addresses=addresses), "small")
        try:
            cls.small_loadgen_text = small.wait_finished(30)
            cls.small_gateway_texts = [g.metrics() for g in cls.gateways]
        finally:
            small.kill()
        cls.prom.wait_targets_up(GATEWAY_JOB, len(gw_targets))
        # Until its first scrape Prometheus has no `up` for the gateways, and LonglinkGatewayTargetsMissing is
        # pending (its `for` keeps it from firing): let two rule evaluations see the targets before the window
        # the alert checks look at opens.
        time.sleep(2)

        cls.start = time.time()
        cls.loadgen = Loadgen(cls.tmp, MAIN_SCENARIO.format(addresses=addresses), "main", metrics_port=lg_port)
        if nats_addrs:
            cls.nats_loadgen = Loadgen(cls.tmp, NATS_SCENARIO.format(addresses=", ".join(nats_addrs)), "nats")
        cls.prom.wait_targets_up(LOADGEN_JOB, 1)
        cls.loadgen_text = cls.loadgen.wait_finished(60)
        if cls.nats_loadgen is not None:
            cls.nats_result = cls.nats_loadgen.finish(60)
        cls.gateway_texts = [g.metrics() for g in cls.gateways]
        cls.nats_gateway_texts = [http_get("http://%s/metrics" % t) for t in cls.nats_metrics]
        cls.run_id = re.search(r'longlink_loadgen_run_info\{run_id="([^"]+)"', cls.loadgen_text).group(1)
        time.sleep(3)  # a few scrapes of the final figures
        cls.rc, cls.out, cls.err = cls.loadgen.finish(60)
        cls.end = time.time()
        cls.exported = set(cls.prom.api("label/__name__/values"))

    @classmethod
    def _cleanup(cls):
        for lg in (cls.loadgen, getattr(cls, "nats_loadgen", None)):
            if lg is not None:
                lg.kill()
        if cls.prom is not None:
            cls.prom.stop()
        failed = []
        for g in cls.gateways + ([cls.nats_gw] if cls.nats_gw is not None else []):
            rc = g.terminate()
            if rc != 0:
                failed.append((g.banner, rc, g.stderr_text))
        if cls.nats_cluster is not None:
            cls.nats_cluster.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        return failed

    @classmethod
    def tearDownClass(cls):
        failed = cls._cleanup()
        if failed:
            raise AssertionError("gateway exited badly: %r" % failed)

    def test_0_run_was_healthy(self):
        self.assertEqual(self.rc, 0, self.out + self.err)
        m = ll.Metrics(self.loadgen_text)
        self.assertGreater(m.get("longlink_loadgen_zombies_reaped_total"), 0, self.out)
        self.assertGreater(m.get("longlink_loadgen_flaps_total"), 0, self.out)
        self.assertGreater(m.get("longlink_loadgen_messages_delivered_total"), 1000, self.out)
        self.assertEqual(m.get("longlink_loadgen_run_valid"), 1, self.out)
        self.assertEqual(m.get("longlink_loadgen_run_passed"), 1, self.out)
        if self.nats_loadgen is not None:
            rc, out, err = self.nats_result
            self.assertEqual(rc, 0, "NATS run: " + out + err)
        if not self.nats:
            print("NATS panels not evaluated: no NATS-backed gateway in this run "
                  "(LONGLINK_NATS_GATEWAY_METRICS=host:port adds one)", flush=True)

    def resolve_variables(self, dash):
        """Template values as Grafana would pick them: label_values through the API, All for instance."""
        values = {"__rate_interval": RATE_INTERVAL, "quantile": "0.99", "datasource": "longlink-prometheus"}
        for v in dash["templating"]["list"]:
            if v["type"] != "query":
                continue
            m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", v["definition"])
            self.assertIsNotNone(m, v["definition"])
            match = substitute(m.group(1), values)
            found = self.prom.api("label/%s/values" % m.group(2), **{"match[]": match, "start": "%.3f" % self.start,
                                                                      "end": "%.3f" % self.end})
            self.assertTrue(found, "variable %s (%s) has no values" % (v["name"], match))
            if v["name"] == "run_id":
                self.assertIn(self.run_id, found)
                values["run_id"] = regex_literal(self.run_id)
            elif v.get("allValue"):
                values[v["name"]] = v["allValue"]
            else:
                values[v["name"]] = "(" + "|".join(regex_literal(x) for x in found) + ")"
        return values

    def test_every_panel_shows_data(self):
        dashboards = load_dashboards()
        titles = {(name, p["title"]) for name, d in dashboards.items() for p in data_panels(d)}
        self.assertEqual(set(NO_DATA_EXPECTED) - titles, set(), "NO_DATA_EXPECTED names panels that do not exist")
        failures = []
        evaluated = skipped = 0
        for name, dash in dashboards.items():
            values = self.resolve_variables(dash)
            for p in data_panels(dash):
                names = set().union(*(metric_names(t["expr"]) for t in p["targets"]))
                if is_nats_only(names) and not self.nats:
                    skipped += 1
                    continue
                evaluated += 1
                may_be_empty = (name, p["title"]) in NO_DATA_EXPECTED
                shown = False
                for t in p["targets"]:
                    expr = substitute(t["expr"], values)
                    where = "%s: %s [%s]" % (name, p["title"], expr)
                    try:
                        self.prom.query(expr, self.end)
                        result = self.prom.query_range(expr, self.start, self.end)["result"]
                    except PromError as e:
                        failures.append("%s: query error %s" % (where, e))
                        continue
                    if not result and not may_be_empty:
                        failures.append("%s: no series" % where)
                    shown = shown or has_finite_point(result)
                if not shown and not may_be_empty:
                    failures.append("%s: %s: no finite value at any time" % (name, p["title"]))
                if may_be_empty:
                    print("%s: %s: allowed to be empty (%s)" % (name, p["title"], NO_DATA_EXPECTED[(name, p["title"])]),
                          flush=True)
        print("panels evaluated: %d, NATS panels skipped: %d" % (evaluated, skipped), flush=True)
        self.assertEqual(failures, [], "\n".join(failures))
        total = sum(len(data_panels(d)) for d in dashboards.values())
        self.assertEqual(evaluated + skipped, total)
        self.assertGreater(evaluated, 0)

    def test_dashboard_metrics_are_exported(self):
        missing = {}
        for name, dash in load_dashboards().items():
            for p in data_panels(dash):
                for t in p["targets"]:
                    for metric in metric_names(t["expr"]):
                        if metric in self.exported or (metric.startswith(NATS_PREFIXES) and not self.nats):
                            continue
                        missing.setdefault(metric, []).append("%s: %s" % (name, p["title"]))
        self.assertEqual(missing, {}, "dashboards read metrics no target exports")

    def rules(self):
        groups = self.prom.api("rules", type="alert")["groups"]
        return [r for g in groups for r in g["rules"]]

    def test_alert_rules_loaded_and_evaluated(self):
        with open(os.path.join(PROM_DIR, "alerts.yml")) as f:
            names = re.findall(r"^\s+- alert: (\w+)$", f.read(), re.M)
        rules = self.rules()
        self.assertEqual(sorted(r["name"] for r in rules), sorted(names))
        for r in rules:
            self.assertEqual(r["health"], "ok", (r["name"], r.get("lastError")))
            # Accepted by the query API too, over the whole run.
            self.prom.query_range(r["query"], self.start, self.end)

    def test_alert_metrics_are_exported(self):
        missing = {}
        for r in self.rules():
            for metric in metric_names(r["query"]):
                if metric in self.exported or metric in AWAITED:
                    continue
                if metric.startswith(NATS_PREFIXES) and not self.nats:
                    continue
                missing.setdefault(metric, []).append(r["name"])
        self.assertEqual(missing, {}, "alert rules read metrics no target exports")
        for metric, what in AWAITED.items():
            if metric not in self.exported:
                print("not exported by this gateway build: %s (%s); its alert is proven by promtool only"
                      % (metric, what), flush=True)

    def test_no_alert_fires_after_a_healthy_run(self):
        alerts = self.prom.query_range("ALERTS", self.start, self.end)["result"]
        self.assertEqual([a["metric"] for a in alerts], [], "pending or firing alerts")
        # Stricter than ALERTS, which waits for each rule's `for`: no expression was true at any second.
        fired = {}
        for r in self.rules():
            result = self.prom.query_range(r["query"], self.start, self.end)["result"]
            if result:
                fired[r["name"]] = [s["metric"] for s in result]
        self.assertEqual(fired, {})

    def test_metric_names_follow_conventions(self):
        promtool = binary_or_none("promtool")
        texts = [("gateway", t) for t in self.gateway_texts + self.nats_gateway_texts]
        texts.append(("loadgen", self.loadgen_text))
        prefixes = {"gateway": r"^(longlink_gateway_|longlink_backend_[a-z]+_|longlink_nats_server_|"
                               r"longlink_build_info$|process_)",
                    "loadgen": r"^(longlink_loadgen_|process_)"}
        for who, text in texts:
            r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                               timeout=60)
            self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""), who)
            for fam, info in parse_exposition(text).items():
                where = "%s: %s" % (who, fam)
                self.assertRegex(fam, prefixes[who], where)
                self.assertTrue(info["help"], "%s: no HELP" % where)
                self.assertIn(info["type"], ("counter", "gauge", "histogram"), where)
                self.assertTrue(info["samples"], where)
                if info["type"] == "counter":
                    self.assertTrue(fam.endswith("_total"), where)
                else:
                    self.assertFalse(fam.endswith("_total"), where)
                if info["type"] == "histogram":
                    self.assertRegex(fam, r"_(seconds|bytes)$", where)
                self.assertIsNone(NON_BASE_UNITS.search(fam), "%s: not a base unit" % where)
                if fam.endswith("_info"):
                    self.assertEqual(info["type"], "gauge", where)

    def test_labels_are_bounded(self):
        pairs = [("gateway", s, b) for s, b in zip(self.small_gateway_texts, self.gateway_texts)]
        pairs.append(("loadgen", self.small_loadgen_text, self.loadgen_text))
        for who, small_text, big_text in pairs:
            small, big = parse_exposition(small_text), parse_exposition(big_text)
            small_values, big_values = label_values(small), label_values(big)
            for (fam, label), vals in big_values.items():
                where = "%s: %s{%s}" % (who, fam, label)
                self.assertNotIn(label, FORBIDDEN_LABELS, where)
                if label != "run_id":
                    self.assertFalse(label.endswith("_id"), where)
                self.assertLessEqual(len(vals), MAX_LABEL_VALUES, "%s: %d values" % (where, len(vals)))
                # 20 clients and 300 clients: the same label values (run_id and scenario: one per run).
                if label in PER_RUN_LABELS:
                    self.assertEqual(len(vals), 1, where)
                else:
                    self.assertEqual(vals, small_values.get((fam, label), set()), where)
            series_small = sum(len(f["samples"]) for f in small.values())
            series_big = sum(len(f["samples"]) for f in big.values())
            self.assertEqual(series_small, series_big, "%s: the series count grew with the clients" % who)

    def test_series_per_metric_name_are_bounded(self):
        """Prometheus's view after the run: every series it stored, counted per metric name and job."""
        series = self.prom.api("series", **{"match[]": '{job=~"%s|%s"}' % (GATEWAY_JOB, LOADGEN_JOB),
                                            "start": "%.3f" % self.start, "end": "%.3f" % self.end})
        counts = {}
        for labels in series:
            key = (labels["job"], labels["__name__"])
            counts[key] = counts.get(key, 0) + 1
            extra = set(labels) & FORBIDDEN_LABELS
            self.assertEqual(extra, set(), "%s: %r" % (labels["__name__"], labels))
        self.assertTrue(counts)
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
        print("series stored: %d over %d metric names; most per name: %s" % (
            len(series), len(counts), ", ".join("%s %d" % (k[1], n) for k, n in top)), flush=True)
        over = {"%s/%s" % k: n for k, n in counts.items() if n > MAX_SERIES_PER_NAME}
        self.assertEqual(over, {}, "metric names with more than %d series" % MAX_SERIES_PER_NAME)
        # The loadgen's run label: one value per run (only the main run's endpoint is scraped).
        run_ids = {labels.get("run_id") for labels in series if labels["job"] == LOADGEN_JOB} - {None}
        self.assertEqual(run_ids, {self.run_id})


@unittest.skipIf(binary_or_none("prometheus") is None, "prometheus not installed (Debian package prometheus)")
class MonitorScriptTest(unittest.TestCase):
    def test_monitor_script_scrapes_a_gateway_and_stops(self):
        with ll.Gateway(shards=1) as gw:
            port = free_port()
            proc = subprocess.Popen(["bash", os.path.join(ROOT, "scripts", "monitor.sh"), "--gateway",
                                     "127.0.0.1:%d" % gw.metrics_port, "--port", str(port), "--scrape-interval",
                                     "1s", "--duration", "10s"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True)
            # Bounded even if the script never stops by itself: SIGTERM runs its cleanup.
            watchdog = threading.Timer(60, proc.send_signal, (signal.SIGTERM,))
            watchdog.start()
            try:
                first = proc.stdout.readline()
                m = re.search(r"data in (\S+)\)", first)
                self.assertIsNotNone(m, first + (proc.stdout.read() if proc.poll() is not None else ""))
                data_dir = m.group(1)
                url = "http://127.0.0.1:%d" % port
                deadline = time.monotonic() + 9
                health = None
                while time.monotonic() < deadline:
                    targets = json.loads(http_get(url + "/api/v1/targets"))["data"]["activeTargets"]
                    health = [(t["labels"]["job"], t["health"]) for t in targets]
                    if (GATEWAY_JOB, "up") in health:
                        break
                    time.sleep(0.3)
                self.assertIn((GATEWAY_JOB, "up"), health)
                rules = json.loads(http_get(url + "/api/v1/rules"))["data"]["groups"]
                self.assertTrue(rules)
                # The same buffered reader as the first line: the rest of what the script printed, to its exit.
                out = proc.stdout.read()
                proc.wait(30)
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(30)
                proc.stdout.close()
                watchdog.cancel()
            text = first + out
            self.assertEqual(proc.returncode, 0, text)
            self.assertIn("datasource: type Prometheus, URL %s" % url, text)
            self.assertIn("provisioning", text)
            self.assertFalse(os.path.exists(data_dir), "temporary data left behind")
            with self.assertRaises(OSError):
                http_get(url + "/-/ready", timeout=2)


if __name__ == "__main__":
    unittest.main()
