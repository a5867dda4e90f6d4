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
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import write_corpus

from mrl_tui import serve_client

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="Unix sockets only")

TESTS = Path(__file__).resolve().parent

# The CLI with the stand-in model. STANDIN_NO_MODEL: loading a model fails (proves a search was
# answered by the server); STANDIN_SLOW_QUERY=FILE: a query touches FILE and then hangs;
# STANDIN_SLOW_DOCS=FILE:SECONDS: each batch of documents touches FILE, then takes SECONDS;
# STANDIN_GRAPH_AT=N: an HNSW graph from N chunks on; STANDIN_SLOW_GRAPH=SECONDS: every graph
# build after this process's first takes SECONDS more;
# STANDIN_VERSION: this process calls itself another version of mrl-tui.
_DRIVER = """
import os, signal, sys, time
from pathlib import Path
# Ctrl-C as in a terminal, even when pytest runs as a background job (which ignores SIGINT)
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
sys.path.insert(0, sys.argv[1])
import mrl_tui
mrl_tui.__version__ = os.environ.get("STANDIN_VERSION", mrl_tui.__version__)
from fakes import LIBRARY_DIM, HashEmbedder
import mrl_tui.core.embedding.embed as embed
import mrl_tui.core.library as library

class StandIn(HashEmbedder):
    def __init__(self, *args, **kwargs):
        if os.environ.get("STANDIN_NO_MODEL"):
            raise SystemExit("the model was loaded")
        super().__init__(LIBRARY_DIM)

    def embed_query(self, text):
        marker = os.environ.get("STANDIN_SLOW_QUERY")
        if marker:
            Path(marker).touch()
            time.sleep(60)
        return super().embed_query(text)

    def embed_documents(self, texts, **kwargs):
        slow = os.environ.get("STANDIN_SLOW_DOCS")
        if slow:
            marker, seconds = slow.rsplit(":", 1)
            Path(marker).touch()
            time.sleep(float(seconds))
        return super().embed_documents(texts, **kwargs)

embed.Embedder = StandIn  # what `ModelChoice.load` makes
real_choose_device = embed.choose_device
# The stand-in runs on the CPU: asking torch which device "auto" means would import it in each
# server (1-2 s of CPU a start, some twenty starts), and the answer is not what is tested here.
embed.choose_device = lambda requested="auto": (
    "cpu" if requested in ("auto", "cpu") else real_choose_device(requested)
)
if os.environ.get("STANDIN_GRAPH_AT"):
    library.HNSW_MIN_CHUNKS = int(os.environ["STANDIN_GRAPH_AT"])
if os.environ.get("STANDIN_SLOW_GRAPH"):
    build, builds = library.hnsw.load_or_build, []

    def slow_build(*args, **kwargs):  # the graph tiers of one generation, then their tuning
        builds.append(1)
        if len(builds) > 1:
            time.sleep(float(os.environ["STANDIN_SLOW_GRAPH"]))
        return build(*args, **kwargs)

    library.hnsw.load_or_build = slow_build
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


@pytest.mark.parametrize(
    "flags",
    [(), ("--retrieval", "hybrid", "--dim", "32"), ("--retrieval", "lexical"), ("--k", "3")],
)
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
    assert "--dim" in warm.stderr  # the setting spelled as the flag, from the server too


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


def test_the_warm_client_imports_only_the_client_and_the_standard_library(
    server: subprocess.Popen[str], corpus: Path
) -> None:
    """Nothing of the core's search or of any third party (platformdirs only where no runtime
    or cache dir is set): the warm path's time is the interpreter's and the socket's."""
    probe = (
        "import sys; from mrl_tui.cli import main; "
        f"rc = main(['search', {str(corpus)!r}, 'bread', '--json']); "
        "names = {m.split('.')[0] for m in sys.modules if not m.startswith('mrl_tui')}; "
        "print(sorted(n for n in names if n not in sys.stdlib_module_names "
        "and not n.startswith('_')), 'dataclasses' in sys.modules, rc, file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=_env()
    )
    assert done.stderr.strip() == "[] False 0", done.stderr
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


