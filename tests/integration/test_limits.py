"""What one client can pin in the gateway is bounded (docs/protocol.md 6.8): presence subscriptions per device
(refused past the limit, dropped with the connection), SENDs and group changes per device per second, members
per group. Each limit is checked through real sockets, with the gateway's resident memory for the presence
flood that once grew it by a gigabyte."""
import time
import unittest

import llclient as ll
from gwtest import GatewayTestCase

LIMIT_EXCEEDED = 8  # ERROR code
SEND_RATE_LIMITED = 5
GROUP_FULL, GROUP_RATE_LIMITED = 6, 7


class LimitsTest(GatewayTestCase):
    gateway_args = ("--admin-port=0", "--max-presence-subscriptions=1000", "--max-sends-per-second=50",
                    "--max-group-ops-per-second=5", "--max-group-members=5")

    def stats(self, key):
        status, body = self.gw.admin("GET", "/v1/stats")
        self.assertEqual(status, 200, body)
        return sum(s[key] for s in body["shards"])

    def test_presence_flood_is_bounded_and_dropped_with_the_connection(self):
        rss0 = self.gw.metric("process_resident_memory_bytes")
        c = self.login(70_001)
        frames = 40
        for f in range(frames):
            ids = list(range(1_000_000 + f * 8187, 1_000_000 + (f + 1) * 8187))
            c.send(ll.PRESENCE_SUBSCRIBE, ll.presence_subscribe_body(ids))
        presences, errors = 0, []
        deadline = time.monotonic() + 30
        while len(errors) < frames and time.monotonic() < deadline:
            op, rid, f = c.recv(10)
            if op == ll.PRESENCE:
                presences += 1
            elif op == ll.ERROR:
                errors.append(f)
        self.assertEqual(presences, 1000, "the first 1,000 watched users are answered")
        self.assertEqual(len(errors), frames, "every frame past the limit says so once")
        self.assertEqual({e["code"] for e in errors}, {LIMIT_EXCEEDED})
        self.assertIn("at most 1000 per device", errors[0]["message"])
        self.assertEqual(self.stats("presence_subscriptions"), 1000)
        self.assertAlive(c)
        grown = self.gw.metric("process_resident_memory_bytes") - rss0
        self.assertLess(grown, 32 << 20, "327,480 ids sent; resident memory grew by %d bytes" % grown)
        c.close()
        self.wait_until(lambda: self.stats("presence_subscriptions") == 0, what="subscriptions dropped")

    def test_sends_per_second(self):
        c = self.login(70_002)
        rids = [c.send(ll.SEND, ll.send_body(70_002, i + 1, b"x")) for i in range(200)]
        acks = {}
        while len(acks) < len(rids):
            op, rid, f = c.recv(10)
            if op == ll.SEND_ACK:
                acks[rid] = f["status"]
        ok = sum(1 for s in acks.values() if s == 0)
        limited = sum(1 for s in acks.values() if s == SEND_RATE_LIMITED)
        self.assertEqual(ok + limited, 200)
        self.assertGreaterEqual(ok, 50)
        self.assertLessEqual(ok, 100, "at most two one-second windows")
        # A refused one retried later (same client_msg_id) goes through.
        time.sleep(1.1)
        first_refused = min(i for i, r in enumerate(rids) if acks[r] == SEND_RATE_LIMITED)
        rid = c.send(ll.SEND, ll.send_body(70_002, first_refused + 1, b"x"))
        while True:
            op, got, f = c.recv(10)  # pushes of the accepted ones to the sender itself come in between
            if op == ll.SEND_ACK and got == rid:
                break
        self.assertEqual(f["status"], 0)

    def group(self, c, op, group):
        rid = c.send(op, ll.group_body(group))
        return c.expect_reply(ll.GROUP_REPLY, rid)["status"]

    def test_group_changes_per_second_and_members_per_group(self):
        owner = self.login(70_010)
        self.assertEqual(self.group(owner, ll.GROUP_CREATE, 7_000_001), 0)
        statuses = [self.group(owner, ll.GROUP_CREATE, 7_000_100 + i) for i in range(10)]
        self.assertIn(GROUP_RATE_LIMITED, statuses)
        self.assertLessEqual(statuses.count(0), 5)
        time.sleep(1.1)
        # The creator is the first member; four more fit, the fifth does not.
        joined = []
        for u in range(70_011, 70_016):
            c = self.login(u)
            joined.append(self.group(c, ll.GROUP_JOIN, 7_000_001))
        self.assertEqual(joined, [0, 0, 0, 0, GROUP_FULL])


if __name__ == "__main__":
    unittest.main()
