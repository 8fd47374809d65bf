"""The JupyterLab extension: its unit tests (jest, run through npm), its build output and
its registration with JupyterLab."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LABEXT = REPO / "labextension"
BUILT = REPO / "jupyter_spark_openstack" / "labextension"
VENV_BIN = Path(sys.executable).parent

needs_npm = pytest.mark.skipif(shutil.which("npm") is None, reason="npm not installed")


def _npm_ci_if_needed():
    if not (LABEXT / "node_modules" / ".bin" / "jest").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=LABEXT, check=True,
                       capture_output=True, timeout=600)


@needs_npm
def test_jest_unit_tests_pass():
    _npm_ci_if_needed()
    proc = subprocess.run(["npm", "test", "--", "--ci"], cwd=LABEXT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "CI": "true"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    m = re.search(r"Tests:\s+(\d+) passed, (\d+) total", out)
    assert m, out[-2000:]
    assert int(m.group(1)) == int(m.group(2)) >= 20


def test_package_lock_uses_only_the_npm_registry():
    lock = json.loads((LABEXT / "package-lock.json").read_text())
    deps = {k: v for k, v in lock["packages"].items() if k.startswith("node_modules/")}
    assert len(deps) > 100
    # registry packages are pinned by integrity; a git/tarball URL dependency would show up
    # as a non-registry "resolved" (or a missing integrity)
    bad = [k for k, v in deps.items()
           if not v.get("link") and (not v.get("integrity") or not v.get("resolved", "https://registry.npmjs.org/").startswith("https://registry.npmjs.org/"))]
    assert bad == []


def test_names_agree_between_npm_package_and_python_package():
    import jupyter_spark_openstack as jso

    pkg = json.loads((LABEXT / "package.json").read_text())
    (paths,) = jso._jupyter_labextension_paths()
    assert pkg["name"] == paths["dest"] == "jupyter-spark-openstack"
    assert (REPO / "jupyter_spark_openstack" / paths["src"]).resolve() == BUILT.resolve()
    assert Path(LABEXT / pkg["jupyterlab"]["outputDir"]).resolve() == BUILT.resolve()


def test_built_extension_is_current_and_listed_enabled_ok():
    """The install (make's editable install or pip install .) built the extension and
    JupyterLab lists it as enabled and OK."""
    built = json.loads((BUILT / "package.json").read_text())
    assert built["name"] == "jupyter-spark-openstack"
    load = built["jupyterlab"]["_build"]["load"]
    assert (BUILT / load).is_file()
    sys.path.insert(0, str(REPO))
    try:
        import setup as setup_py  # the build hook's own staleness check
    finally:
        sys.path.pop(0)
    assert not setup_py.labextension_is_stale(), (
        "the built extension is older than labextension/: run `npm run build:prod` in labextension/ "
        "(or `pip install -e .`)")
    proc = subprocess.run([str(VENV_BIN / "jupyter"), "labextension", "list"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1"})
    out = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    line = next((ln for ln in out.splitlines() if "jupyter-spark-openstack" in ln), "")
    assert re.search(r"jupyter-spark-openstack v\S+ enabled\s+OK", line), out


def test_wheel_installs_the_extension_where_jupyterlab_finds_it(tmp_path):
    """`pip install .` path: the wheel carries the built extension as data files under
    share/jupyter/labextensions (and the server-extension config under etc/jupyter), and a
    JupyterLab whose data path has that prefix lists the extension as enabled and OK."""
    import zipfile

    wheels = tmp_path / "wheels"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q",
                           "-w", str(wheels)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = wheels.glob("jupyter_spark_openstack-*.whl")
    names = zipfile.ZipFile(whl).namelist()
    data = "jupyter_spark_openstack-{}.data/data/".format(whl.name.split("-")[1])
    ext = data + "share/jupyter/labextensions/jupyter-spark-openstack/"
    assert ext + "package.json" in names
    built = json.loads((BUILT / "package.json").read_text())
    assert ext + built["jupyterlab"]["_build"]["load"] in names
    assert data + "etc/jupyter/jupyter_server_config.d/jupyter_spark_openstack.json" in names

    prefix = tmp_path / "prefix"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q",
                           # --ignore-installed: never uninstall the venv's own (editable)
                           # install of this package, which every later test needs
                           "--ignore-installed", "--prefix", str(prefix), str(whl)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    share = prefix / "share" / "jupyter"
    assert (share / "labextensions" / "jupyter-spark-openstack" / "package.json").is_file()
    proc = subprocess.run([str(VENV_BIN / "jupyter"), "labextension", "list"], capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "JUPYTER_PATH": str(share), "NO_COLOR": "1"})
    out = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    section = out.split(str(share / "labextensions"), 1)
    assert len(section) == 2, out
    first = section[1].split("\n/", 1)[0]  # up to the next data directory
    assert re.search(r"jupyter-spark-openstack v\S+ enabled\s+OK", first), out
