"""Derived files of a cache: written atomically, recorded with a checksum, verified before use.

Everything that can be made again from the database (vector snapshots, transforms, HNSW graphs,
routers, bench caches) goes through `load_or_build`. A file is used only if its manifest entry
(size, sha256 of the bytes, the shape it was made for) matches; anything else is rebuilt, with
one line for the user when a recorded file turned out damaged. So a loader never sees an
unverified file: hnswlib crashes (exit 139) on an edited graph, numpy silently loads the wrong
rows. The manifest of an index lives in its database (see `store.IndexStore`), so it names only
files that database made. Nothing is pickled.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, TypeVar

import numpy as np

from mrl_tui.core.errors import CacheError, CacheUnwritable, InputError, Message

T = TypeVar("T")
Writer = Callable[[Path], None]
"""Fills the file at the given (temporary) path."""

STALE_TEMP_S = 60.0
"""A temporary file untouched this long, of a process that is gone, is a leftover of a kill."""

LOAD_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, RuntimeError)
LOAD_ERRORS += (InputError, CacheError)  # what the loaders raise for arrays of the wrong shape

_TEMP = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.(?P<tid>\d+)\.tmp")
_OLD_TEMPS = (  # names earlier versions used, never pruned then
    re.compile(r"\.[\w.-]+\.tmp(\.npz)?"),
    re.compile(r"hnsw_\w+-\d+\.bin\.tmp"),
)


@dataclass(frozen=True)
class Entry:
    name: str  # the file's name in its folder
    size: int
    sha256: str
    shape: tuple[int, ...]  # what it was made for, e.g. (rows, dim)


class Manifest(Protocol):
    def entry(self, name: str) -> Entry | None: ...

    def record(self, entry: Entry) -> None: ...


def temp_path(path: Path) -> Path:
    """Next to `path`, unique to this process and thread, so writers never share one."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def fsync_dir(directory: Path) -> None:
    """Make a rename durable. Folders cannot be opened on Windows, where renames are anyway."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove(path: Path) -> None:
    """Remove one of our files, or a folder or link squatting on its name."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def atomic_write(path: Path, write: Writer) -> tuple[int, str]:
    """`write` fills a temporary file next to `path`; it is synced and renamed over `path`, and
    the folder synced. Returns the (size, sha256) written. On failure `path` is untouched and
    the temporary file is gone; a full disk or a read-only folder is a `CacheUnwritable`."""
    tmp = temp_path(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        size, sha = tmp.stat().st_size, digest(tmp)
        if path.is_dir() and not path.is_symlink():
            remove(path)  # os.replace cannot replace a folder
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise unwritable(path, exc) from exc
        raise
    fsync_dir(path.parent)
    return size, sha


def unwritable(path: Path, exc: OSError) -> CacheUnwritable:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        advice = "free some space on that disk, or give another cache folder"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        advice = "give a writable cache folder"
    else:
        advice = "check that disk, or give another cache folder"
    return CacheUnwritable(f"cannot write {path} ({reason}): {advice}", settings=("cache folder",))


class _Sink:
    """Only `write`: numpy then writes through Python, whose errors keep their errno (a real
    file gets C `fwrite`, which reports a full disk as "requested and ... written")."""

    def __init__(self, fh: BinaryIO) -> None:
        self.write = fh.write


def npy_writer(array: np.ndarray) -> Writer:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(_Sink(fh), array, allow_pickle=False)  # type: ignore[arg-type]

    return write


def npz_writer(arrays: dict[str, np.ndarray]) -> Writer:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: numpy would append ".npz" to a name
            np.savez(fh, **arrays)

    return write


def text_writer(text: str) -> Writer:
    return lambda tmp: tmp.write_text(text, encoding="utf-8")


def load_npy(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as arrays:
        return dict(arrays)


def problem(path: Path, entry: Entry | None, shape: tuple[int, ...]) -> str | None:
    """Why `path` may not be used (None: it is the file the manifest recorded, for `shape`)."""
    if entry is None:
        return "is not recorded"
    try:
        st = os.lstat(path)
    except OSError:
        return "is missing"
    if not stat.S_ISREG(st.st_mode):
        return "is not a plain file"
    if entry.shape != tuple(shape):
        return f"was made for shape {entry.shape}, not {tuple(shape)}"
    if st.st_size != entry.size or digest(path) != entry.sha256:
        return "does not match its checksum"
    return None


def is_verified(path: Path, manifest: Manifest, shape: tuple[int, ...]) -> bool:
    return problem(path, manifest.entry(path.name), shape) is None


def save(path: Path, manifest: Manifest, shape: tuple[int, ...], write: Writer) -> None:
    size, sha = atomic_write(path, write)
    manifest.record(Entry(path.name, size, sha, tuple(shape)))


def load_or_build(
    path: Path,
    manifest: Manifest,
    shape: tuple[int, ...],
    *,
    load: Callable[[Path], T],
    build: Callable[[], T],
    writer: Callable[[T], Writer],
    what: str,
    note: Callable[[str], None],
    keep: bool = True,
) -> T:
    """The verified file at `path` loaded, else `build()` (saved for next time when `keep`).

    `note` gets one line when a recorded file was damaged, or when saving failed (the value is
    then used from memory). A file that is not recorded (a kill between rename and record, an
    earlier version's) is rebuilt quietly."""
    issue: str | None = None
    if os.path.lexists(path):
        entry = manifest.entry(path.name)
        issue = problem(path, entry, shape)
        if issue is None:
            try:
                return load(path)
            except LOAD_ERRORS as exc:
                issue = f"is unreadable ({type(exc).__name__})"
        if entry is None and path.is_file() and not path.is_symlink():
            issue = None
    value = build()
    if issue is not None:
        note(f"the {what} {path.name} {issue}; rebuilt it from the cache's database")
    if keep:
        try:
            save(path, manifest, shape, writer(value))
        except CacheUnwritable as exc:
            note(Message(f"{exc}; used from memory this time", exc.settings))
    return value


@dataclass(frozen=True)
class Shelf:
    """Where one cache keeps its derived files, and its policy for them: the manifest that
    vouches for them, who hears a rebuild, whether new files are kept. `get` is the one
    load-or-build-and-save of the code base (the Library's index folder; the bench caches)."""

    manifest: Manifest
    note: Callable[[str], None]
    keep: bool = True

    @classmethod
    def folder(cls, directory: Path, note: Callable[[str], None]) -> Shelf:
        """A plain folder (made if missing) with ``manifest.json``: no database to record in."""
        Path(directory).mkdir(parents=True, exist_ok=True)
        return cls(JsonManifest(Path(directory)), note)

    def get(
        self,
        path: Path,
        shape: tuple[int, ...],
        *,
        load: Callable[[Path], T],
        build: Callable[[], T],
        writer: Callable[[T], Writer],
        what: str,
    ) -> T:
        """`load_or_build` under this shelf's manifest, note and keep policy."""
        return load_or_build(
            path,
            self.manifest,
            shape,
            load=load,
            build=build,
            writer=writer,
            what=what,
            note=self.note,
            keep=self.keep,
        )


def prune_temp(directory: Path, now: float | None = None) -> int:
    """Remove our temporary files left by killed runs: only our name patterns, only in
    `directory`, only untouched for `STALE_TEMP_S` and (where the name has one) of a process
    that no longer runs. Returns how many were removed."""
    now = time.time() if now is None else now
    removed = 0
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    for name in names:
        match = _TEMP.fullmatch(name)
        if match is None and not any(p.fullmatch(name) for p in _OLD_TEMPS):
            continue
        path = directory / name
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < STALE_TEMP_S:
                continue
            if match is not None and _process_alive(int(match.group("pid"))):
                continue
            path.unlink()
            removed += 1
        except OSError:
            continue
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if sys.platform == "win32":
        return False  # os.kill(pid, 0) would signal it there; the age alone decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, owned by someone else
    return True


class JsonManifest:
    """A manifest as `manifest.json` in a folder without a database (the bench caches). Two
    writers may drop each other's entry; that file is then rebuilt, never used unverified."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / "manifest.json"

    def _read(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def entry(self, name: str) -> Entry | None:
        raw = self._read().get(name)
        if not isinstance(raw, dict):
            return None
        try:
            shape = tuple(int(x) for x in raw["shape"])  # type: ignore[attr-defined]
            return Entry(name, int(raw["size"]), str(raw["sha256"]), shape)  # type: ignore[call-overload]
        except (KeyError, TypeError, ValueError):
            return None

    def record(self, entry: Entry) -> None:
        data = self._read()
        data[entry.name] = {"size": entry.size, "sha256": entry.sha256, "shape": list(entry.shape)}
        atomic_write(self.path, text_writer(json.dumps(data, indent=1, sort_keys=True)))
