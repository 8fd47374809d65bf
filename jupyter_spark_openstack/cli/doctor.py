"""``doctor [--json]``: check Java, SPARK_HOME, the PySpark kernelspecs, the master and the
Spark Connect servers of Connect kernelspecs."""

from __future__ import annotations

import json

from ..core.doctor import run_doctor
from ..core.kernelspec import ENV_MASTER_URL

_MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}


def register(sub) -> None:
    p = sub.add_parser(
        "doctor", help="check this host's setup for PySpark kernels; exit 1 when a check fails",
        description="Checks: java present and new enough for this Spark; SPARK_HOME valid; "
                    "ipykernel, pyspark and py4j importable by each PySpark kernelspec's "
                    "interpreter; the master reachable; this host's name resolvable; each "
                    f"kernelspec's master is your cluster (${ENV_MASTER_URL}); each Spark "
                    "Connect kernelspec's server answers, takes its token and runs a Python UDF "
                    "with the kernel's Python, pyspark and pyarrow versions. "
                    "Exit 0 when no check fails (warnings allowed), 1 otherwise.")
    p.add_argument("--json", action="store_true", help='print {"ok": ..., "checks": [...]} as JSON')
    p.add_argument("--timeout", type=float, default=3.0,
                   help="seconds for each network check (default 3)")
    p.set_defaults(func=_doctor)


def _doctor(args) -> int:
    from ..core.models import parse_positive_int  # noqa: PLC0415

    if not 0 < args.timeout <= 120:
        parse_positive_int("--timeout", args.timeout, maximum=120)  # raises ValidationError -> exit 2
    result = run_doctor(timeout=args.timeout)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for c in result["checks"]:
            print(f"[{_MARK.get(c['status'], c['status'])}] {c['name']}: {c['message']}")
            if c["fix"] and c["status"] != "ok":
                print(f"       fix: {c['fix']}")
        print("all checks passed" if result["ok"] else "some checks FAILED")
    return 0 if result["ok"] else 1
