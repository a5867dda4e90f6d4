"""Ask a running `mrl-tui serve` over its Unix socket; None means "do it here instead".

The warm path of `mrl-tui search`: it must stay fast, so this module uses only the standard
library (socket, json, os) and platformdirs; nothing here imports numpy or torch. The protocol:
one JSON object per connection, newline-terminated, answered by one JSON object, then the
server closes the connection. A request with ``"progress": true`` may first get progress lines,
``{"progress": {"phase": ..., ...}}``, while the server indexes a folder it did not hold (the phases
and fields of `core.cache.indexer.IndexProgress`, and ``"graph"`` (building the HNSW tiers) and
``"tune"`` (measuring their search settings), each with ``done`` and ``total``); the answer is still
the last line. Over `serve --tcp` (loopback only) the request also carries the token the server
wrote to `tcp_info_path` (mode 0600); over the socket none is needed.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mrl_tui import __version__

PROTOCOL = 1
RUNTIME_ENV = "MRL_TUI_RUNTIME_DIR"
SOCKET_NAME = "serve.sock"
TCP_INFO_NAME = "serve-tcp.json"
"""`serve --tcp`: its host, port and the token each TCP request must carry (mode 0600)."""
CONNECT_TIMEOUT_S = 0.25
ANSWER_TIMEOUT_S = 300.0
"""A search of a folder the server does not hold yet indexes it first: that can take a while."""
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def runtime_dir() -> Path:
    """`$MRL_TUI_RUNTIME_DIR`, else the user's runtime dir (e.g. /run/user/1000/mrl-tui)."""
    override = os.environ.get(RUNTIME_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    with warnings.catch_warnings():  # "XDG_RUNTIME_DIR is not set, falling back to /tmp/…"
        warnings.simplefilter("ignore")
        return Path(platformdirs.user_runtime_dir("mrl-tui", appauthor=False))


def socket_path() -> Path:
    return runtime_dir() / SOCKET_NAME


def tcp_info_path() -> Path:
    return runtime_dir() / TCP_INFO_NAME


def ask_tcp(request: dict[str, Any], timeout: float = ANSWER_TIMEOUT_S) -> dict[str, Any]:
    """`request` sent to `serve --tcp` as the file at `tcp_info_path` says (its token added):
    what an editor plugin does. OSError / ValueError when there is no such server."""
    info = json.loads(tcp_info_path().read_text(encoding="utf-8"))
    with socket.create_connection((info["host"], int(info["port"])), timeout=timeout) as conn:
        send_message(conn, {**request, "token": info["token"]})
        return read_message(conn)


def envelope(command: str, **fields: Any) -> dict[str, Any]:
    """A request: the command, and what the server checks before it answers."""
    return {"protocol": PROTOCOL, "version": __version__, "command": command, **fields}


def read_message(conn: socket.socket) -> dict[str, Any]:
    """One newline-terminated JSON object (ValueError if it is not one, or too long)."""
    return Lines(conn).next()


class Lines:
    """The JSON objects one connection sends, one per line, in order (several may come in one
    read: progress lines, then the answer)."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self._data = bytearray()

    def next(self) -> dict[str, Any]:
        """The next object (ValueError if it is not one or too long; ConnectionError if the
        connection closed before a whole line came)."""
        scanned = 0  # only what came since is searched for the newline (answers can be long)
        while (end := self._data.find(b"\n", scanned)) < 0:
            scanned = len(self._data)
            part = self._conn.recv(65536)
            if not part:
                raise ConnectionError("the connection closed before a whole message came")
            self._data += part
            if len(self._data) > MAX_MESSAGE_BYTES:
                raise ValueError("message too long")
        line, self._data = bytes(self._data[: end + 1]), self._data[end + 1 :]
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ValueError("not a JSON object")
        return message


def send_message(conn: socket.socket, message: dict[str, Any]) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def is_our_socket(path: Path) -> bool:
    """A socket file we own, at our own socket path: the only file a client may remove."""
    try:
        info = path.lstat()
    except OSError:
        return False
    return path == socket_path() and stat.S_ISSOCK(info.st_mode) and info.st_uid == os.getuid()


def listening(path: Path) -> bool:
    """Whether a process accepts connections at `path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(CONNECT_TIMEOUT_S)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def ask(
    request: dict[str, Any],
    say: Callable[[str], None],
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any] | None:
    """The server's answer to `request`, or None (after one line to `say` when something is
    wrong) when there is no usable server: then the caller does the work itself.

    `on_progress`: asks for the server's progress lines and gets each (the folder is being
    indexed by the server); the wait for the answer is then bounded per line, not in all."""
    path = socket_path()
    if not path.exists():
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(CONNECT_TIMEOUT_S)
        try:
            conn.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            if is_our_socket(path):  # left by a server that died
                path.unlink(missing_ok=True)
                say(f"removed a stale server socket ({path}); searching without a server")
            return None
        except OSError as exc:
            say(f"cannot reach the server at {path} ({exc.strerror or exc}); searching without it")
            return None
        conn.settimeout(ANSWER_TIMEOUT_S)
        if on_progress is not None:
            request = {**request, "progress": True}
        try:
            send_message(conn, request)
            lines = Lines(conn)
            answer = lines.next()
            while on_progress is not None and "progress" in answer and "ok" not in answer:
                on_progress(answer["progress"])
                answer = lines.next()
        except (OSError, ValueError) as exc:
            why = "it did not answer in time" if isinstance(exc, TimeoutError) else "it stopped"
            say(f"the server at {path} did not answer ({why}); searching without it")
            return None
    finally:
        conn.close()
    if not answer.get("ok"):
        say(str(answer.get("message") or "the server refused the request") + "; searching here")
        return None
    return answer
