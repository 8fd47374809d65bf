"""``diagnose LOGFILE [--json]``: why a PySpark kernel died, from a log file."""

from __future__ import annotations

import json
import sys

from ..core.diagnostics import classify


def register(sub) -> None:
    p = sub.add_parser(
        "diagnose", help="classify a kernel / Spark driver log: category, explanation, fix, evidence",
        description="Read LOGFILE (a kernel's captured output, its own log, or any Spark driver "
                    "log; '-' reads standard input) and say why the kernel died or its "
                    "SparkSession failed. Exit 0 when the file was read (whatever the category), "
                    "2 when it cannot be read.")
    p.add_argument("logfile", metavar="LOGFILE", help="path of the log file, or - for stdin")
    p.add_argument("--json", action="store_true",
                   help="print JSON with keys category, title, explanation, fix, evidence")
    p.set_defaults(func=_diagnose)


def _diagnose(args) -> int:
    try:
        if args.logfile == "-":
            text = sys.stdin.read()
        else:
            with open(args.logfile, encoding="utf-8", errors="replace") as f:
                text = f.read()
    except OSError as e:
        print(f"jupyter-spark-openstack: error: LOGFILE: cannot read {args.logfile!r}: "
              f"{e.strerror or e}; expected a readable log file", file=sys.stderr)
        return 2
    diag = classify(text)
    if args.json:
        print(json.dumps(diag.to_dict(), indent=2))
        return 0
    print(f"category:    {diag.category}")
    print(f"title:       {diag.title}")
    print(f"explanation: {diag.explanation}")
    print(f"fix:         {diag.fix}")
    print("evidence:")
    for line in diag.evidence:
        print(f"  {line}")
    return 0
