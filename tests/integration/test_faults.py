"""Storage faults of the local backend through real sockets: a data directory that runs out of space (a 4 MiB
tmpfs, when this runs as root) and injected EIO on writes and fsyncs (LONGLINK_FAILPOINTS). Every SEND gets an
answer (SEND_ACK ok, or UNAVAILABLE when it may not be stored), /readyz and the metrics say so, the shard
recovers by itself once writes succeed again, and after the clients retry what was refused every inbox holds
each acknowledged message exactly once, in contiguous seqs."""
import os
import shutil
import subprocess
import tempfile
import time
import unittest

import llclient as ll
from test_crash import sync_inbox
from test_local_messaging import users_on_distinct_shards

SHARDS = 2
UNAVAILABLE = 4  # SendStatus


def send_window(client, items, window=32, timeout=10.0):
    """Sends (target, cmid, payload) SENDs with at most `window` unanswered; returns {cmid: SEND_ACK fields}.
    Fails if any SEND is not answered within `timeout` of the last progress."""
    acks, pending = {}, {}
    it = iter(items)
    done_sending = False
    deadline = time.monotonic() + timeout
    while not done_sending or pending:
        while not done_sending and len(pending) < window:
            try:
                target, cmid, payload = next(it)
            except StopIteration:
                done_sending = True
                break
            pending[client.send(ll.SEND, ll.send_body(target, cmid, payload))] = cmid
        if not pending:
            break
        got = client.recv(max(0.01, deadline - time.monotonic()))
        if got is None:
            raise AssertionError("the gateway closed the connection")
        op, rid, f = got
        if op == ll.SEND_ACK and rid in pending:
            acks[pending.pop(rid)] = f
            deadline = time.monotonic() + timeout
        if time.monotonic() > deadline:
            raise AssertionError("%d SENDs never answered" % len(pending))
    return acks


class StorageFaultCase(unittest.TestCase):
    def run_until_recovered(self, gw, sender, recipients, count, payload_bytes, free_space=None):
        """Streams `count` SENDs from `sender` to `recipients` (round robin) until some are refused, waits for
        the recovery (calling free_space first if given), retries the refused ones, and checks every inbox."""
        s = ll.Client(gw.port, timeout=10)
        s.login(sender)
        items = [(recipients[i % len(recipients)], i + 1, (b"%06d" % (i + 1)) * (payload_bytes // 6))
                 for i in range(count)]
        by_cmid = {cmid: (target, payload) for target, cmid, payload in items}
        acks = send_window(s, items)
        self.assertEqual(len(acks), count, "every SEND is answered")
        statuses = {f["status"] for f in acks.values()}
        self.assertLessEqual(statuses, {0, UNAVAILABLE}, "only ok or UNAVAILABLE")
        refused = sorted(c for c, f in acks.items() if f["status"] == UNAVAILABLE)
        self.assertTrue(refused, "the fault was never hit")
        self.assertGreater(gw.metric("longlink_backend_local_storage_errors_total"), 0)
        if free_space is not None:
            # Still failed until space is freed: not ready, a new SEND refused.
            self.assertEqual(gw.http_get("/readyz")[0], 503)
            self.assertGreater(gw.metric("longlink_backend_local_storage_failed"), 0)
            free_space()
        gw.wait_metric("longlink_backend_local_storage_failed", lambda v: v == 0, timeout=15)
        self.assertEqual(gw.http_get("/readyz")[0], 200)
        self.assertGreater(gw.metric("longlink_backend_local_storage_recoveries_total"), 0)
        # The clients retry what was refused, with the same client_msg_id: each is stored (or was stored
        # after all, and is answered with its first id), never twice.
        retry = send_window(s, [(by_cmid[c][0], c, by_cmid[c][1]) for c in refused])
        self.assertEqual({f["status"] for f in retry.values()}, {0})
        acked = {c: f["server_msg_id"] for c, f in acks.items() if f["status"] == 0}
        acked.update({c: f["server_msg_id"] for c, f in retry.items()})
        self.assertEqual(len(acked), count)
        s.close()
        for r in recipients:
            got = sync_inbox(gw.port, r, device=99)
            seqs = [p["seq"] for p in got]
            self.assertEqual(seqs, list(range(1, len(seqs) + 1)), "recipient %d: seqs contiguous" % r)
            cmids = [p["client_msg_id"] for p in got]
            self.assertEqual(len(cmids), len(set(cmids)), "recipient %d holds a message twice" % r)
            want = {c for c, (target, _) in by_cmid.items() if target == r}
            self.assertEqual(set(cmids), want, "recipient %d" % r)
            for p in got:
                self.assertEqual(p["server_msg_id"], acked[p["client_msg_id"]])
                self.assertEqual(p["payload"], by_cmid[p["client_msg_id"]][1])


class DiskFullTest(StorageFaultCase):
    """ENOSPC for real: --data-dir on a 4 MiB tmpfs, most of it taken by a filler file until the test frees it."""

    def setUp(self):
        self.mnt = tempfile.mkdtemp(prefix="longlink-tmpfs-")
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", self.mnt], capture_output=True,
                             text=True)
        if out.returncode != 0:
            os.rmdir(self.mnt)
            self.skipTest("cannot mount a tmpfs here (%s); the failpoint test covers the same paths"
                          % out.stderr.strip())

    def tearDown(self):
        subprocess.run(["umount", "-l", self.mnt], capture_output=True)
        shutil.rmtree(self.mnt, ignore_errors=True)

    def test_disk_full_answers_every_send_and_recovers_when_space_is_freed(self):
        data = os.path.join(self.mnt, "data")
        filler = os.path.join(self.mnt, "filler")
        gw = ll.Gateway("--segment-bytes=262144", "--max-sends-per-second=0", shards=SHARDS, data_dir=data)
        try:
            st = os.statvfs(self.mnt)
            with open(filler, "wb") as f:
                f.write(b"\0" * (st.f_bavail * st.f_frsize - 500 * 1024))
            sender = 50_001
            recipients = users_on_distinct_shards(SHARDS, 51_000)
            self.run_until_recovered(gw, sender, recipients, 1500, 600, free_space=lambda: os.unlink(filler))
        finally:
            self.assertEqual(gw.terminate(), 0)


class InjectedIoErrorTest(StorageFaultCase):
    """EIO from the log's writes and fsyncs, injected with LONGLINK_FAILPOINTS (core/failpoint.h)."""

    def test_eio_on_fsync(self):
        gw = ll.Gateway("--max-sends-per-second=0", shards=SHARDS, env={"LONGLINK_FAILPOINTS": "local.fsync=EIO*3@30"})
        try:
            self.run_until_recovered(gw, 60_001, users_on_distinct_shards(SHARDS, 61_000), 1500, 200)
        finally:
            self.assertEqual(gw.terminate(), 0)
        self.assertIn("STORAGE FAILED", gw.stderr_text)
        self.assertIn("storage recovered", gw.stderr_text)

    def test_eio_on_write_with_fsync_always(self):
        gw = ll.Gateway("--fsync=always", "--max-sends-per-second=0", shards=SHARDS,
                        env={"LONGLINK_FAILPOINTS": "local.write=EIO*2@40"})
        try:
            self.run_until_recovered(gw, 62_001, users_on_distinct_shards(SHARDS, 63_000), 800, 200)
        finally:
            self.assertEqual(gw.terminate(), 0)


if __name__ == "__main__":
    unittest.main()
