"""``jupyter-spark-openstack`` (also ``jupyter spark-openstack``): a thin CLI over the core.

Each command group lives in its own module with a ``register(subparsers)`` function; the
parser turns every bad argument into exit code 2 with a message naming the option, the value
and what is allowed.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .._version import __version__
from ..core.errors import SparkOpenStackError, ValidationError

# command modules, in the order `--help` lists them
COMMAND_MODULES = ["kernel", "cluster", "diagnose", "doctor", "emulator"]


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):  # exit 2, like argparse, with our prefix
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="jupyter-spark-openstack",
        description="A Spark cluster per JupyterHub user, on OpenStack or on this host: "
                    "kernelspecs, local clusters, diagnostics.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.{name}":
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except ValidationError as e:
        parser.exit(2, f"jupyter-spark-openstack: error: {e}\n")
    except SparkOpenStackError as e:
        parser.exit(1, f"jupyter-spark-openstack: error: {e}\n")
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
