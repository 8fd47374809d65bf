"""Keys derived from JupyterHub user and server names, and names safe to print.

JupyterHub user names are almost arbitrary text (``a.b``, ``a_b``, ``Zoë``, 200 characters,
even control characters with some authenticators). Everything this project derives from them
(run directories, Spark application names, VM names, tags) comes from :func:`user_key`,
which maps every distinct ``(user, server)`` pair to a distinct key:

* ``[a-z0-9]`` stand for themselves; every other character becomes ``-xx`` per UTF-8 byte
  (lower-case hex), so ``a.b`` -> ``a-2eb``, ``a_b`` -> ``a-5fb``, ``a-b`` -> ``a-2db``;
* a named server is appended after ``--``, which no escaped text contains (a ``-`` is always
  followed by two hex digits): ``alice`` + ``x`` -> ``alice--x``, user ``alice-x`` -> ``alice-2dx``;
* a key shorter than :data:`KEY_LENGTH` is that escaped text; a longer one is cut and ends in
  128 bits of SHA-256 of the pair, and is exactly :data:`KEY_LENGTH` long, so the two kinds
  never meet. Distinct pairs map to distinct keys (for the long ones, unless SHA-256 collides).

Keys use only ``[a-z0-9-]``: they fit in file names, host names, Nova tags and Spark
properties as they are. :func:`printable` is for log lines and messages: it shows a name with
its control characters escaped, so a user name cannot forge a log line.
"""

from __future__ import annotations

import hashlib
import re

from .errors import ValidationError

#: every key is at most this long (a VM name ``<hub_id>-<key>-w<N>`` stays within 63)
KEY_LENGTH = 40
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_HUB_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,18}[a-z0-9])?$")


def escape(text: str) -> str:
    """``[a-z0-9]`` kept, every other character as ``-xx`` per UTF-8 byte (reversible)."""
    out = []
    for ch in text:
        if ch in _SAFE:
            out.append(ch)
        else:
            out.extend(f"-{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
    return "".join(out)


def user_key(user: str, server: str = "") -> str:
    """The key of one user's server: distinct pairs give distinct keys (module docstring)."""
    if not isinstance(user, str) or not user:
        raise ValidationError("user name", user, "a non-empty name")
    if not isinstance(server, str):
        raise ValidationError("server name", server, "a name (or '' for the default server)")
    exact = escape(user) + (f"--{escape(server)}" if server else "")
    if len(exact) < KEY_LENGTH:
        return exact
    digest = hashlib.sha256(f"{user}\0{server}".encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{exact[:KEY_LENGTH - 33]}-{digest}"


def parse_hub_id(field_name: str, value: object) -> str:
    """A hub id: 1-20 of ``[a-z0-9-]``, starting and ending with a letter or digit."""
    if not isinstance(value, str) or not _HUB_ID.match(value):
        raise ValidationError(field_name, value,
                              "1 to 20 lower-case letters, digits and '-', starting and ending "
                              "with a letter or digit")
    return value


def cluster_id(hub_id: str, user: str, server: str = "") -> str:
    """``<hub_id>-<user_key>``: names a cluster on a backend several hubs may share."""
    return f"{parse_hub_id('hub_id', hub_id)}-{user_key(user, server)}"


def printable(text: object) -> str:
    """``text`` for a log line or a message: control and other unprintable characters as
    Python escapes (``\\r``, ``\\x1b``, ``\\u2028``), everything else as it is."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)
