"""A small, independent longlink v1 client for integration tests, written from docs/protocol.md.

It speaks the protocol over plain TCP sockets (blocking, with timeouts) and can start and stop the real
gateway binary on an ephemeral port.
"""
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

HEADER = struct.Struct(">IBBHI")  # length, version, opcode, flags, request_id
VERSION = 1

LOGIN, LOGIN_ACK, PING, PONG, SEND, SEND_ACK, PUSH, PUSH_ACK, SYNC, SYNC_DONE, KICK, GOAWAY, LOGOUT, ERROR = range(1, 15)
NAMES = {LOGIN: "login", LOGIN_ACK: "login_ack", PING: "ping", PONG: "pong", SEND: "send", SEND_ACK: "send_ack",
         PUSH: "push", PUSH_ACK: "push_ack", SYNC: "sync", SYNC_DONE: "sync_done", KICK: "kick",
         GOAWAY: "goaway", LOGOUT: "logout", ERROR: "error"}
# Groups and presence (15 is never assigned).
GROUP_CREATE, GROUP_JOIN, GROUP_LEAVE, GROUP_MEMBERS, GROUP_REPLY, PRESENCE_SUBSCRIBE, PRESENCE = range(16, 23)
NAMES.update({GROUP_CREATE: "group_create", GROUP_JOIN: "group_join", GROUP_LEAVE: "group_leave",
              GROUP_MEMBERS: "group_members", GROUP_REPLY: "group_reply", PRESENCE_SUBSCRIBE: "presence_subscribe",
              PRESENCE: "presence"})
USER, GROUP = 0, 1


def mix64(x):
    """The gateway's id hash (gateway/shard.cc): a user or group lives on shard mix64(id) % shards."""
    m = (1 << 64) - 1
    x = (x + 0x9e3779b97f4a7c15) & m
    x = ((x ^ (x >> 30)) * 0xbf58476d1ce4e5b9) & m
    x = ((x ^ (x >> 27)) * 0x94d049bb133111eb) & m
    return x ^ (x >> 31)


def owner_shard(ident, shards):
    return mix64(ident) % shards


def sync_body(after_seq, limit):
    return struct.pack(">QI", after_seq, limit)


def push_ack_body(seq):
    return struct.pack(">Q", seq)


def group_body(group_id):
    return struct.pack(">Q", group_id)


def members_body(group_id, after_user=0):
    return struct.pack(">QQ", group_id, after_user)


def presence_subscribe_body(user_ids, subscribe=True):
    ids = b"".join(struct.pack(">Q", u) for u in user_ids)
    return struct.pack(">B", 1 if subscribe else 0) + _p(ids)


def _s(b):
    b = b.encode() if isinstance(b, str) else b
    return struct.pack(">H", len(b)) + b


def _p(b):
    return struct.pack(">I", len(b)) + b


def frame(opcode, body=b"", request_id=0, version=VERSION, length=None):
    n = HEADER.size + len(body) if length is None else length
    return HEADER.pack(n, version, opcode, 0, request_id) + body


def login_body(user, device, token="", platform=1):
    return struct.pack(">QIB", user, device, platform) + _s(token)


def send_body(target, client_msg_id, payload=b"", kind=0):
    return struct.pack(">BQQ", kind, target, client_msg_id) + _p(payload)


def ping_body(timestamp=0):
    return struct.pack(">Q", timestamp)


class Reader:
    """Splits a byte stream into (opcode, request_id, body) frames."""

    def __init__(self):
        self.buf = b""

    def feed(self, data):
        self.buf += data
        out = []
        while len(self.buf) >= HEADER.size:
            n, ver, op, flags, rid = HEADER.unpack_from(self.buf)
            if len(self.buf) < n:
                break
            out.append((op, rid, self.buf[HEADER.size:n]))
            self.buf = self.buf[n:]
        return out


