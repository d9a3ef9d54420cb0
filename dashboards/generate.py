#!/usr/bin/env python3
"""Writes the Grafana dashboards of longlink (dashboards/*.json) from the panel lists below.

The JSON files are what Grafana imports or provisions; this script is their source, so every panel gets the
same datasource variable, units, legends and layout, and a panel is one line to add. Edit the lists here and
run `python3 dashboards/generate.py`; `--check` exits 1 when a JSON file differs from what this script writes
(tests/integration/test_monitoring.py runs it). Classic dashboard model, schemaVersion 39.

PromQL conventions: every rate or increase uses [$__rate_interval]; every selector carries the dashboard's
job and instance variables (and run_id on the loadgen's series); latency histograms are shown as percentiles
(histogram_quantile over summed buckets) and as heatmaps (increase of the buckets per interval)."""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA_VERSION = 39
DS = {"type": "prometheus", "uid": "${datasource}"}

GW = 'job=~"$job", instance=~"$instance"'
LG = 'job=~"$job", instance=~"$instance", run_id=~"$run_id"'
PROC = 'job=~"$job", instance=~"$instance"'


def sel(base, extra=""):
    return "{" + base + (", " + extra if extra else "") + "}"


def rate(metric, base, by=None, extra="", fn="rate"):
    inner = "%s(%s%s[$__rate_interval])" % (fn, metric, sel(base, extra))
    return "sum by (%s) (%s)" % (by, inner) if by else "sum(%s)" % inner


def quantile(q, metric, base, by=None, extra=""):
    group = (by + ", le") if by else "le"
    return "histogram_quantile(%s, sum by (%s) (rate(%s_bucket%s[$__rate_interval])))" % (
        q, group, metric, sel(base, extra))


def buckets(metric, base, extra=""):
    return "sum by (le) (increase(%s_bucket%s[$__rate_interval]))" % (metric, sel(base, extra))


def any_backend(counter, base):
    """The rate of a counter every backend exports under its own scope (longlink_backend_<name>_<counter>),
    whichever backend the gateways run."""
    return 'sum(rate({__name__=~"longlink_backend_[a-z]+_%s", %s}[$__rate_interval]))' % (counter, base)


def t(expr, legend=""):
    return {"expr": expr, "legend": legend}


class Board:
    """Lays panels out on Grafana's 24-column grid, row by row, and numbers them."""

    def __init__(self):
        self.panels = []
        self.x = 0
        self.y = 0
        self.line_h = 0
        self.next_id = 1

    def _place(self, w, h):
        if self.x + w > 24:
            self.x = 0
            self.y += self.line_h
            self.line_h = 0
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.line_h = max(self.line_h, h)
        return pos

    def _id(self):
        i = self.next_id
        self.next_id += 1
        return i

    def row(self, title):
        if self.x:
            self.y += self.line_h
        self.x = 0
        self.line_h = 0
        self.panels.append({"type": "row", "id": self._id(), "title": title, "collapsed": False, "panels": [],
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}})
        self.y += 1

    def _targets(self, targets, fmt="time_series"):
        out = []
        for i, tg in enumerate(targets):
            out.append({"datasource": DS, "refId": chr(ord("A") + i), "expr": tg["expr"],
                        "legendFormat": tg["legend"] or "__auto", "range": True, "instant": False,
                        "editorMode": "code", "format": fmt})
        return out

    def timeseries(self, title, unit, targets, desc, w=8, h=8, stack=False, thresholds=None, min0=True):
        custom = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
                  "spanNulls": False, "axisSoftMin": 0 if min0 else None,
                  "stacking": {"mode": "normal" if stack else "none", "group": "A"}}
        if custom["axisSoftMin"] is None:
            del custom["axisSoftMin"]
        steps = [{"color": "green", "value": None}]
        if thresholds is not None:
            steps.append({"color": "red", "value": thresholds})
            custom["thresholdsStyle"] = {"mode": "line"}
        self.panels.append({
            "type": "timeseries", "id": self._id(), "title": title, "description": desc, "datasource": DS,
            "gridPos": self._place(w, h),
            "fieldConfig": {"defaults": {"unit": unit, "custom": custom,
                                         "thresholds": {"mode": "absolute", "steps": steps}},
                            "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []},
                        "tooltip": {"mode": "multi", "sort": "desc"}},
            "targets": self._targets(targets)})

    def stat(self, title, unit, targets, desc, w=4, h=4, text_mode="auto", mappings=None, decimals=None):
        defaults = {"unit": unit, "mappings": mappings or [],
                    "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}]}}
        if decimals is not None:
            defaults["decimals"] = decimals
        self.panels.append({
            "type": "stat", "id": self._id(), "title": title, "description": desc, "datasource": DS,
            "gridPos": self._place(w, h),
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area", "justifyMode": "auto", "orientation": "auto",
                        "textMode": text_mode},
            "targets": self._targets(targets)})

    def heatmap(self, title, metric, base, desc, extra="", w=8, h=8, unit="s"):
        self.panels.append({
            "type": "heatmap", "id": self._id(), "title": title, "description": desc, "datasource": DS,
            "gridPos": self._place(w, h),
            "fieldConfig": {"defaults": {"unit": unit, "custom": {"scaleDistribution": {"type": "linear"},
                                                                  "hideFrom": {"legend": False, "tooltip": False,
                                                                               "viz": False}}},
                            "overrides": []},
            "options": {"calculate": False, "cellGap": 1,
                        "color": {"mode": "scheme", "scheme": "Oranges", "scale": "exponential", "exponent": 0.5,
                                  "steps": 64, "fill": "dark", "reverse": False},
                        "yAxis": {"axisPlacement": "left", "unit": unit, "reverse": False},
                        "rowsFrame": {"layout": "auto"}, "filterValues": {"le": 1e-9},
                        "legend": {"show": True}, "showValue": "never",
                        "tooltip": {"show": True, "yHistogram": False},
                        "exemplars": {"color": "rgba(255,0,255,0.7)"}},
            "dataFormat": "tsbuckets",
            "targets": self._targets([t(buckets(metric, base, extra), "{{le}}")], fmt="heatmap")})

    def percentiles(self, title, metric, base, desc, extra="", w=8, h=8, thresholds=None):
        self.timeseries(title, "s", [t(quantile("0.5", metric, base, extra=extra), "p50"),
                                     t(quantile("0.9", metric, base, extra=extra), "p90"),
                                     t(quantile("$quantile", metric, base, extra=extra), "q$quantile")],
                        desc, w=w, h=h, thresholds=thresholds)


