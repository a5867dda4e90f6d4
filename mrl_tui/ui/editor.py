"""How to open a file at a line in the user's editor."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

GOTO_FLAG_EDITORS = frozenset({"code", "code-insiders", "codium", "cursor", "windsurf"})
"""VS Code and its forks: `code -g path:line`."""
COLON_EDITORS = frozenset({"subl", "hx", "helix", "zed"})
"""Editors that read `path:line`."""


def editor_command(editor: str, path: Path, line: int) -> list[str]:
    """argv that opens `path` at `line`.

    `-g path:line` for VS Code, `path:line` for Sublime/Helix/Zed, and otherwise `+LINE path`,
    which vi, vim, nvim, nano, emacs, micro, joe, mg and most terminal editors understand.
    """
    argv = shlex.split(editor)
    name = Path(argv[0]).name.lower().removesuffix(".exe") if argv else ""
    if name in GOTO_FLAG_EDITORS:
        return [*argv, "-g", f"{path}:{line}"]
    if name in COLON_EDITORS:
        return [*argv, f"{path}:{line}"]
    return [*argv, f"+{line}", str(path)]


def user_editor() -> str | None:
    """$VISUAL, else $EDITOR (the usual order), else None."""
    return os.environ.get("VISUAL") or os.environ.get("EDITOR") or None
