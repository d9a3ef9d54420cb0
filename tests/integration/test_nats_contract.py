"""The NATS wire contract for other services (docs/nats-contract.md), end to end: a JetStream nats-server, a
gateway on --backend=nats with its own subject prefix, and the example service examples/nats-bot (the npm `nats`
client, installed with npm ci on first use). A client's message to the bot user comes back as a stored reply
(live PUSH with a seq, and in SYNC); the bot's "/push" answers with an unstored PUSH; <prefix>.svc.push reaches
one device or all; malformed service bodies are refused; the <prefix>.ev.msg body and the inbox streams are read
here byte by byte over the plain NATS protocol, as a service in any language would (ctest label `cluster`)."""
import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

import llclient as ll
import natsfix

BOT_DIR = os.path.join(ll.ROOT, "examples", "nats-bot")
PREFIX = "ctr"
BOT_USER = 42
BOT_DEVICE = 1
OK, NO_SUCH_TARGET, REJECTED, TOO_LARGE, UNAVAILABLE = 0, 1, 2, 3, 4  # SendStatus
EVENT = struct.Struct(">QQQIBQQQI")  # the PUSH body's fixed part, then the payload


def log(line):
    sys.stderr.write("# %s\n" % line)
    sys.stderr.flush()


def send_request(sender, device, target, cmid, payload, kind=ll.USER):
    """A <prefix>.svc.send body."""
    return struct.pack(">QIBQQI", sender, device, kind, target, cmid, len(payload)) + payload


def push_request(user, device, payload):
    """A <prefix>.svc.push body."""
    return struct.pack(">QII", user, device, len(payload)) + payload


def decode_send_reply(data):
    if data is None or len(data) != 18:
        raise AssertionError("not a send reply: %r" % (data,))
    status, smid, t = struct.unpack(">HQQ", data)
    return dict(status=status, server_msg_id=smid, server_time_ms=t)


def decode_event(data):
    """A <prefix>.ev.msg body (a PUSH body); it must be consumed exactly."""
    seq, smid, fu, fd, ck, cid, cmid, t, n = EVENT.unpack_from(data)
    if len(data) != EVENT.size + n:
        raise AssertionError("event of %d bytes carries a payload of %d" % (len(data), n))
    return dict(seq=seq, server_msg_id=smid, from_user=fu, from_device=fd, conv_kind=ck, conv_id=cid,
                client_msg_id=cmid, server_time_ms=t, payload=data[EVENT.size:])


def encode_event(smid, from_user, from_device, conv_id, cmid, payload, conv_kind=ll.USER):
    """A <prefix>.ev.msg body as gateways publish it (the tests publish one to play a gateway)."""
    return EVENT.pack(0, smid, from_user, from_device, conv_kind, conv_id, cmid, int(time.time() * 1000),
                      len(payload)) + payload


def partition_of(ident, partitions):
    return (ll.mix64(ident) >> 32) % partitions


