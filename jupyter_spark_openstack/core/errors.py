"""Errors raised by the core. Adapters turn them into exit codes, HTTP errors or spawn failures."""

from __future__ import annotations


class SparkOpenStackError(Exception):
    """Base class of every error this package raises on purpose."""


class ValidationError(SparkOpenStackError, ValueError):
    """A value given by a person (CLI, spawn form, REST body, config) is not allowed.

    The message always names the field, the value and what is allowed.
    """

    def __init__(self, field: str, value: object, allowed: str):
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}: {value!r} is not allowed; expected {allowed}")

    def to_dict(self) -> dict:
        return {"field": self.field, "value": repr(self.value), "allowed": self.allowed,
                "message": str(self)}


class ClusterError(SparkOpenStackError):
    """A cluster could not be started, reached or stopped."""


class ProvisionerError(SparkOpenStackError):
    """A provisioner's backend failed; ``transient`` says whether a retry may help."""

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.transient = transient


class QuotaError(ProvisionerError):
    """The backend cannot hold what was asked for; the message has the numbers."""
