"""Run every benchmark in bench/ one after the other (each prints its own table)."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    rc = 0
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"\n===== {script.name} =====", flush=True)
        rc |= subprocess.call([sys.executable, str(script)])
    sys.exit(rc)
