"""Kernelspecs for a notebook server that does not share the hub's filesystem.

With KubeSpawner, DockerSpawner or a batch spawner the notebook server runs elsewhere: the files
the hub writes for her (kernelspecs, token, CA) are not there. The spawner then passes them in
the server's environment instead (:data:`~..core.kernelspec.ENV_KERNELSPECS`: a JSON list of
kernel settings, no secret in it; :data:`~..core.kernelspec.ENV_CONNECT_TOKEN` and
:data:`~..core.kernelspec.ENV_CONNECT_CA`), as JupyterHub passes its own API token. At load,
this server's extension writes them into a directory of its own runtime dir (0700): the token
and the CA in 0600 files, one ``kernel.json`` per kernel naming those files (never their
content), made with this server's Python. It then drops the token from its environment, so the
kernels it starts do not inherit it, and puts the directory first in the kernelspec search path.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import MutableMapping
from pathlib import Path

from ..core import safefs
from ..core.errors import ValidationError
from ..core.kernelspec import ENV_CONNECT_CA, ENV_CONNECT_TOKEN, ENV_KERNELSPECS, build_kernel_json
from ..core.models import KernelSettings, parse_kernel_name

#: the keys of one kernel's settings in ENV_KERNELSPECS (what KernelSettings.parse takes,
#: minus the files this module writes)
SETTING_KEYS = ("name", "display_name", "master", "executor_memory", "executor_cores",
                "cores_max", "driver_memory", "conf", "connect_url", "connect_tls_name",
                "cluster_name", "webui_url")


def encode(settings: list[KernelSettings]) -> str:
    """The value of :data:`ENV_KERNELSPECS` for ``settings`` (the spawner's side)."""
    out = []
    for s in settings:
        d = {k: getattr(s, k) for k in SETTING_KEYS if getattr(s, k) not in (None, "", {})}
        if not s.master:
            d.pop("master", None)
        out.append(d)
    return json.dumps(out, sort_keys=True)


def materialize(runtime_dir: str | os.PathLike,
                env: MutableMapping[str, str] | None = None) -> Path | None:
    """Write the kernelspecs :data:`ENV_KERNELSPECS` describes under
    ``runtime_dir/spark-openstack/kernels``; returns that directory, or None when the variable
    is not set. Bad content raises :class:`ValidationError` naming the variable."""
    env = os.environ if env is None else env
    raw = env.get(ENV_KERNELSPECS)
    if not raw:
        return None
    try:
        items = json.loads(raw)
    except ValueError:
        raise ValidationError(ENV_KERNELSPECS, raw[:80], "a JSON list of kernel settings") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ValidationError(ENV_KERNELSPECS, raw[:80], "a JSON list of kernel settings")
    base = Path(runtime_dir) / "spark-openstack"
    if base.exists():
        shutil.rmtree(base)   # an earlier start's
    Path(runtime_dir).mkdir(parents=True, exist_ok=True)
    safefs.make_dir(base, 0o700)
    try:
        kdir = _write(base, items, env)
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)   # nothing half-written is left
        raise
    env.pop(ENV_CONNECT_TOKEN, None)   # the kernels read the file, they inherit no token
    env.pop(ENV_CONNECT_CA, None)
    return kdir


def _write(base: Path, items: list[dict], env) -> Path:
    files: dict[str, str] = {}
    if env.get(ENV_CONNECT_TOKEN):
        files["connect_token_file"] = safefs.write_file(base / "connect-token",
                                                        env[ENV_CONNECT_TOKEN].strip() + "\n", 0o600)
    if env.get(ENV_CONNECT_CA):
        files["connect_ca_file"] = safefs.write_file(base / "connect-ca.pem", env[ENV_CONNECT_CA], 0o600)
    kdir = safefs.make_dir(base / "kernels", 0o700)
    for item in items:
        unknown = set(item) - set(SETTING_KEYS)
        if unknown:
            raise ValidationError(f"{ENV_KERNELSPECS} key", sorted(unknown)[0],
                                  "one of " + ", ".join(SETTING_KEYS))
        extra = files if item.get("connect_url") else {}
        settings = KernelSettings.parse(**item, **extra)
        dest = safefs.make_dir(kdir / parse_kernel_name("name", settings.name), 0o700)
        safefs.write_file(dest / "kernel.json", json.dumps(build_kernel_json(settings), indent=1) + "\n",
                          0o600)
    return kdir


def install(serverapp) -> Path | None:
    """At extension load: materialize and put the directory first in the kernelspec path."""
    kdir = materialize(serverapp.runtime_dir)
    if kdir is not None:
        ksm = serverapp.kernel_spec_manager
        ksm.kernel_dirs = [str(kdir), *[d for d in ksm.kernel_dirs if d != str(kdir)]]
        serverapp.log.info("spark-openstack: kernelspecs from the environment in %s", kdir)
    return kdir
