"""An OpenStack API emulator (Keystone v3, Nova v2.1, Glance v2 and Neutron v2.0 reads) for
tests and demos: real HTTP on 127.0.0.1, cloud-init emulation that starts real Spark workers,
fault injection and a call log. See :mod:`.app`."""

from .app import PASSWORD, USERNAME, Call, Emulator, request_kind
from .faults import ACTIONS, Fault

__all__ = ["ACTIONS", "Call", "Emulator", "Fault", "PASSWORD", "USERNAME", "request_kind"]
