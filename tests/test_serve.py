"""`mrl-tui serve` and the warm `search`: a real server process and real CLI clients, over the
socket, with a fast stand-in model (the model is not the point here)."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cache_helpers import write_corpus

from mrl_tui import serve_client

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="Unix sockets only")

TESTS = Path(__file__).resolve().parent

# The CLI with the stand-in model. STANDIN_NO_MODEL: loading a model fails (proves a search was
# answered by the server); STANDIN_SLOW_QUERY=FILE: a query touches FILE and then hangs;
# STANDIN_VERSION: this process calls itself another version of mrl-tui.
_DRIVER = """
import os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import mrl_tui
mrl_tui.__version__ = os.environ.get("STANDIN_VERSION", mrl_tui.__version__)
from cache_helpers import LibraryEmbedder
import mrl_tui.core.embedding.embed as embed
import mrl_tui.core.library as library

class StandIn(LibraryEmbedder):
    def __init__(self, *args, **kwargs):
        if os.environ.get("STANDIN_NO_MODEL"):
            raise SystemExit("the model was loaded")
        super().__init__()

    def embed_query(self, text):
        marker = os.environ.get("STANDIN_SLOW_QUERY")
        if marker:
            Path(marker).touch()
            time.sleep(60)
        return super().embed_query(text)

library.Embedder = embed.Embedder = StandIn
from mrl_tui.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _command(*args: str) -> list[str]:
    return [sys.executable, "-c", _DRIVER, str(TESTS), *args]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200", **extra}


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(*args), capture_output=True, text=True, timeout=120, env=_env(**env)
    )


