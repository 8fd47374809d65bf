"""The container boot backend's mechanism (``testing/machines/container.py``, issue 11 parts 1
and 2): the machine image booted as a system container with systemd-nspawn on a per-server
overlay, the real cloud-init reading a NoCloud seed, a tenant network in a namespace of its
own with the hub's address on the host, reboot through the machine's own systemd, and delete
leaving nothing (no process, mount, veth, cgroup or directory), even when the process that
booted the machines is killed.

The checks without root run anywhere; the machines need root on Linux, systemd-nspawn and the
machine image (built on first use as in ``test_machine_image.py``; later reused from the cache).
No JVM runs here: Spark is only bind-mounted.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import socketserver
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml

from jupyter_spark_openstack.testing.machines import container as ct
from tests._machines import built_image, needs_root_machines

pytestmark = pytest.mark.timeout(900)

SERVER_ID = "8a1f6d52-6a53-4d1e-9d1a-0c6f2b9d4e11"
PROBE_PORT = 7000


# ---- without root ------------------------------------------------------------------------------

def test_machine_names_fit_the_kernels_interface_names():
    names = {ct._machine_name(f"server-{i}") for i in range(1000)}
    assert len(names) == 1000                                   # distinct
    assert all(len("vb-" + n) <= 15 for n in names)            # systemd-nspawn's veth name
    assert ct._machine_name(SERVER_ID) == ct._machine_name(SERVER_ID)


def test_seed_documents_are_what_cloud_init_reads():
    net = ct.TenantNetwork("10.87.5.0/24")
    net.network = ipaddress.ip_network("10.87.5.0/24")
    doc = yaml.safe_load(ct._dump(net.network_config("10.87.5.10")))
    assert doc == {"version": 2, "ethernets": {"host0": {"addresses": ["10.87.5.10/24"]}}}
    meta = yaml.safe_load(ct._dump({"instance-id": SERVER_ID, "local-hostname": "w1",
                                    "note": "café: a #b"}))
    assert meta == {"instance-id": SERVER_ID, "local-hostname": "w1", "note": "café: a #b"}
    assert [net.allocate(f"s{i}") for i in range(3)] == ["10.87.5.10", "10.87.5.11", "10.87.5.12"]
    net.release("10.87.5.11")
    assert net.allocate("s4") == "10.87.5.11"


def test_boot_refuses_what_it_cannot_pass_on_safely(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    ok = dict(run_dir=tmp_path / "run", rootfs=root)
    for bad in ("", "a_b", "-w1", "w" * 64, "w 1", "w1.example"):
        with pytest.raises(ValueError, match="name"):
            ct.Machine.boot(bad, SERVER_ID, "#cloud-config\n", **ok)
    for bad in ("", "a b", "a\nb"):
        with pytest.raises(ValueError, match="server_id"):
            ct.Machine.boot("w1", bad, "#cloud-config\n", **ok)
    with pytest.raises(ValueError, match="instance-id"):
        ct.Machine.boot("w1", SERVER_ID, "", {"instance-id": "other"}, **ok)
    with pytest.raises(ValueError, match="rootfs"):
        ct.Machine.boot("w1", SERVER_ID, "", run_dir=tmp_path, rootfs=tmp_path / "a,b")
    with pytest.raises(ValueError, match="bind target"):
        ct.Machine.boot("w1", SERVER_ID, "", spark_home_bind=(tmp_path, "opt/spark"), **ok)
    with pytest.raises(ValueError, match="bind source"):
        ct.Machine.boot("w1", SERVER_ID, "", spark_home_bind=(tmp_path / "x:y", "/opt/spark"), **ok)
    assert not (tmp_path / "run").exists()


def test_the_nspawn_command_line(tmp_path):
    net = ct.TenantNetwork()
    m = ct.Machine(name="w1", server_id=SERVER_ID, machine="jabc", directory=tmp_path / "jabc",
                   rootfs=tmp_path, network=net, address="10.87.0.10", cgroups=[])
    argv = m._nspawn_argv(["--bind-ro=/s:/opt/spark"])
    assert argv[:2] == ["systemd-nspawn", "-D"] and argv[2] == str(tmp_path / "jabc" / "merged")
    for opt in ("--boot", "--register=no", "--keep-unit", "--machine=jabc", "--network-bridge=br0",
                "--console=read-only", "--resolv-conf=off", "--link-journal=no",
                f"--uuid={SERVER_ID}", "--bind-ro=/s:/opt/spark"):
        assert opt in argv[:argv.index("--")], opt
    assert argv[argv.index("--") + 1:] == [ct.NETWORKD_ARG]    # the container's "kernel cmdline"
    m2 = ct.Machine(name="w2", server_id="not-a-uuid", machine="jdef", directory=tmp_path / "jdef",
                    rootfs=tmp_path, network=None, address=None, cgroups=[])
    argv2 = m2._nspawn_argv([])
    assert "--private-network" in argv2 and not [a for a in argv2 if a.startswith("--uuid")]
    assert argv2[-1] == "--"


def test_a_tenant_range_in_use_on_the_host_is_never_taken(monkeypatch):
    used = [(ipaddress.ip_network("10.87.0.0/16"), "route 10.87.0.0/16 dev x"),
            (ipaddress.ip_network("192.0.2.0/24"), "address 192.0.2.2/24 on eth0")]
    monkeypatch.setattr(ct, "_used_networks", lambda: used)
    monkeypatch.setattr(ct, "DEFAULT_CIDRS", ("10.87.0.0/24", "10.87.1.0/24", "10.88.0.0/24"))
    assert str(ct.TenantNetwork()._pick()) == "10.88.0.0/24"
    with pytest.raises(ct.MachineError, match=r"10.87.3.0/24: route 10.87.0.0/16 dev x"):
        ct.TenantNetwork("10.87.3.0/24")._pick()
    for bad in ("8.8.8.0/24", "10.0.0.0/8", "10.87.0.0/30"):
        with pytest.raises(ValueError):
            ct.TenantNetwork(bad)._pick()


def test_strip_ansi():
    assert ct.strip_ansi("[\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mmulti-user.target"
                         "\x1b[0m") == "[  OK  ] Reached target multi-user.target"


# ---- real machines (root) ----------------------------------------------------------------------



@pytest.fixture(scope="module")
def rootfs() -> Path:
    needs_root_machines()
    return built_image("booting machines needs root on Linux (systemd-nspawn, mount, cgroups)").rootfs


@pytest.fixture(scope="module")
def spark_home() -> Path:
    import pyspark
    return Path(pyspark.__file__).parent


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("machines")


@pytest.fixture(scope="module")
def tenant(rootfs):
    net = ct.TenantNetwork().start()
    holder, host_if = net.holder_pid, net.host_interface
    yield net
    net.close(force=True)
    assert not os.path.exists(f"/proc/{holder}") or _zombie(holder)
    assert not os.path.exists(f"/sys/class/net/{host_if}")


class _Recorder(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address):
        self.lines: list[tuple[str, str]] = []
        self.got = threading.Condition()
        super().__init__(address, _RecordLine)

    def wait_for(self, prefix: str, timeout: float = 30) -> tuple[str, str]:
        with self.got:
            self.got.wait_for(lambda: any(t.startswith(prefix) for _, t in self.lines), timeout)
            found = [(ip, t) for ip, t in self.lines if t.startswith(prefix)]
        assert found, f"nothing starting with {prefix!r} reached the hub: {self.lines}"
        return found[-1]


class _RecordLine(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline(4096).decode(errors="replace").strip()
        with self.server.got:
            self.server.lines.append((self.client_address[0], line))
            self.server.got.notify_all()


@pytest.fixture(scope="module")
def hub(tenant):
    """A TCP server on the hub's tenant address: each line a machine sends is recorded."""
    srv = _Recorder((tenant.hub_address, 0))
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _user_data(hub_address: str, hub_port: int) -> str:
    """A cloud-config in the shape of the worker's: write_files (a program, a unit, a file),
    runcmd enabling and starting the unit, and a line sent to the hub over the tenant network."""
    probe = textwrap.dedent(f"""\
        #!/usr/bin/python3
        # appends a line at each start; tells whoever connects its host name and start count
        import os, socket, time
        os.makedirs("/var/lib/jso-probe", exist_ok=True)
        with open("/var/lib/jso-probe/starts", "a") as f:
            f.write(f"{{time.time()}}\\n")
        with open("/var/lib/jso-probe/starts") as f:
            n = len(f.read().split())
        srv = socket.create_server(("0.0.0.0", {PROBE_PORT}))
        while True:
            c, _ = srv.accept()
            with c:
                c.sendall(f"{{socket.gethostname()}} starts={{n}}\\n".encode())
        """)
    unit = textwrap.dedent("""\
        [Unit]
        Description=jso probe (written by user-data)
        After=network-online.target
        Wants=network-online.target

        [Service]
        ExecStart=/usr/local/sbin/jso-probe
        Restart=on-failure

        [Install]
        WantedBy=multi-user.target
        """)
    doc = {
        "write_files": [
            {"path": "/usr/local/sbin/jso-probe", "permissions": "0755", "content": probe},
            {"path": "/etc/systemd/system/jso-probe.service", "permissions": "0644",
             "content": unit},
            {"path": "/root/hello.txt", "content": "hello from user-data\n"},
        ],
        "runcmd": [
            ["systemctl", "enable", "--now", "jso-probe.service"],
            ["sh", "-c", 'echo "runcmd ran on $(hostname)" >> /root/runcmd.log'],
            ["bash", "-c", f'echo "phone-home $(hostname) $(cat /etc/machine-id)" '
                           f'> /dev/tcp/{hub_address}/{hub_port}'],
        ],
    }
    return "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _ask(address: str, port: int, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((address, port), timeout=3) as c:
                return c.makefile().readline().strip()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