def variables(anchor_metric, with_run_id=False):
    def query_var(name, label, query, multi, include_all, all_value=None, sort=1):
        v = {"name": name, "label": label, "type": "query", "datasource": DS,
             "query": {"query": query, "refId": "StandardVariableQuery"}, "definition": query,
             "refresh": 2, "sort": sort, "multi": multi, "includeAll": include_all, "hide": 0, "regex": "",
             "current": {}, "options": []}
        if all_value is not None:
            v["allValue"] = all_value
        return v

    out = [{"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
            "refresh": 1, "hide": 0, "regex": "", "current": {}, "options": []}]
    out.append(query_var("job", "Job", "label_values(%s, job)" % anchor_metric, True, True))
    if with_run_id:
        out.append(query_var("run_id", "Run", "label_values(%s{job=~\"$job\"}, run_id)" % anchor_metric,
                             False, True, all_value=".*", sort=2))
        inst = "label_values(%s{job=~\"$job\", run_id=~\"$run_id\"}, instance)" % anchor_metric
    else:
        inst = "label_values(%s{job=~\"$job\"}, instance)" % anchor_metric
    out.append(query_var("instance", "Instance", inst, True, True, all_value=".*"))
    qs = ["0.5", "0.9", "0.95", "0.99", "0.999"]
    out.append({"name": "quantile", "label": "Quantile", "type": "custom", "query": ",".join(qs), "hide": 0,
                "multi": False, "includeAll": False,
                "current": {"selected": True, "text": "0.99", "value": "0.99"},
                "options": [{"selected": q == "0.99", "text": q, "value": q} for q in qs]})
    return out


def dashboard(uid, title, description, board, anchor_metric, with_run_id=False, refresh="30s"):
    return {
        "uid": uid, "title": title, "description": description, "tags": ["longlink"],
        "schemaVersion": SCHEMA_VERSION, "version": 1, "editable": True, "graphTooltip": 1,
        "timezone": "browser", "refresh": refresh, "time": {"from": "now-1h", "to": "now"},
        "fiscalYearStartMonth": 0, "liveNow": False, "weekStart": "",
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                  "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                                  "name": "Annotations & Alerts", "type": "dashboard"}]},
        "links": [{"title": "longlink", "type": "dashboards", "tags": ["longlink"], "asDropdown": True,
                   "includeVars": False, "keepTime": True, "icon": "external link", "targetBlank": False,
                   "tooltip": "", "url": ""}],
        "templating": {"list": variables(anchor_metric, with_run_id)},
        "panels": board.panels}


# The closes that are not the client's or an operator's doing: protocol violations, timeouts, failed logins,
# slow consumers, I/O errors.
NORMAL_CLOSES = "peer_closed|logout|draining|kicked|auth_expired"
LOGIN_CLOSES = "auth_failed|login_rejected|login_throttled|login_timeout|not_logged_in|migrate_failed"
BOOL = [{"type": "value", "options": {"0": {"text": "no", "index": 0}, "1": {"text": "yes", "index": 1}}}]


