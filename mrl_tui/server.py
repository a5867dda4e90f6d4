"""`mrl-tui serve`: one process keeps the model and each folder's index loaded and watched, and
answers `mrl-tui search` over a Unix socket (`mrl_tui.serve_client` is the other end).

The socket lives in the user's runtime dir (`serve_client.socket_path`), mode 0600 in a 0700
folder; there is no TCP listener. Requests are answered one at a time, in the order they come.
Each folder is opened on its first request (or at start, given on the command line), indexed,
then kept indexed by a `FolderWatcher` in its own thread.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mrl_tui import __version__, serve_client
from mrl_tui.cli import (
    SERVER_OPTIONS,
    cache_root_text,
    nothing_indexed,
    query_threads,
    search_payload,
)
from mrl_tui.core.cache.store import check_cache_root
from mrl_tui.core.cache.watch import FolderWatcher
from mrl_tui.core.errors import InputError, MrlError
from mrl_tui.core.library import Library
from mrl_tui.core.preflight import check_folder, check_has_entries

REQUEST_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 10.0


def log(line: str) -> None:
    print(f"mrl-tui serve: {line}", file=sys.stderr, flush=True)


class Server:
    def __init__(self, args: Any) -> None:
        from mrl_tui.core.embedding.embed import Embedder

        self.options = {name: getattr(args, name) for name in SERVER_OPTIONS}
        self.cache_root, self.transform = cache_root_text(args.cache_dir), args.transform
        """For the folders given on the command line."""
        self.path = serve_client.socket_path()
        self.embedder = Embedder(
            args.model,
            device=args.device,
            trust_remote_code=args.trust_remote_code,
            mrl=args.mrl,
            backend=args.embed_backend,
            cache_root=args.cache_dir,
        )
        query_threads()  # for re-indexing a save too: a few chunks at a time
        self.libraries: dict[tuple[str, str, str], Library] = {}
        self.watchers: list[FolderWatcher] = []

    def library(self, folder: Path, cache_root: str, transform: str) -> Library:
        """The library of (folder, cache root, transform), opened, indexed and watched on first
        use."""
        key = (str(folder), cache_root, transform)
        if key in self.libraries:
            return self.libraries[key]
        check_has_entries(folder)
        check_cache_root(Path(cache_root))
        library = Library(folder, self.embedder, cache_root=Path(cache_root), transform=transform)
        try:
            report = library.update(wait=False)
            if report.chunks_total == 0:
                raise InputError(nothing_indexed(library.root, report.skipped))
            library.load()
        except BaseException:
            library.close()
            raise
        watcher = FolderWatcher(
            library,
            lambda update: log(f"{folder}: {update.line}"),
            on_error=lambda line: log(f"{folder}: {line}"),
        )
        ready = threading.Event()
        thread = threading.Thread(target=watcher.run, args=(ready,), name=f"watch {folder}")
        thread.daemon = True
        thread.start()
        ready.wait(READY_TIMEOUT_S)  # the watch itself is in place a few ms later
        self.watchers.append(watcher)
        self.libraries[key] = library
        log(f"holding {folder} ({library.chunk_count} chunks), watching it")
        return library

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """The reply to one request; ``ok: False`` tells the client to do the work itself."""
        version, protocol = request.get("version"), request.get("protocol")
        if (version, protocol) != (__version__, serve_client.PROTOCOL):
            return refusal(
                f"the server at {self.path} is mrl-tui {__version__} (protocol "
                f"{serve_client.PROTOCOL}), this is mrl-tui {version} (protocol {protocol})"
            )
        command = request.get("command")
        if command == "ping":
            return reply(folders=sorted({key[0] for key in self.libraries}))
        if command != "search":
            return refusal(f"the server does not know the command {command!r}")
        if request.get("options") != self.options:
            return refusal(f"the server at {self.path} runs other model options ({self.options})")
        library: Library | None = None
        try:
            library = self.library(
                check_folder(request["path"]), str(request["cache_root"]), request["transform"]
            )
            payload = search_payload(library, SimpleNamespace(**request["search"]))
            return reply(payload=payload, messages=library.take_messages())
        except MrlError as exc:  # the user's mistake: the same line the client would print
            messages = library.take_messages() if library is not None else []
            return reply(rc=1, messages=[*messages, str(exc)])

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(REQUEST_TIMEOUT_S)
        try:
            request = serve_client.read_message(conn)
        except (OSError, ValueError) as exc:
            log(f"a request could not be read ({exc})")
            return
        try:
            response = self.answer(request)
        except Exception as exc:  # the client falls back; the server goes on
            log(f"a request failed: {type(exc).__name__}: {exc}")
            response = refusal(f"the server failed ({type(exc).__name__}: {exc})")
        with contextlib.suppress(OSError):  # the client is gone: it has fallen back or given up
            serve_client.send_message(conn, response)

    def run(self, folders: list[Path]) -> None:
        for folder in folders:
            self.library(folder, self.cache_root, self.transform)
        listener = bind(self.path)
        try:
            log(f"listening on {self.path} (mrl-tui {__version__}); Ctrl-C stops")
            while True:
                conn, _ = listener.accept()
                with conn:
                    self.handle(conn)
        finally:
            listener.close()
            self.path.unlink(missing_ok=True)
            for watcher in self.watchers:
                watcher.stop.set()
            for library in self.libraries.values():
                library.close()


def reply(rc: int = 0, **fields: Any) -> dict[str, Any]:
    head = {"ok": True, "protocol": serve_client.PROTOCOL, "version": __version__, "rc": rc}
    return head | fields


def refusal(message: str) -> dict[str, Any]:
    return {
        "ok": False,
        "protocol": serve_client.PROTOCOL,
        "version": __version__,
        "message": message,
    }


def bind(path: Path) -> socket.socket:
    """A listening socket at `path`, mode 0600, in a private folder; a stale socket file of
    ours is replaced, anything else at `path` is left alone (one line). The folder is made 0700."""
    folder = path.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o022:  # others could replace the socket
        raise InputError(f"{folder}: the runtime folder must be yours and writable by you alone")
    if path.exists() or path.is_symlink():
        if serve_client.listening(path):
            raise InputError(f"a server is already running at {path}")
        if not serve_client.is_our_socket(path):
            raise InputError(f"{path}: exists and is not a socket of ours; not touching it")
        path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mask = os.umask(0o177)  # created 0600: never readable by others, not even for a moment
    try:
        listener.bind(str(path))
    except OSError:
        listener.close()
        raise
    finally:
        os.umask(mask)
    os.chmod(path, 0o600)
    listener.listen(16)
    return listener


def run_server(args: Any) -> int:
    """`mrl-tui serve`: runs until Ctrl-C (exit 130) or SIGTERM; the socket is removed."""
    if args.model == "trained":
        raise InputError("serve: --model trained is not supported yet; give the model's path")
    folders = [check_folder(path) for path in args.paths]
    for folder in folders:
        check_has_entries(folder)
    check_cache_root(Path(cache_root_text(args.cache_dir)))
    if serve_client.listening(serve_client.socket_path()):  # told before the model loads
        raise InputError(f"a server is already running at {serve_client.socket_path()}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    log(f"loading {args.model or 'the bundled model'}")
    Server(args).run(folders)
    return 0