@pytest.fixture(scope="module")
def worker(rootfs, spark_home, run_dir, tenant, hub):
    """One machine on the tenant network, booted (and timed) once for the tests below, which
    run in file order: boot, unit, network, neighbours, reboot, delete."""
    m = ct.Machine.boot("hub-alice-w1", SERVER_ID, _user_data(tenant.hub_address,
                                                              hub.server_address[1]),
                        {"availability-zone": "nova"}, (spark_home, ct.DEFAULT_SPARK_HOME),
                        run_dir=run_dir, rootfs=rootfs, network=tenant)
    try:
        m.wait_booted(180)
        yield m
    finally:
        if not m.deleted:
            m.delete()


def test_a_machine_boots_to_multi_user_and_cloud_init_runs_the_user_data(worker):
    m = worker
    assert m.status == "ACTIVE" and m.boots == 1 and m.boot_seconds is not None
    assert m.run(["systemctl", "is-active", "multi-user.target"]).stdout.strip() == "active"
    assert m.run(["cloud-init", "status", "--wait"], timeout=60).stdout.strip() == "status: done"
    # the console is the machine's own: systemd, then cloud-init, down to its final message
    console = m.console(plain=True)
    assert "Welcome to Debian GNU/Linux 12 (bookworm)!" in console
    assert "Reached target multi-user.target - Multi-User System." in console
    assert "Cloud-init v. 22.4.2 running 'modules:final'" in console
    assert "Cloud-init v. 22.4.2 finished at " in console
    assert "Datasource DataSourceNoCloud [seed=/var/lib/cloud/seed/nocloud]" in console
    assert "Reached target cloud-init.target" in console
    assert len(m.console(3).splitlines()) == 3 and m.console(0) == ""
    # write_files and runcmd, read from the overlay
    assert m.read_file("/root/hello.txt") == b"hello from user-data\n"
    assert m.read_file("/root/runcmd.log") == b"runcmd ran on hub-alice-w1\n"
    assert (m.dir / "upper" / "root" / "hello.txt").read_bytes() == b"hello from user-data\n"
    # the NoCloud meta-data: instance-id = server id, local-hostname = name, extra keys
    assert m.read_file("/var/lib/cloud/data/instance-id").decode().strip() == SERVER_ID
    assert m.run(["hostname"]).stdout.strip() == "hub-alice-w1"
    assert m.read_file("/etc/hostname") == b"hub-alice-w1\n"
    az = m.run(["cloud-init", "query", "v1.availability_zone"]).stdout.strip()
    assert az == "nova"
    assert m.read_file("/etc/machine-id").decode().strip() == SERVER_ID.replace("-", "")
    # Spark of the pyspark wheel, read-only at /opt/spark; the image itself is untouched
    assert m.run(["test", "-x", "/opt/spark/bin/spark-class"]).returncode == 0
    ro = m.run(["touch", "/opt/spark/x"])
    assert ro.returncode != 0 and "Read-only file system" in ro.stderr
    assert not (m.rootfs / "root" / "hello.txt").exists()
    assert not (m.rootfs / "var/lib/cloud/seed/nocloud/user-data").exists()
    mem = m.memory()
    print(f"\nboot to multi-user.target: {m.boot_seconds:.2f} s; memory: {mem.processes} "
          f"processes, PSS {_mib(mem.pss_bytes)}, RSS {_mib(mem.rss_bytes)} "
          f"(supervisor: {mem.supervisor_processes} processes, RSS "
          f"{_mib(mem.supervisor_rss_bytes)}); by command (PSS): "
          + ", ".join(f"{k} {_mib(v)}" for k, v in mem.by_command.items()))
    assert 0 < m.boot_seconds < 120
    assert mem.processes >= 5 and 0 < mem.pss_bytes < 512 * 2**20
    assert mem.supervisor_processes == 2      # sh and systemd-nspawn


