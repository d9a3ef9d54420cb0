"""The fault suite: repeatable fault rounds against a real gateway, each judged by what must hold, printed as
one table. scripts/faults.sh runs the full set; ctest runs --quick (label integration).

Rows:
  kill -9 (fsync batch, always)  clients stream SENDs, the gateway is killed and restarted on its data; at the
                                 end every acknowledged message is in its inboxes once: 0 lost, 0 duplicated
  SIGTERM under load             a loadgen run while the gateway is drained (SIGTERM) and restarted on the same
                                 port and data several times; its ledger: 0 lost, 0 duplicates
  disk full                      --data-dir on a 4 MiB tmpfs: every SEND answered (ok or UNAVAILABLE), 0 false
                                 acknowledgements, recovery once space is freed (needs root for the mount)
  baseline / attacks             a healthy loadgen run alone (after a warm-up run), then beside slowloris, a
                                 paced connection flood, slow consumers and garbage frames, then alone again:
                                 the healthy clients lose nothing and their end-to-end p99 stays within 2x of
                                 the baseline's (or baseline + 5 ms, whichever is more: millisecond baselines
                                 double on scheduler noise alone)
Exit status 1 if any row did not hold."""
import argparse
import json
import os
import random
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import llclient as ll
from test_crash import Sender, sync_inbox
from test_faults import StorageFaultCase
from test_loadgen import loadgen_binary

SHARDS = 2


class Row:
    def __init__(self, name, held, detail):
        self.name, self.held, self.detail = name, held, detail


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- kill -9 ----

