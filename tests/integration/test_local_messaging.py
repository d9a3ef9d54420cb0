"""The local backend (the default) through real sockets: one-to-one across shards, several devices with their
own cursors, offline delivery through SYNC, group fan-out, presence, and a kill -9 + restart on the same data
directory."""
import signal
import struct
import time
import unittest

import llclient as ll
from gwtest import GatewayTestCase, run_threads

SHARDS = 3


def users_on_distinct_shards(count, start, shards=SHARDS):
    """`count` user ids, each on a different shard."""
    out, seen = [], set()
    u = start
    while len(out) < count:
        s = ll.owner_shard(u, shards)
        if s not in seen:
            seen.add(s)
            out.append(u)
        u += 1
    return out


class LocalClient:
    """Wraps ll.Client with the local backend's conversation: SEND -> SEND_ACK, pushes collected by seq."""

    def __init__(self, client, user, device):
        self.c, self.user, self.device = client, user, device
        self.pushes = {}   # seq -> fields
        self.other = []    # frames that were neither pushes nor the awaited reply

    def send(self, target, cmid, payload, kind=ll.USER):
        return self.c.send(ll.SEND, ll.send_body(target, cmid, payload, kind=kind))

    def wait(self, op, rid=None, timeout=10.0):
        """Next frame `op` (with request id `rid`), keeping pushes seen meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.c.recv(max(0.01, deadline - time.monotonic()))
            if got is None:
                raise AssertionError("closed while waiting for %s" % ll.NAMES[op])
            gop, grid, f = got
            if gop == op and (rid is None or grid == rid):
                if gop == ll.PUSH:
                    self.pushes[f["seq"]] = f
                return f
            if gop == ll.PUSH:
                self.pushes[f["seq"]] = f
            else:
                self.other.append(got)

    def send_acked(self, target, cmid, payload, kind=ll.USER):
        rid = self.send(target, cmid, payload, kind)
        ack = self.wait(ll.SEND_ACK, rid)
        assert ack["status"] == 0, ack
        return ack

    def wait_pushes(self, seqs, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not set(seqs) <= set(self.pushes):
            self.wait(ll.PUSH, timeout=max(0.01, deadline - time.monotonic()))
        return [self.pushes[s] for s in seqs]

    def sync_all(self, after=0, limit=100):
        """SYNC pages until has_more is 0; returns the PUSH frames of the answers in order."""
        out = []
        while True:
            rid = self.c.send(ll.SYNC, ll.sync_body(after, limit))
            page = []
            while True:
                op, r, f = self.c.recv(10)
                if op == ll.PUSH and r == 0 and len(page) < limit and (not page or f["seq"] > page[-1]["seq"]) \
                        and f["seq"] > after:
                    page.append(f)
                elif op == ll.SYNC_DONE and r == rid:
                    break
            out += page
            if not f["has_more"]:
                return out, f
            after = f["max_seq"]


class LocalMessagingTest(GatewayTestCase):
    shards = SHARDS

    def local(self, user, device=1):
        return LocalClient(self.login(user, device), user, device)

    def test_two_users_on_different_shards_exchange_messages(self):
        a_id, b_id = users_on_distinct_shards(2, 100)
        local = self.gw.nats_partitions is None
        fsyncs = self.gw.metric("longlink_backend_local_fsync_seconds_count") if local else 0
        a, b = self.local(a_id), self.local(b_id)
        ack1 = a.send_acked(b_id, 1, b"hello b")
        ack2 = b.send_acked(a_id, 1, b"hello a")
        ack3 = a.send_acked(b_id, 2, b"again")
        self.assertEqual(len({ack1["server_msg_id"], ack2["server_msg_id"], ack3["server_msg_id"]}), 3)
        # Both inboxes hold the whole conversation in the same order: b's message came between a's two.
        for c, peer in ((a, b_id), (b, a_id)):
            got = c.wait_pushes([1, 2, 3])
            self.assertEqual([p["payload"] for p in got], [b"hello b", b"hello a", b"again"])
            self.assertTrue(all(p["conv_kind"] == ll.USER and p["conv_id"] == peer for p in got), got)
        p = b.pushes[1]
        self.assertEqual((p["from_user"], p["from_device"], p["client_msg_id"]), (a_id, 1, 1))
        self.assertEqual((p["server_msg_id"], p["server_time_ms"]), (ack1["server_msg_id"], ack1["server_time_ms"]))
        if local:
            # Each SEND_ACK waited for a group commit (batch fsync, the default), which the fsync histogram counts.
            self.assertGreaterEqual(self.gw.metric("longlink_backend_local_fsync_seconds_count") - fsyncs, 3)
        else:
            # Each SEND_ACK waited for JetStream's acknowledgement of every copy.
            self.assertGreaterEqual(self.gw.metric("longlink_backend_nats_publishes_total"), 6)

    def test_retried_send_is_acknowledged_once_stored_once(self):
        a_id, b_id = users_on_distinct_shards(2, 200)
        a, b = self.local(a_id), self.local(b_id)
        r1 = a.send(b_id, 77, b"once")
        r2 = a.send(b_id, 77, b"once")
        ack1, ack2 = a.wait(ll.SEND_ACK, r1), a.wait(ll.SEND_ACK, r2)
        self.assertEqual(ack1["server_msg_id"], ack2["server_msg_id"])
        b.wait_pushes([1])
        # A new connection of the same device retries once more.
        a.c.close()
        a2 = self.local(a_id)
        ack3 = a2.wait(ll.SEND_ACK, a2.send(b_id, 77, b"once"))
        self.assertEqual(ack3["server_msg_id"], ack1["server_msg_id"])
        _, done = b.sync_all(0)
        self.assertEqual(done["max_seq"], 1)

    def test_three_devices_all_receive_and_sync_their_own_cursor(self):
        me, peer = users_on_distinct_shards(2, 300)
        devices = [self.local(me, d) for d in (1, 2, 3)]
        sender = self.local(peer)
        for i in range(10):
            sender.send_acked(me, i + 1, b"m%d" % i)
        for d in devices:
            got = d.wait_pushes(list(range(1, 11)))
            self.assertEqual([p["payload"] for p in got], [b"m%d" % i for i in range(10)])
        # Each device acknowledges up to its own point and goes away; more arrives while they are offline.
        acked = {1: 10, 2: 4, 3: 0}
        for d in devices:
            if acked[d.device]:
                d.c.send(ll.PUSH_ACK, ll.push_ack_body(acked[d.device]))
            self.assertAlive(d.c)
            d.c.close()
        for i in range(10, 15):
            sender.send_acked(me, i + 1, b"m%d" % i)
        for dev, cursor in acked.items():
            d = self.local(me, dev)
            got, done = d.sync_all(after=cursor)
            self.assertEqual([p["seq"] for p in got], list(range(cursor + 1, 16)), "device %d" % dev)
            self.assertEqual(done["max_seq"], 15)

    def test_offline_user_gets_everything_in_order_through_sync(self):
        off, s1, s2 = users_on_distinct_shards(3, 400)
        a, b = self.local(s1), self.local(s2)
        expected = []
        for i in range(300):
            c, who = (a, s1) if i % 3 else (b, s2)
            c.send_acked(off, 1000 + i, b"offline %d" % i)
            expected.append((who, b"offline %d" % i))
        d = self.local(off)
        got, done = d.sync_all(after=0, limit=1000)  # the server pages at 256
        self.assertEqual([p["seq"] for p in got], list(range(1, 301)))
        self.assertEqual([(p["from_user"], p["payload"]) for p in got], expected)
        self.assertEqual(done, {"max_seq": 300, "has_more": 0})
        # Nothing is pushed later: the next thing on the wire is the PONG.
        self.assertAlive(d.c)

    def test_group_of_a_thousand_members(self):
        group = 7_000_001
        owner = self.local(500_000)
        rid = owner.c.send(ll.GROUP_CREATE, ll.group_body(group))
        self.assertEqual(owner.wait(ll.GROUP_REPLY, rid), dict(status=0, group_id=group, has_more=0, members=[]))
        rid = owner.c.send(ll.GROUP_CREATE, ll.group_body(group))
        self.assertEqual(owner.wait(ll.GROUP_REPLY, rid)["status"], 2)  # already exists
        members = list(range(500_001, 501_000))

        def join(users):
            for u in users:
                c = ll.Client(self.gw.port)
                try:
                    c.login(u)
                    r = c.send(ll.GROUP_JOIN, ll.group_body(group))
                    self.assertEqual(c.expect_reply(ll.GROUP_REPLY, r)["status"], 0)
                finally:
                    c.close()
        run_threads([lambda part=members[i::8]: join(part) for i in range(8)], timeout=120)
        # Paged member list, ascending.
        seen, after = [], 0
        while True:
            rid = owner.c.send(ll.GROUP_MEMBERS, ll.members_body(group, after))
            page = owner.wait(ll.GROUP_REPLY, rid)
            seen += page["members"]
            if not page["has_more"]:
                break
            after = page["members"][-1]
        self.assertEqual(seen, [500_000] + members)
        online = [self.local(u) for u in members[:30]]
        ack = owner.send_acked(group, 1, b"to everyone", kind=ll.GROUP)
        for c in online + [owner]:
            p = c.wait_pushes([1])[0]
            self.assertEqual((p["conv_kind"], p["conv_id"], p["payload"]), (ll.GROUP, group, b"to everyone"))
            self.assertEqual(p["server_msg_id"], ack["server_msg_id"])

        def check(users):
            for u in users:
                c = LocalClient(ll.Client(self.gw.port), u, 9)
                try:
                    c.c.login(u, 9)
                    got, done = c.sync_all()
                    self.assertEqual([p["payload"] for p in got], [b"to everyone"], "user %d" % u)
                finally:
                    c.c.close()
        run_threads([lambda part=members[i::8]: check(part) for i in range(8)], timeout=120)
        # Leaving: no more messages for the leaver; a non-member may not send.
        leaver = online[0]
        rid = leaver.c.send(ll.GROUP_LEAVE, ll.group_body(group))
        self.assertEqual(leaver.wait(ll.GROUP_REPLY, rid)["status"], 0)
        rid = leaver.send(group, 2, b"not a member", kind=ll.GROUP)
        self.assertEqual(leaver.wait(ll.SEND_ACK, rid)["status"], 2)  # REJECTED
        rid = owner.send(7_000_002, 3, b"no such group", kind=ll.GROUP)
        self.assertEqual(owner.wait(ll.SEND_ACK, rid)["status"], 1)  # NO_SUCH_TARGET

    def test_presence_events(self):
        watcher_id, watched_id = users_on_distinct_shards(2, 600)
        w = self.local(watcher_id)
        rid = w.c.send(ll.PRESENCE_SUBSCRIBE, ll.presence_subscribe_body([watched_id]))
        state = w.wait(ll.PRESENCE, rid)
        self.assertEqual((state["user_id"], state["online"], state["devices"]), (watched_id, 0, 0))
        d1 = self.local(watched_id, 1)
        ev = w.wait(ll.PRESENCE, 0)
        self.assertEqual((ev["user_id"], ev["online"]), (watched_id, 1))
        d2 = self.local(watched_id, 2)   # a second device is no change
        d1.c.close()
        self.assertAlive(d2.c)
        self.assertAlive(w.c)            # nothing arrived before the PONG
        self.assertEqual([f for f in w.other if f[0] == ll.PRESENCE], [])
        d2.c.send(ll.LOGOUT)
        ev = w.wait(ll.PRESENCE, 0)
        self.assertEqual((ev["user_id"], ev["online"]), (watched_id, 0))
        # Unsubscribed: no more events.
        rid = w.c.send(ll.PRESENCE_SUBSCRIBE, ll.presence_subscribe_body([watched_id], subscribe=False))
        w.wait(ll.PRESENCE, rid)
        self.local(watched_id, 3)
        self.assertAlive(w.c)
        self.assertEqual([f for f in w.other if f[0] == ll.PRESENCE], [])

    def test_malformed_group_body_closes(self):
        c = self.login(700)
        c.send_raw(ll.frame(ll.GROUP_JOIN, b"\x00\x01", request_id=5))
        frames = self.assertClosed(c)
        self.assertEqual(frames[0][0], ll.ERROR)
        self.assertEqual(frames[0][2]["code"], 2)  # MALFORMED_BODY


class RestartTest(unittest.TestCase):
    def test_kill_and_restart_keeps_every_acknowledged_message(self):
        import tempfile
        import shutil
        data = tempfile.mkdtemp(prefix="longlink-restart-")
        try:
            sender_id, rcpt_id = users_on_distinct_shards(2, 800)
            gw = ll.Gateway(shards=SHARDS, data_dir=data)
            try:
                s = LocalClient(ll.Client(gw.port), sender_id, 1)
                s.c.login(sender_id)
                acked = []
                for i in range(200):
                    acked.append(s.send_acked(rcpt_id, i + 1, b"durable %d" % i)["server_msg_id"])
            finally:
                self.assertEqual(gw.kill(), -9)
            gw = ll.Gateway(shards=SHARDS, data_dir=data)
            try:
                r = LocalClient(ll.Client(gw.port), rcpt_id, 1)
                r.c.login(rcpt_id)
                got, done = r.sync_all()
                self.assertEqual([p["server_msg_id"] for p in got], acked)
                self.assertEqual([p["seq"] for p in got], list(range(1, 201)))
                # Sequences continue, ids do not repeat.
                s = LocalClient(ll.Client(gw.port), sender_id, 1)
                s.c.login(sender_id)
                ack = s.send_acked(rcpt_id, 5000, b"after restart")
                self.assertNotIn(ack["server_msg_id"], acked)
                self.assertEqual(r.wait_pushes([201])[0]["payload"], b"after restart")
                s.c.close()
                r.c.close()
            finally:
                self.assertEqual(gw.terminate(), 0)
        finally:
            shutil.rmtree(data, ignore_errors=True)

    def test_sigterm_answers_every_send_in_flight_before_closing(self):
        """Draining finishes what the backend accepted: SENDs still waiting for their group commits when SIGTERM
        arrives are stored everywhere and acknowledged on their connections before those close, and nothing is
        left for a re-drive at the next start."""
        import tempfile
        import shutil
        data = tempfile.mkdtemp(prefix="longlink-drain-")
        try:
            sender_id, rcpt_id = users_on_distinct_shards(2, 700, shards=2)
            # Slow group commits (one per 400 ms per shard): messages sent right after a commit wait for
            # the next one on the sender's shard, then on the recipient's.
            args = ("--fsync=batch", "--fsync-interval-ms=400", "--drain-seconds=1", "--admin-port=0")
            gw = ll.Gateway(*args, shards=2, data_dir=data)
            s = LocalClient(ll.Client(gw.port, timeout=10), sender_id, 1)
            s.c.login(sender_id)
            s.send_acked(rcpt_id, 1, b"warm-up")  # both shards just committed
            rids = [s.send(rcpt_id, 100 + i, b"in flight %d" % i) for i in range(20)]
            time.sleep(0.05)
            gw.proc.send_signal(signal.SIGTERM)
            acks, goaway = {}, 0
            while True:
                got = s.c.recv(10)
                if got is None:
                    break
                op, rid, f = got
                if op == ll.SEND_ACK:
                    acks[rid] = f
                elif op == ll.GOAWAY:
                    goaway += 1
            self.assertEqual(goaway, 1)
            self.assertEqual(sorted(acks), sorted(rids), "every SEND in flight is answered before the close")
            self.assertEqual({f["status"] for f in acks.values()}, {0})
            s.c.close()
            self.assertEqual(gw.terminate(), 0)
            gw = ll.Gateway(*args, shards=2, data_dir=data)
            try:
                r = LocalClient(ll.Client(gw.port), rcpt_id, 1)
                r.c.login(rcpt_id)
                got, _ = r.sync_all()
                self.assertEqual([p["server_msg_id"] for p in got[1:]],
                                 [acks[rid]["server_msg_id"] for rid in rids])
                status, stats = gw.admin("GET", "/v1/stats")
                self.assertEqual(status, 200, stats)
                if gw.nats_partitions is None:
                    self.assertEqual(sum(sh["redriven"] for sh in stats["shards"]), 0, stats)
                r.c.close()
            finally:
                self.assertEqual(gw.terminate(), 0)
        finally:
            shutil.rmtree(data, ignore_errors=True)

    def test_bad_data_dir_exits_2(self):
        import subprocess
        import tempfile
        base = [ll.gateway_binary(), "--port=0", "--metrics-port=-1", "--bind=127.0.0.1", "--shards=1", "--auth=none"]
        with tempfile.TemporaryDirectory() as d:
            with open(d + "/FORMAT", "w") as f:
                f.write("longlink-local-format 99\n")
            out = subprocess.run(base + ["--data-dir=" + d], capture_output=True, text=True, timeout=10)
            self.assertEqual(out.returncode, 2, out.stderr)
            self.assertIn("--data-dir", out.stderr)
            self.assertIn("format", out.stderr)
        out = subprocess.run(base + ["--data-dir=/proc/no-such/dir"], capture_output=True, text=True, timeout=10)
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn("--data-dir", out.stderr)
        for flag in ("--fsync=sometimes", "--retention=forever", "--max-inbox=0", "--idempotency-window=0s",
                     "--idempotency-window=forever"):
            out = subprocess.run(base + ["--data-dir=/tmp/unused-longlink", flag], capture_output=True, text=True,
                                 timeout=10)
            self.assertEqual(out.returncode, 2, flag)
            self.assertIn(flag.split("=")[0], out.stderr)


if __name__ == "__main__":
    unittest.main()
