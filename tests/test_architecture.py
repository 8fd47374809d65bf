"""The core imports neither jupyterhub nor jupyter_server (checked on the source, and live)."""

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "jupyter_spark_openstack" / "core"
FORBIDDEN = ("jupyterhub", "jupyter_server", "notebook", "jupyterlab")


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_core_sources_import_no_jupyter_app():
    bad = [(str(p.relative_to(CORE)), m) for p in CORE.rglob("*.py") for m in _imports(p)
           if m.split(".")[0] in FORBIDDEN]
    assert bad == []


def test_importing_core_loads_no_jupyter_app():
    mods = [f"jupyter_spark_openstack.core.{p.stem}" for p in CORE.glob("*.py") if p.stem != "__init__"]
    code = ("import importlib, sys\n"
            f"for m in {mods!r}: importlib.import_module(m)\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