def test_the_unit_written_by_user_data_is_enabled_and_started(worker):
    assert worker.run(["systemctl", "is-enabled", "jso-probe.service"]).stdout.strip() == "enabled"
    assert worker.run(["systemctl", "is-active", "jso-probe.service"]).stdout.strip() == "active"
    assert len(worker.read_file("/var/lib/jso-probe/starts").split()) == 1


def test_the_tenant_network_carries_traffic_both_ways(worker, tenant, hub):
    m = worker
    assert m.address is not None and m.address.startswith(str(tenant.network)[:-4])
    # cloud-init's runcmd reached the hub's address on the host (what a worker does to its master)
    peer, line = hub.wait_for("phone-home hub-alice-w1 ")
    assert peer == m.address and line.split()[-1] == SERVER_ID.replace("-", "")
    # and a command in the machine, to a port chosen now
    probe = m.run(["bash", "-c", f"echo from-inside > /dev/tcp/{tenant.hub_address}/"
                                 f"{hub.server_address[1]}"])
    assert probe.returncode == 0, probe.stderr
    assert hub.wait_for("from-inside")[0] == m.address
    # the host reaches the machine's service at its tenant address
    assert _ask(m.address, PROBE_PORT) == "hub-alice-w1 starts=1"
    # the address came from the seed's network-config, and there is no way out of the range
    addr = m.run(["ip", "-4", "-o", "addr", "show", "dev", "host0"]).stdout
    assert f"inet {m.address}/{tenant.prefixlen}" in addr
    routes = m.run(["ip", "-4", "route", "show", "table", "all"]).stdout
    assert "default" not in routes
    assert m.run(["ip", "-4", "route", "show"]).stdout.split()[0] == str(tenant.network)
    assert f"vb-{m.machine}" in tenant.links() and {"br0", "hub"} <= set(tenant.links())
    assert not os.path.exists(f"/sys/class/net/vb-{m.machine}")   # not on the host


