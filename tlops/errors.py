"""User-facing errors: each says what was wrong, where, and how to fix it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

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


def exception_chain(e: BaseException | None) -> Iterator[BaseException]:
    """`e`, then what it was raised from or while handling (`__cause__`, else `__context__`), and so on; each once."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def interruption_behind(e: BaseException) -> BaseException | None:
    """The Ctrl-C or termination signal (a BaseException that is not an Exception: KeyboardInterrupt, Prefect's
    TerminationSignal) that a library turned into its own error, else None. torch.save does this: a signal raised
    inside its file writes comes out as `RuntimeError: ... unexpected pos`, and a stopped run would read as failed."""
    return next((c for c in exception_chain(e) if not isinstance(c, (Exception, GeneratorExit))), None)
