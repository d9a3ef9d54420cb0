"""The web chat page (web/) served by the admin HTTP server with --web-root, and driven in a real browser:
headless Chromium (Debian chromium + chromium-driver) through Selenium (python3-selenium). Two tabs log in as
two users over the gateway's WebSocket listener, watch each other's presence, exchange messages, and each
tab's screenshot is kept. The static-file tests need no browser."""
import http.client
import os
import shutil
import sys
import tempfile
import time
import unittest

import llclient as ll

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WEB_ROOT = os.path.join(ll.ROOT, "web")
SCREENSHOT_COPY = os.path.join(ll.ROOT, "docs", "img", "web-chat.png")
TOKEN = "s3cret-admin"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def http_request(port, path, method="GET", headers=None):
    """(status, headers dict with lower-case names, body bytes); the path is sent exactly as given."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


class WebFilesTest(unittest.TestCase):
    """GET / and the page's files without the bearer token; the API keeps it; nothing outside the root."""

    @classmethod
    def setUpClass(cls):
        cls.gw = ll.Gateway("--ws-port=0", "--admin-port=0", "--admin-token=" + TOKEN, "--web-root=" + WEB_ROOT,
                            shards=1)

    @classmethod
    def tearDownClass(cls):
        rc = cls.gw.terminate()
        if rc != 0:
            sys.stderr.write(cls.gw.stderr_text or "")
            raise AssertionError("gateway exited with %r" % rc)

    def get(self, path, **kw):
        return http_request(self.gw.admin_port, path, **kw)

    def test_page_and_assets_need_no_token(self):
        with open(os.path.join(WEB_ROOT, "chat.html"), "rb") as f:
            page = f.read()
        for path in ("/", "/?ws=ws://127.0.0.1:1/", "/chat.html"):
            status, headers, body = self.get(path)
            self.assertEqual(status, 200, path)
            self.assertEqual(headers["content-type"], "text/html; charset=utf-8")
            self.assertEqual(headers["x-content-type-options"], "nosniff")
            self.assertEqual(body, page)
        for name, ctype in (("chat.js", "text/javascript; charset=utf-8"), ("chat.css", "text/css; charset=utf-8")):
            status, headers, body = self.get("/" + name)
            self.assertEqual((status, headers["content-type"]), (200, ctype), name)
            with open(os.path.join(WEB_ROOT, name), "rb") as f:
                self.assertEqual(body, f.read())
        status, headers, body = self.get("/chat.js", method="HEAD")
        self.assertEqual((status, body), (200, b""))

    def test_api_keeps_its_token(self):
        self.assertEqual(self.get("/v1/stats")[0], 401)
        self.assertEqual(self.get("/v1/stats", headers={"Authorization": "Bearer " + TOKEN})[0], 200)
        # Only GET and HEAD reach the static files; anything else still needs the token.
        self.assertEqual(self.get("/chat.html", method="POST")[0], 401)

    def test_no_traversal_or_absolute_paths(self):
        with open(os.path.join(ll.ROOT, "README.md"), "rb") as f:
            readme = f.read()[:40]
        bad = ["/../README.md", "/..%2fREADME.md", "/%2e%2e/README.md", "/%2E%2E/%2E%2E/etc/passwd",
               "/web/../chat.html", "/chat.js/../../README.md", "/./chat.js", "//etc/passwd", "/%2fetc%2fpasswd",
               "/..\\README.md", "/.hidden.txt", "/chat.js%00.html", "/../web/chat.html", "/a//chat.js"]
        for path in bad:
            with self.subTest(path=path):
                status, _, body = self.get(path)
                self.assertIn(status, (400, 404), body)
                self.assertNotIn(readme, body)
                self.assertNotIn(b"root:", body)
        for path in ("/README.md", "/nope.js", "/chat", "/web/chat.html"):
            with self.subTest(path=path):
                self.assertEqual(self.get(path)[0], 404)

    def test_symlink_out_of_the_root_is_not_followed(self):
        root = tempfile.mkdtemp(prefix="longlink-web-")
        try:
            shutil.copy(os.path.join(WEB_ROOT, "chat.html"), root)
            os.symlink(os.path.join(ll.ROOT, "README.md"), os.path.join(root, "leak.txt"))
            with ll.Gateway("--admin-port=0", "--web-root=" + root, shards=1) as gw:
                self.assertEqual(http_request(gw.admin_port, "/")[0], 200)
                status, _, body = http_request(gw.admin_port, "/leak.txt")
                self.assertEqual(status, 404, body)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def test_off_without_web_root(self):
        with ll.Gateway("--admin-port=0", shards=1) as gw:
            self.assertEqual(http_request(gw.admin_port, "/")[0], 404)
            self.assertEqual(http_request(gw.admin_port, "/chat.js")[0], 404)