def test_two_machines_boot_side_by_side_and_reach_each_other(worker, rootfs, run_dir, tenant):
    other = ct.Machine.boot("hub-alice-w2", "2d7c1a9e-0c55-4b8e-a6c4-3f1e9b0d7a22",
                            "#cloud-config\nruncmd:\n  - [sh, -c, 'echo w2 > /root/w2.txt']\n",
                            run_dir=run_dir, rootfs=rootfs, network=tenant)
    try:
        seconds = other.wait_booted(180)
        assert other.address != worker.address
        reply = other.run(["python3", "-c", "import socket; c = socket.create_connection("
                           f"('{worker.address}', {PROBE_PORT}), timeout=5); "
                           "print(c.makefile().readline().strip())"])
        assert reply.stdout.strip() == "hub-alice-w1 starts=1", reply.stderr
        assert other.read_file("/root/w2.txt") == b"w2\n"
        # each machine has its own cgroup tree: nspawn's payload/ and supervisor/ are per machine
        assert set(worker.pids()).isdisjoint(other.pids())
        print(f"\nsecond machine (while the first runs): boot to multi-user.target {seconds:.2f} s")
    finally:
        other.delete()
    assert other.leftovers() == [] and other.status == "DELETED"


def test_reboot_keeps_the_disk_and_the_unit_comes_back(worker):
    m = worker
    leader = m.leader_pid()
    seconds = m.reboot()
    print(f"\nreboot to multi-user.target: {seconds:.2f} s")
    assert m.boots == 2 and m.leader_pid() not in (None, leader) and m.status == "ACTIVE"
    assert "Rebooting." in m.console(plain=True)
    assert m.console(plain=True).count("Welcome to Debian GNU/Linux 12 (bookworm)!") == 2
    assert "is being rebooted" in m.supervisor_log()
    assert "jso-supervisor: systemd-nspawn exited 133" in m.supervisor_log()
    # the unit started again (a new start counted on the same disk), the address came back
    assert worker.run(["systemctl", "is-active", "jso-probe.service"]).stdout.strip() == "active"
    assert len(m.read_file("/var/lib/jso-probe/starts").split()) == 2
    assert _ask(m.address, PROBE_PORT) == "hub-alice-w1 starts=2"
    # per-instance cloud-init did not run again; the disk kept what the first boot wrote
    assert m.read_file("/root/runcmd.log") == b"runcmd ran on hub-alice-w1\n"
    assert m.read_file("/root/hello.txt") == b"hello from user-data\n"
    assert 0 < seconds < 120


