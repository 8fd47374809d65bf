"""The infrastructure of the system-user hub tests (tests/_system.py) does what they rely on:
real accounts, isolated from each other and from root, a venv every one of them can run, and
a hub run as root with ``SparkOpenStackSpawner`` that answers its API. No notebook server is
spawned here."""

from __future__ import annotations

import fcntl
import grp
import importlib.metadata
import os
import pwd
import shutil
import stat
import sys
from pathlib import Path

import pytest

from jupyter_spark_openstack.demo.client import HubClient
from jupyter_spark_openstack.demo.hubconfig import write_hub_config
from jupyter_spark_openstack.demo.hubprocess import kill_processes, processes_under, start_hub
from tests import _system
from tests._system import (  # noqa: F401 - the fixtures root_hub_dir, sys_venv, system_users
    NEEDS_ROOT,
    SystemUsersUnavailable,
    _module_system_users_fixture,
    _root_hub_dir_fixture,
    _sys_venv_fixture,
    _system_users_fixture,
    make_root_hub_dir,
    make_system_users,
    run_as,
    session_prefix,
)

pytestmark = [pytest.mark.hub]

REPO = Path(__file__).resolve().parent.parent


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_hub_config_for_system_users(tmp_path):
    fake = {"python": "/opt/users-venv/bin/python", "spark_home": "/opt/users-venv/pyspark"}
    with make_root_hub_dir() as d:
        text = Path(write_hub_config(d, system_users=fake)["config"]).read_text()
        default = Path(write_hub_config(d / "default")["config"]).read_text()
    assert "c.JupyterHub.spawner_class = 'spark-openstack'\n" in text
    assert "c.Spawner.cmd = ['/opt/users-venv/bin/jupyterhub-singleuser']" in text
    assert "--allow-root" not in text and "home_dir_template" not in text
    assert "c.SparkClusterMixin.user_python = '/opt/users-venv/bin/python'" in text
    assert "c.SparkClusterMixin.spark_home = '/opt/users-venv/pyspark'" in text
    assert f"c.SparkClusterMixin.cluster_run_dir = {str(d / 'clusters')!r}" in text
    assert "'PATH': '/opt/users-venv/bin:/usr/local/bin:/usr/bin:/bin'" in text
    assert "c.JupyterHub.authenticator_class = 'dummy'" in text
    # the default is the demo's: no system users
    assert "c.JupyterHub.spawner_class = 'spark-openstack-simple'" in default
    assert "home_dir_template" in default and "user_python" not in default
    # pytest's tmp dirs are 0700: users could not reach their cluster run directories
    with pytest.raises(ValueError, match="not traversable by other users"):
        write_hub_config(tmp_path / "hub", system_users=fake)


def test_users_have_distinct_uids_own_groups_and_closed_homes(system_users):
    users = system_users(suffixes=["a.b", "a_b", "a-b"])
    prefix = session_prefix()
    assert [u.name for u in users] == [prefix + "a.b", prefix + "a_b", prefix + "a-b"]
    assert len({u.uid for u in users}) == 3 and len({u.gid for u in users}) == 3
    for u in users:
        pw = pwd.getpwnam(u.name)
        assert pw.pw_shell == "/bin/sh" and Path(pw.pw_dir) == u.home
        assert grp.getgrgid(u.gid).gr_name == u.name == u.group
        assert os.getgrouplist(u.name, u.gid) == [u.gid]  # no supplementary group
        assert run_as(u, ["id", "-G"], check=True).stdout.split() == [str(u.gid)]
        assert run_as(u, ["id", "-un"], check=True).stdout.strip() == u.name
        st = u.home.stat()
        assert (st.st_uid, st.st_gid, _mode(u.home)) == (u.uid, u.gid, 0o700)
        assert _mode(u.home.parent) == 0o755
        env = run_as(u, ["env"], check=True).stdout
        assert f"HOME={u.home}\n" in env and "JUPYTER_" not in env and "VIRTUAL_ENV" not in env
    more = system_users(2)  # numbered ones beside the chosen names
    assert len({u.uid for u in users + more}) == 5


@pytest.fixture(scope="module")
def _module_user(module_system_users):
    return module_system_users(1)[0]


def test_module_scoped_users(_module_user):
    assert pwd.getpwnam(_module_user.name).pw_uid == _module_user.uid


@pytest.mark.timeout(1800)  # the first test of a session may build the venv (cold: minutes)
def test_a_user_runs_the_system_venv(sys_venv, system_users):
    (u,) = system_users(1)
    print(f"system venv {sys_venv.path}: {sys_venv.timings}")
    code = ("import os, pyspark, pyarrow, grpc, jupyterhub, ipykernel, jupyter_server, "
            "jupyter_spark_openstack, jupyter_spark_openstack.kernel; "
            "print(os.path.dirname(jupyter_spark_openstack.__file__)); "
            "print(os.path.dirname(pyspark.__file__)); print(jupyterhub.__version__)")
    r = run_as(u, [sys_venv.python, "-c", code])
    assert r.returncode == 0, r.stderr
    pkg, spark, hub_version = r.stdout.split()
    assert Path(pkg).is_relative_to(sys_venv.path), pkg  # installed, not the work tree
    assert Path(spark) == sys_venv.spark_home
    # one JupyterHub: the hub's (this process's) and the users' singleuser servers
    assert hub_version == importlib.metadata.version("jupyterhub")
    # the installed copy is this source (demo/ is not in the wheel: it has no __init__.py)
    installed = Path(pkg) / "_version.py"
    assert installed.read_bytes() == (REPO / installed.relative_to(Path(pkg).parent)).read_bytes()
    r = run_as(u, [sys_venv.bindir / "jupyterhub-singleuser", "--version"])
    assert r.returncode == 0 and r.stdout.strip() == hub_version, r.stderr
    assert run_as(u, ["test", "-x", sys_venv.spark_home / "bin" / "spark-class"]).returncode == 0
    assert (sys_venv.path / "share/jupyter/labextensions/jupyter-spark-openstack/package.json").exists()
    assert (sys_venv.path / "etc/jupyter/jupyter_server_config.d/jupyter_spark_openstack.json").exists()
    # ... and cannot change it
    site = Path(pkg).parent
    assert run_as(u, ["touch", site / "jso-probe"]).returncode != 0
    assert not (site / "jso-probe").exists()
    # reused within the session: the same object, no second install
    assert _system.system_venv_info() is sys_venv and _system.system_venv() == sys_venv.path


