"""Least privilege for the admin view, against a real JupyterHub (the project's spawner, local
provisioner, real Spark clusters of 1 worker): the admin's notebook-server token
(``$JUPYTERHUB_API_TOKEN``, readable by every kernel) has JupyterHub's default scopes and can
neither list users nor stop a server; the admin API acts with the browser admin's own OAuth
token (issued through her server's OAuth client with the admin view's scopes); a non-admin's
token has none of them and the admin API answers her 403."""

from __future__ import annotations

import json
import time

import pytest

from jupyter_spark_openstack.demo.client import HubClient
from jupyter_spark_openstack.demo.hubprocess import (
    start_hub,
    stop_hub_leaving_nothing,
)

pytestmark = [pytest.mark.hub, pytest.mark.spark]

ADMIN_VIEW_SCOPES = {"list:users", "read:users", "read:servers", "admin:server_state", "servers"}
ADMIN_API = "spark-openstack/api/admin/clusters"

# run in the admin's kernel: what any code there can do with the server's token
KERNEL_PROBE = r'''
import json, os, urllib.error, urllib.request
api = os.environ["JUPYTERHUB_API_URL"].rstrip("/")
server = os.environ["JUPYTERHUB_SERVICE_URL"].rstrip("/")
token = os.environ["JUPYTERHUB_API_TOKEN"]

def call(method, url):
    req = urllib.request.Request(url, method=method, headers={"Authorization": "token " + token})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return [r.status, r.read().decode(errors="replace")]
    except urllib.error.HTTPError as e:
        return [e.code, e.read().decode(errors="replace")]

def short(answer):
    return [answer[0], answer[1][:300]]

me_status, me_body = call("GET", api + "/user")
me = json.loads(me_body) if me_status == 200 else {}
print("PROBE" + json.dumps({
    "token_set": bool(token),
    "me": [me_status, {k: me.get(k) for k in ("name", "kind", "scopes")}],
    "list_users": short(call("GET", api + "/users")),
    "admin_api_list": short(call("GET", server + "/spark-openstack/api/admin/clusters")),
    "admin_api_stop": short(call("DELETE", server + "/spark-openstack/api/admin/clusters/alice")),
    "stop_alice": short(call("DELETE", api + "/users/alice/server")),
}))
'''


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    d = tmp_path_factory.mktemp("hub-admin-scopes")
    h = start_hub(d, admin_users=("admin",), spawner_overrides={"cluster_start_timeout": 240.0})
    h.client = HubClient(h.url, h.token)
    try:
        for user in ("alice", "admin"):  # one after the other: 2 cores here
            r = h.client.spawn(user, {"workers": 1, "size": "small"})
            assert r.status_code in (201, 202), f"{r.text}\n{h.log_tail(60)}"
            h.client.wait_ready(user)
        yield h
    finally:
        stop_hub_leaving_nothing(h)


def _browser_login(hub, user):
    """Log in through the hub's form and open the user's lab, as a browser does: the server's
    OAuth dance leaves its cookie (the user's OAuth token) in the session."""
    s = hub.client.login(user, hub.info["password"])
    r = s.get(f"{hub.url}/user/{user}/lab", timeout=120)
    assert r.status_code == 200, f"{r.status_code} {r.url}\n{r.text[:300]}"
    assert "/user/" + user + "/lab" in r.url, r.url
    return s


def _xsrf(s, user):
    for cookie in s.cookies:
        if cookie.name == "_xsrf" and cookie.path.startswith(f"/user/{user}"):
            return cookie.value
    raise AssertionError(f"no _xsrf cookie for /user/{user}/: {[(c.name, c.path) for c in s.cookies]}")


def _tokens(hub, user):
    r = hub.client.api("GET", f"/users/{user}/tokens")
    r.raise_for_status()
    return r.json()["api_tokens"]