def test_power_off_then_delete_leaves_nothing(worker, tenant):
    m = worker
    pids = m.pids()
    leader = m.leader_pid()
    assert leader in pids and len(pids) >= 5
    t0 = time.monotonic()
    assert m.stop() is True                                  # clean: SIGRTMIN+4 took
    stopped = time.monotonic() - t0
    assert m.status == "SHUTOFF" and m.exit_code == 0
    assert "Powering off." in m.console(plain=True)
    assert "Container j" in m.supervisor_log() and "has been shut down." in m.supervisor_log()
    # off: the disk is still there (the upper layer), the mounts are not
    assert m.read_file("/root/hello.txt") == b"hello from user-data\n"
    assert ct._mounts_naming(m.dir) == []
    t1 = time.monotonic()
    m.delete()
    print(f"\npower-off {stopped:.2f} s, then delete (cgroups, overlay directories) "
          f"{time.monotonic() - t1:.2f} s")
    assert m.status == "DELETED"
    assert m.leftovers() == []
    assert all(not os.path.exists(f"/proc/{p}") or _zombie(p) for p in pids)
    assert ct._mounts_naming(m.dir) == []
    assert f"vb-{m.machine}" not in tenant.links()
    assert not any(cg.exists() for cg in m.cgroups) and not m.dir.exists()
    assert m.address not in tenant._in_use


