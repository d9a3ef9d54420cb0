"""Real nats-server processes for the tests of the NATS backend: one server, or a cluster of three with
JetStream, on free loopback ports, each with its own store directory; stopped by PID.

Suites that run with LONGLINK_TEST_BACKEND=nats get a shared single server (or the one LONGLINK_TEST_NATS_URL
names); the cluster tests start their own.
"""
import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request


def nats_server_binary():
    return os.environ.get("LONGLINK_NATS_SERVER", shutil.which("nats-server") or "/usr/bin/nats-server")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def server_version():
    out = subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True).stdout
    # "nats-server: v2.10.27"
    v = out.strip().rsplit("v", 1)[-1]
    return tuple(int(x) for x in v.split(".")[:3])


class NatsNode:
    """One nats-server process (JetStream on), optionally a member of a cluster."""

    def __init__(self, name, store_dir, port=None, monitor_port=None, cluster_port=None, routes=(),
                 cluster_name="longlink-test"):
        self.name = name
        self.store_dir = store_dir
        self.port = port or free_port()
        self.monitor_port = monitor_port or free_port()
        self.cluster_port = cluster_port
        self.routes = list(routes)
        self.cluster_name = cluster_name
        self.proc = None
        self.log_path = os.path.join(store_dir, name + ".log")

    @property
    def url(self):
        return "nats://127.0.0.1:%d" % self.port

    @property
    def monitor_url(self):
        return "http://127.0.0.1:%d" % self.monitor_port

    def write_config(self):
        lines = [
            'server_name: "%s"' % self.name,
            'listen: "127.0.0.1:%d"' % self.port,
            'http: "127.0.0.1:%d"' % self.monitor_port,
            "max_payload: 1048576",
            "jetstream {",
            '  store_dir: "%s"' % os.path.join(self.store_dir, self.name),
            "  max_memory_store: 268435456",
            "  max_file_store: 2147483648",
            "}",
        ]
        if self.cluster_port:
            lines += [
                "cluster {",
                '  name: "%s"' % self.cluster_name,
                '  listen: "127.0.0.1:%d"' % self.cluster_port,
                "  routes: [%s]" % ", ".join('"nats-route://127.0.0.1:%d"' % p for p in self.routes),
                "}",
            ]
        path = os.path.join(self.store_dir, self.name + ".conf")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def start(self):
        conf = self.write_config()
        if getattr(self, "log", None):
            self.log.close()
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen([nats_server_binary(), "-c", conf], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("nats-server %s exited: %s" % (self.name, self.tail()))
            try:
                # /varz answers once the server listens; /healthz waits for a JetStream meta leader, which a
                # cluster node gets only with its peers up.
                with urllib.request.urlopen(self.monitor_url + "/varz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("nats-server %s did not become healthy: %s" % (self.name, self.tail()))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL: a crash of this node."""
        if self.running():
            self.proc.kill()
            self.proc.wait(10)

    def stop(self):
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if getattr(self, "log", None):
            self.log.close()
            self.log = None

    def varz(self):
        with urllib.request.urlopen(self.monitor_url + "/varz", timeout=5) as r:
            return json.loads(r.read())

    def jsz(self, **params):
        q = "&".join("%s=%s" % kv for kv in params.items())
        with urllib.request.urlopen(self.monitor_url + "/jsz?" + q, timeout=5) as r:
            return json.loads(r.read())

    def tail(self, n=20):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


class NatsCluster:
    """`size` nats-server nodes routed to each other (size 1: a single server, no cluster block)."""

    def __init__(self, size=3):
        self.dir = tempfile.mkdtemp(prefix="longlink-nats-")
        cports = [free_port() for _ in range(size)] if size > 1 else [None]
        self.nodes = []
        for i in range(size):
            routes = [p for j, p in enumerate(cports) if j != i] if size > 1 else []
            self.nodes.append(NatsNode("n%d" % (i + 1), self.dir, cluster_port=cports[i], routes=routes))

    def start(self):
        try:
            for n in self.nodes:
                n.start()
            if len(self.nodes) > 1:
                self.wait_meta_leader()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_meta_leader(self, timeout=30):
        """Until JetStream's meta group has a leader (a cluster accepts stream creation only then)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for n in self.nodes:
                if not n.running():
                    continue
                try:
                    meta = n.jsz().get("meta_cluster") or {}
                except OSError:
                    continue
                if meta.get("leader"):
                    return meta["leader"]
            time.sleep(0.1)
        raise RuntimeError("no JetStream meta leader within %ss" % timeout)

    @property
    def urls(self):
        return ",".join(n.url for n in self.nodes)

    @property
    def monitor_urls(self):
        return ",".join(n.monitor_url for n in self.nodes)

    def stop(self):
        for n in self.nodes:
            n.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


_shared = None


def shared_url():
    """The server suites run against with LONGLINK_TEST_BACKEND=nats: LONGLINK_TEST_NATS_URL, or a single
    server started on first use and stopped when the test process ends."""
    global _shared
    url = os.environ.get("LONGLINK_TEST_NATS_URL")
    if url:
        return url
    if _shared is None:
        _shared = NatsCluster(1).start()
        atexit.register(_shared.stop)
    return _shared.urls


def request(url, subject, payload=b"", timeout=5.0):
    """One request over the NATS client protocol (plain text over TCP): the reply's payload, or None when
    none came in time. Enough for the JetStream API calls the tests make (leader stepdowns, stream info)."""
    host, port = url.split("//", 1)[-1].split(",")[0].rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    try:
        f = s.makefile("rb")
        f.readline()  # INFO
        inbox = "_INBOX.t%d" % int(time.monotonic() * 1e6)
        s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":false}\r\n')
        s.sendall(b"SUB %s 1\r\n" % inbox.encode())
        s.sendall(b"PUB %s %s %d\r\n%s\r\nPING\r\n" % (subject.encode(), inbox.encode(), len(payload), payload))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = f.readline()
            if not line:
                return None
            if line.startswith(b"PING"):
                s.sendall(b"PONG\r\n")
            elif line.startswith(b"MSG "):
                n = int(line.split()[-1])
                data = f.read(n + 2)[:n]
                return data
            elif line.startswith(b"-ERR"):
                raise RuntimeError(line.decode().strip())
        return None
    except socket.timeout:
        return None
    finally:
        s.close()
