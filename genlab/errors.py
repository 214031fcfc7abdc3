"""Errors that reach the user.

Every mistake a user can make (a wrong name, a missing file, a bad option) raises a subclass of
:class:`GenlabError` whose message names the bad value, the valid choices and the fix, in one line.
The CLI prints that line and exits non-zero; Python callers can catch the class they care about.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class GenlabError(Exception):
    """Base class of every error caused by user input, bad files or a failed run."""


class UnknownNameError(GenlabError, KeyError):
    """A recipe, family, dataset or config key that does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ConfigError(GenlabError, ValueError):
    """A config value of the wrong type or outside its allowed range."""


class DataError(GenlabError, ValueError):
    """Missing, empty, unreadable or wrongly shaped data."""


class CheckpointError(GenlabError):
    """A run directory or checkpoint that is missing, corrupt, foreign or already taken."""


class TrainingError(GenlabError):
    """Training could not go on (for example the loss became NaN or infinite)."""


def unknown(kind: str, name: str, choices: Iterable[str], hint: str = "") -> UnknownNameError:
    """Build the standard "unknown X" error with close matches and the full list of choices."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=1)
    did_you_mean = f" Did you mean {close[0]!r}?" if close else ""
    listing = ", ".join(choices) if choices else "(none)"
    tail = f" {hint}" if hint else ""
    plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"
    return UnknownNameError(f"unknown {kind} {name!r}.{did_you_mean} Valid {plural}: {listing}.{tail}")


class StoreError(GenlabError):
    """The generation store could not be opened, migrated or written (a bad URL, a newer schema, a failed write)."""


class NotFoundError(StoreError, LookupError):
    """A model, generation, collection or key that the store does not hold."""


class AccessError(StoreError, PermissionError):
    """A missing or revoked API key, or a role that may not do what was asked."""