def test_a_machine_booted_from_a_short_lived_thread_outlives_it(rootfs, run_dir):
    """The parent-death signal is per thread: machines are started from the module's
    launcher thread, so one booted from a worker thread that ends keeps running. Without a
    tenant network a machine has only its loopback (--private-network)."""
    booted: list[ct.Machine] = []
    t = threading.Thread(target=lambda: booted.append(ct.Machine.boot(
        "lonely1", "lonely-1", "#cloud-config\n", run_dir=run_dir, rootfs=rootfs)))
    t.start()
    t.join()
    (m,) = booted
    try:
        m.wait_booted(180)
        time.sleep(0.5)
        assert m.running and m.status == "ACTIVE"
        links = m.run(["ip", "-o", "link", "show"]).stdout
        assert [ln.split(":")[1].strip() for ln in links.splitlines()] == ["lo"]
        assert not (m.dir / "seed" / "network-config").exists()
    finally:
        m.delete()
    assert m.leftovers() == []


def test_a_machine_that_cannot_boot_says_why_and_leaves_nothing(tmp_path_factory, run_dir):
    needs_root_machines()
    broken = tmp_path_factory.mktemp("brokenroot")
    (broken / "usr/lib").mkdir(parents=True)
    (broken / "usr/lib/os-release").write_text("ID=broken\n")
    m = ct.Machine.boot("broken1", "broken-1", "#cloud-config\n", run_dir=run_dir, rootfs=broken)
    with pytest.raises(ct.MachineError) as e:
        m.wait_booted(60)
    assert "stopped before finishing its boot" in str(e.value)
    assert "execv(/usr/lib/systemd/systemd, /lib/systemd/systemd, /sbin/init) failed" in str(e.value)
    assert m.status == "SHUTOFF" and m.exit_code == 1
    m.delete()
    assert m.leftovers() == [] and sorted(broken.iterdir()) == [broken / "usr"]


_CRASHING_EMULATOR = """
import json, sys, time
from jupyter_spark_openstack.testing.machines import container as ct
net = ct.TenantNetwork().start()
m = ct.Machine.boot("crash1", "crash-1", "#cloud-config\\n", run_dir=sys.argv[1],
                    rootfs=sys.argv[2], network=net)
m.wait_booted(180)
print(json.dumps({"holder": net.holder_pid, "host_if": net.host_interface,
                  "supervisor": m.supervisor_pid, "pids": m.pids(), "leader": m.leader_pid(),
                  "dir": str(m.dir), "cgroups": [str(c) for c in m.cgroups]}), flush=True)
time.sleep(600)
"""


def test_a_killed_emulator_takes_its_machines_and_network_with_it(rootfs, tmp_path_factory):
    """SIGKILL to the process that booted a machine: the machine, its mounts, its veth and the
    tenant network go with it (parent-death signals and PID namespaces); sweep() removes the
    directory and the empty cgroups that stay."""
    run = tmp_path_factory.mktemp("crashrun")
    child = subprocess.Popen([sys.executable, "-c", _CRASHING_EMULATOR, str(run), str(rootfs)],
                             stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(child.stdout.readline() or "{}")
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert info, "the child did not boot its machine"
    d = Path(info["dir"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        alive = [p for p in [info["holder"], info["supervisor"], *info["pids"]]
                 if os.path.exists(f"/proc/{p}") and not _zombie(p)]
        if not alive and not os.path.exists(f"/sys/class/net/{info['host_if']}") and \
                not ct._mounts_naming(d):
            break
        time.sleep(0.2)
    assert alive == [], alive
    assert not os.path.exists(f"/sys/class/net/{info['host_if']}")
    assert ct._mounts_naming(d) == []
    assert d.is_dir() and all(Path(c).is_dir() for c in info["cgroups"])   # what sweep is for
    removed = ct.sweep(run)
    assert sorted(removed) == sorted([*info["cgroups"], str(d)])
    assert not d.exists() and not any(Path(c).exists() for c in info["cgroups"])


def test_nothing_is_left_on_the_host(rootfs, run_dir):
    """After the machines above: nothing of theirs mounted, the run directory empty, and no
    cgroup systemd-nspawn would have made in the root cgroup without a cgroup per machine."""
    assert ct._mounts_naming(run_dir) == [] and list(run_dir.iterdir()) == []
    roots = ct.cgroup_hierarchies()
    assert [p for r in roots for p in r.iterdir() if p.name in ("payload", "supervisor")] == []