class RawSubscriber:
    """A subscription over the plain-text NATS client protocol: what any language's service sees."""

    def __init__(self, url, subject):
        host, port = url.split("//", 1)[-1].split(",")[0].rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.buf = b""
        self._line()  # INFO
        self.sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":false}\r\n')
        self.sock.sendall(b"SUB %s 1\r\nPING\r\n" % subject.encode())
        # The PONG comes after the server has taken the SUB: events from here on are ours.
        while not self._line(5).startswith(b"PONG"):
            pass

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no NATS message in time")
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        if not data:
            raise AssertionError("NATS closed the connection")
        self.buf += data

    def _line(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def next(self, timeout=10.0):
        """(subject, data) of the next message."""
        deadline = time.monotonic() + timeout
        while True:
            line = self._line(max(0.01, deadline - time.monotonic()))
            if line.startswith(b"PING"):
                self.sock.sendall(b"PONG\r\n")
            elif line.startswith(b"MSG "):
                parts = line.split()
                n = int(parts[-1])
                while len(self.buf) < n + 2:
                    self._fill(deadline)
                data, self.buf = self.buf[:n], self.buf[n + 2:]
                return parts[1].decode(), data

    def publish(self, subject, data):
        """A core NATS publish on this connection, flushed with a PING round trip."""
        self.sock.sendall(b"PUB %s %d\r\n%s\r\nPING\r\n" % (subject.encode(), len(data), data))
        while not self._line(5).startswith(b"PONG"):
            pass

    def events(self, count, timeout=10.0):
        return [decode_event(self.next(timeout)[1]) for _ in range(count)]

    def close(self):
        self.sock.close()


class Device:
    """One logged-in client device; every frame it reads is kept in `frames` (op, request_id, fields)."""

    def __init__(self, port, user, device):
        self.user, self.device = user, device
        self.c = ll.Client(port, timeout=10)
        ack = self.c.login(user, device)
        assert ack["status"] == 0, ack
        self.frames = []

    def send(self, target, cmid, payload, kind=ll.USER):
        return self.c.send(ll.SEND, ll.send_body(target, cmid, payload, kind=kind))

    def read_until(self, done, timeout=15.0):
        """Reads until done(self.frames) holds."""
        deadline = time.monotonic() + timeout
        while not done(self.frames):
            got = self.c.recv(max(0.01, deadline - time.monotonic()))
            if got is None:
                raise AssertionError("connection closed; frames so far: %r" % self.frames)
            self.frames.append(got)

    def pushes(self, **match):
        return [f for op, _, f in self.frames if op == ll.PUSH and all(f[k] == v for k, v in match.items())]

    def reply(self, op, rid):
        for o, r, f in self.frames:
            if o == op and r == rid:
                return f
        return None

    def quiet(self, settle=0.3):
        """Waits `settle` seconds, then a PING round trip: the frames that arrived meanwhile."""
        time.sleep(settle)
        before = len(self.frames)
        rid = self.c.send(ll.PING, ll.ping_body(0))
        self.read_until(lambda fs: self.reply(ll.PONG, rid) is not None, timeout=5)
        return [f for f in self.frames[before:] if f[0] != ll.PONG]

    def sync(self, after=0):
        """SYNC(after, 100): the inbox PUSHes of the answer and its SYNC_DONE."""
        start = len(self.frames)
        rid = self.c.send(ll.SYNC, ll.sync_body(after, 100))
        self.read_until(lambda fs: self.reply(ll.SYNC_DONE, rid) is not None, timeout=10)
        # Live PUSHes may cross the answer: a seq already seen is a duplicate (protocol.md 6.5).
        got = {}
        for op, r, f in self.frames[start:]:
            if op == ll.PUSH and f["seq"] > after:
                assert got.setdefault(f["seq"], f) == f, (got[f["seq"]], f)
        return [got[s] for s in sorted(got)], self.reply(ll.SYNC_DONE, rid)

    def close(self):
        self.c.close()


class NatsContractTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        node, npm = shutil.which("node"), shutil.which("npm")
        if not node or not npm:
            raise unittest.SkipTest("node/npm not installed")
        if not os.path.exists(natsfix.nats_server_binary()):
            raise unittest.SkipTest("nats-server not installed (scripts/deps.sh)")
        if natsfix.server_version() < (2, 10, 0):
            raise unittest.SkipTest("--backend=nats needs nats-server 2.10 or later")
        if not os.path.isdir(os.path.join(BOT_DIR, "node_modules", "nats")):
            cmd = [npm, "ci", "--prefix", BOT_DIR, "--no-audit", "--no-fund"]
            log("running: " + " ".join(cmd))
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                raise unittest.SkipTest("npm ci failed (no registry?): " + r.stderr[-500:])
        cls.nats = natsfix.NatsCluster(1).start()
        cls.url = cls.nats.urls
        cls.gw = cls.bot = None
        try:
            cls.gw = ll.Gateway("--backend=nats", "--nats-url=" + cls.url, "--nats-replicas=1",
                                "--nats-prefix=" + PREFIX, shards=2)
            cls.partitions = cls.gw.nats_partitions
            log("nats-server %s at %s" % (".".join(map(str, natsfix.server_version())), cls.url))
            log("gateway: " + " ".join(cls.gw.cmd))
            cmd = [node, os.path.join(BOT_DIR, "bot.js"), "--nats-url=" + cls.url, "--prefix=" + PREFIX,
                   "--bot-user=%d" % BOT_USER, "--bot-device=%d" % BOT_DEVICE]
            log("bot: " + " ".join(cmd))
            cls.bot = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            cls.bot_lines = []
            ready = threading.Event()

            def pump():
                for line in cls.bot.stdout:
                    cls.bot_lines.append(line.rstrip("\n"))
                    if "ready:" in line:
                        ready.set()
                ready.set()

            cls.pump = threading.Thread(target=pump, daemon=True)
            cls.pump.start()
            if not ready.wait(20) or cls.bot.poll() is not None:
                raise RuntimeError("the bot did not start: %s" % "\n".join(cls.bot_lines))
        except BaseException:
            cls.stop_all()
            raise

    @classmethod
    def stop_all(cls):
        rc = None
        if cls.bot is not None:
            if cls.bot.poll() is None:
                cls.bot.terminate()  # SIGTERM to its PID
            try:
                rc = cls.bot.wait(10)
            except subprocess.TimeoutExpired:
                cls.bot.kill()
                cls.bot.wait(5)
            cls.pump.join(5)
            log("bot exited with %s; its log:\n#   %s" % (rc, "\n#   ".join(cls.bot_lines)))
        if cls.gw is not None:
            cls.gw.terminate()
        cls.nats.stop()
        return rc

    @classmethod
    def tearDownClass(cls):
        rc = cls.stop_all()
        if rc != 0:
            raise AssertionError("the bot did not exit cleanly on SIGTERM (exit status %r)" % rc)

    def setUp(self):
        self.devices = []
        self.subs = []

    def tearDown(self):
        for d in self.devices:
            d.close()
        for s in self.subs:
            s.close()

    def device(self, user, device=1):
        d = Device(self.gw.port, user, device)
        self.devices.append(d)
        return d

    def subscribe(self, subject):
        s = RawSubscriber(self.url, subject)
        self.subs.append(s)
        return s

    def request(self, subject, body):
        return natsfix.request(self.url, PREFIX + "." + subject, body, timeout=10)

    def stored_copy(self, user):
        """The newest message of `user`'s inbox stream, read with the JetStream API: (headers, body)."""
        p = partition_of(user, self.partitions)
        stream = "%s_IN_%d" % (PREFIX.upper(), p)
        req = json.dumps({"last_by_subj": "%s.in.%d.%d" % (PREFIX, p, user)}).encode()
        r = json.loads(natsfix.request(self.url, "$JS.API.STREAM.MSG.GET." + stream, req))
        self.assertNotIn("error", r)
        hdrs = base64.b64decode(r["message"]["hdrs"]).decode()
        headers = dict(l.split(": ", 1) for l in hdrs.split("\r\n")[1:] if ": " in l)
        return headers, base64.b64decode(r["message"]["data"])

    def test_bot_reply_is_stored_pushed_and_synced(self):
        events = self.subscribe(PREFIX + ".ev.msg")
        alice = self.device(7, 1)
        rid = alice.send(BOT_USER, 1001, b"hello bot")
        alice.read_until(lambda fs: alice.reply(ll.SEND_ACK, rid) is not None and alice.pushes(from_user=7)
                         and alice.pushes(from_user=BOT_USER))
        ack = alice.reply(ll.SEND_ACK, rid)
        self.assertEqual(ack["status"], OK, ack)
        mine = alice.pushes(from_user=7)
        self.assertEqual(len(mine), 1)  # the sender's own copy
        [reply] = alice.pushes(from_user=BOT_USER)
        log("client 7 sent seq %d; the bot's reply arrived: %r" % (mine[0]["seq"], reply))
        # Stored in the client's inbox right after its own message; the reply's client_msg_id is the
        # server_msg_id it answers.
        self.assertEqual(reply["seq"], mine[0]["seq"] + 1)
        self.assertEqual((reply["from_device"], reply["conv_kind"], reply["conv_id"]), (BOT_DEVICE, ll.USER, BOT_USER))
        self.assertEqual(reply["payload"], b"bot: hello bot")
        self.assertEqual(reply["client_msg_id"], ack["server_msg_id"])

        # Both SENDs are events: the client's, then the bot's; conv_id is the SEND's target.
        ev, ev_reply = events.events(2)
        self.assertEqual(ev, dict(seq=0, server_msg_id=ack["server_msg_id"], from_user=7, from_device=1,
                                  conv_kind=ll.USER, conv_id=BOT_USER, client_msg_id=1001,
                                  server_time_ms=ack["server_time_ms"], payload=b"hello bot"))
        self.assertEqual((ev_reply["server_msg_id"], ev_reply["from_user"], ev_reply["conv_id"], ev_reply["seq"]),
                         (reply["server_msg_id"], BOT_USER, 7, 0))

        # SYNC from the start returns both, in order.
        got, done = alice.sync(0)
        self.assertEqual([(p["seq"], p["payload"]) for p in got],
                         [(mine[0]["seq"], b"hello bot"), (reply["seq"], b"bot: hello bot")])
        self.assertEqual(done["max_seq"], reply["seq"])

        # The inbox streams: the client's copy and the bot's own (sender) copy, with their headers.
        headers, body = self.stored_copy(7)
        self.assertEqual(int(headers["Ll-Seq"]), reply["seq"])
        self.assertEqual(headers["Nats-Msg-Id"], "%d.7" % reply["server_msg_id"])
        self.assertNotIn("Ll-Src", headers)
        self.assertEqual(decode_event(body)["payload"], b"bot: hello bot")
        headers, body = self.stored_copy(BOT_USER)
        self.assertEqual(headers["Ll-Src"], "%d.%d" % (BOT_DEVICE, ack["server_msg_id"]))
        copy = decode_event(body)
        self.assertEqual((copy["from_user"], copy["conv_id"], copy["seq"]), (BOT_USER, 7, int(headers["Ll-Seq"])))

        # The bot's SEND again, as a retry would be: the same answer, nothing stored or pushed twice.
        again = decode_send_reply(self.request("svc.send", send_request(
            BOT_USER, BOT_DEVICE, 7, ack["server_msg_id"], b"bot: hello bot")))
        self.assertEqual((again["status"], again["server_msg_id"]), (OK, reply["server_msg_id"]))
        self.assertEqual(alice.quiet(), [])
        self.assertEqual(self.stored_copy(7)[0]["Ll-Seq"], str(reply["seq"]))

    def test_bot_retries_unavailable_with_the_same_id(self):
        # No gateway: the bot's SEND finds no responder (UNAVAILABLE for it) and is retried until one is back.
        cls = type(self)
        args = [a for a in cls.gw.cmd[1:] if a.split("=")[0] not in ("--port", "--metrics-port", "--bind",
                                                                       "--metrics-bind", "--shards")]
        self.assertEqual(cls.gw.terminate(), 0)
        cls.gw = None
        lines = len(cls.bot_lines)
        ev = encode_event(0x1234567, 11, 1, BOT_USER, 5, b"are you there")
        pub = self.subscribe(PREFIX + ".none")
        pub.publish(PREFIX + ".ev.msg", ev)
        time.sleep(1.0)
        cls.gw = ll.Gateway(*args, shards=2)
        dave = self.device(11, 1)
        deadline = time.monotonic() + 20
        while True:
            got, _ = dave.sync(0)
            if got or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual([(p["from_user"], p["client_msg_id"], p["payload"]) for p in got],
                         [(BOT_USER, 0x1234567, b"bot: are you there")])
        log("after the gateway came back: %s" % cls.bot_lines[lines:])
        self.assertTrue(any("(attempt " in l for l in cls.bot_lines[lines:]), cls.bot_lines[lines:])
        # The same event again (a second bot, a redelivery): the reply is stored once.
        pub.publish(PREFIX + ".ev.msg", ev)
        deadline = time.monotonic() + 10
        while sum("11/1: replied" in l for l in cls.bot_lines[lines:]) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        replies = [l for l in cls.bot_lines[lines:] if "11/1: replied" in l]
        self.assertEqual(len(replies), 2, cls.bot_lines[lines:])
        self.assertEqual({l.split("server_msg_id ")[1].split()[0] for l in replies}, {str(got[0]["server_msg_id"])})
        got, _ = dave.sync(0)
        self.assertEqual(len(got), 1, got)

    def test_bot_push_reaches_the_device_unstored(self):
        bob = self.device(8, 3)
        rid = bob.send(BOT_USER, 1, b"/push ding")
        bob.read_until(lambda fs: bob.reply(ll.SEND_ACK, rid) is not None and bob.pushes(seq=0))
        self.assertEqual(bob.reply(ll.SEND_ACK, rid)["status"], OK)
        [push] = bob.pushes(seq=0)
        log("client 8 got the bot's svc.push: %r" % push)
        self.assertEqual((push["from_user"], push["conv_kind"], push["payload"]), (0, ll.USER, b"ding"))
        got, _ = bob.sync(0)
        self.assertEqual([p["payload"] for p in got], [b"/push ding"])  # the push is in no inbox

    def test_svc_push_to_one_device_or_all(self):
        d1, d2 = self.device(9, 1), self.device(9, 2)
        self.assertEqual(self.request("svc.push", push_request(9, 2, b"to device 2")), b"OK")
        d2.read_until(lambda fs: d2.pushes(payload=b"to device 2"))
        self.assertEqual(d2.pushes(payload=b"to device 2")[0]["seq"], 0)
        self.assertEqual(d1.quiet(), [])
        self.assertEqual(self.request("svc.push", push_request(9, 0, b"to all")), b"OK")
        for d in (d1, d2):
            d.read_until(lambda fs, d=d: d.pushes(payload=b"to all"))
        # Refused bodies: truncated, trailing bytes, user 0.
        for bad in (b"", push_request(9, 1, b"x")[:-1], push_request(9, 1, b"x") + b"\0", push_request(0, 1, b"x")):
            self.assertEqual(self.request("svc.push", bad), b"ERR", bad)
        self.assertEqual(d1.quiet(0.1), [])

    def test_svc_send_statuses(self):
        carol = self.device(10, 1)
        good = send_request(77, 5, 10, 1, b"from a service")
        for bad in (b"", b"\0\1", good[:-1], good + b"\0", send_request(77, 5, 10, 1, b"x")[:-1] + b"xy"):
            r = decode_send_reply(self.request("svc.send", bad))
            self.assertEqual((r["status"], r["server_msg_id"]), (REJECTED, 0), bad)
        # Well formed but refused: no sender; a group that does not exist.
        self.assertEqual(decode_send_reply(self.request("svc.send", send_request(0, 5, 10, 2, b"x")))["status"],
                         REJECTED)
        r = decode_send_reply(self.request("svc.send", send_request(77, 5, 123456, 3, b"x", kind=ll.GROUP)))
        self.assertEqual(r["status"], NO_SUCH_TARGET)
        # The checks a client's SEND gets: target 0, an unknown kind, a payload larger than a SEND frame holds.
        for target, kind in ((0, ll.USER), (10, 7)):
            r = decode_send_reply(self.request("svc.send", send_request(77, 5, target, 4, b"x", kind=kind)))
            self.assertEqual(r["status"], NO_SUCH_TARGET, (target, kind))
        r = decode_send_reply(self.request("svc.send", send_request(77, 5, 10, 5, b"y" * (65536 - 32))))
        self.assertEqual(r["status"], TOO_LARGE)
        self.assertEqual(self.request("svc.push", push_request(10, 0, b"z" * (65536 - 32))), b"ERR")
        # Accepted: stored and pushed like a client's message from user 77.
        r = decode_send_reply(self.request("svc.send", good))
        self.assertEqual(r["status"], OK)
        carol.read_until(lambda fs: carol.pushes(from_user=77))
        [p] = carol.pushes(from_user=77)
        self.assertEqual((p["server_msg_id"], p["from_device"], p["conv_id"], p["client_msg_id"], p["payload"]),
                         (r["server_msg_id"], 5, 77, 1, b"from a service"))
        self.assertGreater(p["seq"], 0)
        log("svc.send statuses: malformed -> REJECTED, sender 0 -> REJECTED, unknown group -> NO_SUCH_TARGET, "
            "good -> OK (seq %d)" % p["seq"])


if __name__ == "__main__":
    unittest.main()