def parse(op, body):
    """Decodes a server frame body into a dict."""
    if op == LOGIN_ACK:
        status, hb_int, hb_to, sid, t = struct.unpack_from(">HIIQQ", body)
        (ml,) = struct.unpack_from(">H", body, 26)
        return dict(status=status, heartbeat_interval_ms=hb_int, heartbeat_timeout_ms=hb_to, session_id=sid,
                    server_time_ms=t, message=body[28:28 + ml].decode())
    if op == PONG:
        return dict(timestamp=struct.unpack(">Q", body)[0])
    if op == SEND_ACK:
        st, cid, sid, t = struct.unpack(">HQQQ", body)
        return dict(status=st, client_msg_id=cid, server_msg_id=sid, server_time_ms=t)
    if op == PUSH:
        seq, smid, fu, fd, ck, cid, cmid, t = struct.unpack_from(">QQQIBQQQ", body)
        (pl,) = struct.unpack_from(">I", body, 53)
        return dict(seq=seq, server_msg_id=smid, from_user=fu, from_device=fd, conv_kind=ck, conv_id=cid,
                    client_msg_id=cmid, server_time_ms=t, payload=body[57:57 + pl])
    if op in (KICK, ERROR):
        code, ml = struct.unpack_from(">HH", body)
        return dict(code=code, message=body[4:4 + ml].decode())
    if op == GOAWAY:
        delay, ml = struct.unpack_from(">IH", body)
        return dict(reconnect_delay_ms=delay, reason=body[6:6 + ml].decode())
    if op == SYNC_DONE:
        max_seq, more = struct.unpack(">QB", body)
        return dict(max_seq=max_seq, has_more=more)
    if op == GROUP_REPLY:
        status, gid, more, n = struct.unpack_from(">HQBI", body)
        members = [struct.unpack_from(">Q", body, 15 + 8 * i)[0] for i in range(n // 8)]
        return dict(status=status, group_id=gid, has_more=more, members=members)
    if op == PRESENCE:
        user, online, devices, t = struct.unpack(">QBIQ", body)
        return dict(user_id=user, online=online, devices=devices, time_ms=t)
    return dict(raw=body)


class Client:
    def __init__(self, port, host="127.0.0.1", timeout=5.0, rcvbuf=None, source=None):
        if rcvbuf is None:
            # source: the local address to connect from (any of 127.0.0.0/8 works on loopback).
            self.sock = socket.create_connection((host, port), timeout=timeout,
                                                 source_address=(source, 0) if source else None)
        else:
            # SO_RCVBUF must be set before connecting to bound the advertised window.
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
            self.sock = socket.socket(family, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = Reader()
        self.pending = []
        self.next_rid = 1

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, op, body=b""):
        rid = self.next_rid
        self.next_rid += 1
        self.sock.sendall(frame(op, body, rid))
        return rid

    def recv(self, timeout=5.0):
        """Next frame as (opcode, request_id, fields) or None when the server closed the connection."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame within %.1fs" % timeout)
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.pending.extend(self.reader.feed(data))
        op, rid, body = self.pending.pop(0)
        return op, rid, parse(op, body)

    def expect(self, op, timeout=5.0):
        got = self.recv(timeout)
        if got is None:
            raise AssertionError("connection closed while waiting for %s" % NAMES.get(op, op))
        if got[0] != op:
            raise AssertionError("expected %s, got %s %r" % (NAMES.get(op, op), NAMES.get(got[0], got[0]), got[2]))
        return got

    def login(self, user, device=1, token=""):
        rid = self.send(LOGIN, login_body(user, device, token))
        op, r, ack = self.expect(LOGIN_ACK)
        assert r == rid, (r, rid)
        return ack

    def expect_reply(self, op, rid, timeout=5.0):
        """Next frame, which must be `op` carrying request id `rid`; returns its fields."""
        got_op, got_rid, fields = self.expect(op, timeout)
        if got_rid != rid:
            raise AssertionError("%s carried request id %d, expected %d" % (NAMES.get(op, op), got_rid, rid))
        return fields

    def expect_replies(self, wanted, timeout=5.0):
        """The next len(wanted) frames, which must be the (op, request id) pairs of `wanted` in any order (the
        protocol lets a SEND_ACK and the PUSH of the same message to the sender cross); returns
        {(op, rid): fields}."""
        left, out = list(wanted), {}
        deadline = time.monotonic() + timeout
        while left:
            got = self.recv(max(0.01, deadline - time.monotonic()))
            if got is None:
                raise AssertionError("closed while waiting for %r" % (left,))
            op, rid, fields = got
            if (op, rid) not in left:
                raise AssertionError("expected one of %r, got %s %d %r" % (left, NAMES.get(op, op), rid, fields))
            left.remove((op, rid))
            out[(op, rid)] = fields
        return out

    def ping(self, timestamp=0, timeout=5.0):
        """PING and wait for its PONG; returns the echoed timestamp."""
        rid = self.send(PING, ping_body(timestamp))
        return self.expect_reply(PONG, rid, timeout)["timestamp"]

    def wait_closed(self, timeout=5.0):
        """Reads until EOF; returns the frames received before it."""
        frames = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("connection still open after %.1fs" % timeout)
            got = self.recv(left)
            if got is None:
                return frames
            frames.append(got)


WS_TEXT, WS_BINARY, WS_CLOSE, WS_PING, WS_PONG, WS_CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def ws_frame(opcode, payload=b"", fin=True, mask=True, rsv=0, length=None):
    """One raw WebSocket frame, masked like a client's unless mask=False; `length` overrides the length field."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack(">BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack(">BBH", b0, mbit | 126, n)
    else:
        head = struct.pack(">BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def ws_upgrade_request(path="/", host="127.0.0.1", key="dGhlIHNhbXBsZSBub25jZQ==", subprotocol="longlink.v1",
                       origin=None, version="13", extra=""):
    lines = ["GET %s HTTP/1.1" % path, "Host: %s" % host, "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: %s" % key, "Sec-WebSocket-Version: %s" % version]
    if subprotocol:
        lines.append("Sec-WebSocket-Protocol: %s" % subprotocol)
    if origin:
        lines.append("Origin: %s" % origin)
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


class WsClient(Client):
    """A raw WebSocket client over a plain socket, written from RFC 6455: it sends exactly the bytes a test
    asks for (fragments, unmasked frames, bad payloads) and reads the server's frames one by one. send/recv/
    expect/login work as on Client, with every longlink frame carried in one binary message."""

    def __init__(self, port, path="/", upgrade=True, **kw):
        super().__init__(port, **kw)
        self.buf = b""
        self.close_code = None  # set when the server's close frame arrived
        self.close_reason = None
        self.http_status = None
        self.headers = {}
        if upgrade:
            status = self.handshake(ws_upgrade_request(path))
            if status != 101:
                raise AssertionError("upgrade answered %r" % status)

    def handshake(self, request):
        """Sends an upgrade request; returns the HTTP status of the answer (None if closed first)."""
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buf:
            data = self._read()
            if not data:
                return None
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        self.http_status = int(lines[0].split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        return self.http_status

    def _read(self):
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return b""
        self.buf += data
        return data

    def send_frame(self, opcode, payload=b"", **kw):
        self.sock.sendall(ws_frame(opcode, payload, **kw))

    def send(self, op, body=b""):
        rid = self.next_rid
        self.next_rid += 1
        self.send_frame(WS_BINARY, frame(op, body, rid))
        return rid

    def send_raw(self, data):
        """A longlink frame (or any bytes) as one binary message."""
        self.send_frame(WS_BINARY, data)

    def recv_frame(self, timeout=5.0):
        """Next WebSocket frame as (opcode, fin, payload), or None at EOF."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                b0, b1 = self.buf[0], self.buf[1]
                if b1 & 0x80:
                    raise AssertionError("the server sent a masked frame")
                n, off = b1 & 0x7F, 2
                if n == 126:
                    if len(self.buf) >= 4:
                        n, off = struct.unpack_from(">H", self.buf, 2)[0], 4
                    else:
                        n = None
                elif n == 127:
                    if len(self.buf) >= 10:
                        n, off = struct.unpack_from(">Q", self.buf, 2)[0], 10
                    else:
                        n = None
                if n is not None and len(self.buf) >= off + n:
                    payload = self.buf[off:off + n]
                    self.buf = self.buf[off + n:]
                    return b0 & 0x0F, bool(b0 & 0x80), payload
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no WebSocket frame within %.1fs" % timeout)
            self.sock.settimeout(left)
            if not self._read():
                return None

    def recv(self, timeout=5.0):
        """Next longlink frame as (opcode, request_id, fields); None once the server closed (its close frame
        is kept in close_code / close_reason). Pings are answered, pongs skipped."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if got is None:
                return None
            op, fin, payload = got
            if op == WS_CLOSE:
                self.close_code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
                self.close_reason = payload[2:].decode()
                return None
            if op == WS_PING:
                self.send_frame(WS_PONG, payload)
                continue
            if op == WS_PONG:
                continue
            if op != WS_BINARY or not fin:
                raise AssertionError("unexpected WebSocket frame %r fin=%r" % (op, fin))
            n, ver, lop, flags, rid = HEADER.unpack_from(payload)
            if n != len(payload):
                raise AssertionError("message of %d bytes carries a frame of %d" % (len(payload), n))
            return lop, rid, parse(lop, payload[HEADER.size:])

    def wait_close_frame(self, timeout=5.0):
        """Reads until the server's close frame; returns (code, reason, longlink frames before it)."""
        frames = []
        while True:
            got = self.recv(timeout)
            if got is None:
                return self.close_code, self.close_reason, frames
            frames.append(got)


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def gateway_binary():
    path = os.environ.get("LONGLINK_GATEWAY")
    if path:
        return path
    for build in ("build", "build-release"):
        cand = os.path.join(ROOT, build, "gateway", "longlink-gateway")
        if os.path.exists(cand):
            return cand
    raise RuntimeError("set LONGLINK_GATEWAY to the longlink-gateway binary")


class Metrics:
    """One scrape of /metrics in Prometheus text format."""

    def __init__(self, text):
        self.samples = []  # (name, labels dict, value)
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)", line)
            if m:
                labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
                self.samples.append((m.group(1), labels, float(m.group(3))))

    def get(self, name, default=None, **labels):
        """Sum of the samples of a metric whose labels include the given ones."""
        total = 0.0
        found = False
        for n, have, value in self.samples:
            if n == name and all(have.get(k) == str(v) for k, v in labels.items()):
                total += value
                found = True
        if not found:
            if default is not None:
                return default
            raise KeyError("%s%r not in /metrics" % (name, labels))
        return total

    def labels(self, name):
        """Label sets of every sample of a metric."""
        return [have for n, have, _ in self.samples if n == name]


def mint_token(secret, user, device, ttl="1h"):
    """A token from the gateway's own `mint-token` command (a positive ttl such as "1h" or "2s")."""
    out = subprocess.run([gateway_binary(), "mint-token", "--auth-secret=" + secret, "--user=%d" % user,
                          "--device=%d" % device, "--ttl=" + ttl], capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        raise RuntimeError("mint-token failed: %s" % out.stderr)
    return out.stdout.strip()


def token_with_expiry(secret, user, device, expiry_unix_s):
    """A token with any expiry (past ones included), built here from docs/protocol.md 6.1: the gateway's
    mint-token refuses to mint an expired one."""
    import hashlib
    import hmac
    payload = "%d.%d.%d" % (user, device, expiry_unix_s)
    return payload + "." + hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def nats_args(args, data_dir=None):
    """Flags for a gateway on the NATS backend in tests: the shared test server unless --nats-url is given,
    one replica on a single server, short lease and timeouts, and a subject prefix of its own (so suites do not
    see each other's data) unless `data_dir` names one to share: a restart on the same `data_dir` sees the
    same data, as with the local backend."""
    import hashlib
    import natsfix
    args = list(args)
    have = lambda flag: any(a.startswith(flag + "=") or a.startswith(flag.replace("-", "_") + "=") for a in args)
    if not have("--nats-url"):
        args.append("--nats-url=" + natsfix.shared_url())
        if not have("--nats-replicas"):
            args.append("--nats-replicas=1")
    if not have("--nats-prefix"):
        seed = data_dir if data_dir is not None else "%d-%d-%f" % (os.getpid(), id(args), time.time())
        args.append("--nats-prefix=t" + hashlib.sha1(seed.encode()).hexdigest()[:10])
    for flag, value in (("--nats-partitions", "8"), ("--nats-lease", "3s"), ("--nats-timeout", "1s")):
        if not have(flag):
            args.append("%s=%s" % (flag, value))
    return args


class Gateway:
    """Starts the real gateway on ephemeral ports and stops it.

    With the local backend (the default) the gateway gets a fresh temporary --data-dir, removed by terminate(),
    unless `data_dir` is given (kept: a restart on it sees the same data) or the args name --data-dir."""

    def __init__(self, *args, shards=2, data_dir=None, port=0, env=None, nats_ready=True):
        args = list(args)
        # Suites written against the echo backend's semantics (a seq-0 PUSH back for every SEND) run with
        # LONGLINK_TEST_BACKEND=echo (tests/integration/CMakeLists.txt).
        default_backend = os.environ.get("LONGLINK_TEST_BACKEND")
        if default_backend and not any(a.startswith("--backend") for a in args):
            args.append("--backend=" + default_backend)
        # The gateway's default is --auth=token; tests that do not test authentication trust user ids.
        if not any(a.startswith("--auth=") or a == "--auth" for a in args):
            args.append("--auth=none")
        self.tmp_dir = None
        self.data_dir = data_dir
        self.nats_partitions = None
        if "--backend=nats" in args:
            args = nats_args(args, data_dir)
            self.nats_partitions = int(next(a for a in args if a.split("=")[0] in ("--nats-partitions", "--nats_partitions")).split("=")[1])
        uses_local = not any(a in ("--backend=echo", "--backend=nats", "--backend", "echo") for a in args)
        if uses_local and not any(a.startswith("--data-dir") or a.startswith("--data_dir") for a in args):
            if data_dir is None:
                self.tmp_dir = tempfile.mkdtemp(prefix="longlink-data-")
                self.data_dir = self.tmp_dir
            args.append("--data-dir=" + self.data_dir)
        cmd = [gateway_binary(), "--port=%d" % port, "--metrics-port=0", "--bind=127.0.0.1",
               "--metrics-bind=127.0.0.1", "--shards=%d" % shards] + args
        self.cmd = cmd
        full_env = dict(os.environ, **env) if env else None
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)
        self.banner = None
        line = self.proc.stdout.readline()
        m = re.search(r"listening on [^ ]+:(\d+) shards=\d+ metrics=(-?\d+)", line)
        if not m:
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.proc.kill()
            raise RuntimeError("gateway did not start: %r %s" % (line, err))
        self.port = int(m.group(1))
        self.metrics_port = int(m.group(2))
        am = re.search(r" admin=(-?\d+)", line)
        self.admin_port = int(am.group(1)) if am else -1
        ws = re.search(r" ws=(-?\d+)", line)
        self.ws_port = int(ws.group(1)) if ws else -1  # -1 unless started with --ws-port
        self.stderr_text = None
        self.banner = line.strip()
        if self.metrics_port > 0:
            # Ready means the metrics endpoint answers: until its thread serves, a SIGTERM can leave the
            # process unable to stop it (cpp-httplib 0.11 ignores stop() before listening starts).
            self.http_get("/healthz")
            if self.nats_partitions and nats_ready:
                self.wait_partitions()

    def wait_partitions(self, count=None, timeout=30):
        """Until this gateway owns `count` partitions (all of them by default): sends to a partition nobody
        owns yet get a retryable error."""
        want = self.nats_partitions if count is None else count
        self.wait_metric("longlink_backend_nats_owned_partitions", lambda v: v >= want, timeout=timeout)

    def http_get(self, path):
        """(status, body) of a GET on the metrics endpoint; error statuses are returned, not raised."""
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.metrics_port, path), timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def snapshot(self):
        """All samples of one scrape."""
        return Metrics(self.metrics())

    def wait_metric(self, name, predicate, timeout=5.0, **labels):
        """Polls until predicate(value) holds; returns the value, or raises with the last value seen."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.metric(name, **labels)
            except KeyError:
                value = None
            if value is not None and predicate(value):
                return value
            if time.monotonic() >= deadline:
                raise AssertionError("%s%r stayed at %r for %.1fs" % (name, labels, value, timeout))
            time.sleep(0.02)

    def metrics(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics_port, timeout=5) as r:
            return r.read().decode()

    def metric(self, name, **labels):
        """Sum of the samples of a metric whose labels include the given ones."""
        return Metrics(self.metrics()).get(name, **labels)

    def terminate(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self.stderr_text = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        if self.tmp_dir is not None:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
            self.tmp_dir = None
        return rc

    def kill(self):
        """SIGKILL (a crash): nothing is flushed or synced by the gateway itself. The data dir is kept."""
        if self.proc.poll() is None:
            self.proc.kill()
        rc = self.proc.wait(30)
        self.stderr_text = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc

    def admin(self, method, path, body=None, token=None, timeout=10):
        """(status, parsed JSON or text) of a request to the admin API; error statuses are returned."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.admin_port, path), data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token is not None:
            req.add_header("Authorization", "Bearer " + token)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, text = r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.terminate()