def _start_server(*paths: Path, **env: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        _command("serve", *map(str, paths)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(**env),
    )
    deadline = time.monotonic() + 60
    while not serve_client.listening(serve_client.socket_path()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the server did not start: {proc.communicate()[1]}")
        time.sleep(0.05)
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=30)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus", files=6)


@pytest.fixture
def server(corpus: Path) -> Iterator[subprocess.Popen[str]]:
    proc = _start_server(corpus)
    yield proc
    _stop(proc)


def _untimed(stdout: str) -> dict[str, object]:
    data = json.loads(stdout)
    assert data["results"], data
    del data["timings_ms"]
    return data


def _lines(stderr: str) -> list[str]:
    """What was said (the cold path's progress displays leave blank lines off a terminal)."""
    return [line for line in stderr.splitlines() if line.strip()]


def _cold_env(tmp_path: Path) -> dict[str, str]:
    """No server: a runtime dir of its own, empty."""
    (tmp_path / "no-server").mkdir(exist_ok=True)
    return {"MRL_TUI_RUNTIME_DIR": str(tmp_path / "no-server")}


@pytest.mark.parametrize("flags", [(), ("--retrieval", "hybrid", "--dim", "32")])
def test_a_warm_search_prints_what_a_cold_one_does(
    server: subprocess.Popen[str], corpus: Path, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    args = ("search", str(corpus), "bread oven starter", "--json", *flags)
    warm = _cli(*args, STANDIN_NO_MODEL="1")
    assert warm.returncode == 0 and warm.stderr == "", warm.stderr
    cold = _cli(*args, **_cold_env(tmp_path))
    assert cold.returncode == 0, cold.stderr
    assert _untimed(warm.stdout) == _untimed(cold.stdout)


def test_the_table_is_the_same_warm_and_cold(
    server: subprocess.Popen[str], corpus: Path, tmp_path: Path
) -> None:
    args = ("search", str(corpus), "planet volcano", "--route", "auto")
    warm = _cli(*args, STANDIN_NO_MODEL="1")
    cold = _cli(*args, **_cold_env(tmp_path))
    assert warm.returncode == cold.returncode == 0, warm.stderr + cold.stderr

    def untimed(out: str) -> list[str]:
        return [line for line in out.splitlines() if not line.startswith("embed ")]

    assert "notes/n0" in warm.stdout and untimed(warm.stdout) == untimed(cold.stdout)


def test_the_server_keeps_the_folder_indexed(server: subprocess.Popen[str], corpus: Path) -> None:
    deadline = time.monotonic() + 30
    while True:  # written again each time: the watch is in place shortly after the server listens
        (corpus / "new.md").write_text("# Fresh\n\nzanzibar quokka lighthouse\n", encoding="utf-8")
        args = ("search", str(corpus), "quokka", "--retrieval", "lexical", "--json")
        done = _cli(*args, STANDIN_NO_MODEL="1")  # answered by the server, never indexed here
        paths = [r["path"] for r in json.loads(done.stdout)["results"]] if done.stdout else []
        if paths[:1] == ["new.md"]:
            break
        assert time.monotonic() < deadline, (paths, done.stderr)
        time.sleep(0.3)


def test_a_folder_the_server_does_not_hold_is_opened_by_it(
    server: subprocess.Popen[str], tmp_path: Path
) -> None:
    other = write_corpus(tmp_path / "other", files=3, seed=1)
    warm = _cli("search", str(other), "planet moon", "--json", STANDIN_NO_MODEL="1")
    assert warm.returncode == 0, warm.stderr
    assert {r["path"] for r in json.loads(warm.stdout)["results"]} <= {
        f"notes/n{i:03d}.md" for i in range(3)
    }


def test_a_bad_flag_fails_the_same_way_warm_and_cold(
    server: subprocess.Popen[str], corpus: Path, tmp_path: Path
) -> None:
    args = ("search", str(corpus), "bread", "--dim", "5000")
    warm = _cli(*args, STANDIN_NO_MODEL="1")
    cold = _cli(*args, **_cold_env(tmp_path))
    assert (warm.returncode, warm.stderr) == (cold.returncode, cold.stderr) == (1, cold.stderr)
    assert len(_lines(cold.stderr)) == 1 and "5000" in cold.stderr


def test_the_warm_client_imports_no_numpy(server: subprocess.Popen[str], corpus: Path) -> None:
    probe = (
        "import sys; from mrl_tui.cli import main; "
        f"rc = main(['search', {str(corpus)!r}, 'bread', '--json']); "
        "print('numpy' in sys.modules, 'torch' in sys.modules, rc, file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=_env()
    )
    assert done.stderr.split() == ["False", "False", "0"], done.stderr
    assert json.loads(done.stdout)["results"]


def test_a_second_server_is_refused_in_one_line(server: subprocess.Popen[str]) -> None:
    second = _cli("serve", STANDIN_NO_MODEL="1")
    assert second.returncode == 1 and "already running" in second.stderr
    assert len(_lines(second.stderr)) == 1 and serve_client.listening(serve_client.socket_path())


def test_the_socket_is_private(server: subprocess.Popen[str]) -> None:
    info = serve_client.socket_path().lstat()
    assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600


@pytest.mark.parametrize(("sent", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_removes_the_socket(
    server: subprocess.Popen[str], sent: signal.Signals, status: int
) -> None:
    server.send_signal(sent)
    assert server.wait(timeout=30) == status
    assert not serve_client.socket_path().exists()


def _stale_socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))  # bound, never listening: as a killed server leaves it


def test_a_stale_socket_is_removed_and_the_search_runs_here(corpus: Path) -> None:
    path = serve_client.socket_path()
    _stale_socket(path)
    done = _cli("search", str(corpus), "bread", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["results"]
    assert "stale" in done.stderr and len(_lines(done.stderr)) == 1, done.stderr
    assert not path.exists()


def test_a_file_that_is_not_our_socket_is_left_alone(corpus: Path) -> None:
    path = serve_client.socket_path()
    path.write_text("not a socket\n")
    done = _cli("search", str(corpus), "bread", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["results"]
    assert path.read_text() == "not a socket\n"


def test_a_server_of_another_version_is_told_and_bypassed(corpus: Path) -> None:
    proc = _start_server(corpus, STANDIN_VERSION="9.9.9")
    try:
        done = _cli("search", str(corpus), "bread", "--json")
    finally:
        _stop(proc)
    assert done.returncode == 0 and json.loads(done.stdout)["results"]
    assert len(_lines(done.stderr)) == 1 and "9.9.9" in done.stderr, done.stderr


def test_a_server_killed_mid_request_leaves_the_search_to_the_client(
    corpus: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "query-started"
    proc = _start_server(corpus, STANDIN_SLOW_QUERY=str(marker))
    try:
        client = subprocess.Popen(
            _command("search", str(corpus), "bread", "--json"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert time.monotonic() < deadline and client.poll() is None, "no request came"
            time.sleep(0.05)
        proc.kill()
        out, err = client.communicate(timeout=120)
    finally:
        _stop(proc)
    assert client.returncode == 0 and json.loads(out)["results"]
    assert "did not answer" in err and len(_lines(err)) == 1, err


def test_a_server_with_other_model_options_is_bypassed(server, corpus: Path) -> None:
    """Another embedding backend makes other vectors: the torch server must not answer it."""
    done = _cli("search", str(corpus), "bread", "--json", "--embed-backend", "onnx")
    assert done.returncode == 0 and json.loads(done.stdout)["results"]
    assert len(_lines(done.stderr)) == 1 and "--embed-backend onnx" in done.stderr, done.stderr
