"""Broken interpreters for the diagnostics and doctor tests: venvs that lack a package."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

SITE = sysconfig.get_paths()["purelib"]


def make_venv(root: Path, exclude: tuple[str, ...] | None) -> str:
    """A venv without pip. ``exclude=None``: bare (nothing importable). Otherwise it sees this
    environment's packages (symlinked) except those whose names start with ``exclude``."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    if exclude is not None:
        site = Path(sysconfig.get_paths(vars={"base": str(root), "platbase": str(root)})["purelib"])
        for entry in os.listdir(SITE):
            if not entry.lower().startswith(exclude):
                (site / entry).symlink_to(Path(SITE) / entry)
    return str(root / "bin" / "python")