def gateway_overview():
    b = Board()
    m = "longlink_gateway_"
    b.row("Overview")
    b.stat("Targets up", "none", [t("sum(up%s)" % sel(GW), "up"), t("count(up%s)" % sel(GW), "configured")],
           "Gateways Prometheus scraped successfully, of those it is configured to scrape.")
    b.stat("Connections", "short", [t("sum(%sconnections%s)" % (m, sel(GW)))],
           "Open client connections (TCP and WebSocket), logged in or not.")
    b.stat("Sessions", "short", [t("sum(%ssessions%s)" % (m, sel(GW)))], "Logged-in sessions.")
    b.stat("Logins/s", "ops", [t(rate(m + "logins_total", GW))], "Successful logins per second.")
    b.stat("Messages in/s", "ops", [t(rate(m + "frames_received_total", GW, extra='opcode="send"'))],
           "SEND frames received per second.")
    b.stat("Messages out/s", "ops", [t(rate(m + "frames_sent_total", GW, extra='opcode="push"'))],
           "PUSH frames sent per second (live and SYNC answers).")
    b.stat("Delivery latency ($quantile)", "s", [t(quantile("$quantile", m + "push_delay_seconds", GW))],
           "A message's server time to its live PUSH queued on the recipient's connection, at the chosen quantile.")
    b.stat("Abnormal closes", "percentunit",
           [t("%s / clamp_min(%s, 1e-9)" % (rate(m + "closes_total", GW, extra='reason!~"%s"' % NORMAL_CLOSES),
                                            rate(m + "closes_total", GW)))],
           "Share of closes that the gateway made for an error (timeouts, failed logins, protocol violations, slow "
           "consumers, I/O errors) rather than the client leaving, a kick or a drain.")
    b.stat("Login failure ratio", "percentunit",
           [t("%s / clamp_min(%s + %s, 1e-9)" % (rate(m + "login_failures_total", GW), rate(m + "logins_total", GW),
                                                 rate(m + "login_failures_total", GW)))],
           "Failed logins of all login attempts (alert LonglinkLoginFailureRatioHigh past 5%).")
    b.stat("Version", "none", [t("count by (version, backend) (longlink_build_info%s)" % sel(GW),
                                 "{{version}} {{backend}}")],
           "longlink_build_info: the version and backend of the gateways (more than one while a rollout runs).",
           text_mode="name")
    b.stat("Uptime", "s", [t("min(time() - process_start_time_seconds%s)" % sel(GW))],
           "Time since the most recently started gateway started.")
    b.stat("Draining", "none", [t("max(%sdraining%s)" % (m, sel(GW)))],
           "yes while any selected gateway drains (SIGTERM: GOAWAY sent, /readyz answers 503).",
           mappings=[{"type": "value", "options": {"0": {"text": "serving", "color": "green", "index": 0},
                                                   "1": {"text": "draining", "color": "orange", "index": 1}}}])

    b.row("Connections and sessions")
    b.timeseries("Connections per instance", "short", [t("sum by (instance) (%sconnections%s)" % (m, sel(GW)),
                                                         "{{instance}}")],
                 "Open client connections of each gateway.", w=12)
    b.timeseries("Sessions per instance", "short", [t("sum by (instance) (%ssessions%s)" % (m, sel(GW)),
                                                      "{{instance}}")],
                 "Logged-in sessions of each gateway.", w=12)
    b.timeseries("Connections per shard", "short",
                 [t("sum by (instance, shard) (%sconnections%s)" % (m, sel(GW)), "{{instance}} shard {{shard}}")],
                 "Connections of each shard (one thread and one io_uring each); users are hashed to an owner shard, "
                 "so shards should stay close.", w=12)
    b.timeseries("Sessions per shard and transport", "short",
                 [t("sum by (instance, shard, transport) (%ssessions%s)" % (m, sel(GW)),
                    "{{instance}} shard {{shard}} {{transport}}")],
                 "Logged-in sessions of each shard, TCP and WebSocket.", w=12)
    b.timeseries("Accepts by transport", "ops", [t(rate(m + "accepts_total", GW, by="transport"), "{{transport}}"),
                                                 t(rate(m + "accept_errors_total", GW), "accept errors")],
                 "Connections accepted per second, and accepts that failed.")
    b.timeseries("Logins", "ops", [t(rate(m + "logins_total", GW), "logins"),
                                   t(rate(m + "login_failures_total", GW), "failures"),
                                   t(rate(m + "login_throttled_total", GW), "throttled"),
                                   t(rate(m + "token_refreshes_total", GW), "token refreshes"),
                                   t(rate(m + "migrations_total", GW), "moved to owner shard")],
                 "Successful and failed logins per second, logins refused for an address that failed too often, "
                 "tokens renewed on a live session, and connections moved to their user's shard at login.")
    b.timeseries("Login failures by reason", "ops",
                 [t(rate(m + "closes_total", GW, by="reason", extra='reason=~"%s"' % LOGIN_CLOSES), "{{reason}}")],
                 "Connections closed because their login failed, by reason (bad token, backend refusal, throttled, "
                 "no login in time, a frame before login, no room on the owner shard).")

    b.row("Closes and faults")
    b.timeseries("Closes by reason", "ops", [t(rate(m + "closes_total", GW, by="reason"), "{{reason}}")],
                 "Connections closed per second, by reason.", w=12, stack=True)
    b.timeseries("Connection faults", "ops", [t(rate(m + "heartbeat_timeouts_total", GW), "heartbeat timeouts"),
                                              t(rate(m + "kicks_total", GW), "kicks"),
                                              t(rate(m + "slow_consumers_total", GW), "slow consumers"),
                                              t(rate(m + "write_timeouts_total", GW), "write timeouts"),
                                              t(rate(m + "sessions_expired_total", GW), "tokens expired")],
                 "Connections the gateway closed for missing heartbeats, kicked (same device again, admin), "
                 "whose output queue passed --max-pending-bytes, whose sends made no progress, or whose token "
                 "expired.", w=12)

    b.row("Traffic")
    b.timeseries("Frames received by opcode", "ops",
                 [t(rate(m + "frames_received_total", GW, by="opcode"), "{{opcode}}")],
                 "Frames received from clients per second.", w=12)
    b.timeseries("Frames sent by opcode", "ops", [t(rate(m + "frames_sent_total", GW, by="opcode"), "{{opcode}}")],
                 "Frames sent to clients per second.", w=12)
    b.timeseries("Frames by transport", "ops",
                 [t(rate(m + "frames_received_total", GW, by="transport"), "in {{transport}}"),
                  t(rate(m + "frames_sent_total", GW, by="transport"), "out {{transport}}")],
                 "Frames in and out per second, TCP and WebSocket.")
    b.timeseries("Bytes by transport", "binBps",
                 [t(rate(m + "received_bytes_total", GW, by="transport"), "in {{transport}}"),
                  t(rate(m + "sent_bytes_total", GW, by="transport"), "out {{transport}}")],
                 "Bytes received from and sent to clients per second.")
    b.timeseries("Bytes queued for sending", "bytes",
                 [t("sum by (instance) (%spending_send_bytes%s)" % (m, sel(GW)), "{{instance}}")],
                 "Output queued on connections and not yet written: grows when clients read slowly.")
    sends_in = rate(m + "frames_received_total", GW, extra='opcode="send"')
    accepted = "(%s + %s)" % (any_backend("sends_total", GW), any_backend("duplicate_sends_total", GW))
    b.timeseries("SENDs received and accepted", "ops",
                 [t(sends_in, "received"), t(any_backend("sends_total", GW), "accepted as new"),
                  t(any_backend("duplicate_sends_total", GW), "answered as retries")],
                 "SEND frames received, SENDs the backend accepted as new messages, and retries it answered with "
                 "the first SEND_ACK (longlink_backend_<backend>_sends_total, _duplicate_sends_total). With "
                 "--backend=nats the gateway owning the user's partition counts the SEND: compare them over All "
                 "instances.", w=12)
    b.timeseries("SEND error ratio", "percentunit",
                 [t("clamp_min(1 - %s / clamp_min(%s, 1e-9), 0)" % (accepted, sends_in), "refused")],
                 "SENDs received that the backend neither accepted nor answered as retries: a non-zero SEND_ACK "
                 "status (UNAVAILABLE, RATE_LIMITED, NO_SUCH_TARGET, REJECTED, TOO_LARGE) or an ERROR (alert "
                 "LonglinkSendErrorRatioHigh past 5%).", w=12, thresholds=0.05)

    b.row("Latency")
    b.percentiles("Login latency", m + "login_latency_seconds", GW, "LOGIN received to LOGIN_ACK queued.")
    b.percentiles("Backend latency", m + "backend_latency_seconds", GW, "SEND received to SEND_ACK queued.")
    b.percentiles("Delivery latency (push delay)", m + "push_delay_seconds", GW,
                  "A message's server time to its live PUSH queued (end to end inside the gateway), alert "
                  "LonglinkDeliveryLatencyHigh at p99 above 0.5 s.", thresholds=0.5)
    b.heatmap("Login latency heatmap", m + "login_latency_seconds", GW, "Logins per latency bucket and interval.")
    b.heatmap("Backend latency heatmap", m + "backend_latency_seconds", GW, "SENDs per latency bucket and interval.")
    b.heatmap("Delivery latency heatmap", m + "push_delay_seconds", GW, "Live PUSHes per delay bucket and interval.")

    b.row("Shard runtime")
    b.timeseries("Cross-shard queue depth", "short",
                 [t("max by (instance, shard) (%scross_shard_queue_depth%s)" % (m, sel(GW)),
                    "{{instance}} into shard {{shard}}")],
                 "Messages waiting in the queues into each shard, read at scrape time.")
    b.timeseries("Cross-shard messages and overflow", "ops",
                 [t(rate(m + "cross_shard_messages_total", GW), "posted"),
                  t(rate(m + "cross_shard_overflow_total", GW), "overflow (queue full)")],
                 "Messages posted to other shards, and posts that found the queue full and waited in a local list.")
    b.timeseries("Buffer ring and fixed table", "ops",
                 [t(rate(m + "buffer_ring_exhausted_total", GW), "buffer ring exhausted"),
                  t(rate(m + "fixed_table_full_total", GW), "fixed table full (accept paused)")],
                 "Receives that found the shard's buffer ring empty (-ENOBUFS), and times accept paused because "
                 "the shard's fixed-file table was full (alert LonglinkFixedTableFull).")
    b.timeseries("Receive buffers", "short",
                 [t("sum by (instance, shard) (%srecv_buffers%s)" % (m, sel(GW)), "{{instance}} shard {{shard}}")],
                 "Buffers in each shard's buffer ring; it grows by 64 when receives find it empty, up to "
                 "--recv-buffers.")
    b.timeseries("Loop round time", "s",
                 [t(quantile("0.5", m + "loop_round_seconds", GW, by="instance"), "{{instance}} p50"),
                  t(quantile("$quantile", m + "loop_round_seconds", GW, by="instance"), "{{instance}} q$quantile")],
                 "Busy time of one shard loop round; a long round delays every connection of the shard.")
    b.heatmap("Loop round heatmap", m + "loop_round_seconds", GW, "Loop rounds per busy-time bucket and interval.")
    b.percentiles("fsync time (local backend)", "longlink_backend_local_fsync_seconds", GW,
                  "Duration of one fdatasync of the message log (the backends dashboard has more).")
    b.timeseries("Shard housekeeping", "ops", [t(rate(m + "mailbox_calls_total", GW), "mailbox calls"),
                                               t(rate(m + "stale_completions_total", GW), "stale completions")],
                 "Calls run on shards for other threads (admin API, backend clients), and completions dropped "
                 "because their connection was closed and its slot reused.")

    b.row("Process")
    b.timeseries("Resident memory", "bytes",
                 [t("sum by (instance) (process_resident_memory_bytes%s)" % sel(GW), "{{instance}}")],
                 "Resident memory of each gateway.")
    b.timeseries("Memory per connection", "bytes",
                 [t("sum by (instance) (process_resident_memory_bytes%s) / clamp_min(sum by (instance) "
                    "(%sconnections%s), 1)" % (sel(GW), m, sel(GW)), "{{instance}}")],
                 "Resident memory divided by open connections (includes the fixed cost of an idle process).")
    b.timeseries("CPU", "percentunit",
                 [t(rate("process_cpu_seconds_total", GW, by="instance"), "{{instance}}")],
                 "CPU time per second (1.0 = one core busy).")
    b.timeseries("Open files and their limit", "short",
                 [t("sum by (instance) (process_open_fds%s)" % sel(GW), "{{instance}} open"),
                  t("sum by (instance) (process_max_fds%s)" % sel(GW), "{{instance}} limit")],
                 "Open file descriptors against RLIMIT_NOFILE (alert LonglinkOpenFilesNearLimit past 90%). Client "
                 "connections are io_uring direct descriptors: they fill the fixed-file table, not this count.")
    b.timeseries("Draining per instance", "bool_yes_no",
                 [t("max by (instance) (%sdraining%s)" % (m, sel(GW)), "{{instance}}")],
                 "1 while a gateway drains after SIGTERM.")
    b.timeseries("Gateways up", "short", [t("sum by (instance) (up%s)" % sel(GW), "{{instance}}")],
                 "1 while Prometheus scrapes the gateway (alert LonglinkGatewayDown).")
    return dashboard("longlink-gateway-overview", "longlink / Gateway overview",
                     "longlink-gateway: connections, sessions, logins, closes, traffic, latency, shard runtime and "
                     "process. Alerts and what to do: docs/operations.md.", b, "longlink_build_info")


