"""Keep an open folder indexed: file events (`watchfiles`) → debounced batches → `Library.update`.

Events are grouped until the folder is quiet for `STEP_MS` (at most `DEBOUNCE_MS`), then the
library re-indexes incrementally (a stat walk; only changed files are read and embedded) and
loads the new generation. Events inside a cache folder, in hidden paths (the walker leaves them
out), or of editors' swap and VCS files are dropped before that; an event for a file the walker
skips for another reason (an ignore rule, its size) costs one walk and reports nothing.

What a new generation does to the fitted parts: see `Library` (`REFIT_FRACTION`) and README.md.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mrl_tui.core.errors import MrlError

if TYPE_CHECKING:
    from mrl_tui.core.library import Library

DEBOUNCE_MS = 1000
STEP_MS = 100
"""A save is re-indexed `STEP_MS` after the last event of it (editors write in several steps)."""


@dataclass(frozen=True)
class WatchUpdate:
    events: int
    files_changed: int
    files_removed: int
    chunks: int
    seconds: float
    fit: str = ""
    """Which fit the new generation uses (`Library.fit_notes`), when there is one."""

    @property
    def line(self) -> str:
        """ "2 files changed, re-indexed in 1.3 s" (and "1 removed")."""
        n = self.files_changed
        parts = [f"{n} file{'s' if n != 1 else ''} changed"] if n or not self.files_removed else []
        if self.files_removed:
            parts.append(f"{self.files_removed} removed")
        return f"{', '.join(parts)}, re-indexed in {self.seconds:.1f} s"


class FolderWatcher:
    """Watches `library.root` in the calling thread until `stop` is set (`run`)."""

    def __init__(
        self,
        library: Library,
        on_update: Callable[[WatchUpdate], None],
        *,
        on_error: Callable[[str], None] | None = None,
        debounce_ms: int = DEBOUNCE_MS,
        step_ms: int = STEP_MS,
    ) -> None:
        self.library = library
        self.on_update = on_update
        self.on_error = on_error
        """Gets one line when a re-index fails (the watch goes on); without it, it raises."""
        self.debounce_ms = debounce_ms
        self.step_ms = step_ms
        self.stop = threading.Event()
        self._root = library.root
        own = library.store.directory.resolve()
        self._caches = {own}  # and every other index in the cache root, unless it holds the root
        if not self._root.is_relative_to(own.parent):
            self._caches.add(own.parent)

    def relevant(self, path: str) -> bool:
        """Not in a cache folder, not hidden, under the root."""
        target = Path(path)
        if any(target == c or target.is_relative_to(c) for c in self._caches):
            return False
        try:
            rel = target.relative_to(self._root)
        except ValueError:
            return False
        return not any(part.startswith(".") for part in rel.parts)

    def run(self, ready: threading.Event | None = None) -> None:
        """Blocks; each batch of relevant events is re-indexed and reported to `on_update`
        (when something changed). `ready` is set once the watch is in place."""
        import watchfiles

        default = watchfiles.DefaultFilter()

        def keep(change: watchfiles.Change, path: str) -> bool:
            return default(change, path) and self.relevant(path)

        if ready is not None:
            ready.set()  # watchfiles sets up its watch before it waits for the first event
        for changes in watchfiles.watch(
            self._root,
            watch_filter=keep,
            debounce=self.debounce_ms,
            step=self.step_ms,
            stop_event=self.stop,
            raise_interrupt=True,
        ):
            try:
                update = self.reindex(len(changes))
            except MrlError as exc:
                if self.on_error is None:
                    raise
                self.on_error(f"re-indexing after a change failed: {exc}")
                continue
            if update is not None:
                self.on_update(update)

    def reindex(self, events: int) -> WatchUpdate | None:
        """One incremental update and load; None when no indexed file changed."""
        started = time.perf_counter()
        report = self.library.update()
        if not (report.files_changed or report.files_removed):
            return None
        if report.chunks_total:
            self.library.load()
        notes = self.library.fit_notes
        fit = notes.get(self.library.transform.name, "") if notes else ""
        return WatchUpdate(
            events,
            report.files_changed,
            report.files_removed,
            report.chunks_total,
            time.perf_counter() - started,
            fit,
        )
