"""Errors the user caused or can fix. The CLI prints their message as one line; the TUI shows it."""


class MrlError(Exception):
    """A problem worth one clear line to the user, never a traceback."""


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
