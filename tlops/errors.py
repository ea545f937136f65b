"""User-facing errors: each says what was wrong, where, and how to fix it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tlops.records import ValidationReport


class TlopsError(Exception):
    """An error caused by the user's input (config, data, names). Printed without a traceback."""


class ConfigError(TlopsError):
    pass


class DataError(TlopsError):
    pass


class ValidationFailed(TlopsError):
    """Data validation found rule violations; `report` is the full validation report."""

    def __init__(self, message: str, report: ValidationReport):
        super().__init__(message)
        self.report = report


class BackboneError(TlopsError):
    pass


class RegistryError(TlopsError):
    """A registry operation that cannot go ahead (unknown model/version, a refused alias move, ...)."""


class AliasMoveRefused(RegistryError):
    """A compare-and-set alias move found the alias pointing elsewhere than expected."""
