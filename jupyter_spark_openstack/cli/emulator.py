"""``emulator``: run the bundled OpenStack API emulator (for demos and manual tests)."""

from __future__ import annotations

import os
import signal
import threading

from ..core.errors import ValidationError
from ..core.models import parse_positive_float, parse_positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "emulator", help="run an OpenStack API emulator on 127.0.0.1 (Keystone, Nova, Glance, Neutron reads)",
        description="Serve the Keystone v3 / Nova v2.1 / Glance v2 / Neutron v2.0 subset that "
                    "openstacksdk uses, on 127.0.0.1. Servers go BUILD -> ACTIVE after the boot "
                    "delay; a valid worker cloud-config then starts a real local Spark worker "
                    "(unless --no-jvm). Writes a clouds.yaml with a cloud named 'emulator'. "
                    "Faults and the call log: /_emulator/faults, /_emulator/calls. Ctrl-C deletes "
                    "every server and stops their workers.")
    p.add_argument("--host", default="127.0.0.1", help="interface (127.0.0.1 or localhost only)")
    p.add_argument("--port", default="0", help="TCP port (default: a free one)")
    p.add_argument("--clouds-yaml", default="clouds.yaml",
                   help="where to write clouds.yaml (default ./clouds.yaml)")
    p.add_argument("--boot-delay", default="2", help="seconds a server stays BUILD (default 2)")
    p.add_argument("--delete-delay", default="0.3", help="seconds a deleted server takes to go (default 0.3)")
    p.add_argument("--no-jvm", action="store_true",
                   help="servers start no Spark worker process (cloud-config still checked)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from ..testing.emulator import Emulator  # noqa: PLC0415

    if args.host not in ("127.0.0.1", "localhost"):
        raise ValidationError("--host", args.host, "127.0.0.1 or localhost")
    port = parse_positive_int("--port", args.port, minimum=0, maximum=65535)
    boot = 0.0 if str(args.boot_delay).strip() in ("0", "0.0") else \
        parse_positive_float("--boot-delay", args.boot_delay, maximum=3600)
    delete = 0.0 if str(args.delete_delay).strip() in ("0", "0.0") else \
        parse_positive_float("--delete-delay", args.delete_delay, maximum=3600)
    emu = Emulator(host=args.host, port=port, boot_delay=boot, delete_delay=delete,
                   spark_mode="none" if args.no_jvm else "jvm")
    emu.start()
    done = threading.Event()
    try:
        path = emu.write_clouds_yaml(os.path.abspath(args.clouds_yaml))
        print(f"OpenStack emulator on {emu.url} (auth URL {emu.auth_url})", flush=True)
        print(f"clouds.yaml written to {path} (cloud 'emulator'); e.g.\n"
              f"  export OS_CLIENT_CONFIG_FILE={path}, then openstack.connect(cloud='emulator')", flush=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        done.wait()
    finally:
        print("stopping the emulator: deleting servers and their workers", flush=True)
        emu.stop()
    return 0
