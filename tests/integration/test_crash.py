"""Crash safety of the local backend: clients stream SENDs, the gateway is killed with SIGKILL mid-stream and
restarted on the same data directory; every acknowledged message must be in its recipients' inboxes exactly
once, and resending the unacknowledged ones (same client_msg_id) must not store any message twice.

Scale with LONGLINK_CRASH_SENDERS, LONGLINK_CRASH_MESSAGES and LONGLINK_CRASH_ROUNDS (scripts/crash-test.sh)."""
import os
import random
import shutil
import socket
import tempfile
import threading
import time
import unittest

import llclient as ll

SHARDS = 3
SENDERS = int(os.environ.get("LONGLINK_CRASH_SENDERS", "6"))
MESSAGES = int(os.environ.get("LONGLINK_CRASH_MESSAGES", "400"))
ROUNDS = int(os.environ.get("LONGLINK_CRASH_ROUNDS", "2"))
FSYNC = os.environ.get("LONGLINK_CRASH_FSYNC", "batch")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Sender:
    """Streams SENDs (pipelined) to a few recipients and records which were acknowledged."""

    def __init__(self, port, user, recipients, first_cmid, count):
        self.user, self.recipients = user, recipients
        self.cmids = list(range(first_cmid, first_cmid + count))
        self.acked = {}  # cmid -> server_msg_id
        self.refused = []  # SEND_ACKs with an error status: none are expected
        self.error = None  # anything the thread raised other than the gateway going away
        self.c = ll.Client(port, timeout=5)
        self.c.login(user)
        self.thread = threading.Thread(target=self.run, daemon=True)

    def target(self, cmid):
        return self.recipients[cmid % len(self.recipients)]

    def run(self):
        try:
            for cmid in self.cmids:
                self.c.send(ll.SEND, ll.send_body(self.target(cmid), cmid, b"crash %d/%d" % (self.user, cmid)))
                if cmid % 8 == 0:
                    self.drain(0.002)
            while True:
                self.drain(1.0)
        except (OSError, TimeoutError):
            return  # the gateway died
        except Exception as e:  # noqa: BLE001 - reported by the test, not swallowed
            self.error = e

    def drain(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got = self.c.recv(max(0.001, deadline - time.monotonic()))
            except TimeoutError:
                return
            if got is None:
                raise OSError("closed")
            op, _, f = got
            if op == ll.SEND_ACK:
                # Checked by the test after the thread ends: an assert here would only end this thread.
                if f["status"] != 0:
                    self.refused.append(f)
                else:
                    self.acked[f["client_msg_id"]] = f["server_msg_id"]


def sync_inbox(port, user, device=7):
    c = ll.Client(port, timeout=10)
    try:
        c.login(user, device)
        # Live PUSHes (a message re-driven at start, say) may overlap the SYNC answer: like any client, keep
        # one PUSH per seq, and check that a seq seen twice carried the same message.
        by_seq, after = {}, 0
        while True:
            rid = c.send(ll.SYNC, ll.sync_body(after, 256))
            while True:
                op, r, f = c.recv(10)
                if op == ll.PUSH and r == 0:
                    seen = by_seq.setdefault(f["seq"], f)
                    assert seen["server_msg_id"] == f["server_msg_id"], (seen, f)
                elif op == ll.SYNC_DONE and r == rid:
                    break
            if not f["has_more"]:
                return [by_seq[s] for s in sorted(by_seq)]
            after = f["max_seq"]
    finally:
        c.close()


class CrashTest(unittest.TestCase):
    def test_kill_restart_loses_nothing_acknowledged_and_stores_nothing_twice(self):
        data = tempfile.mkdtemp(prefix="longlink-crash-")
        port = free_port()
        rng = random.Random(42)
        # The senders stream as fast as they can: no per-device SEND rate limit.
        args = ("--fsync=" + FSYNC, "--segment-bytes=262144", "--max-inbox=10000000", "--max-sends-per-second=0")
        recipients = [900_000 + i for i in range(5)]
        all_acked = {}     # (sender, cmid) -> server_msg_id
        all_sent = set()   # (sender, cmid)
        try:
            for rnd in range(ROUNDS):
                gw = ll.Gateway(*args, shards=SHARDS, data_dir=data, port=port)
                senders = [Sender(port, 800_000 + s, recipients, 1 + rnd * MESSAGES, MESSAGES) for s in range(SENDERS)]
                for s in senders:
                    s.thread.start()
                # Kill once some but not all of the stream is acknowledged.
                deadline = time.monotonic() + 20
                want = rng.randint(MESSAGES // 4, MESSAGES // 2) * SENDERS
                while sum(len(s.acked) for s in senders) < want and time.monotonic() < deadline:
                    time.sleep(0.001)
                self.assertEqual(gw.kill(), -9)
                for s in senders:
                    s.thread.join(10)
                    s.c.close()
                    self.assertIsNone(s.error, "sender %d" % s.user)
                    self.assertEqual(s.refused, [], "sender %d got SEND_ACKs with an error status" % s.user)
                    for cmid in s.cmids:
                        all_sent.add((s.user, cmid))
                    for cmid, sid in s.acked.items():
                        self.assertNotIn((s.user, cmid), all_acked)
                        all_acked[(s.user, cmid)] = sid
            # Last restart: resend everything unacknowledged, then check every inbox.
            gw = ll.Gateway(*args, shards=SHARDS, data_dir=data, port=port)
            try:
                for (user, cmid) in sorted(all_sent - set(all_acked)):
                    c = ll.Client(port)
                    c.login(user, 1)
                    rid = c.send(ll.SEND, ll.send_body(recipients[cmid % len(recipients)], cmid,
                                                       b"crash %d/%d" % (user, cmid)))
                    ack = c.expect_reply(ll.SEND_ACK, rid, timeout=10)
                    self.assertEqual(ack["status"], 0)
                    all_acked[(user, cmid)] = ack["server_msg_id"]
                    c.close()
                for r in recipients:
                    got = sync_inbox(port, r)
                    seqs = [p["seq"] for p in got]
                    self.assertEqual(seqs, list(range(1, len(seqs) + 1)), "recipient %d: seqs not contiguous" % r)
                    keys = [(p["from_user"], p["client_msg_id"]) for p in got]
                    self.assertEqual(len(keys), len(set(keys)), "recipient %d holds a message twice" % r)
                    want = {k for k in all_acked if k[1] % len(recipients) == recipients.index(r)}
                    self.assertEqual(set(keys), want, "recipient %d" % r)
                    for p in got:
                        self.assertEqual(p["server_msg_id"], all_acked[(p["from_user"], p["client_msg_id"])])
                        self.assertEqual(p["payload"], b"crash %d/%d" % (p["from_user"], p["client_msg_id"]))
                # Each sender's own inbox holds its messages once too.
                for s in range(SENDERS):
                    keys = [p["client_msg_id"] for p in sync_inbox(port, 800_000 + s)]
                    self.assertEqual(len(keys), len(set(keys)))
                    self.assertEqual(len(keys), ROUNDS * MESSAGES)
            finally:
                self.assertEqual(gw.terminate(), 0)
        finally:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