def kill9_rounds(fsync, rounds, senders, messages, seed=7):
    data = tempfile.mkdtemp(prefix="longlink-faults-")
    port = free_port()
    rng = random.Random(seed)
    args = ("--fsync=" + fsync, "--segment-bytes=262144", "--max-inbox=10000000", "--max-sends-per-second=0")
    recipients = [900_000 + i for i in range(5)]
    acked, sent, refused = {}, set(), 0
    try:
        for rnd in range(rounds):
            gw = ll.Gateway(*args, shards=SHARDS, data_dir=data, port=port)
            ss = [Sender(port, 800_000 + s, recipients, 1 + rnd * messages, messages) for s in range(senders)]
            for s in ss:
                s.thread.start()
            want = rng.randint(messages // 4, messages // 2) * senders
            deadline = time.monotonic() + 20
            while sum(len(s.acked) for s in ss) < want and time.monotonic() < deadline:
                time.sleep(0.001)
            gw.kill()
            for s in ss:
                s.thread.join(10)
                s.c.close()
                refused += len(s.refused)
                sent.update((s.user, c) for c in s.cmids)
                for cmid, sid in s.acked.items():
                    acked[(s.user, cmid)] = sid
        gw = ll.Gateway(*args, shards=SHARDS, data_dir=data, port=port)
        try:
            found, dup, lost, wrong = 0, 0, 0, 0
            for r in recipients:
                got = sync_inbox(port, r)
                keys = [(p["from_user"], p["client_msg_id"]) for p in got]
                dup += len(keys) - len(set(keys))
                present = set(keys)
                want = {k for k in acked if k[1] % len(recipients) == recipients.index(r)}
                lost += len(want - present)
                found += len(want & present)
                wrong += sum(1 for p in got if (p["from_user"], p["client_msg_id"]) in acked and
                             acked[(p["from_user"], p["client_msg_id"])] != p["server_msg_id"])
        finally:
            gw.terminate()
    finally:
        shutil.rmtree(data, ignore_errors=True)
    held = lost == 0 and dup == 0 and wrong == 0 and refused == 0 and len(acked) > 0
    return Row("kill -9 x%d (fsync %s)" % (rounds, fsync), held,
               "acknowledged %d, found %d, lost %d, duplicated %d, other ids %d, error acks %d"
               % (len(acked), found, lost, dup, wrong, refused))


# ---- loadgen runs ----

HEALTHY = """
name: faults-healthy
target:
  addresses: [127.0.0.1:{port}]
clients: {clients}
connect_rate: 2000
duration: {seconds}s
messaging:
  rate_per_client: {rate}
  targets: random_user
reconnect:
  initial: 100ms
  max: 1s
auth:
  first_user_id: {first_user}
"""

# Each healthy run logs in its own users: a fresh loadgen process syncs its users' inboxes from the start, so
# reusing them would make every run deliver all earlier runs' messages again and the runs incomparable.
_next_user = [1]


def run_loadgen(port, clients, seconds, rate, tmp, name, during=None):
    """Runs the loadgen (a healthy population); `during(proc)` runs meanwhile. Returns its JSON report."""
    path = os.path.join(tmp, name + ".yaml")
    with open(path, "w") as f:
        f.write(HEALTHY.format(port=port, clients=clients, seconds=seconds, rate=rate, first_user=_next_user[0]))
    _next_user[0] += clients
    report = os.path.join(tmp, name + ".json")
    proc = subprocess.Popen([loadgen_binary(), "--scenario=" + path, "--report-json=" + report, "--shards=1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if during is not None:
            during(proc)
        out, err = proc.communicate(timeout=seconds + 120)
    finally:
        if proc.poll() is None:
            proc.kill()
    if proc.returncode not in (0, 1):
        raise RuntimeError("loadgen exited %d: %s" % (proc.returncode, err[-2000:]))
    with open(report) as f:
        return json.load(f)


def ledger_summary(rep):
    led = rep["ledger"]
    return led, "acked %d, lost %d, duplicates %d" % (led["acked"], led["lost"], led["duplicates"])


def sigterm_rounds(rounds, clients, seconds):
    data = tempfile.mkdtemp(prefix="longlink-faults-")
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="longlink-faults-lg-")
    args = ("--drain-seconds=1", "--heartbeat-interval=5s", "--heartbeat-timeout=15s")
    state = {"gw": ll.Gateway(*args, shards=SHARDS, data_dir=data, port=port), "bad_exits": 0}

    def restarts(proc):
        interval = (seconds - 4) / rounds
        for _ in range(rounds):
            time.sleep(interval)
            if state["gw"].terminate() != 0:
                state["bad_exits"] += 1
            state["gw"] = ll.Gateway(*args, shards=SHARDS, data_dir=data, port=port)

    try:
        rep = run_loadgen(port, clients, seconds, 2, tmp, "sigterm", during=restarts)
    finally:
        state["gw"].terminate()
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    led, text = ledger_summary(rep)
    held = led["lost"] == 0 and led["duplicates"] == 0 and led["acked"] > 0 and state["bad_exits"] == 0
    return Row("SIGTERM x%d under load" % rounds, held,
               "%s; %d drains exited non-zero" % (text, state["bad_exits"]))


# ---- disk full ----

def disk_full():
    mnt = tempfile.mkdtemp(prefix="longlink-tmpfs-")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt], capture_output=True).returncode != 0:
        os.rmdir(mnt)
        return Row("disk full (4 MiB tmpfs)", True, "skipped: cannot mount a tmpfs here (needs root)")
    case = StorageFaultCase()
    outcome = {}
    try:
        gw = ll.Gateway("--segment-bytes=262144", "--max-sends-per-second=0", shards=SHARDS,
                        data_dir=os.path.join(mnt, "data"))
        try:
            st = os.statvfs(mnt)
            filler = os.path.join(mnt, "filler")
            with open(filler, "wb") as f:
                f.write(b"\0" * (st.f_bavail * st.f_frsize - 500 * 1024))
            start = {}

            def free():
                start["t"] = time.monotonic()
                os.unlink(filler)

            case.run_until_recovered(gw, 50_001, [51_000, 51_001], 1500, 600, free_space=free)
            outcome["recovery_s"] = time.monotonic() - start["t"]
            outcome["errors"] = gw.metric("longlink_backend_local_storage_errors_total")
        finally:
            gw.terminate()
    except AssertionError as e:
        return Row("disk full (4 MiB tmpfs)", False, str(e)[:200])
    finally:
        subprocess.run(["umount", "-l", mnt], capture_output=True)
        shutil.rmtree(mnt, ignore_errors=True)
    return Row("disk full (4 MiB tmpfs)", True,
               "every SEND answered, only ok or UNAVAILABLE, none lost or stored twice after retries; recovered "
               "%.1f s after space was freed (%d storage errors counted)" % (outcome["recovery_s"], outcome["errors"]))


# ---- attacks beside a healthy population ----

# The attackers connect from their own loopback address, as they would from their own hosts: the gateway's
# per-address login throttling then refuses them without touching the healthy clients on 127.0.0.1.
ATTACKER = "127.0.0.66"

def slowloris(port, stop, stats):
    """Connections that send a LOGIN one byte a second and never finish it."""
    sel = selectors.DefaultSelector()
    login = ll.frame(ll.LOGIN, ll.login_body(1, 1))
    conns = {}

    def open_one():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2, source_address=(ATTACKER, 0))
            s.setblocking(False)
            conns[s] = 0
            stats["opened"] += 1
        except OSError:
            stats["errors"] += 1

    while len(conns) < stats["target"] and not stop.is_set():
        open_one()
    while not stop.is_set():
        for s in list(conns):
            try:
                s.send(login[conns[s] % len(login):conns[s] % len(login) + 1])
                conns[s] += 1
            except OSError:
                s.close()
                del conns[s]
                stats["closed_by_gateway"] += 1
                open_one()
        stop.wait(1.0)
    for s in conns:
        s.close()


