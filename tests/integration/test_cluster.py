"""Several gateways in front of a real 3-node NATS cluster with JetStream (--backend=nats, R3 streams): one-to-one,
groups, several devices and presence across gateways, the admin API across gateways, a gateway restarted on its
id, kill -9 of a gateway and of a NATS node under loadgen traffic with the ledger, NATS fully down and back, and
stream leader changes under concurrent SENDs to the same inboxes. Each test class starts its own nats-server
processes and stops them (ctest label `cluster`)."""
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import llclient as ll
import natsfix
from test_local_messaging import LocalClient

PARTITIONS = 8
UNAVAILABLE = 4  # SEND_ACK status


def loadgen_binary():
    return os.environ.get("LONGLINK_LOADGEN") or os.path.join(ll.ROOT, "build", "loadgen", "longlink-loadgen")


def partition_of(ident, partitions=PARTITIONS):
    return (ll.mix64(ident) >> 32) % partitions


class Cluster:
    """A 3-node NATS cluster and gateways on it sharing one subject prefix."""

    def __init__(self, gateways=2, nodes=3):
        self.nats = natsfix.NatsCluster(nodes).start()
        self.prefix = "c%d" % random.getrandbits(32)
        self.gws = {}
        try:
            for i in range(gateways):
                self.start_gateway("g%d" % (i + 1))
            if gateways:
                self.wait_spread()
        except BaseException:
            self.stop()
            raise

    def start_gateway(self, gid, *extra):
        gw = ll.Gateway("--backend=nats", "--nats-url=" + self.nats.urls, "--nats-replicas=%d" % len(self.nats.nodes),
                        "--gateway-id=" + gid, "--nats-prefix=" + self.prefix, "--nats-timeout=2s",
                        "--nats-monitor-urls=" + self.nats.monitor_urls, "--admin-port=0", *extra,
                        shards=2, nats_ready=False)
        self.gws[gid] = gw
        return gw

    def live(self):
        return [g for g in self.gws.values() if g.proc.poll() is None]

    def wait_spread(self, timeout=40):
        """Until the live gateways own every partition between them, in equal shares."""
        deadline = time.monotonic() + timeout
        while True:
            live = self.live()
            owned = [g.metric("longlink_backend_nats_owned_partitions") for g in live]
            share = -(-PARTITIONS // len(live))
            if sum(owned) == PARTITIONS and all(o >= PARTITIONS // len(live) and o <= share for o in owned):
                return owned
            if time.monotonic() > deadline:
                raise AssertionError("partitions not spread over %d gateways: %r" % (len(live), owned))
            time.sleep(0.1)

    def stop(self):
        try:
            for g in self.gws.values():
                if g.proc.poll() is None:
                    g.terminate()
                elif g.proc.stdout is not None and not g.proc.stdout.closed:
                    g.kill()
        finally:
            # Even when a gateway would not stop: the servers never outlive the test.
            self.nats.stop()


def client(gw, user, device=1):
    c = ll.Client(gw.port, timeout=10)
    ack = c.login(user, device)
    assert ack["status"] == 0, ack
    return LocalClient(c, user, device)


def send_retrying(lc, target, cmid, payload, kind=ll.USER, timeout=30):
    """SEND until acknowledged, retrying on UNAVAILABLE with the same client_msg_id (what a client does)."""
    deadline = time.monotonic() + timeout
    while True:
        rid = lc.send(target, cmid, payload, kind)
        ack = lc.wait(ll.SEND_ACK, rid, timeout=15)
        if ack["status"] == 0:
            return ack
        if ack["status"] != UNAVAILABLE or time.monotonic() > deadline:
            raise AssertionError("SEND %d: %r" % (cmid, ack))
        time.sleep(0.2)


class AcrossGatewaysTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cl = Cluster(gateways=2)
        cls.g1, cls.g2 = cls.cl.gws["g1"], cls.cl.gws["g2"]

    @classmethod
    def tearDownClass(cls):
        cls.cl.stop()

    def setUp(self):
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.c.close()

    def on(self, gw, user, device=1):
        c = client(gw, user, device)
        self.clients.append(c)
        return c

    def test_one_to_one_between_gateways(self):
        a, b = self.on(self.g1, 100), self.on(self.g2, 200)
        ack1 = a.send_acked(200, 1, b"hello from g1")
        ack2 = b.send_acked(100, 1, b"hello from g2")
        ack3 = a.send_acked(200, 2, b"again")
        self.assertEqual(len({ack1["server_msg_id"], ack2["server_msg_id"], ack3["server_msg_id"]}), 3)
        for c in (a, b):
            got = c.wait_pushes([1, 2, 3])
            self.assertEqual([p["payload"] for p in got], [b"hello from g1", b"hello from g2", b"again"])
        # SYNC from the other gateway after a reconnect returns the same inbox.
        b.c.close()
        b2 = self.on(self.g1, 200)
        got, done = b2.sync_all()
        self.assertEqual([(p["seq"], p["payload"]) for p in got],
                         [(1, b"hello from g1"), (2, b"hello from g2"), (3, b"again")])
        self.assertEqual(done["max_seq"], 3)

    def test_devices_of_one_user_on_two_gateways_both_receive(self):
        d1, d2 = self.on(self.g1, 300, 1), self.on(self.g2, 300, 2)
        s = self.on(self.g2, 301)
        s.send_acked(300, 1, b"to both devices")
        for d in (d1, d2):
            (p,) = d.wait_pushes([1])
            self.assertEqual((p["payload"], p["from_user"]), (b"to both devices", 301))
        # The sender's own inbox has its copy too.
        (own,) = s.wait_pushes([1])
        self.assertEqual(own["conv_id"], 300)

    def test_group_across_gateways(self):
        members = [400 + i for i in range(6)]
        cs = [self.on(self.g1 if i % 2 else self.g2, u) for i, u in enumerate(members)]
        gid = 4_000_001
        rid = cs[0].c.send(ll.GROUP_CREATE, ll.group_body(gid))
        self.assertEqual(cs[0].wait(ll.GROUP_REPLY, rid)["status"], 0)
        for c in cs[1:]:
            rid = c.c.send(ll.GROUP_JOIN, ll.group_body(gid))
            self.assertEqual(c.wait(ll.GROUP_REPLY, rid)["status"], 0)
        cs[3].send_acked(gid, 1, b"to the group", kind=ll.GROUP)
        for c in cs:
            (p,) = c.wait_pushes([1])
            self.assertEqual((p["payload"], p["conv_kind"], p["conv_id"], p["from_user"]),
                             (b"to the group", ll.GROUP, gid, members[3]))

    def test_presence_across_gateways(self):
        w = self.on(self.g1, 500)
        rid = w.c.send(ll.PRESENCE_SUBSCRIBE, ll.presence_subscribe_body([501]))
        first = w.wait(ll.PRESENCE, rid)
        self.assertEqual((first["user_id"], first["online"]), (501, 0))
        x = self.on(self.g2, 501)
        up = w.wait(ll.PRESENCE, 0)
        self.assertEqual((up["user_id"], up["online"]), (501, 1))
        x.c.close()
        down = w.wait(ll.PRESENCE, 0)
        self.assertEqual((down["user_id"], down["online"]), (501, 0))

    def test_admin_api_across_gateways(self):
        self.on(self.g2, 600, 1)
        self.on(self.g1, 600, 2)
        status, body = self.g1.admin("GET", "/v1/users/600")
        self.assertEqual(status, 200, body)
        self.assertTrue(body["online"], body)
        status, body = self.g1.admin("POST", "/v1/kick", {"user": 600, "device": 1})
        self.assertEqual((status, body.get("kicked")), (200, 1), body)
        status, body = self.g2.admin("POST", "/v1/push", {"users": [600], "payload": "from admin"})
        self.assertEqual(status, 200, body)
        d2 = self.clients[-1]
        p = d2.wait(ll.PUSH)
        self.assertEqual(p["payload"], b"from admin")


class GatewayRestartTest(unittest.TestCase):
    def test_gateway_restarted_on_its_id_recovers_routing(self):
        cl = Cluster(gateways=2)
        try:
            g1, g2 = cl.gws["g1"], cl.gws["g2"]
            a = client(g1, 700)
            b = client(g2, 701)
            a.send_acked(701, 1, b"before")
            b.wait_pushes([1])
            g2.kill()
            b.c.close()
            # While g2 is gone, its partitions move to g1 once their leases run out.
            send_retrying(a, 701, 2, b"while g2 was down")
            g2 = cl.start_gateway("g2")
            cl.wait_spread()
            b = client(g2, 701)
            got, _ = b.sync_all()
            self.assertEqual([p["payload"] for p in got], [b"before", b"while g2 was down"])
            # Live delivery to the restarted gateway works again, both ways.
            a.send_acked(701, 3, b"after")
            (p,) = b.wait_pushes([3])
            self.assertEqual(p["payload"], b"after")
            b.send_acked(700, 1, b"reply")
            a.wait_pushes([4])
            a.c.close()
            b.c.close()
        finally:
            cl.stop()


LEDGER_SCENARIO = """
name: cluster-{name}
target:
  addresses: [{targets}]
clients: {clients}
connect_rate: 1000
duration: {duration}s
# Deliveries held up by a failover (a lease running out, a stream electing a leader) arrive within seconds:
# the ledger waits that long after the run before it counts a message as lost.
grace: 10s
phases:
  - kind: ramp
    duration: 1s
  - kind: hold
    duration: {hold}s
messaging:
  rate_per_client: 1
  targets: random_user
  payload:
    distribution: fixed
    size: 64
reconnect:
  initial: 100ms
  max: 1s
  multiplier: 2
thresholds:
  - lost == 0
  - duplicates == 0
output:
  live_interval: 1s
"""


def ledger_run_with_failure(name, failure, at=5.0, duration=16, clients=200):
    """A loadgen run spread over two gateways on a fresh 3-node cluster, `failure(cluster)` `at` seconds in.
    Returns (loadgen exit status, its JSON report, its stdout and stderr)."""
    cl = Cluster(gateways=2)
    tmp = tempfile.mkdtemp(prefix="longlink-cluster-")
    try:
        targets = ", ".join("127.0.0.1:%d" % g.port for g in cl.gws.values())
        path = os.path.join(tmp, "s.yaml")
        with open(path, "w") as f:
            f.write(LEDGER_SCENARIO.format(name=name, targets=targets, clients=clients, duration=duration,
                                           hold=duration - 1))
        report = os.path.join(tmp, "r.json")
        proc = subprocess.Popen([loadgen_binary(), "--scenario=" + path, "--report-json=" + report,
                                 "--shards=1", "--metrics-port=-1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(at)
        failure(cl)
        out, err = proc.communicate(timeout=duration + 100)
        with open(report) as f:
            return proc.returncode, json.load(f), out, err
    finally:
        cl.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def kill_gateway(cl):
    cl.gws["g2"].kill()


def kill_nats_node(cl):
    cl.nats.nodes[1].kill()


class LedgerUnderFailureTest(unittest.TestCase):
    """A loadgen run spread over both gateways while something fails; its ledger must show nothing lost and
    nothing delivered twice."""

    def run_with(self, name, failure, clients=200):
        rc, rep, out, err = ledger_run_with_failure(name, failure, clients=clients)
        led = rep["ledger"]
        sys_msg = "%s\n%s\nledger %r" % (out[-3000:], err[-3000:], led)
        self.assertEqual(rc, 0, sys_msg)
        self.assertGreater(led["acked"], clients * 5, sys_msg)
        self.assertEqual(led["lost"], 0, sys_msg)
        self.assertEqual(led["duplicates"], 0, sys_msg)
        self.assertGreater(led["delivered_unique"], 0, sys_msg)
        print("\n  %s: sent %d, acked %d, expected deliveries %d, delivered %d, lost %d, duplicates %d, "
              "reconnects %d" % (name, led["sent"], led["acked"], led["expected_deliveries"],
                                 led["delivered_unique"], led["lost"], led["duplicates"],
                                 rep["metrics"]["reconnects"]), file=sys.stderr)
        return rep

    def test_kill_9_of_a_gateway_under_traffic(self):
        rep = self.run_with("kill-gateway", kill_gateway)
        # The clients of g2 came back on g1.
        self.assertGreater(rep["metrics"]["reconnects"], 0, rep["metrics"])

    def test_kill_9_of_a_nats_node_under_traffic(self):
        self.run_with("kill-nats-node", kill_nats_node)


class NatsOutageTest(unittest.TestCase):
    def test_nats_down_then_back(self):
        cl = Cluster(gateways=1)
        try:
            gw = cl.gws["g1"]
            a = client(gw, 800)
            a.send_acked(800, 1, b"before the outage")
            a.wait_pushes([1])
            for n in cl.nats.nodes:
                n.kill()
            gw.wait_metric("longlink_backend_nats_connected", lambda v: v == 0, timeout=15)
            self.assertEqual(gw.http_get("/readyz")[0], 503)
            # Connections stay; heartbeats are answered; a SEND gets a retryable error, never an ack.
            self.assertEqual(a.c.ping(77), 77)
            for i in range(5):
                rid = a.send(800, 10 + i, b"during")
                ack = a.wait(ll.SEND_ACK, rid, timeout=20)
                self.assertEqual(ack["status"], UNAVAILABLE, ack)
            for n in cl.nats.nodes:
                n.start()
            cl.nats.wait_meta_leader()
            gw.wait_metric("longlink_backend_nats_connected", lambda v: v == 1, timeout=30)
            cl.wait_spread(timeout=60)
            deadline = time.monotonic() + 30
            while gw.http_get("/readyz")[0] != 200:
                self.assertLess(time.monotonic(), deadline, "not ready again")
                time.sleep(0.2)
            ack = send_retrying(a, 800, 20, b"after the outage")
            self.assertEqual(ack["status"], 0)
            a.c.close()
            b = client(gw, 800, 2)
            got, _ = b.sync_all()
            # Nothing of the refused SENDs was stored.
            self.assertEqual([p["payload"] for p in got], [b"before the outage", b"after the outage"])
            b.c.close()
        finally:
            cl.stop()


class LeaderChangeTest(unittest.TestCase):
    def test_stream_leader_changes_under_concurrent_sends(self):
        """Senders on both gateways write to the same two inboxes while the leaders of those inboxes' streams
        (and of the lease bucket) are moved again and again: every acknowledged message is in the inbox exactly
        once, the sequences have no gap and no repeat."""
        cl = Cluster(gateways=2)
        try:
            rcpts = [900, 901]
            senders = [(cl.gws["g1" if i % 2 else "g2"], 910 + i) for i in range(6)]
            per_sender = 80
            acked = {}
            errors = []

            def sender(gw, user):
                try:
                    c = client(gw, user)
                    for i in range(per_sender):
                        target = rcpts[i % 2]
                        ack = send_retrying(c, target, i + 1, b"%d:%d" % (user, i + 1), timeout=60)
                        acked[(user, i + 1)] = (target, ack["server_msg_id"])
                    c.c.close()
                except Exception as e:  # reported below
                    errors.append("%d: %r" % (user, e))

            stop = threading.Event()
            stepdowns = [0]

            def mover():
                streams = sorted({"%s_IN_%d" % (cl.prefix.upper(), partition_of(u)) for u in rcpts})
                streams.append("KV_%s_OWNERS" % cl.prefix.upper())
                while not stop.is_set():
                    for s in streams:
                        live = [n for n in cl.nats.nodes if n.running()]
                        try:
                            r = natsfix.request(live[0].url, "$JS.API.STREAM.LEADER.STEPDOWN." + s, b"", timeout=3)
                            if r and b'"success":true' in r:
                                stepdowns[0] += 1
                        except (OSError, RuntimeError):
                            pass
                    stop.wait(0.3)

            threads = [threading.Thread(target=sender, args=sg) for sg in senders]
            m = threading.Thread(target=mover)
            m.start()
            for t in threads:
                t.start()
            for t in threads:
                t.join(180)
            stop.set()
            m.join(30)
            self.assertEqual(errors, [])
            self.assertEqual(len(acked), len(senders) * per_sender)
            self.assertGreater(stepdowns[0], 3, "leaders moved during the run")
            print("\n  %d SENDs acknowledged across %d leader stepdowns" % (len(acked), stepdowns[0]), file=sys.stderr)
            for r in rcpts:
                c = client(cl.gws["g1"], r)
                got, done = c.sync_all(limit=256)
                seqs = [p["seq"] for p in got]
                self.assertEqual(seqs, list(range(1, len(got) + 1)), "contiguous, no repeat")
                keys = [(p["from_user"], p["client_msg_id"]) for p in got]
                self.assertEqual(len(keys), len(set(keys)), "each message once")
                want = sorted(k for k, (t, _) in acked.items() if t == r)
                self.assertEqual(sorted(keys), want)
                ids = {(p["from_user"], p["client_msg_id"]): p["server_msg_id"] for p in got}
                self.assertTrue(all(ids[k] == acked[k][1] for k in want))
                c.c.close()
        finally:
            cl.stop()

class ExpiryTest(unittest.TestCase):
    """Retention on this backend: an inbox whose messages all expired carries on from its last seq, for a user
    who stayed online and for one who was offline; seqs are never reused (docs/protocol.md 6.5)."""

    def test_seqs_continue_after_every_message_expired(self):
        cl = Cluster(gateways=0, nodes=1)
        try:
            gw = cl.start_gateway("g1", "--retention=2s", "--idempotency-window=2s")
            cl.wait_spread()
            a, b = client(gw, 7001), client(gw, 7002)
            off = client(gw, 7003)
            for i in range(1, 4):
                send_retrying(a, 7002, i, b"old %d" % i)
            send_retrying(a, 7003, 4, b"to the offline one")
            self.assertEqual([p["payload"] for p in b.wait_pushes([1, 2, 3])], [b"old 1", b"old 2", b"old 3"])
            off.wait_pushes([1])
            off.c.close()
            # Every copy expires (max_age 2 s; the server checks about once a second).
            deadline = time.monotonic() + 30
            while True:
                got, done = b.sync_all()
                if not got:
                    break
                self.assertLess(time.monotonic(), deadline, "inbox still holds %r" % [p["seq"] for p in got])
                time.sleep(0.5)
            self.assertGreaterEqual(gw.metric("longlink_backend_nats_seq_floors_written_total"), 3)
            send_retrying(a, 7002, 5, b"new")
            send_retrying(a, 7003, 6, b"new for the offline one")
            self.assertEqual(b.wait_pushes([4])[0]["payload"], b"new")
            # The sender's own inbox (its copies of 1..4) carries on too.
            self.assertEqual(a.wait_pushes([5, 6])[1]["payload"], b"new for the offline one")
            back = client(gw, 7003)
            got, done = back.sync_all()
            self.assertEqual([(p["seq"], p["payload"]) for p in got], [(2, b"new for the offline one")])
            # A user never seen before starts at 1.
            c = client(gw, 7004)
            send_retrying(a, 7004, 7, b"first")
            self.assertEqual(c.wait_pushes([1])[0]["payload"], b"first")
            for x in (a, b, back, c):
                x.c.close()
        finally:
            cl.stop()


class PresenceOwnerChangeTest(unittest.TestCase):
    """Presence subscriptions live on the owner of the watched user's partition: when partitions change owner,
    the gateways hand their devices' watches to the new owner, so events keep coming."""

    def test_watches_survive_an_owner_change(self):
        cl = Cluster(gateways=3)
        try:
            g1 = cl.gws["g1"]
            targets = []
            for p in range(PARTITIONS):
                targets.append(next(u for u in range(800_000, 900_000) if partition_of(u) == p))
            w = client(g1, 700_001)
            rid = w.c.send(ll.PRESENCE_SUBSCRIBE, ll.presence_subscribe_body(targets))
            for _ in targets:
                self.assertEqual(w.wait(ll.PRESENCE, rid)["online"], 0)
            # g2 and g3 leave: g1 takes over their partitions, whose new owner starts with no watchers.
            for gid in ("g2", "g3"):
                cl.gws[gid].terminate()
            deadline = time.monotonic() + 40
            while g1.metric("longlink_backend_nats_owned_partitions") < PARTITIONS:
                self.assertLess(time.monotonic(), deadline, "g1 did not take every partition")
                time.sleep(0.2)
            ups, logged = {}, []
            for t in targets:
                logged.append(client(g1, t))
            deadline = time.monotonic() + 15
            while len(ups) < len(targets) and time.monotonic() < deadline:
                try:
                    ev = w.wait(ll.PRESENCE, 0, timeout=max(0.1, deadline - time.monotonic()))
                except (AssertionError, TimeoutError):
                    break
                if ev["online"] == 1:
                    ups[ev["user_id"]] = ev
            self.assertEqual(sorted(ups), sorted(targets), "an online event for every watched user")
            for c in logged + [w]:
                c.c.close()
        finally:
            cl.stop()


if __name__ == "__main__":
    unittest.main()