def backends():
    b = Board()
    lo = "longlink_backend_local_"
    na = "longlink_backend_nats_"
    ns = "longlink_nats_server_"
    b.row("Local backend: writes")
    b.timeseries("Appends", "ops", [t(rate(lo + "sends_total", GW), "SENDs accepted"),
                                    t(rate(lo + "records_total", GW), "log records"),
                                    t(rate(lo + "inbox_entries_total", GW), "inbox entries"),
                                    t(rate(lo + "duplicate_sends_total", GW), "retries answered")],
                 "New messages, records appended to the log, (message, user) inbox entries stored, and SEND retries "
                 "answered from the idempotency map.")
    b.timeseries("Group commits", "ops", [t(rate(lo + "fsyncs_total", GW), "fdatasync"),
                                          t(rate(lo + "fsync_waits_total", GW), "put off (sync budget spent)")],
                 "fdatasync calls on the message log, and group commits put off because the process's sync budget "
                 "was spent.")
    b.timeseries("Group commit size", "short",
                 [t("%s / %s" % (rate(lo + "records_total", GW, by="instance"),
                                 rate(lo + "fsyncs_total", GW, by="instance")), "{{instance}}")],
                 "Records made durable per fdatasync (--fsync=batch groups a shard's appends of "
                 "--fsync-interval-ms).")
    b.percentiles("fsync time", lo + "fsync_seconds", GW, "Duration of one fdatasync of the message log.")
    b.heatmap("fsync time heatmap", lo + "fsync_seconds", GW, "fdatasyncs per duration bucket and interval.")
    b.timeseries("Bytes not yet durable", "bytes",
                 [t("sum by (instance) (%slog_unsynced_bytes%s)" % (lo, sel(GW)), "{{instance}}")],
                 "Bytes appended to the log and not yet synced.")

    b.row("Local backend: reads and delivery")
    b.timeseries("SYNC requests and pages", "ops", [t(rate(lo + "syncs_total", GW), "SYNCs answered"),
                                                    t(rate(lo + "sync_pushes_total", GW), "PUSHes in SYNC answers")],
                 "SYNC requests (a client catching its inbox up) and the PUSH frames that answered them.")
    b.timeseries("PUSHes per SYNC", "short",
                 [t("%s / %s" % (rate(lo + "sync_pushes_total", GW), rate(lo + "syncs_total", GW)), "per SYNC")],
                 "Average page size of SYNC answers.")
    b.timeseries("Live delivery", "ops", [t(rate(lo + "pushes_total", GW), "live PUSHes"),
                                          t(rate(lo + "presence_events_total", GW), "presence events")],
                 "PUSH frames queued live, and PRESENCE events sent to subscribers.")
    b.percentiles("Backend round trip", "longlink_gateway_backend_latency_seconds", GW,
                  "SEND received to SEND_ACK queued, as the gateway sees its backend.", w=12)
    b.heatmap("Backend round trip heatmap", "longlink_gateway_backend_latency_seconds", GW,
              "SENDs per latency bucket and interval.", w=12)

    b.row("Local backend: inboxes and retention")
    b.timeseries("Users and groups", "short",
                 [t("sum(%susers%s)" % (lo, sel(GW)), "users with an inbox"),
                  t("sum(%sonline_users%s)" % (lo, sel(GW)), "online users"),
                  t("sum(%sgroups%s)" % (lo, sel(GW)), "groups")],
                 "Inbox owners, users with a device online, groups.")
    b.timeseries("In flight", "short",
                 [t("sum(%sinflight_messages%s)" % (lo, sel(GW)), "messages not yet stored everywhere"),
                  t("sum(%sidempotency_entries%s)" % (lo, sel(GW)), "SENDs remembered for retries"),
                  t("sum(%sdeferred_delivers%s)" % (lo, sel(GW)), "DELIVERs held (storage failed)"),
                  t("sum(%spresence_subscriptions%s)" % (lo, sel(GW)), "presence subscriptions")],
                 "State that grows with traffic and shrinks when it settles.")
    b.timeseries("Retention", "ops", [t(rate(lo + "entries_expired_total", GW), "expired (--retention)"),
                                      t(rate(lo + "entries_evicted_total", GW), "evicted (--max-inbox)"),
                                      t(rate(lo + "segments_deleted_total", GW), "segments deleted")],
                 "Inbox entries dropped for age or for a full inbox, and log segments deleted by compaction.")
    b.timeseries("Log segments", "short", [t("sum by (instance) (%ssegments%s)" % (lo, sel(GW)), "{{instance}}")],
                 "Log segments on disk.")
    b.timeseries("Storage health", "short",
                 [t("max by (instance) (%sstorage_failed%s)" % (lo, sel(GW)), "{{instance}} failed"),
                  t(rate(lo + "storage_errors_total", GW), "errors/s"),
                  t(rate(lo + "storage_recoveries_total", GW), "recoveries/s")],
                 "1 while a shard's log write or fsync failed and new messages are refused (alert "
                 "LonglinkLocalStorageFailed), failures and recoveries per second.")
    b.timeseries("Refusals and re-drive", "ops", [t(rate(lo + "limited_total", GW), "refused by a per-device limit"),
                                                  t(rate(lo + "redriven_total", GW), "re-driven after restart"),
                                                  t(rate(lo + "redrive_duplicates_total", GW), "re-drive duplicates")],
                 "Requests refused for --max-sends-per-second and similar limits; unfinished messages re-driven "
                 "after a restart.")

    b.row("NATS backend (--backend=nats)")
    b.timeseries("Publishes", "ops", [t(rate(na + "publishes_total", GW), "published"),
                                      t(rate(na + "publish_errors_total", GW), "errors")],
                 "JetStream publishes per second and publishes that failed.")
    b.timeseries("Publish error ratio", "percentunit",
                 [t("%s / clamp_min(%s, 1e-9)" % (rate(na + "publish_errors_total", GW, by="instance"),
                                                  rate(na + "publishes_total", GW, by="instance")), "{{instance}}")],
                 "Failed publishes of all publishes.")
    b.timeseries("Deliveries", "ops", [t(rate(na + "deliveries_total", GW), "received for this gateway's users"),
                                       t(rate(na + "deliveries_sent_total", GW), "sent to users' gateways")],
                 "Frames (PUSH and others) received from partition owners for this gateway's users, and frames "
                 "this gateway's partitions published to the gateways of their users.")
    b.timeseries("SENDs coordinated", "ops", [t(rate(na + "sends_total", GW), "new"),
                                              t(rate(na + "duplicate_sends_total", GW), "retries answered"),
                                              t(rate(na + "send_failures_total", GW), "answered UNAVAILABLE"),
                                              t(rate(na + "limited_total", GW), "refused by a per-device limit")],
                 "SENDs coordinated by the partitions this gateway owns: new messages, retries answered from the "
                 "idempotency records, SENDs whose store failed (the client retries), and refusals.")
    b.percentiles("SEND round trip", na + "send_seconds", GW,
                  "A SEND from the gateway that received it to the partition owner that coordinates it and back.")
    b.timeseries("Requests in flight", "short",
                 [t("sum by (instance) (%spending_requests%s)" % (na, sel(GW)), "{{instance}} requests to NATS"),
                  t("sum by (instance) (%sinflight_sends%s)" % (na, sel(GW)), "{{instance}} SENDs coordinating")],
                 "Requests to NATS awaiting a reply, and SENDs being coordinated: both grow when NATS or an owner "
                 "is slow.")
    b.percentiles("Publish round trip (PubAck)", na + "publish_seconds", GW, "JetStream publish to PubAck.")
    b.heatmap("Publish round trip heatmap", na + "publish_seconds", GW, "Publishes per latency bucket and interval.")
    b.timeseries("Pending publishes", "short",
                 [t("sum by (instance) (%spending_publishes%s)" % (na, sel(GW)), "{{instance}}")],
                 "Publishes sent and not yet acknowledged.")
    b.percentiles("SYNC fetch time", na + "fetch_seconds", GW, "Reading a page of an inbox from JetStream (SYNC).")
    b.heatmap("SYNC fetch heatmap", na + "fetch_seconds", GW, "Fetches per latency bucket and interval.")
    b.timeseries("Inbox reads", "ops", [t(rate(na + "syncs_total", GW), "SYNCs answered"),
                                        t(rate(na + "sync_pushes_total", GW), "PUSHes in SYNC answers and catch-ups"),
                                        t(rate(na + "catchups_total", GW), "catch-ups after a possible gap"),
                                        t(rate(na + "fetches_total", GW), "JetStream message gets")],
                 "Reads of inboxes from JetStream: SYNC requests, the PUSHes that answered them, users caught up "
                 "after a possible gap in live delivery, and the message gets behind them.")
    b.timeseries("Routing directory", "short",
                 [t("sum by (instance) (%sdirectory_entries%s)" % (na, sel(GW)), "{{instance}} directory entries"),
                  t("sum by (instance) (%sonline_users%s)" % (na, sel(GW)), "{{instance}} online users"),
                  t("sum by (instance) (%sowner_users%s)" % (na, sel(GW)), "{{instance}} users in owner memory")],
                 "Users with devices online in the routing directory of the partitions a gateway owns, users "
                 "with a device connected to it, and users its partitions hold in memory (quiet ones leave).")
    b.timeseries("Partitions owned", "short",
                 [t("sum by (instance) (%sowned_partitions%s)" % (na, sel(GW)), "{{instance}}")],
                 "Partitions each gateway owns; after a gateway leaves, the others take its partitions over.")
    b.timeseries("Ownership changes and failed requests", "ops",
                 [t(rate(na + "takeovers_total", GW), "takeovers"), t(rate(na + "releases_total", GW), "releases"),
                  t(rate(na + "fence_conflicts_total", GW), "fence conflicts"),
                  t(rate(na + "requests_failed_total", GW), "requests failed")],
                 "Partitions taken over and released, publishes refused because an inbox moved under its owner, and "
                 "requests to other owners that timed out or found no owner.")
    b.timeseries("Connected to NATS", "bool_yes_no",
                 [t("min by (instance) (%sconnected%s)" % (na, sel(GW)), "{{instance}}")],
                 "1 while the gateway's NATS connection is up (alert LonglinkNatsBackendDisconnected).", w=12)
    b.timeseries("NATS reconnects", "ops", [t(rate(na + "reconnects_total", GW, by="instance"), "{{instance}}")],
                 "Reconnects of the gateway's NATS connection.", w=12)

    # Every gateway re-exports the nats-server monitoring it reads (/varz, /jsz) under longlink_nats_server_,
    # labelled by server name, so with several gateways each server appears several times: max by (server)
    # takes one copy.
    b.row("nats-server (re-exported by the gateways)")
    b.stat("Servers up", "short", [t("sum(max by (server) (%sup%s))" % (ns, sel(GW)))],
           "nats-servers that answered the gateways' monitoring requests.")
    b.stat("Client connections", "short", [t("sum(max by (server) (%sconnections%s))" % (ns, sel(GW)))],
           "Client connections of all nats-servers.")
    b.stat("Routes", "short", [t("sum(max by (server) (%sroutes%s))" % (ns, sel(GW)))], "Cluster routes.")
    b.stat("JetStream meta leader", "none",
           [t("max by (server) (%sjetstream_meta_leader%s)" % (ns, sel(GW)), "{{server}}")],
           "Each server, and whether it leads the JetStream meta group (a single server outside a cluster has "
           "no meta group and shows follower).", text_mode="value_and_name",
           mappings=[{"type": "value", "options": {"0": {"text": "follower", "index": 0},
                                                   "1": {"text": "leader", "color": "green", "index": 1}}}])
    b.stat("Streams", "short", [t("max(%sjetstream_streams%s)" % (ns, sel(GW)))], "JetStream streams.")
    b.stat("Consumers", "short", [t("max(%sjetstream_consumers%s)" % (ns, sel(GW)))], "JetStream consumers.")
    b.timeseries("Messages per server", "ops",
                 [t("max by (server) (rate(%sin_msgs_total%s[$__rate_interval]))" % (ns, sel(GW)), "{{server}} in"),
                  t("max by (server) (rate(%sout_msgs_total%s[$__rate_interval]))" % (ns, sel(GW)), "{{server}} out")],
                 "Messages in and out of each nats-server.")
    b.timeseries("Bytes per server", "binBps",
                 [t("max by (server) (rate(%sin_bytes_total%s[$__rate_interval]))" % (ns, sel(GW)), "{{server}} in"),
                  t("max by (server) (rate(%sout_bytes_total%s[$__rate_interval]))" % (ns, sel(GW)),
                    "{{server}} out")],
                 "Bytes in and out of each nats-server.")
    b.timeseries("Connections and subscriptions", "short",
                 [t("max by (server) (%sconnections%s)" % (ns, sel(GW)), "{{server}} connections"),
                  t("max by (server) (%ssubscriptions%s)" % (ns, sel(GW)), "{{server}} subscriptions")],
                 "Client connections and subscriptions of each server.")
    b.timeseries("Slow consumers", "ops",
                 [t("max by (server) (rate(%sslow_consumers_total%s[$__rate_interval]))" % (ns, sel(GW)),
                    "{{server}}")],
                 "Clients nats-server cut off for reading too slowly.")
    b.timeseries("Server memory", "bytes", [t("max by (server) (%smem_bytes%s)" % (ns, sel(GW)), "{{server}}")],
                 "Resident memory of each nats-server.")
    b.timeseries("Server up", "bool_yes_no", [t("max by (server) (%sup%s)" % (ns, sel(GW)), "{{server}}")],
                 "1 while the gateways can read the server's monitoring endpoint.")
    b.timeseries("JetStream messages", "short",
                 [t("max by (server) (%sjetstream_messages%s)" % (ns, sel(GW)), "{{server}}")],
                 "Messages stored in JetStream.")
    b.timeseries("JetStream storage", "bytes",
                 [t("max by (server) (%sjetstream_bytes%s)" % (ns, sel(GW)), "{{server}}")],
                 "Bytes stored in JetStream.")
    b.timeseries("JetStream API", "ops",
                 [t("max by (server) (rate(%sjetstream_api_total%s[$__rate_interval]))" % (ns, sel(GW)),
                    "{{server}} requests"),
                  t("max by (server) (rate(%sjetstream_api_errors_total%s[$__rate_interval]))" % (ns, sel(GW)),
                    "{{server}} errors")],
                 "JetStream API requests and errors.")
    return dashboard("longlink-backends", "longlink / Backends",
                     "The gateway's backends from their own metric scopes: the local backend "
                     "(longlink_backend_local_*), the NATS backend (longlink_backend_nats_*) and nats-server's own "
                     "monitoring as the gateways re-export it (longlink_nats_server_*).", b, "longlink_build_info")


