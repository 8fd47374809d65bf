"""Build hook: the JupyterLab extension is built (npm) into the Python package when the
package is built or pip-installed, and its files are installed as data files under
``share/jupyter/labextensions/jupyter-spark-openstack`` so that JupyterLab finds it with no
npm on the admin's machine. Everything else is declared in setup.cfg."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
LABEXT_SRC = HERE / "labextension"
LABEXT_OUT = HERE / "jupyter_spark_openstack" / "labextension"
LABEXT_DEST = "share/jupyter/labextensions/jupyter-spark-openstack"
# What the built extension depends on: newer than the built package.json -> rebuild.
INPUTS = ("src", "style", "scripts", "package.json", "package-lock.json", "tsconfig.json")


def _newest_input_mtime() -> float:
    newest = 0.0
    for name in INPUTS:
        p = LABEXT_SRC / name
        files = [p] if p.is_file() else (p.rglob("*") if p.is_dir() else [])
        for f in files:
            if f.is_file():
                newest = max(newest, f.stat().st_mtime)
    return newest


def labextension_is_stale() -> bool:
    built = LABEXT_OUT / "package.json"
    if not built.exists():
        return True
    if not LABEXT_SRC.is_dir():  # e.g. an sdist with only the built extension
        return False
    return _newest_input_mtime() > built.stat().st_mtime


def build_labextension() -> None:
    """npm ci (when node_modules is missing) + npm run build:prod, if the output is stale."""
    if os.environ.get("JUPYTER_SPARK_OPENSTACK_SKIP_LABEXTENSION") == "1":
        return
    if not labextension_is_stale():
        return
    npm = shutil.which("npm")
    if npm is None:
        if (LABEXT_OUT / "package.json").exists():
            print("warning: npm not found; using the existing (possibly stale) built "
                  "JupyterLab extension", file=sys.stderr)
            return
        raise SystemExit(
            "error: building the JupyterLab extension needs node >= 18 and npm "
            "(apt-get install nodejs npm), or a wheel that already contains it")
    if not (LABEXT_SRC / "node_modules").is_dir():
        subprocess.check_call([npm, "ci", "--no-audit", "--no-fund"], cwd=LABEXT_SRC)
    subprocess.check_call([npm, "run", "build:prod"], cwd=LABEXT_SRC)
    if not (LABEXT_OUT / "package.json").exists():
        raise SystemExit(f"error: npm run build:prod did not produce {LABEXT_OUT}/package.json")


def labextension_data_files() -> list[tuple[str, list[str]]]:
    """(target dir, [files]) pairs placing the built extension under share/jupyter."""
    out: dict[str, list[str]] = {}
    if not LABEXT_OUT.is_dir():
        return []
    for f in sorted(LABEXT_OUT.rglob("*")):
        if f.is_file():
            rel = f.relative_to(LABEXT_OUT).parent
            target = LABEXT_DEST if str(rel) == "." else f"{LABEXT_DEST}/{rel.as_posix()}"
            out.setdefault(target, []).append(f.relative_to(HERE).as_posix())
    return sorted(out.items())


class BuildPyWithLabextension(build_py):
    """build_py that first builds the lab extension and registers its data files."""

    def run(self):
        build_labextension()
        data_files = self.distribution.data_files
        if data_files is None:
            data_files = self.distribution.data_files = []
        present = {d for d, _ in data_files if isinstance(d, str)}
        # In place: install_data may already hold a reference to this list.
        data_files.extend(e for e in labextension_data_files() if e[0] not in present)
        # package_data globs are resolved lazily; drop any early resolution.
        self.__dict__.pop("data_files", None)
        super().run()


if __name__ == "__main__":  # importable by tests for labextension_is_stale()
    setup(cmdclass={"build_py": BuildPyWithLabextension})