def test_the_admins_server_token_cannot_list_users_or_stop_servers(hub):
    c = hub.client
    specs = c.kernelspecs("admin")["kernelspecs"]
    assert "python3" in specs, sorted(specs)
    kid = c.start_kernel("admin", "python3")
    try:
        res = c.execute("admin", kid, KERNEL_PROBE, timeout=180)
    finally:
        c.delete_kernel("admin", kid)
    assert res["error"] is None, res
    probe = json.loads(res["text"].split("PROBE", 1)[1])
    assert probe["token_set"]
    status, me = probe["me"]
    assert status == 200, me  # a valid token of the admin ...
    assert me["name"] == "admin" and me["kind"] == "user"
    assert not ADMIN_VIEW_SCOPES & set(me["scopes"]), me["scopes"]  # ... with no admin scope
    assert "users:activity!user=admin" in me["scopes"], me["scopes"]
    status, body = probe["list_users"]
    assert status == 403, body
    status, body = probe["stop_alice"]
    assert status == 403, body
    # nor through the admin API of her own server
    status, body = probe["admin_api_list"]
    assert status == 403, body
    assert "lacks the scopes" in json.loads(body)["message"], body
    status, body = probe["admin_api_stop"]
    assert status == 403, body
    srv = c.server("alice")
    assert srv is not None and srv["ready"] and not srv["pending"], srv

    # the token the hub made for her server (what the kernel used), seen from the hub
    server_tokens = [t for t in _tokens(hub, "admin")
                     if t["note"] == "Server at /user/admin/" and t["oauth_client"] == "JupyterHub"]
    assert len(server_tokens) == 1, _tokens(hub, "admin")
    for t in server_tokens:
        assert not ADMIN_VIEW_SCOPES & set(t["scopes"]), t


def test_the_admin_lists_clusters_with_her_own_login(hub):
    s = _browser_login(hub, "admin")
    r = s.get(f"{hub.url}/user/admin/{ADMIN_API}", timeout=60)
    assert r.status_code == 200, r.text
    rows = {row["user"]: row for row in r.json()["clusters"]}
    assert set(rows) == {"admin", "alice"}, rows
    for row in rows.values():
        assert row["state"] == "running", row
        assert (row["workers"], row["cores"], row["memory_mb"]) == (1, 1, 1024), row
        assert row["master_url"].startswith("spark://127.0.0.1:"), row
    # the hub issued her browser an OAuth token of her server's client with the admin scopes
    oauth = [t for t in _tokens(hub, "admin") if t.get("oauth_client") == "Server at /user/admin/"]
    assert oauth, _tokens(hub, "admin")
    assert ADMIN_VIEW_SCOPES <= set(oauth[-1]["scopes"]), oauth[-1]["scopes"]


def test_a_non_admin_gets_403_and_her_token_has_no_admin_scope(hub):
    s = _browser_login(hub, "alice")
    r = s.get(f"{hub.url}/user/alice/{ADMIN_API}", timeout=60)
    assert r.status_code == 403, r.text
    assert r.json()["message"] == "Only JupyterHub admins can see every user's Spark cluster"
    r = s.delete(f"{hub.url}/user/alice/{ADMIN_API}/admin", timeout=60,
                 headers={"X-XSRFToken": _xsrf(s, "alice")})
    assert r.status_code == 403, r.text
    assert r.json()["message"] == "Only JupyterHub admins can see every user's Spark cluster"
    srv = hub.client.server("admin")
    assert srv is not None and srv["ready"], srv
    oauth = [t for t in _tokens(hub, "alice") if t.get("oauth_client") == "Server at /user/alice/"]
    assert oauth, _tokens(hub, "alice")
    for t in oauth:
        assert not ADMIN_VIEW_SCOPES & set(t["scopes"]), t


def test_the_admin_stops_alices_server_with_her_own_login(hub):
    """Last: it stops alice's server."""
    s = _browser_login(hub, "admin")
    r = s.delete(f"{hub.url}/user/admin/{ADMIN_API}/alice", timeout=120,
                 headers={"X-XSRFToken": _xsrf(s, "admin")})
    assert r.status_code in (202, 204), r.text
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and hub.client.server("alice") is not None:
        time.sleep(1)
    assert hub.client.server("alice") is None, "alice's server is still there"
    r = s.get(f"{hub.url}/user/admin/{ADMIN_API}", timeout=60)
    assert r.status_code == 200, r.text
    assert [row["user"] for row in r.json()["clusters"]] == ["admin"]
