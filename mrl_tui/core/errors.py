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