def flood(port, stop, stats):
    """Connects and hangs up at stats["rate"] connections a second (paced: the attacker shares this machine's
    two cores with the gateway and the healthy clients, so an unpaced one measures the CPU it takes from
    them rather than the gateway)."""
    start = time.monotonic()
    while not stop.is_set():
        due = start + stats["opened"] / stats["rate"]
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2, source_address=(ATTACKER, 0))
            s.close()
            stats["opened"] += 1
        except OSError:
            stats["errors"] += 1


def slow_consumers(port, stop, stats):
    """Logged-in clients that never read, with small receive buffers, while messages are pushed to them."""
    readers = []
    for i in range(stats["target"]):
        c = ll.Client(port, rcvbuf=4096, source=ATTACKER)
        c.login(990_000 + i)
        readers.append(c)
        stats["opened"] += 1
    sender = ll.Client(port, source=ATTACKER)
    sender.login(989_999)
    payload = b"z" * 4000
    n = 0
    while not stop.is_set():
        for i in range(len(readers)):
            try:
                sender.send(ll.SEND, ll.send_body(990_000 + i, n, payload))
            except OSError:
                return
            n += 1
        # Acks and the pushes of its own messages come back to the sender: drain them.
        try:
            while sender.recv(0.001) is not None:
                pass
        except (TimeoutError, OSError):
            pass
        stats["sent"] = n
        stop.wait(0.01)
    for c in readers:
        c.close()
    sender.close()


def garbage(port, stop, stats):
    """Connections that send random bytes: some look like frames with wrong lengths or versions."""
    rng = random.Random(11)
    while not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2, source_address=(ATTACKER, 0))
            kind = rng.randrange(4)
            if kind == 0:
                data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
            elif kind == 1:
                data = ll.frame(ll.LOGIN, b"\xff" * rng.randrange(0, 40))
            elif kind == 2:
                data = ll.frame(rng.randrange(256), b"x" * 10, version=rng.randrange(256))
            else:
                data = b"\x7f\xff\xff\xff" + bytes(8)
            s.sendall(data)
            s.settimeout(2)
            try:
                while s.recv(4096):
                    pass
            except OSError:
                pass
            s.close()
            stats["opened"] += 1
        except OSError:
            stats["errors"] += 1


