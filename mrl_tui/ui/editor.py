"""How to open a hit in the user's editor: which program, which line, and the command for it.

The line is the chunk's best-matching line, not its first: the line of the file (within the
chunk's range) holding the most distinct query terms (the words the preview marks), the first
such line on a tie, the chunk's first line when no line has any.

The editor is $VISUAL, else $EDITOR; without either, the platform's opener (xdg-open, open, or
the Windows file association), which cannot be told a line.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mrl_tui.ui.widgets.preview import query_terms

if TYPE_CHECKING:
    from textual.app import App

    from mrl_tui.core.corpus.chunking import Chunk

GOTO_FLAG_EDITORS = frozenset({"code", "code-insiders", "codium", "cursor", "windsurf"})
"""VS Code and its forks: `code -g path:line`."""
COLON_EDITORS = frozenset({"subl", "hx", "helix", "zed"})
"""Editors that read `path:line`."""
PLUS_EDITORS = frozenset(
    {"vi", "vim", "nvim", "gvim", "view", "nano", "pico", "emacs", "emacsclient", "micro"}
    | {"kak", "joe", "jed", "mg", "ne"}
)
"""Editors known to take `+LINE path`. Any other editor gets the path alone: an unknown program
might read `+12` as a file name."""


def editor_command(editor: str, path: Path, line: int) -> tuple[list[str], bool]:
    """(argv that opens `path`, whether it goes to `line`): `-g path:line` for VS Code,
    `path:line` for Sublime/Helix/Zed, `+LINE path` for vi, emacs, nano and the like, else the
    path alone."""
    argv = shlex.split(editor)
    name = Path(argv[0]).name.lower().removesuffix(".exe") if argv else ""
    if name in GOTO_FLAG_EDITORS:
        return [*argv, "-g", f"{path}:{line}"], True
    if name in COLON_EDITORS:
        return [*argv, f"{path}:{line}"], True
    if name in PLUS_EDITORS:
        return [*argv, f"+{line}", str(path)], True
    return [*argv, str(path)], False


def user_editor() -> str | None:
    """$VISUAL, else $EDITOR (the usual order), else None."""
    return os.environ.get("VISUAL") or os.environ.get("EDITOR") or None


def platform_opener() -> list[str] | None:
    """The desktop's "open this file" command, or None (Windows: `os.startfile`, see `open_hit`)."""
    if sys.platform == "darwin":
        return ["open"]
    if sys.platform != "win32" and shutil.which("xdg-open"):
        return ["xdg-open"]
    return None


def best_line(lines: list[str], first_line: int, query: str) -> int:
    """The line number (counting from `first_line`) of the line holding the most distinct query
    terms; the first one on a tie; `first_line` when no line has a term."""
    from mrl_tui.core.search.lexical import query_terms as keyword_terms

    terms = set(query_terms(query))
    best, best_count = first_line, 0
    for number, text in enumerate(lines, start=first_line):
        count = len(terms & set(keyword_terms(text)))  # identifiers' parts count too
        if count > best_count:
            best, best_count = number, count
    return best


def chunk_best_line(root: Path, chunk: Chunk, query: str) -> int:
    """`best_line` over the file's own lines in the chunk's range (the file is only read); the
    chunk's text where the file cannot be read any more."""
    try:
        with open(root / chunk.path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()[chunk.start_line - 1 : chunk.end_line]
    except OSError:
        lines = chunk.text.splitlines()
    return best_line(lines, chunk.start_line, query)


def open_hit(app: App[object], root: Path, chunk: Chunk, query: str) -> None:
    """Open the hit's file at its best line: in the user's editor (the app hands it the
    terminal), else with the platform's opener; what happened is said in one line."""
    path = root / chunk.path
    line = chunk_best_line(root, chunk, query)
    editor = user_editor()
    if editor is None:
        _open_with_platform(app, path, line)
        return
    argv, at_line = editor_command(editor, path, line)
    from textual.app import SuspendNotSupported

    try:
        with app.suspend():
            subprocess.run(argv, check=False)
    except SuspendNotSupported:
        app.notify("This terminal cannot hand over to an editor.", severity="warning")
        return
    except OSError as exc:
        app.notify(f"Could not start {argv[0]}: {exc.strerror or exc}", severity="error")
        return
    if not at_line:
        app.notify(
            f"Opened {chunk.path} at its start: mrl-tui does not know how to pass a line to "
            f"{Path(argv[0]).name} (line {line} is the best match)."
        )


def _open_with_platform(app: App[object], path: Path, line: int) -> None:
    opener = platform_opener()
    try:
        if opener is None and sys.platform == "win32":
            os.startfile(path)  # type: ignore[attr-defined]  # Windows only
            name = "the default app"
        elif opener is not None:
            subprocess.Popen(
                [*opener, str(path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            name = opener[0]
        else:
            app.notify(
                "No $VISUAL, $EDITOR or desktop opener: set EDITOR to open files "
                "(e.g. export EDITOR=vim).",
                severity="warning",
            )
            return
    except OSError as exc:
        app.notify(f"Could not open {path.name}: {exc.strerror or exc}", severity="error")
        return
    app.notify(
        f"No $VISUAL or $EDITOR: opened {path.name} with {name}, which cannot go to line {line}."
    )
