"""The real cloud-init of the machine image, run on a cloud-config: ``cloud-init schema``.

cloud-init 22.4 (bookworm) prints, for a valid file::

    Valid cloud-config: /tmp/user-data.yaml

(exit 0), preceded by ``Cloud config schema deprecations: <keys>`` when it uses deprecated
keys; for an invalid one it exits 1 with ``Error:`` / ``Cloud config schema errors: <path>:
<message>, ...`` on stderr. The file is handed in through a private ``/tmp``
(:func:`..image.run_in_image`): nothing is written into the cached image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .image import run_in_image

#: where the file is inside the image while cloud-init reads it
CONFIG_NAME = "user-data.yaml"
VALID_PREFIX = "Valid cloud-config: "
DEPRECATIONS_PREFIX = "Cloud config schema deprecations:"
ERRORS_PREFIX = "Cloud config schema errors:"


@dataclass(frozen=True)
class SchemaCheck:
    """What ``cloud-init schema --config-file`` said about one cloud-config."""

    returncode: int
    stdout: str
    stderr: str
    path: str            # the file's path inside the image

    @property
    def valid(self) -> bool:
        return self.returncode == 0 and f"{VALID_PREFIX}{self.path}" in self.stdout.splitlines()

    @property
    def deprecations(self) -> str:
        """The deprecation text cloud-init printed ('' when none)."""
        return _after(self.stdout + "\n" + self.stderr, DEPRECATIONS_PREFIX)

    @property
    def errors(self) -> str:
        """The schema errors cloud-init printed ('' when none)."""
        return _after(self.stderr + "\n" + self.stdout, ERRORS_PREFIX)

    @property
    def output(self) -> str:
        return (self.stdout + self.stderr).strip()


def _after(text: str, prefix: str) -> str:
    for line in text.splitlines():
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    return ""


def schema_check(rootfs: str | os.PathLike, cloud_config: str | bytes, *,
                 timeout: float = 120) -> SchemaCheck:
    """Run the image's ``cloud-init schema --config-file`` on ``cloud_config`` (root only)."""
    path = f"/tmp/{CONFIG_NAME}"
    proc = run_in_image(rootfs, ["cloud-init", "schema", "--config-file", path],
                        files={CONFIG_NAME: cloud_config}, timeout=timeout)
    return SchemaCheck(returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr,
                       path=path)