def attacks(clients, seconds, quick):
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="longlink-faults-lg-")
    # These rows measure the gateway's network and CPU paths, not the disk: the data dir is on tmpfs, since
    # the fsync jitter of a VM disk (tens of ms at p99 here) would otherwise decide the latency comparison.
    data = tempfile.mkdtemp(prefix="longlink-faults-data-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    gw = ll.Gateway("--login-timeout=3s", "--max-pending-bytes=65536", "--max-sends-per-second=0",
                    "--heartbeat-interval=5s", "--heartbeat-timeout=15s", shards=SHARDS, port=port, data_dir=data)
    rows = []
    try:
        # A first run creates the inboxes and warms the caches; the baseline is the second.
        run_loadgen(port, clients, max(4, seconds // 2), 2, tmp, "warm-up")
        base = run_loadgen(port, clients, seconds, 2, tmp, "baseline")
        base_led, base_text = ledger_summary(base)
        base_p99 = base["latency_ms"]["end_to_end"]["p99"]
        # Every healthy run must carry about as much as the baseline: a row whose clients could not log in
        # would otherwise pass with nothing lost because nothing was sent.
        expected = clients * 2 * seconds
        rows.append(Row("baseline (healthy clients alone)",
                        base_led["lost"] == 0 and base_led["duplicates"] == 0 and base_led["acked"] >= 0.9 * expected,
                        "%s of about %d; e2e p99 %.2f ms" % (base_text, expected, base_p99)))
        floor = 0.97 * base_led["acked"]
        bound = max(2 * base_p99, base_p99 + 5)
        flood_rate = 1000 if quick else 2000
        for name, fn, target, closes in (
                ("slowloris", slowloris, 300 if quick else 1500, "login_timeout"),
                ("connection flood (%d/s)" % flood_rate, flood, 0, None),
                ("slow consumers", slow_consumers, 20 if quick else 100, "slow_consumer"),
                ("garbage frames", garbage, 0, None)):
            stats = {"opened": 0, "errors": 0, "closed_by_gateway": 0, "target": target, "sent": 0,
                     "rate": flood_rate}
            stop = threading.Event()
            before = gw.snapshot()
            t = threading.Thread(target=fn, args=(port, stop, stats), daemon=True)

            def during(proc):
                t.start()

            try:
                rep = run_loadgen(port, clients, seconds, 2, tmp, "".join(ch for ch in name if ch.isalnum()),
                                  during=during)
            finally:
                stop.set()
                if t.is_alive():
                    t.join(30)
            led, text = ledger_summary(rep)
            p99 = rep["latency_ms"]["end_to_end"]["p99"]
            after = gw.snapshot()
            closes_moved = (after.get("longlink_gateway_closes_total", 0, reason=closes) -
                            before.get("longlink_gateway_closes_total", 0, reason=closes)) if closes else None
            held = (led["lost"] == 0 and led["duplicates"] == 0 and led["acked"] >= floor and p99 <= bound and
                    gw.proc.poll() is None)
            detail = "%s; e2e p99 %.2f ms (%.2fx baseline, bound %.2f ms); attacker %d connections" % (
                text, p99, p99 / base_p99 if base_p99 else 0, bound, stats["opened"])
            if closes:
                detail += ", gateway closed %d for %s" % (closes_moved, closes)
                held = held and closes_moved > 0
            throttled = (after.get("longlink_gateway_login_throttled_total", 0) -
                         before.get("longlink_gateway_login_throttled_total", 0))
            if fn is flood:
                detail += " (%.0f/s reached of %d/s asked: one Python thread)" % (stats["opened"] / seconds, flood_rate)
            if throttled:
                detail += ", %d logins refused from the attacker's address" % throttled
            rows.append(Row(name, held, detail))
        again = run_loadgen(port, clients, seconds, 2, tmp, "baseline-again")
        led, text = ledger_summary(again)
        rows.append(Row("baseline again (after the attacks)",
                        led["lost"] == 0 and led["duplicates"] == 0 and led["acked"] >= floor,
                        "%s; e2e p99 %.2f ms" % (text, again["latency_ms"]["end_to_end"]["p99"])))
    finally:
        rc = gw.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)
    rows.append(Row("gateway drained after the attacks", rc == 0, "exit status %d" % rc))
    return rows


# ---- the cluster backend ----

def cluster_rows(clients, seconds):
    """kill -9 of one gateway and of one NATS node of three under a loadgen run spread over two gateways
    (--backend=nats, R3): the ledger must show 0 lost and 0 duplicates."""
    import natsfix
    import test_cluster
    if natsfix.server_version() < (2, 10, 0):
        return [Row("cluster rows", True, "skipped: nats-server 2.10 or later is not installed")]
    rows = []
    for name, failure in (("kill -9 gateway (cluster)", test_cluster.kill_gateway),
                          ("kill -9 NATS node of 3", test_cluster.kill_nats_node)):
        rc, rep, out, err = test_cluster.ledger_run_with_failure(name.split(" (")[0].replace(" ", "-"), failure,
                                                                 at=seconds / 3.0, duration=seconds, clients=clients)
        led, text = ledger_summary(rep)
        held = led["lost"] == 0 and led["duplicates"] == 0 and led["acked"] > 0
        rows.append(Row(name, held, "%s; %d refused (retryable), %d reconnects" % (
            text, rep["metrics"].get("sends_refused", 0), rep["metrics"]["reconnects"])))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short rounds (ctest)")
    ap.add_argument("--kill-rounds", type=int, default=None)
    ap.add_argument("--sigterm-rounds", type=int, default=None)
    ap.add_argument("--clients", type=int, default=None, help="healthy loadgen clients")
    ap.add_argument("--seconds", type=int, default=None, help="length of each loadgen run")
    a = ap.parse_args()
    kill_rounds = a.kill_rounds or (2 if a.quick else 20)
    sigterm = a.sigterm_rounds or (2 if a.quick else 7)
    clients = a.clients or (300 if a.quick else 2000)
    seconds = a.seconds or (8 if a.quick else 20)
    start = time.monotonic()
    rows = []

    def add(r):
        rows.append(r)
        print("%-4s %-34s %s" % ("ok" if r.held else "FAIL", r.name, r.detail), flush=True)

    for fsync in ("batch", "always"):
        add(kill9_rounds(fsync, kill_rounds, 4 if a.quick else 8, 300 if a.quick else 1000))
    add(sigterm_rounds(sigterm, clients, seconds + 4))
    add(disk_full())
    for r in attacks(clients, seconds, a.quick):
        add(r)
    if not a.quick:  # ctest's cluster label runs the short versions (test_cluster.py)
        for r in cluster_rows(min(clients, 500), max(seconds, 16)):
            add(r)
    failed = [r for r in rows if not r.held]
    print("fault suite: %d rows, %d held, %d failed, %.0f s" % (len(rows), len(rows) - len(failed), len(failed),
                                                                  time.monotonic() - start))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
