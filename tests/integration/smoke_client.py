#!/usr/bin/env python3
"""A small built-in client check against a running gateway: N clients log in, heartbeat and send
messages for a while; prints a report with round-trip latencies and exits non-zero if anything was lost.

    smoke_client.py --port 7000 --clients 500 --seconds 10 --rate 200
"""
import argparse
import select
import socket
import struct
import sys
import time
import os

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llclient as L  # noqa: E402


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    return sorted_vals[min(len(sorted_vals) - 1, int(p / 100.0 * len(sorted_vals)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--clients", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rate", type=float, default=200, help="messages per second in total")
    ap.add_argument("--payload", type=int, default=64)
    args = ap.parse_args()

    ep = select.epoll()
    conns = {}
    t_start = time.monotonic()
    for i in range(args.clients):
        s = socket.create_connection((args.host, args.port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        conns[s.fileno()] = dict(sock=s, reader=L.Reader(), user=100000 + i, logged=False, login_t=time.monotonic())
        ep.register(s.fileno(), select.EPOLLIN)
        s.send(L.frame(L.LOGIN, L.login_body(100000 + i, 1), 1))

    login_lat, ack_lat, e2e_lat, ping_lat = [], [], [], []
    sent = acked = pushed = pongs = pings = errors = closed = 0
    hb_interval = None
    inflight = {}  # client_msg_id -> send time

    def pump(timeout):
        nonlocal acked, pushed, pongs, errors, closed, hb_interval
        for fd, ev in ep.poll(timeout):
            c = conns.get(fd)
            if c is None:
                continue
            try:
                data = c["sock"].recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                closed += 1
                ep.unregister(fd)
                del conns[fd]
                continue
            now = time.monotonic()
            for op, rid, body in c["reader"].feed(data):
                f = L.parse(op, body)
                if op == L.LOGIN_ACK:
                    if f["status"] == 0:
                        c["logged"] = True
                        hb_interval = f["heartbeat_interval_ms"] / 1000.0
                        login_lat.append(now - c["login_t"])
                    else:
                        errors += 1
                elif op == L.SEND_ACK:
                    acked += 1
                    t = inflight.get(f["client_msg_id"])
                    if t is not None:
                        ack_lat.append(now - t)
                elif op == L.PUSH:
                    pushed += 1
                    t = inflight.pop(f["client_msg_id"], None)
                    if t is not None:
                        e2e_lat.append(now - t)
                elif op == L.PONG:
                    pongs += 1
                    ping_lat.append(now - f["timestamp"] / 1e9)
                else:
                    errors += 1

    while time.monotonic() - t_start < 30 and not all(c["logged"] for c in conns.values()):
        pump(0.05)
    logged = sum(1 for c in conns.values() if c["logged"])
    print("logged in: %d of %d clients" % (logged, args.clients), file=sys.stderr)

    fds = list(conns)
    payload = b"x" * args.payload
    t0 = time.monotonic()
    end = t0 + args.seconds
    next_send = t0
    interval = 1.0 / args.rate if args.rate > 0 else float("inf")
    ping_every = min(hb_interval or 5.0, 2.0)
    next_ping = t0 + ping_every
    msg_id = 0
    last_report = t0
    while time.monotonic() < end:
        now = time.monotonic()
        while next_send <= now and fds:
            fd = fds[msg_id % len(fds)]
            c = conns.get(fd)
            msg_id += 1
            if c is not None:
                inflight[msg_id] = next_send  # measured from the intended send time
                c["sock"].send(L.frame(L.SEND, L.send_body(c["user"], msg_id, payload), msg_id & 0xffffffff))
                sent += 1
            next_send += interval
        if now >= next_ping:
            stamp = int(time.monotonic() * 1e9)
            for c in list(conns.values()):
                c["sock"].send(L.frame(L.PING, struct.pack(">Q", stamp), 0))
                pings += 1
            next_ping += ping_every
        if now - last_report >= 1.0:
            print("t=%4.1fs clients=%d sent=%d acked=%d pushed=%d pongs=%d errors=%d closed=%d" %
                  (now - t0, len(conns), sent, acked, pushed, pongs, errors, closed), file=sys.stderr)
            last_report = now
        pump(max(0.0, min(next_send, next_ping, end) - time.monotonic()))
    drain_end = time.monotonic() + 3
    while time.monotonic() < drain_end and (acked < sent or pushed < sent or pongs < pings):
        pump(0.05)
    elapsed = time.monotonic() - t0

    for v in (login_lat, ack_lat, e2e_lat, ping_lat):
        v.sort()
    ms = lambda v, p: pct(v, p) * 1000  # noqa: E731
    print("longlink smoke report")
    print("  clients          %d logged in of %d" % (logged, args.clients))
    print("  messages         %d sent, %d acked, %d pushed back in %.1fs (%.0f msg/s)" %
          (sent, acked, pushed, elapsed, pushed / elapsed if elapsed else 0))
    print("  heartbeats       %d pings, %d pongs" % (pings, pongs))
    print("  login latency    p50 %.2f ms  p99 %.2f ms" % (ms(login_lat, 50), ms(login_lat, 99)))
    print("  send->ack        p50 %.2f ms  p99 %.2f ms  max %.2f ms" % (ms(ack_lat, 50), ms(ack_lat, 99), ms(ack_lat, 100)))
    print("  send->push       p50 %.2f ms  p99 %.2f ms  max %.2f ms" % (ms(e2e_lat, 50), ms(e2e_lat, 99), ms(e2e_lat, 100)))
    print("  ping->pong       p50 %.2f ms  p99 %.2f ms" % (ms(ping_lat, 50), ms(ping_lat, 99)))
    print("  errors %d, unexpected closes %d" % (errors, closed))
    ok = logged == args.clients and acked == sent and pushed == sent and pongs == pings and errors == 0 and closed == 0
    print("  result: %s" % ("ok" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