def test_no_server_searches_here_without_asking(corpus: Path) -> None:
    proc = _start_server(corpus, STANDIN_VERSION="9.9.9")
    try:
        done = _cli("search", str(corpus), "bread", "--json", "--no-server")
    finally:
        _stop(proc)
    assert done.returncode == 0 and json.loads(done.stdout)["results"]
    assert "9.9.9" not in done.stderr and _lines(done.stderr) == [], done.stderr


def _client(*args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(**env),
    )


def test_a_slow_request_does_not_hold_up_a_quick_one(corpus: Path, tmp_path: Path) -> None:
    """A query stuck in the model, and a client that connects and sends nothing: a keyword
    search of the same folder is answered meanwhile (one request at a time would wait)."""
    marker = tmp_path / "query-started"
    proc = _start_server(corpus, STANDIN_SLOW_QUERY=str(marker))
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    slow = _client("search", str(corpus), "bread", "--json")
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert time.monotonic() < deadline and slow.poll() is None, "no request came"
            time.sleep(0.05)
        silent.connect(str(serve_client.socket_path()))  # holds a connection, sends nothing
        started = time.monotonic()
        quick = _cli(
            "search", str(corpus), "bread", "--retrieval", "lexical", "--json",
            STANDIN_NO_MODEL="1",
        )  # fmt: skip
        took = time.monotonic() - started
        assert slow.poll() is None  # the slow one is still in the model
    finally:
        silent.close()
        slow.kill()
        slow.communicate(timeout=30)
        _stop(proc)
    assert quick.returncode == 0 and quick.stderr == "", quick.stderr
    assert json.loads(quick.stdout)["results"] and took < 30


def _fake_trained_model(cache: Path, source: Path) -> Path:
    """A folder `--model trained` resolves to (the stand-in model ignores what is in it)."""
    folder = cache / "models" / "fake-trained"
    folder.mkdir(parents=True)
    record = {"format": 1, "dims": [32], "source": str(source.resolve()), "date": "2026"}
    (folder / "mrl_tui_training.json").write_text(json.dumps(record), encoding="utf-8")
    return folder