def test_a_user_runs_java(system_users):
    (u,) = system_users(1)
    r = run_as(u, ["java", "-version"])
    assert r.returncode == 0, r.stderr
    assert "version" in r.stderr


def test_users_cannot_read_root_or_each_other(system_users):
    a, b = system_users(2)
    r = run_as(b, ["sh", "-c", "echo secret-of-b > ~/secret && chmod 644 ~/secret"])
    assert r.returncode == 0, r.stderr
    for argv in (["ls", "/root"], ["ls", b.home], ["cat", b.home / "secret"],
                 ["touch", b.home / "from-a"]):
        r = run_as(a, argv)
        assert r.returncode != 0 and "Permission denied" in r.stderr, (argv, r)
    assert not (b.home / "from-a").exists()
    assert run_as(b, ["cat", b.home / "secret"]).stdout == "secret-of-b\n"


def test_teardown_removes_users_groups_homes_and_their_tmp_files():
    with pytest.raises(RuntimeError, match="boom"):
        with make_system_users(suffixes=["gone"]) as (u,):
            assert run_as(u, ["java", "-version"]).returncode == 0  # /tmp/hsperfdata_<user>
            assert run_as(u, ["sh", "-c", "echo x > /tmp/$USER-file"]).returncode == 0
            homes = u.home.parent
            raise RuntimeError("boom")
    with pytest.raises(KeyError):
        pwd.getpwnam(u.name)
    with pytest.raises(KeyError):
        grp.getgrnam(u.group)
    assert not homes.exists()
    assert not Path(f"/tmp/hsperfdata_{u.name}").exists()
    assert not Path(f"/tmp/{u.name}-file").exists()


def test_no_root_or_failing_useradd_fails_with_the_command_and_error(tmp_path, monkeypatch,
                                                                      system_users):
    before = set(_system.SCRATCH.glob(f"jso-homes-{session_prefix()}-*"))
    fake = tmp_path / "useradd"
    fake.write_text("#!/bin/sh\necho 'useradd: Permission denied.' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(_system, "USERADD", [str(fake)])
    with pytest.raises(pytest.fail.Exception) as e:  # the test fails, it is not skipped
        system_users(suffixes=["nope"])
    msg = str(e.value)
    assert f"{fake} -m -d" in msg and "useradd: Permission denied." in msg and NEEDS_ROOT in msg
    assert set(_system.SCRATCH.glob(f"jso-homes-{session_prefix()}-*")) == before
    monkeypatch.undo()
    with monkeypatch.context() as m:
        m.setattr(os, "geteuid", lambda: 1000)
        with pytest.raises(SystemUsersUnavailable, match="runs as uid 1000, not root"):
            with make_system_users(1):
                pass


def test_a_root_hub_with_system_users_answers_its_api(sys_venv, system_users, root_hub_dir):
    (u,) = system_users(1)
    assert _mode(root_hub_dir) == 0o711
    hub = start_hub(root_hub_dir, system_users=sys_venv.hub_config())
    try:
        status, info = hub.api("GET", "/info")
        assert status == 200, info
        assert info["spawner"]["class"] == "jupyter_spark_openstack.spawner.SparkOpenStackSpawner"
        assert info["authenticator"]["class"].endswith("DummyAuthenticator")
        client = HubClient(hub.url, hub.token)
        client.login(u.name, hub.info["password"])  # any existing user name, the shared password
        status, model = hub.api("GET", f"/users/{u.name}")
        assert status == 200 and model["servers"] == {}, model
        log = hub.log_path.read_text()
        unknown = [line for line in log.splitlines() if "not recognized" in line]
        if unknown:  # user_python / spark_home are being added to SparkClusterMixin
            print("config the hub does not know yet:", *unknown, sep="\n", file=sys.stderr)
    finally:
        hub.stop()
        left = processes_under(root_hub_dir)
        kill_processes(left)
    assert not left, [p.cmdline()[:3] for p in left]


def test_a_killed_venv_build_is_never_taken_for_done(sys_venv):
    """A build goes to ``<link>.<random>``; only a complete one gets the link. What a killed
    build left is removed under the lock by the next session."""
    link = next(p for p in sys_venv.path.parent.glob("test-venv-*")
                if p.is_symlink() and p.resolve() == sys_venv.path)
    half = link.parent / f"{link.name}.killed00"
    (half / "bin").mkdir(parents=True)
    try:
        with open(f"{link}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _system._cleanup_partial_builds(link)
        assert not half.exists()
        assert link.resolve() == sys_venv.path and (sys_venv.path / ".jso-complete").exists()
        assert _mode(link.parent) == 0o755 and _system.untraversable_ancestor(sys_venv.python) is None
    finally:
        shutil.rmtree(half, ignore_errors=True)
