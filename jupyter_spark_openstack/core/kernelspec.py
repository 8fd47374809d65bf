"""Building and installing PySpark kernelspecs (``kernel.json`` + logos) through jupyter_client.

One function, :func:`build_kernel_json`, turns a validated
:class:`~jupyter_spark_openstack.core.models.KernelSettings` into the ``kernel.json`` dict; the
CLI (``kernel install``) and the spawner (per-user kernelspecs in a per-user data dir) both
install it with :func:`install_kernelspec`.

The kernel process (``python -m jupyter_spark_openstack.kernel``) reads its settings from the
environment variables named here (``ENV_*``); secrets never appear in ``kernel.json``, only the
path of a file holding them.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .._version import __version__
from .errors import ClusterError, ValidationError
from .models import KernelSettings, parse_kernel_name
from .spark.home import find_spark_home, py4j_zip

KERNEL_MODULE = "jupyter_spark_openstack.kernel"
METADATA_KEY = "jupyter_spark_openstack"   # kernel.json metadata section naming this package

# The kernel's environment contract (read by jupyter_spark_openstack.kernel). The spawner sets
# ENV_MASTER_URL, ENV_WEBUI_URL and ENV_CONNECT_URL in the notebook server's environment too,
# where the server extension reads them (core.clusterinfo.resolve_master).
ENV_MASTER_URL = "SPARK_OPENSTACK_MASTER_URL"
ENV_CONF = "SPARK_OPENSTACK_CONF"                     # JSON object of Spark properties
ENV_SECRET_FILE = "SPARK_OPENSTACK_SECRET_FILE"       # file holding spark.authenticate.secret
ENV_CONNECT_URL = "SPARK_OPENSTACK_CONNECT_URL"       # sc://host:port -> Spark Connect kernel
ENV_CONNECT_TOKEN_FILE = "SPARK_OPENSTACK_CONNECT_TOKEN_FILE"
ENV_CONNECT_CA_FILE = "SPARK_OPENSTACK_CONNECT_CA_FILE"   # the cluster's CA: TLS to her head
ENV_CONNECT_TLS_NAME = "SPARK_OPENSTACK_CONNECT_TLS_NAME"  # the name the head's certificate carries
# A notebook server that does not share the hub's filesystem (KubeSpawner, DockerSpawner...) gets
# its kernelspecs through its environment: the settings (JSON, no secret), the token and the CA;
# the server extension writes them into the server's own files (serverext/remote.py).
ENV_KERNELSPECS = "SPARK_OPENSTACK_KERNELSPECS"
ENV_CONNECT_TOKEN = "SPARK_OPENSTACK_CONNECT_TOKEN"
ENV_CONNECT_CA = "SPARK_OPENSTACK_CONNECT_CA"
ENV_WEBUI_URL = "SPARK_OPENSTACK_MASTER_WEBUI_URL"    # the master's web UI (for the server ext.)
ENV_CLUSTER_NAME = "SPARK_OPENSTACK_CLUSTER_NAME"
ENV_START_TIMEOUT = "SPARK_OPENSTACK_START_TIMEOUT"   # seconds, default 120 (read at run time)
ENV_EAGER = "SPARK_OPENSTACK_EAGER"                   # "1": create the session before serving


def logo_dir() -> Path | None:
    """The directory with the kernelspec logos (``kernels/pyspark`` of this project)."""
    candidates = [
        Path(__file__).resolve().parents[2] / "kernels" / "pyspark",           # source / editable
        # wheel / non-editable install: setup.cfg data_files (setuptools turns '-' into '_')
        Path(sys.prefix) / "share" / "jupyter_spark_openstack" / "kernels" / "pyspark",
    ]
    for c in candidates:
        if (c / "logo-64x64.png").is_file():
            return c
    return None


def is_spark_distribution(spark_home: str) -> bool:
    """True for an unpacked Spark distribution, False for the pyspark wheel's bundled Spark
    (the wheel's SPARK_HOME is the ``pyspark`` package itself, already importable)."""
    return not os.path.isfile(os.path.join(spark_home, "__init__.py"))


def _spark_env(settings: KernelSettings, spark_home: str | None) -> dict[str, str]:
    env: dict[str, str] = {}
    if spark_home is None:
        try:
            spark_home = find_spark_home()
        except ClusterError:
            if not settings.is_connect:  # a Connect kernel needs no local Spark
                raise
    if spark_home:
        env["SPARK_HOME"] = spark_home
        zip_ = py4j_zip(spark_home) if is_spark_distribution(spark_home) else None
        if zip_:  # a Spark distribution: its python/ and py4j are not on sys.path by themselves
            env["PYTHONPATH"] = os.pathsep.join([os.path.join(spark_home, "python"), zip_])
    return env


def build_kernel_json(settings: KernelSettings, *, python: str | None = None,
                      spark_home: str | None = None) -> dict:
    """The ``kernel.json`` dict for ``settings`` (nothing is written)."""
    python = python or sys.executable
    env = _spark_env(settings, spark_home)
    # Executors run Python code with the driver's interpreter path (local clusters share it).
    # the executors' Python: the kernel's, unless her workers are machines with their own
    env["PYSPARK_PYTHON"] = settings.executor_python or python
    if settings.master:
        env[ENV_MASTER_URL] = settings.master
    env[ENV_CONF] = json.dumps(settings.spark_conf(), sort_keys=True)
    if settings.secret_file:
        env[ENV_SECRET_FILE] = os.path.abspath(settings.secret_file)
    # Always set, empty for a classic kernel: a notebook server started by the spawner has
    # SPARK_OPENSTACK_CONNECT_URL in its own environment, which kernels would inherit.
    env[ENV_CONNECT_URL] = settings.connect_url or ""
    if settings.connect_token_file:
        env[ENV_CONNECT_TOKEN_FILE] = os.path.abspath(settings.connect_token_file)
    if settings.connect_ca_file:
        env[ENV_CONNECT_CA_FILE] = os.path.abspath(settings.connect_ca_file)
        env[ENV_CONNECT_TLS_NAME] = settings.connect_tls_name or ""
    if settings.webui_url:
        env[ENV_WEBUI_URL] = settings.webui_url
    if settings.cluster_name:
        env[ENV_CLUSTER_NAME] = settings.cluster_name
    return {
        "argv": [python, "-m", KERNEL_MODULE, "-f", "{connection_file}"],
        "display_name": settings.display_name,
        "language": "python",
        "interrupt_mode": "signal",
        "env": env,
        "metadata": {
            "debugger": False,
            METADATA_KEY: {
                "version": __version__,
                "mode": "connect" if settings.is_connect else "classic",
                "master_url": settings.master or None,
                "webui_url": settings.webui_url,
                "connect_url": settings.connect_url,
                "cluster_name": settings.cluster_name,
            },
        },
    }


def _ksm(data_dir: str | os.PathLike | None = None, kernel_dirs: list[str] | None = None):
    from jupyter_client.kernelspec import KernelSpecManager  # noqa: PLC0415

    kw: dict = {}
    if data_dir is not None:
        kw["data_dir"] = str(data_dir)
    if kernel_dirs is not None:
        kw["kernel_dirs"] = [str(d) for d in kernel_dirs]
    return KernelSpecManager(**kw)


def kernels_dir(*, prefix: str | os.PathLike | None = None, user: bool = False,
                sys_prefix: bool = False, data_dir: str | os.PathLike | None = None) -> Path:
    """The ``kernels/`` directory a location option means (default: the user's data dir).

    ``prefix`` -> ``PREFIX/share/jupyter/kernels``; ``sys_prefix`` -> the same under
    ``sys.prefix``; ``data_dir`` -> ``DATA_DIR/kernels``; ``user`` (or nothing) ->
    ``$(jupyter --data-dir)/kernels``.
    """
    chosen = [n for n, v in (("prefix", prefix), ("user", user), ("sys_prefix", sys_prefix),
                             ("data_dir", data_dir)) if v]
    if len(chosen) > 1:
        raise ValidationError("location", "+".join(chosen), "at most one of prefix, user, sys_prefix, data_dir")
    if sys_prefix:
        prefix = sys.prefix
    if prefix:
        return Path(os.path.abspath(prefix)) / "share" / "jupyter" / "kernels"
    return Path(_ksm(data_dir).user_kernel_dir)


def install_kernelspec(settings: KernelSettings, *, prefix: str | os.PathLike | None = None,
                       user: bool = False, sys_prefix: bool = False, replace: bool = False,
                       data_dir: str | os.PathLike | None = None, python: str | None = None,
                       spark_home: str | None = None,
                       field_names: Mapping[str, str] | None = None) -> Path:
    """Write ``kernel.json`` and the logos with jupyter_client; returns the kernelspec dir.

    An existing kernelspec of the same name is only overwritten with ``replace=True``
    (otherwise :class:`ValidationError` naming the ``name`` field, nothing written).
    """
    name_field = dict(field_names or {}).get("name", "name")
    name = parse_kernel_name(name_field, settings.name)
    kdir = kernels_dir(prefix=prefix, user=user, sys_prefix=sys_prefix, data_dir=data_dir)
    dest = kdir / name
    if dest.exists() and not replace:
        raise ValidationError(name_field, settings.name,
                              f"a kernelspec name not yet installed in {kdir} (or pass replace/--replace)")
    spec = build_kernel_json(settings, python=python, spark_home=spark_home)
    with tempfile.TemporaryDirectory(prefix="spark-openstack-kernelspec-") as tmp:
        src = Path(tmp) / name
        src.mkdir()
        logos = logo_dir()
        if logos:
            for logo in sorted(logos.glob("logo-*")):
                shutil.copy2(logo, src / logo.name)
        (src / "kernel.json").write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")
        ksm = _ksm(data_dir)
        if data_dir is not None or not (prefix or sys_prefix):
            installed = ksm.install_kernel_spec(str(src), name, user=True)
        else:
            installed = ksm.install_kernel_spec(str(src), name, prefix=str(kdir.parent.parent.parent))
    return Path(installed)


def _search_dirs(kernel_dirs: list[str | os.PathLike] | None) -> list[str]:
    if kernel_dirs is not None:
        return [str(d) for d in kernel_dirs]
    return list(_ksm().kernel_dirs)


def is_ours(spec: Mapping) -> bool:
    return METADATA_KEY in (spec.get("metadata") or {})


def list_kernelspecs(*, kernel_dirs: list[str | os.PathLike] | None = None,
                     ours_only: bool = True, with_spec: bool = False) -> list[dict]:
    """Installed kernelspecs (ours only by default): ``name``, ``resource_dir``, ``ours``,
    ``display_name``, ``mode``, ``master_url``, ``connect_url``, ``version``; with
    ``with_spec`` also ``spec``, the whole ``kernel.json`` dict."""
    ksm = _ksm(kernel_dirs=_search_dirs(kernel_dirs))
    ksm.ensure_native_kernel = False
    out = []
    for name, info in sorted(ksm.get_all_specs().items()):
        spec = info["spec"]
        ours = is_ours(spec)
        if ours_only and not ours:
            continue
        meta = (spec.get("metadata") or {}).get(METADATA_KEY) or {}
        out.append({
            "name": name, "resource_dir": info["resource_dir"], "ours": ours,
            "display_name": spec.get("display_name"), "mode": meta.get("mode"),
            "master_url": meta.get("master_url"), "connect_url": meta.get("connect_url"),
            "version": meta.get("version"),
            **({"spec": spec} if with_spec else {}),
        })
    return out


def remove_kernelspec(name: str, *, kernel_dirs: list[str | os.PathLike] | None = None,
                      force: bool = False, name_field: str = "name") -> Path:
    """Remove the kernelspec ``name`` found first in ``kernel_dirs`` (default: Jupyter's path).

    Kernelspecs not written by this package are left alone unless ``force``.
    """
    ksm = _ksm(kernel_dirs=_search_dirs(kernel_dirs))
    ksm.ensure_native_kernel = False
    specs = ksm.find_kernel_specs()
    key = str(name).lower()
    if key not in specs:
        ours = [s["name"] for s in list_kernelspecs(kernel_dirs=kernel_dirs)]
        raise ValidationError(name_field, name, "the name of an installed kernelspec"
                              + (f" (PySpark ones here: {', '.join(ours)})" if ours else
                                 " (no PySpark kernelspec is installed here)"))
    resource_dir = specs[key]
    try:
        spec = json.loads((Path(resource_dir) / "kernel.json").read_text())
    except (OSError, ValueError):
        spec = {}
    if not force and not is_ours(spec):
        raise ValidationError(name_field, name, f"a jupyter-spark-openstack kernelspec ({resource_dir} "
                                                "was not written by this package; force/--force removes it anyway)")
    return Path(ksm.remove_kernel_spec(key))
