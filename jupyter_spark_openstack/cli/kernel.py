"""``kernel install|list|remove``: PySpark kernelspecs written through jupyter_client."""

from __future__ import annotations

import json
import sys

from ..core.kernelspec import (
    build_kernel_json,
    install_kernelspec,
    kernels_dir,
    list_kernelspecs,
    remove_kernelspec,
)
from ..core.models import KernelSettings, parse_readable_file

FIELD_NAMES = {
    "master": "--master", "name": "--name", "display_name": "--display-name",
    "executor_memory": "--executor-memory", "executor_cores": "--executor-cores",
    "cores_max": "--cores-max", "driver_memory": "--driver-memory", "conf": "--conf",
    "connect_url": "--connect", "secret_file": "--secret-file",
    "connect_token_file": "--connect-token-file", "webui_url": "--webui-url",
}


def _location(sp, verb: str) -> None:
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--user", action="store_true",
                   help=f"{verb} the user's Jupyter data dir, `jupyter --data-dir`/kernels "
                        "(the default for install)")
    g.add_argument("--sys-prefix", action="store_true",
                   help=f"{verb} this Python environment: {sys.prefix}/share/jupyter/kernels")
    g.add_argument("--prefix", metavar="P", default=None,
                   help=f"{verb} P/share/jupyter/kernels")


def register(sub) -> None:
    p = sub.add_parser("kernel", help="install, list or remove PySpark kernelspecs",
                       description="PySpark kernelspecs: kernel.json files that start "
                                   "`python -m jupyter_spark_openstack.kernel` with `spark` and "
                                   "`sc` bound to a Spark master.")
    ksub = p.add_subparsers(dest="kernel_command", metavar="ACTION")
    ksub.required = True

    i = ksub.add_parser(
        "install", help="write a PySpark kernelspec (kernel.json) through jupyter_client",
        description="Write a PySpark kernelspec. Every value is checked first: a bad one exits "
                    "with code 2, names the option and writes nothing.")
    i.add_argument("--master", metavar="URL", default=None,
                   help="Spark master: spark://host:port[,host:port...] or local, local[N], local[*] "
                        "(required unless --connect)")
    i.add_argument("--connect", metavar="URL", default=None,
                   help="make a Spark Connect kernel for sc://host:port (the token is read from "
                        "--connect-token-file or SPARK_CONNECT_AUTHENTICATE_TOKEN, never from the command line)")
    i.add_argument("--connect-token-file", metavar="PATH", default=None,
                   help="file holding the Spark Connect token (with --connect)")
    i.add_argument("--name", default="pyspark", help="kernelspec name (default: pyspark)")
    i.add_argument("--display-name", metavar="D", default=None,
                   help="name shown in the launcher (default: 'PySpark (classic, RDD API)', "
                        "or 'PySpark' with --connect)")
    i.add_argument("--executor-memory", metavar="M", default=None,
                   help="spark.executor.memory, Spark form: 512m, 2g, 1t")
    i.add_argument("--executor-cores", metavar="N", default=None, help="spark.executor.cores (> 0)")
    i.add_argument("--cores-max", metavar="N", default=None,
                   help="spark.cores.max: total cores of the kernel's app (>= --executor-cores)")
    i.add_argument("--driver-memory", metavar="M", default=None,
                   help="spark.driver.memory of the kernel's driver JVM, Spark form")
    i.add_argument("--conf", metavar="spark.key=value", action="append", default=[],
                   help="any other Spark property (repeatable); keys start with 'spark.'")
    i.add_argument("--secret-file", metavar="PATH", default=None,
                   help="file holding the cluster's spark.authenticate secret (the kernel reads "
                        "it at start; the secret itself is never written to kernel.json)")
    i.add_argument("--webui-url", metavar="URL", default=None,
                   help="the master's web UI, e.g. http://127.0.0.1:8080 (shown by the server extension)")
    _location(i, "install into")
    i.add_argument("--replace", action="store_true", help="overwrite a kernelspec of the same name")
    i.add_argument("--dry-run", action="store_true",
                   help="print the kernel.json that would be written, write nothing")
    i.set_defaults(func=_install)

    ls = ksub.add_parser("list", help="list installed PySpark kernelspecs",
                         description="List the PySpark kernelspecs Jupyter can find (or only "
                                     "those of one location).")
    ls.add_argument("--all", action="store_true", help="also list kernelspecs not written by this package")
    ls.add_argument("--json", action="store_true", help="print JSON")
    _location(ls, "look only in")
    ls.set_defaults(func=_list)

    rm = ksub.add_parser("remove", help="remove an installed PySpark kernelspec",
                         description="Remove a kernelspec written by this package (others only "
                                     "with --force).")
    rm.add_argument("name", metavar="NAME", help="kernelspec name")
    rm.add_argument("--force", action="store_true",
                    help="also remove a kernelspec not written by this package")
    _location(rm, "look only in")
    rm.set_defaults(func=_remove)


def _location_kwargs(args) -> dict:
    return {"prefix": args.prefix, "user": args.user, "sys_prefix": args.sys_prefix}


def _search_dirs(args) -> list[str] | None:
    if not (args.prefix or args.user or args.sys_prefix):
        return None
    return [str(kernels_dir(**_location_kwargs(args)))]


def _install(args) -> int:
    # Validate everything before anything is written.
    secret = parse_readable_file("--secret-file", args.secret_file) if args.secret_file else None
    token = (parse_readable_file("--connect-token-file", args.connect_token_file)
             if args.connect_token_file else None)
    if token and not args.connect:
        from ..core.errors import ValidationError  # noqa: PLC0415

        raise ValidationError("--connect-token-file", args.connect_token_file,
                              "a token file only together with --connect sc://host:port")
    settings = KernelSettings.parse(
        master=args.master, name=args.name, display_name=args.display_name,
        executor_memory=args.executor_memory, executor_cores=args.executor_cores,
        cores_max=args.cores_max, driver_memory=args.driver_memory, conf=args.conf,
        connect_url=args.connect, secret_file=secret, connect_token_file=token,
        webui_url=args.webui_url, field_names=FIELD_NAMES,
    )
    if args.dry_run:
        dest = kernels_dir(**_location_kwargs(args)) / settings.name
        print(json.dumps(build_kernel_json(settings), indent=1, sort_keys=True))
        print(f"(dry run: would write {dest}/kernel.json)", file=sys.stderr)
        return 0
    path = install_kernelspec(settings, replace=args.replace, field_names=FIELD_NAMES,
                              **_location_kwargs(args))
    print(f"installed kernelspec {settings.name!r} ({settings.display_name}) in {path}")
    return 0


def _list(args) -> int:
    specs = list_kernelspecs(kernel_dirs=_search_dirs(args), ours_only=not args.all)
    if args.json:
        print(json.dumps(specs, indent=2))
        return 0
    if not specs:
        print("no PySpark kernelspec installed" + ("" if args.all else " (--all lists the others)"))
        return 0
    for s in specs:
        target = s["connect_url"] or s["master_url"] or ""
        print(f"{s['name']:24s} {s['mode'] or '-':8s} {target:32s} {s['resource_dir']}")
    return 0


def _remove(args) -> int:
    path = remove_kernelspec(args.name, kernel_dirs=_search_dirs(args), force=args.force,
                             name_field="NAME")
    print(f"removed kernelspec {args.name!r} from {path}")
    return 0
