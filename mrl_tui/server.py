"""`mrl-tui serve`: one process keeps the model and each folder's index loaded and watched, and
answers `mrl-tui search` over a Unix socket (`mrl_tui.serve_client` is the other end).

The socket lives in the user's runtime dir (`serve_client.socket_path`), mode 0600 in a 0700
folder. `--tcp PORT` adds a listener on a loopback address only; a loopback port is open to every
local user, so each TCP request must carry the token the server writes, mode 0600, to
`serve_client.tcp_info_path` (the Unix socket needs none: its mode is the permission).

Each connection is answered in its own thread, so a slow request (a folder opened and indexed,
a client that is slow to send) does not hold up a quick one. What must not run twice at once is
serialised where it lives: a `Library` behind its state lock, the model behind `SerialEmbedder`'s
(one model, and its tokenizer is not thread-safe). Each folder is opened on its first request
(or at start, given on the command line), indexed, then kept indexed by a `FolderWatcher` in its
own thread, and its fitted parts refitted in the background (`Library.background_refit`).
While a folder is first opened and indexed, every request waiting for it that asked for progress
gets progress lines (`Relay`, `Sender`), which the client shows as the cold path's bar.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hmac
import ipaddress
import json
import os
import secrets
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrl_tui import __version__, serve_client
from mrl_tui.cli import (
    FLAGS,
    SERVER_OPTIONS,
    backend_text,
    cache_root_text,
    model_choice,
    nothing_indexed,
    query_threads,
    resolve_trained,
    search_payload,
)
from mrl_tui.core.cache.store import check_cache_root
from mrl_tui.core.cache.watch import FolderWatcher
from mrl_tui.core.errors import InputError, MrlError, spelled
from mrl_tui.core.library import Library
from mrl_tui.core.preflight import check_folder, check_has_entries

REQUEST_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 10.0
MAX_ACTIVE = 16
"""Requests answered at once; more wait for a free slot (each holds a thread and a connection)."""
LOOPBACK_NAMES = {"localhost": "127.0.0.1"}
PROGRESS_EVERY_S = 0.1
"""A folder being opened sends each waiting client at most one progress line this often per
phase (each phase's first at once): a bar needs no more, and a big folder has many files."""


def log(line: str) -> None:
    print(f"mrl-tui serve: {line}", file=sys.stderr, flush=True)


class SerialEmbedder:
    """The model, one call at a time: the tokenizer of a fast HF model is not thread-safe, and
    one model gains nothing from two concurrent forward passes on a CPU. Everything else (name,
    dims, device, …) is the model's own."""

    def __init__(self, embedder: Any) -> None:
        self._embedder = embedder
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        with self._lock:
            return int(self._embedder.count_tokens(text))

    def embed_query(self, text: str) -> np.ndarray:
        with self._lock:
            return self._embedder.embed_query(text)

    def embed_queries(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
        with self._lock:
            return self._embedder.embed_queries(texts, **kwargs)

    def embed_documents(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
        """One indexer batch (a few hundred chunks) at a time: a query waits one batch at most."""
        with self._lock:
            return self._embedder.embed_documents(texts, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._embedder, name)


Progress = Callable[[dict[str, Any]], None]
"""One progress event (`serve_client`'s progress lines), to one waiting client."""


class Relay:
    """The opening of one folder: its lock (one opening at a time), and its progress told to
    every request waiting for it, from the thread that opens it (throttled: `PROGRESS_EVERY_S`,
    except the step that ends a graph build or its tuning, so that the client's bar ends full)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._guard = threading.Lock()  # `_sinks`, `_phase`, `_sent`
        self._sinks: list[Progress] = []
        self._phase = ""
        self._sent = 0.0

    def add(self, sink: Progress) -> None:
        with self._guard:
            self._sinks.append(sink)

    def discard(self, sink: Progress) -> None:
        with self._guard:
            if sink in self._sinks:
                self._sinks.remove(sink)

    def tell(self, event: dict[str, Any]) -> None:
        now = time.monotonic()
        with self._guard:
            ended = "done" in event and event["done"] == event["total"]  # a bar's last step
            if event["phase"] == self._phase and now - self._sent < PROGRESS_EVERY_S and not ended:
                return
            self._phase, self._sent = event["phase"], now
            sinks = list(self._sinks)
        for sink in sinks:
            sink(event)


class Sender:
    """Progress lines to one client. Once a send fails (the client is gone: Ctrl-C) it sends no
    more, and the folder's indexing goes on: the server keeps it for the next search."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self.gone = False

    def __call__(self, event: dict[str, Any]) -> None:
        with self._lock:
            if self.gone:
                return
            try:
                serve_client.send_message(self._conn, {"progress": event})
            except OSError:
                self.gone = True


def model_source(model: str | None) -> str:
    """What a `--model` value loads (`embed.resolve_model`): the default and its registry name
    are one model; a folder is its absolute path (the client sends it absolute)."""
    from mrl_tui.core.embedding.embed import resolve_model

    return resolve_model(model)[1]


class Server:
    def __init__(self, args: argparse.Namespace) -> None:
        from mrl_tui.core.embedding.embed import choose_device

        self.options = {name: getattr(args, name) for name in SERVER_OPTIONS}
        self.cache_root, self.transform = cache_root_text(args.cache_dir), args.transform
        """For the folders given on the command line."""
        self.backend = backend_text(getattr(args, "backend", None))
        """`--backend`: every folder's vectors are held and searched by this engine."""
        self.path = serve_client.socket_path()
        choice = model_choice(args)
        self.embedder = SerialEmbedder(choice.load(cache_root=args.cache_dir))
        self._source = choice.source
        self._auto_device = choose_device("auto")
        query_threads()  # for re-indexing a save too: a few chunks at a time
        self.libraries: dict[tuple[str, str, str], Library] = {}
        self.watchers: list[FolderWatcher] = []
        self._lock = threading.Lock()  # `libraries`, `watchers`, `_opening`
        self._opening: dict[tuple[str, str, str], Relay] = {}
        self._slots = threading.BoundedSemaphore(MAX_ACTIVE)
        self.tcp: tuple[str, int] | None = None
        self.token = ""

    def other_options(self, options: Any) -> str:
        """Empty when a request's model options give the vectors this server's model gives;
        else which option differs (one line)."""
        if not isinstance(options, dict) or set(options) != set(SERVER_OPTIONS):
            return "its request carries no model options"
        mine = self.options
        for name in SERVER_OPTIONS:
            theirs = options[name]
            if name == "model":
                same = isinstance(theirs, (str, type(None))) and (
                    model_source(theirs) == self._source
                )
            elif name == "device":
                same = theirs in (mine["device"], self.embedder.device) or (
                    theirs == "auto" and self._auto_device == self.embedder.device
                )
            else:
                same = theirs == mine[name]
            if not same:
                flag = "--" + name.replace("_", "-")
                return f"it runs {flag} {mine[name]}, this search asks for {flag} {theirs}"
        return ""

    def library(
        self, folder: Path, cache_root: str, transform: str, progress: Progress | None = None
    ) -> tuple[Library, bool]:
        """The library of (folder, cache root, transform), opened, indexed and watched on first
        use (and whether it was just opened), telling `progress` how the opening goes if it
        must wait for one. Opening one folder holds up no other request."""
        key = (str(folder), cache_root, transform)
        with self._lock:
            if key in self.libraries:
                return self.libraries[key], False
            relay = self._opening.setdefault(key, Relay())
        if progress is not None:
            relay.add(progress)
        try:
            with relay.lock:  # two first requests for one folder: the second waits, then uses it
                with self._lock:
                    if key in self.libraries:
                        return self.libraries[key], False
                library = self._open(folder, cache_root, transform, relay)
                with self._lock:
                    self.libraries[key] = library
                    self._opening.pop(key, None)
        finally:
            if progress is not None:
                relay.discard(progress)
        return library, True

    def _open(self, folder: Path, cache_root: str, transform: str, relay: Relay) -> Library:
        check_has_entries(folder)
        check_cache_root(Path(cache_root))
        library = Library(folder, self.embedder, cache_root=Path(cache_root), transform=transform)
        # A save must not wait for a refit (see README); the first load still fits at once (it has
        # no fit to search with meanwhile), and finds a fit saved stale, refitted here next.
        library.background_refit = True
        library.on_refit = lambda line: log(f"{folder}: {line}")
        try:
            if self.backend:
                library.use_engine(self.backend)  # checked now; the first load syncs it
            report = library.update(
                on_progress=lambda p: relay.tell(dataclasses.asdict(p)), wait=False
            )
            if report.chunks_total == 0:
                raise InputError(nothing_indexed(library.root, report.skipped))
            library.load(
                on_graph_progress=lambda done, total: relay.tell(
                    {"phase": "graph", "done": done, "total": total}
                ),
                on_tune_progress=lambda done, total: relay.tell(
                    {"phase": "tune", "done": done, "total": total}
                ),
            )
        except BaseException:
            library.close()
            raise

        def said(update: Any) -> None:
            log(f"{folder}: {update.line}" + (f" ({update.fit})" if update.fit else ""))

        watcher = FolderWatcher(
            library,
            said,
            on_error=lambda line: log(f"{folder}: {line}"),
        )
        ready = threading.Event()
        thread = threading.Thread(target=watcher.run, args=(ready,), name=f"watch {folder}")
        thread.daemon = True
        thread.start()
        ready.wait(READY_TIMEOUT_S)  # the watch itself is in place a few ms later
        with self._lock:
            self.watchers.append(watcher)
        on = f" on {self.backend}" if self.backend else ""
        log(f"holding {folder} ({library.chunk_count} chunks{on}), watching it")
        return library

    def answer(
        self, request: dict[str, Any], *, tcp: bool = False, progress: Progress | None = None
    ) -> dict[str, Any]:
        """The reply to one request; ``ok: False`` tells the client to do the work itself.
        `progress` gets the indexing's progress if the folder must be opened first."""
        if tcp and not hmac.compare_digest(str(request.get("token", "")), self.token):
            return refusal(f"a TCP request needs the token in {serve_client.tcp_info_path()}")
        version, protocol = request.get("version"), request.get("protocol")
        if (version, protocol) != (__version__, serve_client.PROTOCOL):
            return refusal(
                f"the server at {self.path} is mrl-tui {__version__} (protocol "
                f"{serve_client.PROTOCOL}), this is mrl-tui {version} (protocol {protocol})"
            )
        command = request.get("command")
        if command == "ping":
            with self._lock:
                held = dict(self.libraries)
            fits = [
                {"path": key[0], "cache_root": key[1], "transform": key[2]}
                | {"fit": library.fit_status()}
                for key, library in held.items()
            ]
            return reply(folders=sorted({key[0] for key in held}), fits=fits, options=self.options)
        if command != "search":
            return refusal(f"the server does not know the command {command!r}")
        why = self.other_options(request.get("options"))
        if why:
            return refusal(f"the server at {self.path} has another model loaded: {why}")
        if request.get("backend") != self.backend:
            mine, theirs = self.backend or "none (local)", request.get("backend") or "none (local)"
            return refusal(
                f"the server at {self.path} runs --backend {mine}, this search asks for {theirs}"
            )
        library: Library | None = None
        try:
            folder = check_folder(request["path"])
            library, opened = self.library(
                folder, str(request["cache_root"]), request["transform"], progress
            )
            args = argparse.Namespace(**request["search"])
            payload = search_payload(library, args)
            messages = library.take_messages()
            if opened:
                messages.append(
                    f"the server did not hold {folder}: it indexed it and keeps it indexed now "
                    f"({library.chunk_count} chunks)"
                )
            return reply(payload=payload, messages=[spelled(m, FLAGS) for m in messages])
        except MrlError as exc:  # the user's mistake: the same line the client would print
            messages = library.take_messages() if library is not None else []
            # The settings named as the client's flags, as the cold path prints them.
            return reply(rc=1, messages=[spelled(m, FLAGS) for m in [*messages, exc]])

    def handle(self, conn: socket.socket, tcp: bool) -> None:
        with self._slots, conn:
            conn.settimeout(REQUEST_TIMEOUT_S)
            try:
                request = serve_client.read_message(conn)
            except (OSError, ValueError) as exc:
                log(f"a request could not be read ({exc})")
                return
            sender = Sender(conn) if request.get("progress") is True else None
            try:
                response = self.answer(request, tcp=tcp, progress=sender)
            except Exception as exc:  # the client falls back; the server goes on
                log(f"a request failed: {type(exc).__name__}: {exc}")
                response = refusal(f"the server failed ({type(exc).__name__}: {exc})")
            with contextlib.suppress(OSError):  # the client is gone: it fell back or gave up
                serve_client.send_message(conn, response)

    def run(self, folders: list[Path], tcp: tuple[str, int] | None = None) -> None:
        for folder in folders:
            self.library(folder, self.cache_root, self.transform)
        listeners = [(bind(self.path), False)]
        info_path = serve_client.tcp_info_path()
        try:
            if tcp is not None:
                listener, self.tcp = bind_tcp(*tcp)
                listeners.append((listener, True))
                self.token = secrets.token_hex(32)
                write_private(
                    info_path,
                    {"host": self.tcp[0], "port": self.tcp[1]}
                    | {
                        "token": self.token,
                        "pid": os.getpid(),
                    },
                )
            where = str(self.path) + (f" and {self.tcp[0]} port {self.tcp[1]}" if self.tcp else "")
            log(f"listening on {where} (mrl-tui {__version__}); Ctrl-C stops")
            with selectors.DefaultSelector() as selector:
                for listener, is_tcp in listeners:
                    selector.register(listener, selectors.EVENT_READ, is_tcp)
                while True:
                    for key, _ in selector.select():
                        try:
                            conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                        except OSError:
                            continue
                        conn.setblocking(True)
                        thread = threading.Thread(
                            target=self.handle, args=(conn, key.data), name="request"
                        )
                        thread.daemon = True
                        thread.start()
        finally:
            for listener, _ in listeners:
                listener.close()
            self.path.unlink(missing_ok=True)
            if self.tcp is not None:
                info_path.unlink(missing_ok=True)
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


def private_runtime_dir(folder: Path) -> None:
    """Make `folder` (0700) and check nobody else could replace what is in it."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o022:  # others could replace the socket
        raise InputError(f"{folder}: the runtime folder must be yours and writable by you alone")


def bind(path: Path) -> socket.socket:
    """A listening socket at `path`, mode 0600, in a private folder; a stale socket file of
    ours is replaced, anything else at `path` is left alone (one line). The folder is made 0700."""
    private_runtime_dir(path.parent)
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


def loopback_host(host: str) -> str:
    """`host` as a loopback address (127.0.0.0/8, ::1; "localhost" is 127.0.0.1), else one
    line: the TCP listener is for this machine's own programs only."""
    address = LOOPBACK_NAMES.get(host.lower(), host)
    try:
        loopback = ipaddress.ip_address(address).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise InputError(
            f"serve --host {host}: only a loopback address (127.0.0.1, ::1, localhost) may "
            "listen; the server has no authentication for other machines"
        )
    return address


def bind_tcp(host: str, port: int) -> tuple[socket.socket, tuple[str, int]]:
    """A TCP listener on a loopback `host` (checked again here) and its (host, port)."""
    address = loopback_host(host)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.bind((address, port))
        listener.listen(16)
    except OSError as exc:
        listener.close()
        why = exc.strerror or exc
        raise InputError(f"serve --tcp {port}: cannot listen on {address} ({why})") from exc
    return listener, (address, int(listener.getsockname()[1]))


def write_private(path: Path, data: dict[str, Any]) -> None:
    """Write `data` as JSON, readable by this user alone from the first byte (0600)."""
    private_runtime_dir(path.parent)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.unlink(missing_ok=True)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out)
    os.replace(temp, path)


def run_server(args: Any) -> int:
    """`mrl-tui serve`: runs until Ctrl-C (exit 130) or SIGTERM; the socket is removed."""
    tcp = None
    if args.tcp is not None:
        tcp = (loopback_host(args.host or "127.0.0.1"), args.tcp)  # refused before the model loads
    elif args.host is not None:
        raise InputError("serve --host needs --tcp PORT")
    folders = [check_folder(path) for path in args.paths]
    if args.model == "trained":
        if len(folders) != 1:
            raise InputError("serve --model trained: give the one folder the model was trained on")
        resolve_trained(args, folders[0])
    for folder in folders:
        check_has_entries(folder)
    check_cache_root(Path(cache_root_text(args.cache_dir)))
    if getattr(args, "backend", None):  # its form and package, before the model loads
        from mrl_tui.core.engines import check_installed

        check_installed(args.backend)
    if serve_client.listening(serve_client.socket_path()):  # told before the model loads
        raise InputError(f"a server is already running at {serve_client.socket_path()}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    log(f"loading {args.model or 'the bundled model'}")
    Server(args).run(folders, tcp)
    return 0
