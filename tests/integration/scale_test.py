#!/usr/bin/env python3
"""Scale check: many concurrent logged-in, heartbeating connections against the real gateway.

Opens --conns connections (default 25,000: more than one process may hold as plain descriptors here)
from several client processes, each under the open-files limit and each with its own loopback source
address so ephemeral ports never run out. Every client logs in and pings at the advertised interval for
longer than the heartbeat timeout. Passes only if every client is logged in, every ping is answered,
the gateway's session gauge equals --conns and no connection was closed.

Also prints the gateway's resident memory growth per connection (the figure docs/benchmarks.md records).
"""
import argparse
import multiprocessing as mp
import os
import random
import select
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llclient as L  # noqa: E402


def worker(idx, port, first_user, count, ping_interval, hold_seconds, out_q, go, subnet=1):
    try:
        run_worker(idx, port, first_user, count, ping_interval, hold_seconds, out_q, go, subnet)
    except Exception as e:  # report instead of leaving the parent waiting
        print("client process %d failed: %r" % (idx, e), file=sys.stderr)
        out_q.put(("logged_in", idx, 0, 1, 0))
        out_q.put(("done", idx, 0, 0, 1))


def run_worker(idx, port, first_user, count, ping_interval, hold_seconds, out_q, go, subnet):
    """One client process: `count` connections from source address 127.<subnet>.<idx/250>.<idx%250+2>.

    Each run picks a fresh subnet: the ports of a previous run's sockets stay in TIME_WAIT for a minute."""
    src = "127.%d.%d.%d" % (subnet, idx // 250, 2 + idx % 250)
    ep = select.epoll()
    socks = {}
    state = {}  # fd -> [reader, logged_in, pings_sent, pongs]
    errors = 0
    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind((src, 0))
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fd = s.fileno()
        socks[fd] = s
        state[fd] = [L.Reader(), False, 0, 0, first_user + i]
        ep.register(fd, select.EPOLLOUT)
    pending_connect = set(socks)

    def pump(deadline):
        nonlocal errors
        while time.monotonic() < deadline:
            for fd, ev in ep.poll(0.05):
                s = socks.get(fd)
                if s is None:
                    continue
                st = state[fd]
                if fd in pending_connect and ev & (select.EPOLLOUT | select.EPOLLERR):
                    pending_connect.discard(fd)
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        errors += 1
                        ep.unregister(fd)
                        continue
                    s.send(L.frame(L.LOGIN, L.login_body(st[4], 1), 1))
                    ep.modify(fd, select.EPOLLIN)
                    continue
                if ev & select.EPOLLIN:
                    try:
                        data = s.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        errors += 1
                        ep.unregister(fd)
                        continue
                    for op, rid, body in st[0].feed(data):
                        if op == L.LOGIN_ACK and struct.unpack_from(">H", body)[0] == 0:
                            st[1] = True
                        elif op == L.PONG:
                            st[3] += 1
                        else:
                            errors += 1
            if all(state[fd][1] for fd in state) and deadline == float("inf"):
                return

    ping_round = [0, time.monotonic() + ping_interval]

    def ping_if_due():
        nonlocal errors
        if time.monotonic() < ping_round[1]:
            return
        for fd, s in socks.items():
            st = state[fd]
            if st[1]:
                try:
                    s.send(L.frame(L.PING, struct.pack(">Q", ping_round[0]), 2))
                    st[2] += 1
                except OSError:
                    errors += 1
        ping_round[0] += 1
        ping_round[1] += ping_interval

    t0 = time.monotonic()
    login_deadline = t0 + 120
    # Every logged-in client pings at the interval from then on, also while other processes ramp up.
    while time.monotonic() < login_deadline and not all(st[1] for st in state.values()):
        pump(time.monotonic() + 0.2)
        ping_if_due()
    logged_in = sum(1 for st in state.values() if st[1])
    out_q.put(("logged_in", idx, logged_in, errors, time.monotonic() - t0))
    while not go.is_set():
        pump(time.monotonic() + 0.1)
        ping_if_due()
    end = time.monotonic() + hold_seconds
    while time.monotonic() < end:
        pump(min(end, time.monotonic() + 0.1))
        ping_if_due()
    # Let the last pongs arrive.
    pump(time.monotonic() + 1.0)
    pings = sum(st[2] for st in state.values())
    pongs = sum(st[3] for st in state.values())
    out_q.put(("done", idx, pings, pongs, errors))
    time.sleep(3.0)  # keep the sockets open until the parent has read the gateway's metrics
    for s in socks.values():
        s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conns", type=int, default=25000)
    ap.add_argument("--per-proc", type=int, default=12500, help="connections per client process (< 20,000)")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--heartbeat-interval", type=float, default=2.0)
    ap.add_argument("--heartbeat-timeout", type=float, default=5.0)
    ap.add_argument("--hold", type=float, default=8.0, help="seconds of heartbeating after everyone logged in")
    ap.add_argument("--settle", type=float, default=0.5,
                    help="seconds to wait after each client process logged in before reading the gateway's RSS")
    ap.add_argument("--gateway-arg", action="append", default=[], help="extra gateway flag")
    args = ap.parse_args()

    procs_n = (args.conns + args.per_proc - 1) // args.per_proc
    subnet = random.randrange(2, 255)
    gw = L.Gateway("--heartbeat-interval=%gs" % args.heartbeat_interval,
                   "--heartbeat-timeout=%gs" % args.heartbeat_timeout,
                   "--max-conns-per-shard=%d" % min(19000, max(1024, 2 * args.conns // args.shards)),
                   *args.gateway_arg, shards=args.shards)
    ok = True
    try:
        time.sleep(0.3)
        rss0 = gw.metric("process_resident_memory_bytes")
        q = mp.Queue()
        go = mp.Event()
        procs = []
        left = args.conns
        logged = 0
        # Client processes start one after another so the gateway's memory can be read at each step: the
        # growth between steps is the per-connection cost, without the fixed cost of buffer rings and heaps.
        steps = [(0, rss0)]
        t0 = time.monotonic()
        for i in range(procs_n):
            n = min(args.per_proc, left)
            left -= n
            p = mp.Process(target=worker, args=(i, gw.port, 1 + i * args.per_proc, n, args.heartbeat_interval,
                                                args.hold, q, go, subnet))
            p.start()
            procs.append(p)
            kind, idx, got, errs, secs = q.get(timeout=300)
            logged += got
            if errs:
                print("client process %d: %d errors during login" % (idx, errs))
                ok = False
            time.sleep(args.settle)
            steps.append((gw.metric("longlink_gateway_sessions"),
                          gw.metric("process_resident_memory_bytes")))
        login_secs = time.monotonic() - t0
        sessions = gw.metric("longlink_gateway_sessions")
        rss1 = steps[-1][1]
        print("connections logged in: %d of %d in %.1fs (gateway sessions gauge: %d)" %
              (logged, args.conns, login_secs, sessions))
        for n, rss in steps:
            print("  %8d sessions: gateway RSS %.1f MiB" % (n, rss / 2**20))
        print("gateway RSS: %.1f MiB idle -> %.1f MiB with %d sessions: %.0f bytes per connection overall" %
              (rss0 / 2**20, rss1 / 2**20, sessions, (rss1 - rss0) / max(1, sessions)))
        if len(steps) >= 3:
            (n1, r1), (n2, r2) = steps[1], steps[-1]
            print("marginal user-space memory per idle authenticated connection (%d -> %d sessions): %.0f bytes" %
                  (n1, n2, (r2 - r1) / max(1, n2 - n1)))
        go.set()
        pings = pongs = errors = 0
        for _ in procs:
            kind, idx, pi, po, errs = q.get(timeout=args.hold + 120)
            pings += pi
            pongs += po
            errors += errs
        sessions_after = gw.metric("longlink_gateway_sessions")
        hb_timeouts = gw.metric("longlink_gateway_heartbeat_timeouts_total")
        closes = gw.metric("longlink_gateway_closes_total")
        print("heartbeats: %d pings, %d pongs over %.0fs (timeout %.0fs); client errors %d" %
              (pings, pongs, args.hold, args.heartbeat_timeout, errors))
        print("after the hold: sessions %d, heartbeat timeouts %d, closes %d" % (sessions_after, hb_timeouts, closes))
        for p in procs:
            p.join(30)
        checks = [
            (logged == args.conns, "every client logged in"),
            (sessions == args.conns, "gateway holds every session"),
            (pings > 0 and pongs == pings, "every ping answered"),
            (errors == 0, "no client errors"),
            (sessions_after == args.conns and closes == 0 and hb_timeouts == 0, "no connection closed"),
        ]
        for good, what in checks:
            print("%s: %s" % ("ok" if good else "FAILED", what))
            ok = ok and good
    finally:
        rc = gw.terminate(timeout=60)
        if rc != 0:
            print("gateway exited with %s: %s" % (rc, gw.stderr_text))
            ok = False
    print("scale test %s" % ("passed" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
