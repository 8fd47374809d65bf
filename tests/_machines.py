"""Machines for tests that need them: the image (built on first use, then reused from the
cache), the emulator in container mode, a real hub on it, servers booted through openstacksdk,
and reachability checks from inside a machine and from the hub's address."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import sys
import time

import pytest

from jupyter_spark_openstack.testing.machines import image as im


def built_image(why: str) -> im.Image:
    """The cached (or newly built) image; skips where it cannot be had: not root on Linux
    (``why`` says what needs root), no apt, no Debian mirror in the apt sources."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip(why)
    if shutil.which("apt-get") is None:
        pytest.skip("not an apt machine: no Debian mirror to build the machine image from")
    try:
        return im.build_image()
    except im.MirrorNotFound as e:
        pytest.skip(str(e))


def needs_root_machines() -> None:
    """Skip unless machines can boot here: root on Linux and systemd-nspawn."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("booting machines needs root on Linux (systemd-nspawn, mount, cgroups)")
    if shutil.which("systemd-nspawn") is None:
        pytest.skip("systemd-nspawn is missing (apt-get install systemd-container)")


def java_pids_here() -> set[int]:
    """Java processes in this host's PID namespace (a machine's processes are in their own,
    though the host sees them too)."""
    import psutil

    mine = os.readlink("/proc/self/ns/pid")
    out = set()
    for p in psutil.process_iter(["pid", "name"]):
        try:
            if p.info["name"] == "java" and os.readlink(f"/proc/{p.info['pid']}/ns/pid") == mine:
                out.add(p.info["pid"])
        except OSError:
            continue
    return out


OPEN, REFUSED, DROPPED = "open", "refused", "dropped"


def reach_from_machine(machine, ip: str, port: int, timeout: int = 2) -> str:
    """What a TCP connection from inside ``machine`` to ``ip:port`` meets: ``open``, ``refused``
    (the packet reached a host with no listener) or ``dropped`` (no answer: a firewall ate it)."""
    rc = machine.run(["timeout", str(timeout), "bash", "-c", f"exec 3<>/dev/tcp/{ip}/{port}"]).returncode
    return {0: OPEN, 1: REFUSED, 124: DROPPED}.get(rc, f"rc {rc}")


def reach_from_here(ip: str, port: int, timeout: float = 2) -> str:
    """The same from this host (the hub's address on the tenant network)."""
    import socket

    try:
        socket.create_connection((ip, port), timeout=timeout).close()
        return OPEN
    except ConnectionRefusedError:
        return REFUSED
    except TimeoutError:
        return DROPPED


WHY_ROOT = "booting machines needs root on Linux (systemd-nspawn, mount, cgroups)"


@contextlib.contextmanager
def container_emulator(tmp_path_factory, name: str, *, boot_delay: float = 0.3, **kw):
    """``(emulator, directory)``: the emulator in container mode (skips where machines cannot
    boot); at the end it is stopped and no process may be left under the directory."""
    from jupyter_spark_openstack.demo.hubprocess import kill_processes, processes_under
    from jupyter_spark_openstack.testing.emulator import Emulator

    needs_root_machines()
    built_image(WHY_ROOT)
    d = tmp_path_factory.mktemp(name)
    emu = Emulator(boot_delay=boot_delay, boot_backend="container", run_dir=d / "emu", **kw).start()
    try:
        yield emu, d
    finally:
        emu.stop()
        left = processes_under(d)
        kill_processes(left)
        assert not left, f"processes left: {[p.cmdline()[:3] for p in left]}"


def machines_provisioner_config(emu, d, **overrides) -> dict:
    """The ``openstack`` provisioner's config for ``emu``'s machines: masters on the hub's
    tenant address, Spark's ports open to the tenant network (``hub_cidr``), a head flavor,
    Spark preinstalled where the image has it."""
    from jupyter_spark_openstack.testing.emulator.helpers import provisioner_config

    cfg = provisioner_config(emu, d / "clouds.yaml", retry_backoff=0.1, poll_interval=0.5,
                             master_host=emu.hub_address, hub_cidr=str(emu.network.network),
                             head_flavor="m1.medium",
                             install={"mode": "preinstalled", "spark_home": "/opt/spark"})
    cfg.update(overrides)
    return cfg


@contextlib.contextmanager
def hub_on(emu, directory, cfg: dict, *, extra: list[str] = (), **spawner_overrides):
    """A real hub (a :class:`...demo.hubprocess.HubProcess` with ``client``) with the
    ``openstack`` provisioner config ``cfg``, the demo's sizes and masters on the hub's tenant
    address; stopped at the end."""
    from jupyter_spark_openstack.demo.client import HubClient
    from jupyter_spark_openstack.demo.hubconfig import write_hub_config
    from jupyter_spark_openstack.demo.hubprocess import HubProcess
    from jupyter_spark_openstack.testing.emulator.demo import DEMO_SIZES

    lines = [f"c.SparkClusterMixin.worker_sizes = {DEMO_SIZES!r}",
             f"c.SparkClusterMixin.master_host = {emu.hub_address!r}", *extra]
    info = write_hub_config(directory, provisioner="openstack", provisioner_config=cfg,
                            extra="\n".join(lines), spawner_overrides=spawner_overrides)
    hub = HubProcess(info).start()
    try:
        hub.client = HubClient(info["url"], info["api_token"])
        yield hub
    finally:
        hub.stop()


def sdk_connection(emu, d):
    """An openstacksdk connection to ``emu`` (clouds.yaml in ``d``)."""
    import openstack

    path = d / "clouds.yaml"
    if not path.exists():
        emu.write_clouds_yaml(path)
    cfg = openstack.config.OpenStackConfig(config_files=[str(path)])
    return openstack.connection.Connection(config=cfg.get_one(cloud="emulator"))


def boot_server(emu, conn, name: str, **kw):
    """``(server, machine)``: a server of ``spark-worker-4.0`` on ``private`` with an empty
    cloud-config (``kw`` adds to the create call), ACTIVE and its machine booted."""
    args = dict(name=name, flavor_id=conn.compute.find_flavor("m1.small").id,
                image_id=conn.image.find_image("spark-worker-4.0").id,
                networks=[{"uuid": conn.network.find_network("private").id}],
                user_data=base64.b64encode(b"#cloud-config\n{}\n").decode())
    args.update(kw)
    s = conn.compute.wait_for_server(conn.compute.create_server(**args), interval=0.2, wait=120)
    vm = emu.model.get_server(s.id)
    deadline = time.monotonic() + 60
    while emu.backend.machine(vm) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    m = emu.backend.machine(vm)
    assert m is not None, f"server {name} has no machine: {emu.backend.console(vm)[-10:]}"
    m.wait_booted(120)
    return s, m


def delete_server(conn, server) -> None:
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, interval=0.2, wait=120)