def browser_unavailable():
    """Why the browser test cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return "%s is missing (Debian packages chromium and chromium-driver; scripts/deps.sh installs them)" % path
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "python3-selenium is not installed for %s (scripts/deps.sh installs it)" % sys.executable
    return None


class WebChatBrowserTest(unittest.TestCase):
    """Two tabs of headless Chromium chat through the real gateway."""

    @classmethod
    def setUpClass(cls):
        reason = browser_unavailable()
        if reason:
            print("SKIP test_web_chat browser test: " + reason, flush=True)
            raise unittest.SkipTest(reason)
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        cls.tmp = tempfile.mkdtemp(prefix="longlink-web-chat-")
        # A short heartbeat: the page must PING every second or be dropped after 3 s of silence.
        cls.gw = ll.Gateway("--ws-port=0", "--admin-port=0", "--admin-token=" + TOKEN, "--web-root=" + WEB_ROOT,
                            "--heartbeat-interval=1s", "--heartbeat-timeout=3s", shards=2)
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1000,800",
                    "--disable-dev-shm-usage", "--user-data-dir=" + os.path.join(cls.tmp, "profile")):
            opts.add_argument(arg)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        try:
            cls.driver = webdriver.Chrome(service=Service(CHROMEDRIVER, log_path=os.path.join(cls.tmp, "driver.log")),
                                          options=opts)
        except Exception:
            cls.gw.terminate()
            raise
        cls.driver.set_page_load_timeout(30)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.driver.quit()
        finally:
            rc = cls.gw.terminate()
            shutil.rmtree(cls.tmp, ignore_errors=True)
            if rc != 0:
                sys.stderr.write(cls.gw.stderr_text or "")
                raise AssertionError("gateway exited with %r" % rc)

    # ---- helpers ----

    def wait(self, what, predicate, timeout=10):
        from selenium.webdriver.support.ui import WebDriverWait
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(lambda d: predicate())
        except Exception:
            state = self.driver.find_element("id", "conn-state").text
            error = self.driver.find_element("id", "last-error").text
            raise AssertionError("timed out waiting for %s (connection %r, error %r, messages %r)"
                                 % (what, state, error, self.messages()))

    def fill(self, element_id, value):
        el = self.driver.find_element("id", element_id)
        el.clear()
        el.send_keys(str(value))

    def click(self, element_id):
        self.driver.find_element("id", element_id).click()

    def attr(self, element_id, name):
        els = self.driver.find_elements("id", element_id)
        return els[0].get_attribute(name) if els else None

    def messages(self):
        """The page's message list as dicts (class, text, peer, seq, state)."""
        return self.driver.execute_script("""
            return [...document.querySelectorAll('#messages li')].map(li => ({
              kind: li.className, text: li.querySelector('.text').textContent, peer: li.dataset.peer,
              seq: li.dataset.seq || null, state: li.dataset.state || null,
              server_msg_id: li.dataset.serverMsgId || null}));""")

    def open_tab(self, url, new):
        if new:
            self.driver.switch_to.new_window("tab")
        self.driver.get(url)
        return self.driver.current_window_handle

    def log_in(self, user):
        self.fill("user-id", user)
        self.fill("device-id", 1)
        self.click("login-btn")
        self.wait("login of user %d" % user, lambda: self.attr("conn-state", "data-state") == "online")

    def watch(self, peer, online):
        if self.driver.find_elements("id", "presence-%d" % peer) == []:
            self.fill("peer-id", peer)
            self.click("subscribe-btn")
        want = "1" if online else "0"
        self.wait("presence of %d = %s" % (peer, want), lambda: self.attr("presence-%d" % peer, "data-online") == want)

    def send(self, to, text):
        self.fill("to-id", to)
        self.fill("msg-text", text)
        self.click("send-btn")

    def find(self, kind, text):
        return [m for m in self.messages() if m["kind"] == kind and m["text"] == text]

    def screenshot(self, name):
        path = os.path.join(self.tmp, name)
        self.assertTrue(self.driver.save_screenshot(path))
        with open(path, "rb") as f:
            data = f.read()
        self.assertGreater(len(data), 1000)
        self.assertEqual(data[:8], PNG_SIGNATURE)
        return path

    # ---- the test ----

    def test_two_tabs_chat(self):
        gw = self.gw
        url = "http://127.0.0.1:%d/?ws=ws://127.0.0.1:%d/" % (gw.admin_port, gw.ws_port)
        tab_a = self.open_tab(url, new=False)
        self.assertEqual(self.driver.title, "longlink web chat")
        self.log_in(1)
        tab_b = self.open_tab(url, new=True)
        self.log_in(2)

        self.watch(1, online=True)
        self.driver.switch_to.window(tab_a)
        self.watch(2, online=True)

        # A -> B. Delivered means stored by the server (SEND_ACK ok) and pushed back to A's own device (6.5.1);
        # it says nothing about B having read it: the protocol has no read receipts.
        self.send(2, "hello from A")
        self.wait("A's message delivered", lambda: [m["state"] for m in self.find("sent", "hello from A")] == ["delivered"])
        sent = self.find("sent", "hello from A")[0]
        self.assertEqual((sent["peer"], sent["seq"]), ("2", "1"))
        self.assertTrue(sent["server_msg_id"])

        self.driver.switch_to.window(tab_b)
        self.wait("B receives it", lambda: len(self.find("received", "hello from A")) == 1)
        got = self.find("received", "hello from A")[0]
        self.assertEqual((got["peer"], got["seq"]), ("1", "1"))
        self.send(1, "hi A, this is B \u2713")
        self.wait("B's reply delivered", lambda: [m["state"] for m in self.find("sent", "hi A, this is B \u2713")] == ["delivered"])

        self.driver.switch_to.window(tab_a)
        self.wait("A receives the reply", lambda: len(self.find("received", "hi A, this is B \u2713")) == 1)
        self.assertEqual([(m["kind"], m["seq"]) for m in self.messages()], [("sent", "1"), ("received", "2")])

        # The heartbeat keeps both tabs online past the 3 s timeout, and PUSH_ACK moved each device's cursor.
        time.sleep(4)
        for tab in (tab_a, tab_b):
            self.driver.switch_to.window(tab)
            self.assertEqual(self.attr("conn-state", "data-state"), "online")
        self.assertGreater(gw.metric("longlink_gateway_frames_received_total", opcode="ping"), 0)
        for user in (1, 2):
            status, body = gw.admin("GET", "/v1/users/%d" % user, token=TOKEN)
            self.assertEqual(status, 200, body)
            self.assertEqual([d["cursor"] for d in body["devices"]], [2], body)

        self.driver.switch_to.window(tab_a)
        shot_a = self.screenshot("tab-a.png")
        self.driver.switch_to.window(tab_b)
        self.screenshot("tab-b.png")
        # The README's picture: written when missing or on request, so a test run leaves the tree clean.
        if not os.path.exists(SCREENSHOT_COPY) or os.environ.get("LONGLINK_UPDATE_SCREENSHOT") == "1":
            os.makedirs(os.path.dirname(SCREENSHOT_COPY), exist_ok=True)
            shutil.copyfile(shot_a, SCREENSHOT_COPY)

        # B logs out: A sees B go offline.
        self.click("logout-btn")
        self.wait("B closed", lambda: self.attr("conn-state", "data-state") == "closed")
        self.driver.switch_to.window(tab_a)
        self.watch(2, online=False)

        severe = [e for e in self.driver.get_log("browser") if e.get("level") == "SEVERE"]
        self.assertEqual(severe, [])


if __name__ == "__main__":
    unittest.main()
