"""Errors the user caused or can fix. The CLI prints their message as one line; the TUI shows it.

Messages are in the user's words: a setting is named as a word ("k must be at least 1", "dims:
'x' is not a positive whole number", "give a writable cache folder"), never as a CLI flag. Each
error lists the settings its message names (`MrlError.settings`); a front end that spells them
otherwise, the CLI with its flags, rewrites them with `spelled`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence


class MrlError(Exception):
    """A problem worth one clear line to the user, never a traceback.

    `settings`: the settings the message names, each written in it as its word ("k", "dims",
    "device", "embed backend", "cache folder", ...)."""

    def __init__(self, message: str = "", *, settings: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.settings = tuple(settings)


class Message(str):
    """A line for the user that is no error (a note: "used from memory this time") but names
    settings as an error does (`MrlError.settings`), so `spelled` can spell them too."""

    settings: tuple[str, ...]

    def __new__(cls, text: str, settings: Sequence[str] = ()) -> Message:
        message = super().__new__(cls, text)
        message.settings = tuple(settings)
        return message


def spelled(exc: BaseException | str, names: Mapping[str, str]) -> str:
    """`exc`'s message with each setting it names (`MrlError.settings`) spelled as `names` says
    (e.g. ``{"k": "--k"}``). A setting leads its message ("k must be at least 1") or comes in the
    advice at its end ("give a writable cache folder"): the word, as a whole word, is replaced
    there (a path in between may hold the same word)."""
    text = str(exc)
    for word in getattr(exc, "settings", ()):
        if word not in names:
            continue
        found = list(re.finditer(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text))
        if found:
            where = found[0] if found[0].start() == 0 else found[-1]
            text = text[: where.start()] + names[word] + text[where.end() :]
    return text


class InputError(MrlError):
    """Bad input from the user: a missing path, a dimension out of range, an unknown model."""


class ModelLoadError(MrlError):
    """The embedding model could not be loaded (not found, not reachable offline, bad files)."""


class CacheError(MrlError):
    """The on-disk cache is unreadable or from another schema; the caller rebuilds it."""


class Cancelled(MrlError):
    """Long work stopped because the user asked; whatever was committed is kept."""


class CacheDamaged(CacheError):
    """The cache was found damaged after it opened. `chunk_ids`: the damaged rows (their files
    are embedded again); empty: the database itself (rebuilt from the folder)."""

    def __init__(self, message: str, chunk_ids: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.chunk_ids = chunk_ids


class CacheUnwritable(MrlError):
    """The cache cannot be written (disk full, read-only, a file in the way); what is committed
    stays, and the message says what to do."""