def test_model_trained_is_served_by_a_server_of_that_model(corpus: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _fake_trained_model(cache, corpus)
    env = {"MRL_TUI_CACHE_DIR": str(cache)}
    args = ("search", str(corpus), "bread", "--json", "--model", "trained")
    proc = _start_server(corpus, "--model", "trained", **env)
    try:
        warm = _cli(*args, STANDIN_NO_MODEL="1", **env)  # answered by the server
    finally:
        _stop(proc)
    assert warm.returncode == 0 and warm.stderr == "", warm.stderr
    proc = _start_server(corpus, **env)  # the bundled model: the trained one is searched here
    try:
        cold = _cli(*args, **env)
    finally:
        _stop(proc)
    assert cold.returncode == 0, cold.stderr
    assert _lines(cold.stderr) == [cold.stderr.strip()] and "--model" in cold.stderr
    assert _untimed(warm.stdout) == _untimed(cold.stdout)


def test_a_relative_model_folder_and_the_default_name_match_the_server(
    corpus: Path, tmp_path: Path
) -> None:
    model = tmp_path / "my-model"
    model.mkdir()
    proc = _start_server(corpus, "--model", str(model))
    try:
        rel = subprocess.run(
            [*_command("search", str(corpus), "bread", "--json", "--model", "my-model")],
            capture_output=True, text=True, timeout=120, cwd=tmp_path,
            env=_env(STANDIN_NO_MODEL="1", PYTHONPATH=str(TESTS.parent)),  # this checkout's
        )  # fmt: skip
        other = _cli("search", str(corpus), "bread", "--json")  # the default model: not this one
    finally:
        _stop(proc)
    assert rel.returncode == 0 and rel.stderr == "", rel.stderr
    assert other.returncode == 0 and "another model loaded" in other.stderr, other.stderr


def test_a_folder_the_server_does_not_hold_is_said(
    server: subprocess.Popen[str], tmp_path: Path
) -> None:
    other = write_corpus(tmp_path / "other", files=3, seed=1)
    args = ("search", str(other), "planet moon", "--json")
    first = _cli(*args, STANDIN_NO_MODEL="1")
    again = _cli(*args, STANDIN_NO_MODEL="1")
    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    assert _lines(first.stderr) == [first.stderr.strip()] and "did not hold" in first.stderr
    assert again.stderr == ""  # held now (and watched)
    gone = _cli("search", str(tmp_path / "missing"), "planet", "--json", STANDIN_NO_MODEL="1")
    assert gone.returncode == 1 and len(_lines(gone.stderr)) == 1 and "missing" in gone.stderr


def test_tcp_listens_on_loopback_only(corpus: Path) -> None:
    for host in ("0.0.0.0", "192.168.1.10", "example.com"):
        done = _cli("serve", str(corpus), "--tcp", "0", "--host", host, STANDIN_NO_MODEL="1")
        assert done.returncode == 1 and len(_lines(done.stderr)) == 1, done.stderr
        assert "loopback" in done.stderr and "Traceback" not in done.stderr
    done = _cli("serve", "--host", "::1", STANDIN_NO_MODEL="1")
    assert done.returncode == 1 and "--tcp" in done.stderr


def test_tcp_needs_the_token_and_answers_as_the_socket_does(corpus: Path, tmp_path: Path) -> None:
    proc = _start_server(corpus, "--tcp", "0")
    info_path = serve_client.tcp_info_path()
    try:
        deadline = time.monotonic() + 30
        while not info_path.exists():
            assert time.monotonic() < deadline, "no TCP info file"
            time.sleep(0.05)
        assert stat.S_IMODE(info_path.stat().st_mode) == 0o600
        info = json.loads(info_path.read_text())
        assert info["host"] == "127.0.0.1" and info["port"] > 0 and len(info["token"]) == 64
        warm = _cli("search", str(corpus), "bread oven", "--json", STANDIN_NO_MODEL="1")
        request = serve_client.envelope(
            "search",
            path=str(corpus.resolve()),
            options={"model": None, "device": "auto", "trust_remote_code": False,
                     "mrl": False, "embed_backend": "auto"},
            cache_root=os.environ["MRL_TUI_CACHE_DIR"],
            transform="auto",
            search={"query": "bread oven", "dim": None, "route": "off", "k": 10,
                    "precision": "float32", "rescore": None, "retrieval": "dense",
                    "fusion": "rrf"},
        )  # fmt: skip
        answer = serve_client.ask_tcp(request, timeout=60)
        with socket.create_connection((info["host"], info["port"]), timeout=30) as conn:
            serve_client.send_message(conn, {**request, "token": "0" * 64})
            refused = serve_client.read_message(conn)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 143
    finally:
        _stop(proc)
    assert not info_path.exists()  # the token goes with the server
    assert answer["ok"] and answer["rc"] == 0, answer
    payload = answer["payload"]
    del payload["timings_ms"]
    assert payload == _untimed(warm.stdout)
    assert not refused["ok"] and "token" in refused["message"]


TERMINAL = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"}
"""rich draws its bars as on a terminal (stderr is a pipe here)."""


def test_a_folder_the_server_must_index_shows_the_cold_paths_bar(tmp_path: Path) -> None:
    """The server indexes a folder it does not hold: its progress comes over the socket as the
    cold path's bar (rate, ETA) on stderr, and the answer is the cold path's."""
    folder = write_corpus(tmp_path / "other", files=8, seed=2)
    proc = _start_server(STANDIN_SLOW_DOCS=f"{tmp_path / 'embedding'}:0.6")
    try:
        args = ("search", str(folder), "planet moon", "--json")
        warm = _cli(*args, STANDIN_NO_MODEL="1", **TERMINAL)
    finally:
        _stop(proc)
    assert warm.returncode == 0, warm.stderr
    assert "embedding" in warm.stderr and "chunks/s" in warm.stderr, warm.stderr
    assert "did not hold" in warm.stderr and "Traceback" not in warm.stderr
    cold = _cli(*args, **_cold_env(tmp_path))
    assert cold.returncode == 0, cold.stderr
    assert _untimed(warm.stdout) == _untimed(cold.stdout)


def _keyword_request(folder: Path, cache: Path) -> dict[str, object]:
    """A keyword search of `folder`, as `search --retrieval lexical --k 3` sends it."""
    return serve_client.envelope(
        "search",
        path=str(folder),
        options={"model": None, "device": "auto", "trust_remote_code": False, "mrl": False}
        | {"embed_backend": "auto"},
        cache_root=str(cache),
        transform="auto",
        search={"query": "planet", "dim": None, "route": "off", "k": 3, "precision": "float32"}
        | {"rescore": None, "retrieval": "lexical", "fusion": "rrf"},
    )


def test_progress_lines_come_before_the_answer_and_only_when_asked(
    server: subprocess.Popen[str], tmp_path: Path
) -> None:
    folder = write_corpus(tmp_path / "other", files=4, seed=3)
    request = _keyword_request(folder, tmp_path / "cache")
    events: list[dict[str, object]] = []
    answer = serve_client.ask(request, pytest.fail, events.append)
    assert answer is not None and answer["rc"] == 0 and answer["payload"]["results"]
    phases = [event["phase"] for event in events]
    assert "embedding" in phases and "reading" in phases, phases
    assert all(isinstance(event["elapsed_s"], float) for event in events)
    again = serve_client.ask(request, pytest.fail, events.append)  # held now: nothing to show
    assert again is not None and again["payload"]["results"] == answer["payload"]["results"]
    assert len(events) == len(phases)


def test_a_folder_with_a_graph_relays_its_build_and_its_tuning(tmp_path: Path) -> None:
    """A folder large enough for HNSW tiers: the client hears the tiers' build and then the
    measurement of their search settings, each to its end (the bars `search` shows meanwhile)."""
    folder = write_corpus(tmp_path / "other", files=4, seed=3)
    proc = _start_server(STANDIN_GRAPH_AT="2")
    events: list[dict[str, object]] = []
    try:
        answer = serve_client.ask(
            _keyword_request(folder, tmp_path / "cache"), pytest.fail, events.append
        )
    finally:
        _stop(proc)
    assert answer is not None and answer["rc"] == 0, answer
    built = [(e["done"], e["total"]) for e in events if e["phase"] == "graph"]
    tuned = [(e["done"], e["total"]) for e in events if e["phase"] == "tune"]
    assert built and built[-1][0] == built[-1][1] > 0, events
    assert tuned and tuned[0][0] == 0 and tuned[-1][0] == tuned[-1][1] > 0, events
    assert events.index({"phase": "tune", "done": 0, "total": tuned[0][1]}) > max(
        i for i, e in enumerate(events) if e["phase"] == "graph"
    )


def test_every_client_waiting_for_a_folder_gets_its_progress(tmp_path: Path) -> None:
    folder = write_corpus(tmp_path / "other", files=6, seed=5)
    marker = tmp_path / "embedding"
    proc = _start_server(STANDIN_SLOW_DOCS=f"{marker}:1.5")
    request = _keyword_request(folder, tmp_path / "cache")
    events: dict[str, list[dict[str, object]]] = {"first": [], "second": []}
    answers: dict[str, object] = {}

    def asks(name: str) -> None:
        answers[name] = serve_client.ask(request, pytest.fail, events[name].append)

    try:
        first = threading.Thread(target=asks, args=("first",))
        first.start()
        deadline = time.monotonic() + 60
        while not marker.exists():  # the first request's opening is embedding now
            assert time.monotonic() < deadline, "no indexing began"
            time.sleep(0.05)
        second = threading.Thread(target=asks, args=("second",))
        second.start()  # waits for the same opening
        first.join(60)
        second.join(60)
    finally:
        _stop(proc)
    assert events["first"] and events["second"], events  # the second joined midway
    assert events["second"][-1]["phase"] in ("embedding", "done", "graph")
    one, two = answers["first"], answers["second"]
    assert isinstance(one, dict) and isinstance(two, dict)
    assert one["payload"]["results"] == two["payload"]["results"]


def test_ctrl_c_while_the_server_indexes_stops_waiting_in_one_line(tmp_path: Path) -> None:
    folder = write_corpus(tmp_path / "other", files=6, seed=4)
    marker = tmp_path / "embedding"
    proc = _start_server(STANDIN_SLOW_DOCS=f"{marker}:3")
    try:
        client = _client("search", str(folder), "planet moon", "--json", STANDIN_NO_MODEL="1")
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert time.monotonic() < deadline and client.poll() is None, "no indexing began"
            time.sleep(0.05)
        client.send_signal(signal.SIGINT)
        out, err = client.communicate(timeout=30)
        assert client.returncode == 130 and out == "", (out, err)
        assert len(_lines(err)) == 1 and "stopped waiting for the server" in err, err
        # The server went on: it holds the folder for the next search, and answers it.
        after = _cli("search", str(folder), "planet moon", "--json", STANDIN_NO_MODEL="1")
        assert after.returncode == 0 and json.loads(after.stdout)["results"], after.stderr
        assert proc.poll() is None
    finally:
        _stop(proc)


def test_while_the_server_rebuilds_the_graph_its_answer_says_it_searched_exactly(
    corpus: Path, tmp_path: Path
) -> None:
    """A save makes a new generation, whose HNSW graph the server builds in the background:
    meanwhile a search that would use it is exact, and says so; a cold one builds the graph
    first. On this small folder both find the same hits."""
    from mrl_tui.core.library import GRAPH_BUILDING_NOTE

    graph = {"STANDIN_GRAPH_AT": "2"}
    proc = _start_server(corpus, STANDIN_SLOW_GRAPH="60", **graph)
    args = ("search", str(corpus), "zanzibar quokka planet", "--json")
    try:
        deadline = time.monotonic() + 60
        while (
            True
        ):  # written again each time: the watch is in place shortly after the server listens
            (corpus / "new.md").write_text(f"# Fresh\n\nzanzibar quokka {time.monotonic()}\n")
            warm = _cli(*args, STANDIN_NO_MODEL="1", **graph)
            assert warm.returncode == 0, warm.stderr
            if "note" in json.loads(warm.stdout):
                break
            assert time.monotonic() < deadline, warm.stdout
            time.sleep(0.3)
        cold = _cli(*args, **_cold_env(tmp_path), **graph)
    finally:
        _stop(proc)
    assert cold.returncode == 0, cold.stderr
    warm_data, cold_data = _untimed(warm.stdout), _untimed(cold.stdout)
    assert warm_data.pop("note") == GRAPH_BUILDING_NOTE and "note" not in cold_data

    def found(data: dict) -> list[tuple[str, int, int]]:  # scores: exact vs the graph tier's
        # new.md left out: the warm answer may come from the write before the last one (its
        # text holds a clock), which the cold run never sees; every other file is the same.
        hits = [(h["path"], h["start_line"], h["end_line"]) for h in data.pop("results")]
        return [hit for hit in hits if hit[0] != "new.md"]

    warm_hits, cold_hits = found(warm_data), found(cold_data)
    shared = min(len(warm_hits), len(cold_hits))
    assert shared >= 8 and warm_hits[:shared] == cold_hits[:shared]
    assert warm_data == cold_data