def capacity_test():
    b = Board()
    m = "longlink_loadgen_"
    b.row("Run")
    b.stat("Scenario", "none", [t("max by (scenario) (%srun_info%s)" % (m, sel(LG)), "{{scenario}}")],
           "The scenario of the selected run.", text_mode="name")
    b.stat("Finished", "none", [t("max(%srun_finished%s)" % (m, sel(LG)))], "1 once the run is over.",
           mappings=BOOL)
    b.stat("Valid", "none", [t("min(%srun_valid%s)" % (m, sel(LG)))],
           "0 when the generator fell behind its own timers: its latencies then measure itself (alert "
           "LonglinkLoadgenGeneratorSaturated).", mappings=BOOL)
    b.stat("Passed", "none", [t("min(%srun_passed%s)" % (m, sel(LG)))],
           "0 when the finished run violated a threshold or was invalid.", mappings=BOOL)
    b.stat("Online / target", "short", [t("sum(%sonline%s)" % (m, sel(LG)), "online"),
                                        t("sum(%starget_online%s)" % (m, sel(LG)), "target")],
           "Clients logged in, and the clients the scenario wants online now.")
    b.stat("Messages/s delivered", "ops", [t(rate(m + "messages_delivered_total", LG))], "PUSHes received per second.")
    b.stat("Lost", "short", [t("max(%smessages_lost%s)" % (m, sel(LG)))],
           "Acknowledged deliveries the ledger found missing (known when the run finishes).")
    b.stat("Duplicated", "short", [t("max(%smessages_duplicated_total%s)" % (m, sel(LG)))],
           "PUSHes of messages already delivered.")
    b.stat("Out of order", "short", [t("max(%smessages_out_of_order%s)" % (m, sel(LG)))],
           "Deliveries the ledger found out of order (known when the run finishes).")
    b.stat("End to end ($quantile)", "s", [t(quantile("$quantile", m + "end_to_end_seconds", LG))],
           "SEND to the recipient's PUSH, at the chosen quantile.")
    b.stat("Generator lag ($quantile)", "s", [t(quantile("$quantile", m + "generator_lag_seconds", LG))],
           "How late the generator runs its timers; past 100 ms at p99 the run is invalid.")
    b.stat("Reconnects", "short", [t("max(%sreconnects_total%s)" % (m, sel(LG)))], "Reconnects in the run so far.")

    b.row("Connections")
    b.timeseries("Clients: target and achieved", "short",
                 [t("sum(%starget_online%s)" % (m, sel(LG)), "target online"),
                  t("sum(%sonline%s)" % (m, sel(LG)), "online (logged in)"),
                  t("sum(%sconnected%s)" % (m, sel(LG)), "connected"),
                  t("sum(%sclients%s)" % (m, sel(LG)), "clients simulated")],
                 "What the scenario's phases want online against what is.", w=12)
    b.timeseries("Connect rate: target and achieved", "ops",
                 [t("sum(%starget_connect_rate%s)" % (m, sel(LG)), "target"),
                  t(rate(m + "connects_total", LG), "connects"),
                  t(rate(m + "connect_errors_total", LG), "connect errors")],
                 "The scenario's connect rate and the connections established per second.", w=12)
    b.timeseries("Logins", "ops", [t(rate(m + "logins_total", LG), "logins"),
                                   t(rate(m + "login_failures_total", LG), "failures")],
                 "Successful and failed logins per second.")
    b.timeseries("Reconnects and disconnects", "ops",
                 [t(rate(m + "reconnects_total", LG), "reconnects"),
                  t(rate(m + "disconnects_total", LG), "disconnects (unplanned)"),
                  t(rate(m + "kicks_total", LG), "kicks"),
                  t(rate(m + "heartbeat_failures_total", LG), "heartbeat failures"),
                  t(rate(m + "storm_drops_total", LG), "storm and churn drops"),
                  t(rate(m + "leaves_total", LG), "left (drain, spike)")],
                 "Connections lost and re-made per second, by cause.")
    b.timeseries("Connect, login and reconnect time ($quantile)", "s",
                 [t(quantile("$quantile", m + "connect_seconds", LG), "connect"),
                  t(quantile("$quantile", m + "login_seconds", LG), "login"),
                  t(quantile("$quantile", m + "reconnect_seconds", LG), "reconnect")],
                 "TCP connect, LOGIN to LOGIN_ACK, and connection loss to logged in again.")

    b.row("Messages")
    b.timeseries("Messages", "ops", [t(rate(m + "messages_sent_total", LG), "sent"),
                                     t(rate(m + "messages_acked_total", LG), "acked"),
                                     t(rate(m + "messages_delivered_total", LG), "delivered"),
                                     t(rate(m + "messages_duplicated_total", LG), "duplicated")],
                 "SENDs, SEND_ACKs and PUSHes per second.", w=12)
    b.timeseries("Heartbeats and syncs", "ops", [t(rate(m + "pings_total", LG), "pings"),
                                                 t(rate(m + "pongs_total", LG), "pongs"),
                                                 t(rate(m + "syncs_total", LG), "syncs")],
                 "PINGs sent, PONGs received, SYNCs after reconnects.", w=12)
    b.percentiles("End-to-end latency", m + "end_to_end_seconds", LG, "SEND to the recipient's PUSH.")
    b.percentiles("Heartbeat round trip", m + "heartbeat_rtt_seconds", LG, "PING to PONG.")
    b.percentiles("SEND to SEND_ACK", m + "send_ack_seconds", LG, "SEND to its acknowledgement.")
    b.heatmap("End-to-end latency heatmap", m + "end_to_end_seconds", LG, "Deliveries per latency bucket.", w=12)
    b.percentiles("SYNC round trip", m + "sync_seconds", LG, "SYNC round trip after a reconnect.", w=12)

    b.row("Correctness")
    b.timeseries("Lost, duplicated, out of order", "short",
                 [t("max(%smessages_lost%s)" % (m, sel(LG)), "lost"),
                  t("max(%smessages_duplicated_total%s)" % (m, sel(LG)), "duplicated"),
                  t("max(%smessages_out_of_order%s)" % (m, sel(LG)), "out of order"),
                  t("max(%sprotocol_errors_total%s)" % (m, sel(LG)), "protocol errors")],
                 "The ledger's findings (lost and out of order are known when the run finishes). Lost and "
                 "duplicated above 0 fire alerts; out of order does not, since a PUSH may overtake an earlier one "
                 "across a reconnect's SYNC or between shards, and clients order by seq.", w=12)
    b.timeseries("Payload", "binBps", [t(rate(m + "payload_bytes_total", LG), "payload sent")],
                 "Message payload bytes sent per second.", w=12)

    b.row("Weak networks and zombies")
    b.timeseries("Weak-network events", "ops", [t(rate(m + "flaps_total", LG), "flaps"),
                                                t(rate(m + "stalls_total", LG), "stalls"),
                                                t(rate(m + "nat_blackholes_total", LG), "NAT black holes"),
                                                t(rate(m + "zombies_total", LG), "zombies made")],
                 "Simulated connection losses, stalls, silently expired NAT bindings and half-open connections.")
    b.timeseries("Zombies made and reaped", "short",
                 [t("max(%szombies_total%s)" % (m, sel(LG)), "made"),
                  t("max(%szombies_reaped_total%s)" % (m, sel(LG)), "reaped by the gateway")],
                 "Half-open connections made by the simulation, and those the gateway closed (heartbeat timeout).")
    b.percentiles("Zombie reap time", m + "zombie_reap_seconds", LG,
                  "Half-open connection made to the gateway closing it: about --heartbeat-timeout.")

    b.row("Generator")
    b.timeseries("Generator lag", "s", [t(quantile("0.5", m + "generator_lag_seconds", LG), "p50"),
                                        t(quantile("0.99", m + "generator_lag_seconds", LG), "p99")],
                 "How late the generator runs its timers; a p99 past 100 ms (red line) makes the run invalid.",
                 thresholds=0.1)
    b.timeseries("Run valid", "bool_yes_no", [t("min(%srun_valid%s)" % (m, sel(LG)), "valid")],
                 "0 once the generator saturated.")
    b.timeseries("Generator CPU", "percentunit",
                 [t(rate("process_cpu_seconds_total", PROC, by="instance"), "{{instance}}")],
                 "CPU time of the generator per second (1.0 = one core); near its --shards it is saturated.")
    b.timeseries("Generator memory", "bytes",
                 [t("sum by (instance) (process_resident_memory_bytes%s)" % sel(PROC), "{{instance}}")],
                 "Resident memory of the generator.")
    b.timeseries("Generator memory per client", "bytes",
                 [t("sum(process_resident_memory_bytes%s) / clamp_min(sum(%sclients%s), 1)" % (
                     sel(PROC), m, sel(LG)), "per client")],
                 "Resident memory divided by simulated clients.")
    b.timeseries("Generator open files", "short",
                 [t("sum by (instance) (process_open_fds%s)" % sel(PROC), "{{instance}} open"),
                  t("sum by (instance) (process_max_fds%s)" % sel(PROC), "{{instance}} limit")],
                 "The generator's sockets against its open-files limit.")
    return dashboard("longlink-capacity-test", "longlink / Capacity test",
                     "A longlink-loadgen run (its /metrics endpoint, --metrics-port): connections against the "
                     "target, messages, latency, the ledger's correctness findings, weak networks, zombies and the "
                     "generator's own saturation.", b, "longlink_loadgen_run_info", with_run_id=True, refresh="10s")


DASHBOARDS = {"gateway-overview.json": gateway_overview, "backends.json": backends,
              "capacity-test.json": capacity_test}


def render(fn):
    return json.dumps(fn(), indent=2, sort_keys=False) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a JSON file differs from what would be written")
    args = ap.parse_args()
    stale = []
    for name, fn in DASHBOARDS.items():
        path = os.path.join(HERE, name)
        text = render(fn)
        if args.check:
            try:
                with open(path) as f:
                    if f.read() != text:
                        stale.append(name)
            except FileNotFoundError:
                stale.append(name)
        else:
            with open(path, "w") as f:
                f.write(text)
    if stale:
        print("out of date (run python3 dashboards/generate.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
