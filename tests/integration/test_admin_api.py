"""The admin HTTP API of the local backend: push to users and groups, kick, online query, groups, stats,
the bearer token and error answers."""
import base64
import json
import unittest
import urllib.error
import urllib.request

import llclient as ll
from gwtest import GatewayTestCase
from test_local_messaging import LocalClient, users_on_distinct_shards

TOKEN = "s3cret-admin"


class AdminApiTest(GatewayTestCase):
    shards = 3
    gateway_args = ("--admin-port=0", "--admin-token=" + TOKEN)

    def api(self, method, path, body=None, token=TOKEN):
        return self.gw.admin(method, path, body, token=token)

    def local(self, user, device=1):
        return LocalClient(self.login(user, device), user, device)

    def test_token_is_required(self):
        self.assertGreater(self.gw.admin_port, 0)
        status, body = self.api("GET", "/v1/stats", token=None)
        self.assertEqual(status, 401)
        self.assertIn("error", body)
        status, _ = self.api("GET", "/v1/stats", token="wrong")
        self.assertEqual(status, 401)
        status, body = self.api("GET", "/v1/stats")
        self.assertEqual(status, 200)
        self.assertEqual(len(body["shards"]), 3)

    def test_push_to_users_is_stored_and_pushed(self):
        online, offline = users_on_distinct_shards(2, 10_000)
        c = self.local(online)
        status, body = self.api("POST", "/v1/push", {"users": [online, offline], "payload": "notice"})
        self.assertEqual(status, 200, body)
        p = c.wait_pushes([1])[0]
        self.assertEqual((p["from_user"], p["payload"], p["server_msg_id"]), (0, b"notice", body["server_msg_id"]))
        d = self.local(offline)
        got, _ = d.sync_all()
        self.assertEqual([x["payload"] for x in got], [b"notice"])
        status, body = self.api("POST", "/v1/push", {"users": [online],
                                                     "payload_base64": base64.b64encode(b"\x00\xffbin").decode()})
        self.assertEqual(status, 200, body)
        self.assertEqual(c.wait_pushes([2])[0]["payload"], b"\x00\xffbin")

    def test_groups_and_push_to_a_group(self):
        status, body = self.api("POST", "/v1/groups", {"group": 9001, "members": [20_001, 20_002]})
        self.assertEqual(status, 201, body)
        self.assertEqual(self.api("POST", "/v1/groups", {"group": 9001})[0], 409)
        status, body = self.api("POST", "/v1/groups/9001/members", {"users": [20_003, 20_004]})
        self.assertEqual(status, 200, body)
        status, body = self.api("DELETE", "/v1/groups/9001/members", {"users": [20_002]})
        self.assertEqual(status, 200, body)
        self.assertEqual(self.api("DELETE", "/v1/groups/9001/members", {"users": [20_002]})[0], 404)
        status, body = self.api("GET", "/v1/groups/9001")
        self.assertEqual((status, body["members"]), (200, [20_001, 20_003, 20_004]))
        self.assertEqual(self.api("GET", "/v1/groups/9002")[0], 404)
        members = [self.local(u) for u in (20_001, 20_003, 20_004)]
        outsider = self.local(20_002)
        status, body = self.api("POST", "/v1/push", {"group": 9001, "payload": "to the group"})
        self.assertEqual(status, 200, body)
        for m in members:
            p = m.wait_pushes([1])[0]
            self.assertEqual((p["conv_kind"], p["conv_id"], p["payload"]), (ll.GROUP, 9001, b"to the group"))
        self.assertAlive(outsider.c)
        self.assertEqual(outsider.pushes, {})
        self.assertEqual(self.api("POST", "/v1/push", {"group": 9999, "payload": "x"})[0], 404)
        # A member who joined through the API can send to the group over the protocol.
        ack = members[0].send_acked(9001, 1, b"hi all", kind=ll.GROUP)
        self.assertEqual(members[1].wait_pushes([2])[0]["server_msg_id"], ack["server_msg_id"])

    def test_online_query_and_kick(self):
        user = 30_000
        status, body = self.api("GET", "/v1/users/%d" % user)
        self.assertEqual((status, body["online"], body["devices"]), (200, False, []))
        d1 = self.local(user, 1)
        d2 = self.local(user, 2)
        d2.c.send(ll.PUSH_ACK, ll.push_ack_body(0))
        status, body = self.api("GET", "/v1/users/%d" % user)
        self.assertEqual(status, 200)
        self.assertTrue(body["online"])
        self.assertEqual(sorted(d["device"] for d in body["devices"]), [1, 2])
        status, body = self.api("POST", "/v1/kick", {"user": user, "device": 2})
        self.assertEqual((status, body["kicked"]), (200, 1))
        frames = self.assertClosed(d2.c)
        self.assertEqual(frames[-1][0], ll.KICK)
        self.assertEqual(frames[-1][2]["code"], 2)  # ADMIN
        self.assertAlive(d1.c)
        self.wait_until(lambda: [d["device"] for d in self.api("GET", "/v1/users/%d" % user)[1]["devices"]] == [1],
                        what="device 2 gone")
        status, body = self.api("POST", "/v1/kick", {"user": user})
        self.assertEqual((status, body["kicked"]), (200, 1))
        self.assertClosed(d1.c)
        self.wait_until(lambda: not self.api("GET", "/v1/users/%d" % user)[1]["online"], what="offline")

    def test_bad_requests(self):
        cases = [
            ("POST", "/v1/push", {"payload": "x"}, 400),
            ("POST", "/v1/push", {"users": [1], "group": 2, "payload": "x"}, 400),
            ("POST", "/v1/push", {"users": [1]}, 400),
            ("POST", "/v1/push", {"users": ["a"], "payload": "x"}, 400),
            ("POST", "/v1/push", {"users": [1], "payload_base64": "!!"}, 400),
            ("POST", "/v1/kick", {}, 400),
            ("POST", "/v1/groups", {"members": [1]}, 400),
            ("GET", "/v1/users/0", None, 400),
        ]
        for method, path, body, want in cases:
            with self.subTest(path=path, body=body):
                status, got = self.api(method, path, body)
                self.assertEqual(status, want, got)
                self.assertIn("error", got)
        url = "http://127.0.0.1:%d/v1/push" % self.gw.admin_port
        auth = {"Authorization": "Bearer " + TOKEN}
        req = urllib.request.Request(url, data=b"{not json", method="POST",
                                     headers=dict(auth, **{"Content-Type": "application/json"}))
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=5)
        self.assertEqual(e.exception.code, 400)
        self.assertIn("invalid JSON", json.loads(e.exception.read())["error"])
        # Too deep, and a body that is not an object.
        for body, why in ((b"[" * 40 + b"]" * 40, "deeper"), (b"[1,2]", "object")):
            req = urllib.request.Request(url, data=body, method="POST",
                                         headers=dict(auth, **{"Content-Type": "application/json"}))
            with self.assertRaises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(req, timeout=5)
            self.assertEqual(e.exception.code, 400)
            self.assertIn(why, json.loads(e.exception.read())["error"])

    def test_only_json_from_the_same_origin(self):
        """A web page elsewhere cannot drive the API: a body must be application/json (a cross-site form or
        text/plain fetch cannot send that without a preflight), and a browser's cross-origin request is
        refused whatever it carries."""
        url = "http://127.0.0.1:%d/v1/kick" % self.gw.admin_port
        body = json.dumps({"user": 5}).encode()
        auth = {"Authorization": "Bearer " + TOKEN}
        for headers, want in (({"Content-Type": "text/plain"}, 415),
                              ({}, 415),
                              ({"Content-Type": "application/json", "Origin": "http://evil.example"}, 403),
                              ({"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, 403),
                              ({"Content-Type": "application/json; charset=utf-8"}, 200),
                              ({"Content-Type": "application/json",
                                "Origin": "http://127.0.0.1:%d" % self.gw.admin_port}, 200)):
            with self.subTest(headers=headers):
                req = urllib.request.Request(url, data=body, method="POST", headers=dict(auth, **headers))
                try:
                    with urllib.request.urlopen(req, timeout=5) as r:
                        status = r.status
                except urllib.error.HTTPError as e:
                    status = e.code
                self.assertEqual(status, want)


if __name__ == "__main__":
    unittest.main()
