"""What the app remembers between runs: preferences (theme, panels) and state (query history, the
view of each folder).

Two small JSON files: ``settings.json`` in the platform's user config dir, ``state.json`` in its
user state dir (``$MRL_TUI_CONFIG_DIR`` / ``$MRL_TUI_STATE_DIR`` override them; the tests set
both). Written atomically (a temporary file, then a rename). A damaged or foreign file is read as
empty and replaced at the next save: remembering is a convenience, never a reason to fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CONFIG_ENV = "MRL_TUI_CONFIG_DIR"
STATE_ENV = "MRL_TUI_STATE_DIR"
HISTORY_MAX = 100
"""Queries kept for ↑ / ↓ (the newest first, each once)."""
FOLDERS_MAX = 50
"""Folders whose view is kept (the most recently used)."""


def config_dir() -> Path:
    override = os.environ.get(CONFIG_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("mrl-tui", appauthor=False))


def state_dir() -> Path:
    override = os.environ.get(STATE_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_state_dir("mrl-tui", appauthor=False))


def read_json(path: Path) -> dict[str, Any]:
    """The object in `path`, or {} when it is missing, unreadable, not JSON or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: Path, data: dict[str, Any]) -> bool:
    """Write atomically: a reader sees the old file or the new one, never half of one. False
    when the folder cannot be written (the app then just forgets)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError:
        return False
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return False
    return True


@dataclass
class FolderView:
    """How a folder was last looked at."""

    dim: int | None = None
    auto_router: bool | None = None
    ref_auto: bool = True  # the reference follows the default rule (`reference.py`)
    ref_dim: int | None = None
    ref_mode: str = "exact"

    @classmethod
    def from_dict(cls, data: object) -> FolderView:
        """Fields of the right type are taken; anything else keeps its default."""
        view = cls()
        if not isinstance(data, dict):
            return view
        for name, kinds in (
            ("dim", int),
            ("auto_router", bool),
            ("ref_auto", bool),
            ("ref_dim", int),
            ("ref_mode", str),
        ):
            value = data.get(name)
            if isinstance(value, kinds) and (kinds is bool or not isinstance(value, bool)):
                setattr(view, name, value)
        view.ref_mode = {"funnel": "graph"}.get(view.ref_mode, view.ref_mode)  # older files
        if view.ref_mode not in ("exact", "graph"):
            view.ref_mode = "exact"
        return view


@dataclass
class Remembered:
    theme: str | None = None
    panels: bool = True
    history: list[str] = field(default_factory=list)  # newest first
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)  # most recent last

    @classmethod
    def load(cls) -> Remembered:
        settings = read_json(config_dir() / "settings.json")
        state = read_json(state_dir() / "state.json")
        theme = settings.get("theme")
        history = state.get("history")
        folders = state.get("folders")
        return cls(
            theme=theme if isinstance(theme, str) else None,
            panels=settings.get("panels") is not False,
            history=[q for q in history if isinstance(q, str)][:HISTORY_MAX]
            if isinstance(history, list)
            else [],
            folders={k: v for k, v in folders.items() if isinstance(v, dict)}
            if isinstance(folders, dict)
            else {},
        )

    def save(self) -> None:
        write_json(config_dir() / "settings.json", {"theme": self.theme, "panels": self.panels})
        write_json(state_dir() / "state.json", {"history": self.history, "folders": self.folders})

    def add_query(self, text: str) -> None:
        """The newest first; a repeated query moves to the front instead of appearing twice."""
        text = text.strip()
        if text:
            self.history = [text, *(q for q in self.history if q != text)][:HISTORY_MAX]

    def folder(self, root: Path) -> FolderView:
        return FolderView.from_dict(self.folders.get(str(root)))

    def set_folder(self, root: Path, view: FolderView) -> None:
        self.folders.pop(str(root), None)
        self.folders[str(root)] = asdict(view)
        while len(self.folders) > FOLDERS_MAX:
            del self.folders[next(iter(self.folders))]
