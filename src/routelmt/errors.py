"""Exceptions that the CLI turns into a one-line message and a non-zero exit code."""

from __future__ import annotations


class RouteLMTError(Exception):
    """Base class: anything the user can fix by changing input, config or environment."""


class InputError(RouteLMTError):
    """Bad input data; the message names the file, the line and the field when known."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.field = field
        where = ""
        if path is not None:
            where = str(path)
            if line is not None:
                where += f":{line}"
            where += ": "
        if field is not None:
            where += f"field '{field}': "
        super().__init__(where + message)


class ConfigError(RouteLMTError):
    """An invalid setting (budget outside (0, 1), unknown registry name, ...)."""


class MissingDependencyError(RouteLMTError):
    """An optional package or model checkpoint is not installed; says how to provide it."""


class BackendError(RouteLMTError):
    """A translator backend failed (down, slow, or answered garbage)."""
