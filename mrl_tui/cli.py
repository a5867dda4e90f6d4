"""The command line: `mrl-tui PATH` opens the app; `index`, `search` and `info` work headless.

A thin shell over `mrl_tui.core`. Every failure the user can cause ends in one line on stderr and
a non-zero exit: 2 for bad arguments, 1 for anything else.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from mrl_tui import __version__
from mrl_tui.core.choices import DEVICES, EMBED_BACKENDS, FUSIONS, PRECISIONS, RETRIEVALS
from mrl_tui.core.choices import TRANSFORMS as TRANSFORM_CHOICES
from mrl_tui.core.errors import MrlError, spelled
from mrl_tui.ui.literal import shown

if TYPE_CHECKING:
    from mrl_tui.core.cache.indexer import IndexProgress, IndexReport
    from mrl_tui.core.cache.watch import WatchUpdate
    from mrl_tui.core.corpus.walk import Skipped
    from mrl_tui.core.embedding.choice import ModelChoice
    from mrl_tui.core.evaluation.bench import BenchHooks
    from mrl_tui.core.evaluation.report import BenchReport, CompareReport
    from mrl_tui.core.library import Library

COMMANDS = ("index", "search", "info", "open", "bench", "watch", "train", "serve")
FLAGS = {
    "k": "--k",
    "dim": "--dim",
    "dims": "--dims",
    "rescore": "--rescore",
    "device": "--device",
    "embed backend": "--embed-backend",
    "cache folder": "--cache-dir",
    "trust remote code": "--trust-remote-code",
    "retrieval": "--retrieval",
    "beir": "--beir",
    "backend": "--backend",
    "mrl": "--mrl",
    "encoder steps": "--encoder-steps",
    "head share": "--head-share",
}
"""The core names settings in words (`core.errors`); the CLI says its flags instead."""
TRAINED = "trained"
"""``--model trained``: the model `mrl-tui train` made for the folder (or BEIR set) given."""


class _Parser(argparse.ArgumentParser):
    """One-line errors, and no abbreviated options: ``--mode`` must not quietly mean ``--model``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"mrl-tui: error: {message} (see mrl-tui --help)\n")


def _number(
    convert: Callable[[str], Any], noun: str, fits: Callable[[Any], bool], outside: str
) -> Callable[[str], Any]:
    """An argparse type: `convert` the text, or say it is not `noun`; outside `fits`, say so."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not fits(value):
            raise argparse.ArgumentTypeError(f"{value} is {outside}")
        return value

    return parse


_share = _number(float, "a number", lambda v: 0.0 <= v <= 1.0, "not a number from 0 to 1")
_positive_float = _number(float, "a number", lambda v: v > 0, "not above 0")
_positive_int = _number(int, "a whole number", lambda v: v >= 1, "below 1")
_port = _number(int, "a port number", lambda v: 0 <= v <= 65535, "not a port (0-65535)")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument(
        "--model",
        help="sentence-transformers model name or folder (default: bundled all-MiniLM-L6-v2); "
        "'trained': the model `mrl-tui train` made for this folder",
    )
    common.add_argument("--device", default="auto", choices=DEVICES)
    common.add_argument(
        "--embed-backend",
        default="auto",
        choices=EMBED_BACKENDS,
        help="auto (default): onnx-int8 for the bundled model on a CPU with mrl-tui[onnx], else "
        "torch; onnx / onnx-int8 (CPU only): run the model on ONNX Runtime, fp32 or int8 (faster; "
        "see README); each backend has its own index",
    )
    common.add_argument(
        "--cache-dir",
        type=Path,
        help="where indexes live (default: platform cache dir, or $MRL_TUI_CACHE_DIR)",
    )
    common.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow models that run code from their repository",
    )

    # What prefixes are taken of; it changes no stored vectors, so switching costs no re-index.
    prefixes = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    prefixes.add_argument(
        "--transform",
        default="auto",
        choices=TRANSFORM_CHOICES,
        help="auto: native MRL models as they are, PCA for others; naive: plain truncation; "
        "pca: always rotate first; adaptor: PCA plus a small network fitted to the corpus",
    )
    prefixes.add_argument(
        "--mrl",
        action="store_true",
        help="the model was trained with a Matryoshka loss: truncate it as is (for models "
        "mrl-tui does not know; see `info`)",
    )

    # Where vectors live and searches run (`mrl_tui.core.engines`); the cache stays local.
    engine = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    engine.add_argument(
        "--backend",
        metavar="ENGINE",
        help="qdrant:DIR (Qdrant Edge, embedded) or qdrant://HOST:PORT[/COLLECTION] (a Qdrant "
        "server): the engine holds the vectors and runs the searches (needs mrl-tui[engine])",
    )

    parser = _Parser(
        prog="mrl-tui",
        description="Search a folder at any Matryoshka prefix dimension; see what each one trades.",
        epilog="mrl-tui PATH opens the terminal app on PATH.",
    )
    parser.add_argument("--version", action="version", version=f"mrl-tui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p_open = sub.add_parser(
        "open",
        parents=[common, prefixes, engine],
        help="open the terminal app on a folder (the default)",
    )
    p_open.add_argument("path", type=Path)

    p_index = sub.add_parser(
        "index",
        parents=[common, prefixes, engine],
        help="index a folder (incremental) and print a summary",
    )
    p_index.add_argument("path", type=Path)
    p_index.add_argument("--json", action="store_true", help="print the summary as JSON")

    p_search = sub.add_parser(
        "search",
        parents=[common, prefixes, engine],
        help="search a folder (indexing it first if needed)",
    )
    p_search.add_argument("path", type=Path)
    p_search.add_argument("query")
    p_search.add_argument("--dim", type=_positive_int, help="prefix dimension (default: full)")
    p_search.add_argument(
        "--route",
        choices=["auto", "off"],
        default="off",
        help="auto: the router picks each query's dimension and says why (--dim overrides it)",
    )
    p_search.add_argument(
        "--k", type=_positive_int, default=10, help="results to return (default 10)"
    )
    p_search.add_argument(
        "--precision",
        default="float32",
        choices=PRECISIONS,
        help="scan int8 or binary codes of the prefix, then rescore the best exactly",
    )
    p_search.add_argument(
        "--rescore",
        type=_positive_int,
        help="candidates per result for int8/binary (default 4 for int8, 20 for binary)",
    )
    p_search.add_argument("--json", action="store_true", help="print one JSON object")
    p_search.add_argument(
        "--no-server",
        action="store_true",
        help="search in this process even when `mrl-tui serve` runs (the cold path)",
    )
    _retrieval_flags(p_search, "dense")

    p_watch = sub.add_parser(
        "watch",
        parents=[common, prefixes, engine],
        help="index a folder, then keep it indexed as files change (one line per update)",
    )
    p_watch.add_argument("path", type=Path)
    p_watch.add_argument("--json", action="store_true", help="one JSON object per update")

    p_serve = sub.add_parser(
        "serve",
        parents=[common, prefixes, engine],
        help="keep the model and folders loaded and watched; `search` then asks it (Unix socket)",
    )
    p_serve.add_argument("paths", type=Path, nargs="*", metavar="PATH", help="folders to load now")
    p_serve.add_argument(
        "--tcp",
        type=_port,
        metavar="PORT",
        help="also listen on this loopback TCP port (0: any free one); each request must carry "
        "the token the server writes to serve-tcp.json in the runtime dir (see README)",
    )
    p_serve.add_argument(
        "--host", help="with --tcp: 127.0.0.1 (default), ::1 or localhost; nothing else"
    )

    p_info = sub.add_parser(
        "info",
        parents=[common, prefixes, engine],
        help="what is indexed, and what each dimension costs",
    )
    p_info.add_argument("path", type=Path)
    p_info.add_argument("--json", action="store_true")

    p_bench = sub.add_parser(
        "bench",
        parents=[common, prefixes, engine],
        help="nDCG@10, recall@100 and cost per dimension, on a BEIR set or a queries.tsv",
    )
    p_bench.add_argument("path", type=Path, nargs="?", help="a folder holding queries.tsv")
    p_bench.add_argument(
        "--beir",
        type=Path,
        metavar="DIR",
        help="a BEIR folder (corpus.jsonl, queries.jsonl, qrels/)",
    )
    p_bench.add_argument("--dims", help="prefix dims to measure, e.g. 32,64,128 (default 32..256)")
    p_bench.add_argument("--k", type=_positive_int, default=10, help="nDCG cutoff (default 10)")
    p_bench.add_argument("--json", action="store_true", help="print one JSON object")
    p_bench.add_argument("--plot", type=Path, metavar="FILE", help="also write an SVG plot")
    p_bench.add_argument(
        "--precision",
        default="float32",
        choices=PRECISIONS,
        help="int8/binary: the fixed-dim searches scan codes, then rescore exactly",
    )
    _retrieval_flags(p_bench, "hybrid", bench=True)
    p_bench.add_argument(
        "--compare",
        action="store_true",
        help="one table: naive / pca / adaptor per dim, then (--beir, after `mrl-tui train "
        "--beir DIR`) the trained model's own prefixes, and int8 / binary at --transform",
    )
    _add_train_parser(sub, common)
    return parser


def _retrieval_flags(parser: argparse.ArgumentParser, default: str, bench: bool = False) -> None:
    """`--retrieval`, not `--mode`: the core's search "mode" is already exact / funnel."""
    parser.add_argument(
        "--retrieval",
        default=default,
        choices=RETRIEVALS,
        help=(
            "also measure keyword search (lexical) and its fusion with dense search at each "
            "dim (hybrid; the default); dense: dense only"
            if bench
            else "dense: embeddings at --dim (default); lexical: keywords (bm25, code "
            "identifiers split and whole); hybrid: both, fused"
        ),
    )
    parser.add_argument(
        "--fusion",
        default="rrf",
        choices=FUSIONS,
        help="hybrid: rrf (reciprocal-rank fusion, the default) or mix (a calibrated score mix)"
        + ("; bench measures both" if bench else ""),
    )


def _add_train_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p_train = sub.add_parser(
        "train",
        parents=[common],
        help="fine-tune a Matryoshka model on a folder's own text (or a BEIR corpus); "
        "--model is the base",
    )
    p_train.add_argument("path", type=Path, nargs="?", help="the folder to train on")
    p_train.add_argument(
        "--beir", type=Path, metavar="DIR", help="train on a BEIR folder's corpus.jsonl only"
    )
    p_train.add_argument(
        "--dims", help="Matryoshka dims below full, increasing (default 32,64,128,256)"
    )
    length = p_train.add_mutually_exclusive_group()
    length.add_argument(
        "--max-steps", type=_positive_int, help="optimizer steps (default: see --epochs)"
    )
    length.add_argument(
        "--epochs",
        type=_positive_float,
        help="passes over the pairs (default: 3 when the head trains alone, else 1)",
    )
    p_train.add_argument(
        "--batch-size", type=_positive_int, help="pairs per step (default 32; 128 on CUDA)"
    )
    p_train.add_argument(
        "--max-seq-length",
        type=_positive_int,
        help="tokens per text while training (default: the model's); shorter is faster",
    )
    p_train.add_argument(
        "--head-share",
        type=_share,
        help="share of the steps, from the first, that train only the orthogonal head with the "
        "encoder frozen (default 1: the full dimension stays the base's); 0 trains the encoder "
        "from the start",
    )
    p_train.add_argument(
        "--encoder-steps",
        type=_positive_int,
        help="after the head, steps that also train the encoder's top layers, the base model as "
        "teacher (default: none; a few seconds a step on a CPU, meant for a GPU)",
    )
    p_train.add_argument(
        "--force", action="store_true", help="train again even if the model is up to date"
    )
    p_train.add_argument("--json", action="store_true", help="print one JSON object")


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] not in COMMANDS and not args_list[0].startswith("-"):
        args_list.insert(0, "open")
    parser = build_parser()
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        served = _search_served(args) if args.command == "search" else None
        return _run(args) if served is None else served
    except MrlError as exc:
        print(f"mrl-tui: {spelled(exc, FLAGS)}", file=sys.stderr)
        return 1
    except OSError as exc:  # the file system said no where nothing else catches it: one line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"mrl-tui: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mrl-tui: interrupted; everything already indexed is kept", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    from mrl_tui.core.cache.store import check_cache_root, default_cache_root

    if args.command == "bench":
        return _cmd_bench(args)
    if args.command == "train":
        from mrl_tui.cli_train import cmd_train

        return cmd_train(args)
    if args.command == "serve":
        from mrl_tui.server import run_server

        return run_server(args)
    _check_before_loading(args)
    resolve_trained(args, args.path)
    check_cache_root(args.cache_dir or default_cache_root())
    if args.command == "open":
        from mrl_tui.ui.app import run_app

        return run_app(
            args.path,
            model=args.model,
            device=args.device,
            cache_root=args.cache_dir,
            trust_remote_code=args.trust_remote_code,
            transform=args.transform,
            mrl=args.mrl,
            embed_backend=args.embed_backend,
            exit_process=True,
            **({"backend": args.backend} if args.backend else {}),
        )
    library = _open_library(args, lazy=args.command == "search" and keyword_only(args))
    try:
        if args.command == "index":
            return _cmd_index(library, args)
        if args.command == "search":
            return _cmd_search(library, args)
        if args.command == "watch":
            return _cmd_watch(library, args)
        return _cmd_info(library, args)
    finally:
        _print_messages(library)
        library.close()


def _search_served(args: argparse.Namespace) -> int | None:
    """`search` answered by a running `mrl-tui serve` (exit status), or None: search here
    (`--no-server`, no server, or one that cannot answer this: it says why in one line).

    Imports nothing heavy: with a server, the whole command takes milliseconds."""
    if args.no_server:
        return None
    from mrl_tui import serve_client
    from mrl_tui.core.preflight import check_folder

    _check_before_loading(args)
    folder = check_folder(args.path)
    resolve_trained(args, folder)  # `--model trained` → its folder (one line if none)
    options = {name: getattr(args, name) for name in SERVER_OPTIONS}
    if options["model"] and Path(options["model"]).expanduser().exists():  # its cwd is not ours
        options["model"] = str(Path(options["model"]).expanduser().resolve())
    request = serve_client.envelope(
        "search",
        path=str(folder),
        options=options,
        cache_root=cache_root_text(args.cache_dir),
        transform=args.transform,
        search={name: getattr(args, name) for name in SEARCH_FIELDS},
        backend=backend_text(args.backend),  # answered by a server on the same engine only
    )
    bar = _ServedProgress()
    try:
        with bar:
            answer = serve_client.ask(
                request, lambda line: print(f"mrl-tui: {line}", file=sys.stderr), bar
            )
    except KeyboardInterrupt:
        print(
            f"mrl-tui: stopped waiting for the server (it goes on indexing {shown(str(folder))} "
            "for the next search)"
            if bar.shown
            else "mrl-tui: stopped waiting for the server",
            file=sys.stderr,
        )
        return 130
    if answer is None:
        return None
    for message in answer.get("messages", []):
        print(f"mrl-tui: {message}", file=sys.stderr)
    if answer["rc"] == 0:
        print_search(answer["payload"], args.json)
    return int(answer["rc"])


def backend_text(backend: str | None) -> str | None:
    """A `--backend` value as the server compares it: ``qdrant:DIR`` with DIR absolute (its cwd
    is not ours). Pure string work: the warm client imports nothing heavy."""
    if backend and backend.startswith("qdrant:") and not backend.startswith("qdrant://"):
        return "qdrant:" + str(Path(backend[len("qdrant:") :]).expanduser().absolute())
    return backend


class _ServedProgress:
    """A server's progress lines as the cold path's bar (`_index_bar`); rich is imported at the
    first line only: an answer from a folder the server holds comes without any."""

    def __init__(self) -> None:
        self._bar: AbstractContextManager[Callable[[Any], None]] | None = None
        self._show: Callable[[Any], None] | None = None

    @property
    def shown(self) -> bool:
        return self._show is not None

    def __call__(self, event: dict[str, Any]) -> None:
        from types import SimpleNamespace

        if self._show is None:
            self._bar = _index_bar()
            self._show = self._bar.__enter__()
        fields = {"current": "", "files_done": 0, "files_total": 0, "chunks_done": 0}
        fields |= {"chunks_total": 0, "elapsed_s": 0.0, "done": 0, "total": 0}
        self._show(SimpleNamespace(**(fields | event)))

    def __enter__(self) -> _ServedProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        """The bar goes (it is transient) before anything else is printed."""
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


SERVER_OPTIONS = ("model", "device", "trust_remote_code", "mrl", "embed_backend")
"""What the server's loaded model depends on: it answers only requests with the same values (the
fields of `ModelChoice`)."""


def model_choice(args: argparse.Namespace) -> ModelChoice:
    """The model the user chose, and how it runs (`train` has no ``--mrl``)."""
    from mrl_tui.core.embedding.choice import ModelChoice  # dataclasses: not on the warm path

    return ModelChoice(
        args.model,
        device=args.device,
        trust_remote_code=args.trust_remote_code,
        mrl=getattr(args, "mrl", False),
        embed_backend=args.embed_backend,
    )


def cache_root_text(cache_dir: Path | None) -> str:
    """The cache root, absolute, as `core.cache.store.default_cache_root` finds it (mirrored:
    the store imports numpy)."""
    import os

    if cache_dir is None and os.environ.get("MRL_TUI_CACHE_DIR"):
        cache_dir = Path(os.environ["MRL_TUI_CACHE_DIR"])
    if cache_dir is None:
        import platformdirs

        cache_dir = Path(platformdirs.user_cache_dir("mrl-tui", appauthor=False))
    return str(cache_dir.expanduser().absolute())


def _check_before_loading(args: argparse.Namespace) -> None:
    """What can be told without the model, told in milliseconds (loading it takes seconds)."""
    from mrl_tui.core import preflight
    from mrl_tui.core.preflight import check_folder

    folder = check_folder(args.path)
    if getattr(args, "backend", None):
        from mrl_tui.core.engines import check_installed

        check_installed(args.backend)
    if args.command in ("open", "index", "search", "watch"):
        preflight.check_has_entries(folder)
    if args.command != "search":
        return
    preflight.check_query(args.query)
    if args.dim:
        preflight.check_dim_known(args.dim, args.model)


def resolve_trained(args: argparse.Namespace, source: Path) -> None:
    """``--model trained`` → the path of the model trained for `source`; one line if none."""
    if args.model != TRAINED:
        return
    from mrl_tui.core.errors import InputError
    from mrl_tui.core.training.trained import trained_for

    model = trained_for(source, args.cache_dir)
    if model is None:
        flag = "--beir " if getattr(args, "beir", None) else ""
        raise InputError(
            f"--model trained: no model has been trained for {source} "
            f"(run: mrl-tui train {flag}{source})"
        )
    args.model = str(model.path)


def _open_library(args: argparse.Namespace, lazy: bool = False) -> Library:
    """`lazy`: the model loads only if something must be embedded (`Library.open`)."""
    from mrl_tui.core.library import Library

    what = "opening the index" if lazy else f"loading {args.model or 'the bundled model'}"
    with _status(what) as status:
        library = Library.open(
            args.path,
            model_choice=model_choice(args),
            cache_root=args.cache_dir,
            transform=getattr(args, "transform", "auto"),  # `bench` has no such flags (yet)
            lazy=lazy,
            on_status=lambda line: status.update(f"{line}…"),
        )
    if getattr(args, "backend", None):
        try:
            library.use_engine(args.backend)
        except BaseException:
            library.close()
            raise
    _print_messages(library)
    return library


def _print_messages(library: Library) -> None:
    """Rebuilt caches, waits for another indexer, files that could not be saved: one line each."""
    for message in library.take_messages():
        _say(message)


def _say(message: str) -> None:
    """A note from the core, its settings spelled as flags (see `core.errors.Message`)."""
    print(f"mrl-tui: {spelled(message, FLAGS)}", file=sys.stderr)


def _status(text: str) -> AbstractContextManager[Any]:
    from rich.console import Console

    return Console(stderr=True).status(text)


def _index_with_progress(library: Library, wait: bool = True) -> IndexReport:
    """Run `library.update()` under a rich progress bar on stderr (files, chunks, chunks/s, ETA).

    `wait=False`: when another process is indexing, use what it has committed (a search)."""
    with _index_bar() as show:
        return library.update(on_progress=show, wait=wait)


@contextmanager
def _index_bar() -> Iterator[Callable[[Any], None]]:
    """A rich bar on stderr while it is open, and what shows one `IndexProgress` on it (or the
    same fields from a server, and its "graph" and "tune" phases: ``done`` of ``total``)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[current]}", markup=False, style="dim"),  # a path: literal
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("scanning", total=None, rate="", current="")

        def step(description: str, done: int, total: int, rate: str = "", now: str = "") -> None:
            bar.update(
                task,
                description=description,
                total=total or None,  # 0: not known yet
                completed=done,
                rate=rate,
                current=shown(now[-40:]),
            )

        def show(p: IndexProgress) -> None:
            if p.phase == "waiting":
                bar.console.print(f"mrl-tui: {p.current}", markup=False, highlight=False)
                bar.update(task, description="waiting", current="")
            elif p.phase == "embedding":
                rate = p.chunks_done / p.elapsed_s if p.elapsed_s else 0.0
                step("embedding", p.chunks_done, p.chunks_total, f"{rate:.1f} chunks/s", p.current)
            elif p.phase == "reading":
                step("reading", p.files_done, p.files_total, now=p.current)
            elif p.phase == "graph":  # from a server (the cold path shows its own bars)
                step("building the search graph", p.done, p.total)
            elif p.phase == "tune":
                step("measuring graph search settings", p.done, p.total)

        yield show


def _load_with_progress(library: Library) -> None:
    """`library.load()`: the transform, then (20,000+ chunks) the HNSW graph, whose first build
    takes minutes on a CPU, and the measurement of its search settings (seconds), under bars on
    stderr; a loaded index costs nothing here."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TimeRemainingColumn,
    )

    columns = (
        "[bold]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def bar_for(what: str) -> Callable[[int, int], None]:
            def show(done: int, total: int) -> None:
                if what not in tasks:
                    tasks[what] = bar.add_task(what, total=total)
                bar.update(tasks[what], completed=done)

            return show

        library.load(
            on_graph_progress=bar_for("building the search graph"),
            on_tune_progress=bar_for("measuring graph search settings"),
        )


def _cmd_index(library: Library, args: argparse.Namespace) -> int:
    report = _index_with_progress(library)
    if report.chunks_total and not report.cancelled:
        _load_with_progress(library)  # the first search after `index` then starts at once
    summary = {
        "path": str(library.root),
        "files": report.files_seen,
        "files_changed": report.files_changed,
        "files_removed": report.files_removed,
        "chunks_embedded": report.chunks_embedded,
        "chunks": report.chunks_total,
        "skipped": [{"path": s.path, "reason": s.reason} for s in report.skipped],
        "seconds": round(report.seconds, 2),
        "cache_dir": str(library.store.directory),
        **({"engine": library.engine.info()} if library.engine is not None else {}),
    }
    empty = report.chunks_total == 0
    if empty:
        print(f"mrl-tui: {nothing_indexed(library.root, report.skipped)}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 1 if empty else 0
    print(
        f"{summary['files']} files, {report.files_changed} (re)indexed, "
        f"{report.files_removed} removed, {report.chunks_embedded} chunks embedded, "
        f"{report.chunks_total} chunks in the index, {report.seconds:.1f} s"
    )
    if report.skipped:
        reasons: dict[str, int] = {}
        for skip in report.skipped:
            reason = skip.reason.split(" (")[0].split(":")[0]
            reasons[reason] = reasons.get(reason, 0) + 1
        print("skipped: " + ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())))
    return 1 if empty else 0


def nothing_indexed(root: Path, skipped: Sequence[Skipped]) -> str:
    """One line for a folder that yields no chunks: how many files were left out, and why."""
    if not skipped:
        return f"nothing to index in {root}: no readable text files found"
    reasons: dict[str, int] = {}
    for skip in skipped:
        reason = skip.reason.split(" (")[0].split(":")[0]
        reasons[reason] = reasons.get(reason, 0) + 1
    why = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda item: -item[1]))
    return f"nothing to index in {root}: {len(skipped)} files skipped ({why})"


def _ensure_indexed(library: Library, wait: bool = False) -> None:
    report = _index_with_progress(library, wait=wait)
    if report.chunks_total == 0:
        from mrl_tui.core.errors import InputError

        raise InputError(nothing_indexed(library.root, report.skipped))


def _cmd_search(library: Library, args: argparse.Namespace) -> int:
    _search_dim(library, args)  # bad flags fail before the folder is indexed
    _ensure_indexed(library)
    if not keyword_only(args):
        _load_with_progress(library)
    query_threads()
    print_search(search_payload(library, args), args.json)
    return 0


def keyword_only(args: argparse.Namespace) -> bool:
    """A search that needs no embedding: `--retrieval lexical`, not routed (routing embeds)."""
    return args.retrieval == "lexical" and not (args.route == "auto" and not args.dim)


QUERY_TORCH_THREADS = 1
"""Threads torch embeds a query with, here and in `mrl-tui serve` alike (the thread count moves
the last digit of a score; both must print the same). One query gains nothing from more, and on
a busy machine more stall: measured on 2 shared cores at load 3, one query of the bundled model
took 15-525 ms with 2 threads, 14-41 ms with 1."""


def query_threads() -> None:
    """Embed queries with `QUERY_TORCH_THREADS` from now on (when torch is loaded at all)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(QUERY_TORCH_THREADS)


SEARCH_FIELDS = ("query", "dim", "route", "k", "precision", "rescore", "retrieval", "fusion")
"""The `search` flags that shape the answer: what a client sends `mrl-tui serve`."""


def _search_dim(library: Library, args: argparse.Namespace) -> int:
    """The dim to search at (checked), and one line for flags that do not go together."""
    from mrl_tui.core.errors import InputError

    if args.route == "auto" and not args.dim and args.precision != "float32":
        raise InputError("--route auto searches float32 vectors; give --dim to use --precision")
    if args.retrieval != "dense" and (args.precision != "float32" or args.rescore):
        raise InputError(f"--retrieval {args.retrieval} searches float32 vectors: no --precision")
    try:
        dim = library.check_dim(args.dim) if args.dim else library.full_dim
    except MrlError as exc:
        raise MrlError(f"--{exc}") from None  # the core's "dim must be …", as the flag
    return dim


def search_payload(library: Library, args: argparse.Namespace) -> dict[str, Any]:
    """What `search --json` prints, of an indexed library; the server answers with the same."""
    dim = _search_dim(library, args)
    if keyword_only(args):  # no model: the query is not embedded, the vectors not loaded
        query = library.keyword_query(args.query)
    else:
        library.load()
        query = library.query(args.query)
    route = None
    if args.route == "auto" and not args.dim:
        result, route = library.search_routed(query, args.k)
        dim = route.dim
    elif args.precision == "float32":
        result = None
    else:
        result = library.search(query, dim, args.k, precision=args.precision, rescore=args.rescore)
    if result is None or args.retrieval != "dense":  # lexical / hybrid: at the routed dim too
        result = library.retrieve(query, dim, args.k, args.retrieval, args.fusion)
    return {
        "query": args.query,
        "dim": dim,
        "full_dim": library.full_dim,
        "model": library.embedder.name,
        "transform": library.transform_name,
        "precision": result.precision,
        "retrieval": result.retrieval,
        **({"fusion": args.fusion} if result.retrieval == "hybrid" else {}),
        "results": [
            {
                "rank": h.rank,
                "path": h.chunk.path,
                "start_line": h.chunk.start_line,
                "end_line": h.chunk.end_line,
                "score": round(h.score, 6),
                "dense_rank": h.rank if result.retrieval == "dense" else h.dense_rank,
                "lexical_rank": h.lexical_rank,
                "heading": h.chunk.heading,
                "text": h.chunk.text,
            }
            for h in result.hits
        ],
        "timings_ms": {
            "embed": round(query.embed_ms, 3),
            "search": round(result.search_ms, 3),
        },
        **({"route": route.to_dict()} if route else {}),
        **({"backend": result.backend} if result.backend != "local" else {}),
        **({"note": result.note} if result.note else {}),
    }


def print_search(data: dict[str, Any], as_json: bool) -> None:
    """The answer as JSON, or as a table: from `search_payload`, here or from a server."""
    if as_json:
        print(json.dumps(data, indent=2))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    retrieval, fusion = data["retrieval"], data.get("fusion")
    # Text, never str: a str cell or title is read as markup ("[/b]" in a file would crash).
    table = Table(
        title=Text(
            f"{data['query']!r} at {data['dim']}/{data['full_dim']} dims ({data['transform']}"
            + ("" if data["precision"] == "float32" else f", {data['precision']} then rescored")
            + {"dense": "", "lexical": ", keywords only"}.get(retrieval, f", hybrid {fusion}")
            + ")"
        ),
        expand=True,
    )
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("where", no_wrap=True)
    table.add_column("text", overflow="ellipsis", no_wrap=True, ratio=1)
    for h in data["results"]:
        snippet = Text(shown(" ".join(h["text"].split())))
        where = Text(shown(f"{h['path']}:{h['start_line']}"))  # names need not be UTF-8
        table.add_row(str(h["rank"]), f"{h['score']:.3f}", where, snippet)
    console = Console()
    console.print(table)
    timings = data["timings_ms"]
    console.print(f"[dim]embed {timings['embed']:.1f} ms, search {timings['search']:.2f} ms[/dim]")
    if "route" in data:
        summary = data["route"]["summary"]
        console.print(f"route {summary}", style="dim", markup=False, highlight=False)


def _cmd_watch(library: Library, args: argparse.Namespace) -> int:
    """Index, then re-index on every change until Ctrl-C (exit 130, as any interrupt)."""
    import dataclasses

    from mrl_tui.core.cache.watch import FolderWatcher

    _ensure_indexed(library, wait=True)
    library.load()
    library.background_refit = True  # a save is searchable at once; a stale fit is refitted aside
    library.on_refit = lambda line: print(line, flush=True)
    _print_messages(library)  # the first load's (an engine synced, a cache rebuilt) before waiting
    on = f" on {library.engine.engine.engine}" if library.engine is not None else ""
    print(
        f"watching {shown(str(library.root))} ({library.chunk_count} chunks{on}); Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )

    def report(update: WatchUpdate) -> None:
        _print_messages(library)
        if args.json:
            print(json.dumps({**dataclasses.asdict(update), "line": update.line}), flush=True)
        else:
            print(update.line + (f" ({update.fit})" if update.fit else ""), flush=True)

    def failed(line: str) -> None:
        print(f"mrl-tui: {line}", file=sys.stderr, flush=True)

    FolderWatcher(library, report, on_error=failed).run()
    return 0


def fit_line(name: str, fit: dict[str, Any]) -> str:
    """One fitted part of `Library.fit_status`, in words."""
    if fit["fitted_rows"] is None:
        return f"{name}: fitted for this index"
    line = (
        f"{name} fitted on {fit['fitted_rows']:,} chunks (generation {fit['fitted_generation']}), "
        f"{fit['changed_since']:,} changed since"
    )
    return line + ("; refitting in the background" if fit["refitting"] else "")


def power_of_two_dims(full_dim: int) -> list[int]:
    dims = [d for d in (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096) if d < full_dim]
    return [*dims, full_dim]


def _cmd_info(library: Library, args: argparse.Namespace) -> int:
    from mrl_tui.core.search.codes import PRECISIONS, bytes_per_vector

    _load_with_progress(library)
    info = library.info()
    n = info.chunks
    sizes = []
    for d in power_of_two_dims(library.full_dim):
        by_precision = {
            p: {
                "bytes_per_vector": bytes_per_vector(d, p),
                "index_bytes": n * bytes_per_vector(d, p),
            }
            for p in PRECISIONS
        }
        sizes.append({"dim": d, **by_precision["float32"], "by_precision": by_precision})
    data = {
        "path": str(info.root),
        "cache_dir": str(info.cache_dir),
        "model": info.embedder.model,
        "rule": spelled(info.embedder.rule, FLAGS),
        "device": info.embedder.device,
        "dtype": info.embedder.dtype,
        "backend": info.embedder.backend,
        "full_dim": info.embedder.full_dim,
        "native_mrl": info.embedder.native_mrl,
        "transform": info.transform,
        "prompts": {"query": info.embedder.query_prompt, "document": info.embedder.document_prompt},
        "files": info.files,
        "chunks": n,
        "fit": library.fit_status(),
        "sizes": sizes,
        **({"engine": library.engine.info()} if library.engine is not None else {}),
    }
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for key in (
        "path",
        "cache_dir",
        "model",
        "rule",
        "device",
        "dtype",
        "backend",
        "full_dim",
        "transform",
        "files",
        "chunks",
    ):
        print(f"{key:>10}: {shown(str(data[key]))}")
    for kind, prompt in data["prompts"].items():
        if prompt:
            print(f"{kind + ' prompt':>10}: {prompt!r}")
    for name, fit in data["fit"]["fits"].items():
        print(f"{'fit':>10}: {shown(fit_line(name, fit))}")
    print("index size by prefix dimension and precision (bytes per vector):")
    print(f"{'dim':>10}  " + "  ".join(f"{p:>18}" for p in PRECISIONS))
    for row in sizes:
        cells = [
            f"{_human(c['index_bytes'])} ({c['bytes_per_vector']} B)"
            for c in row["by_precision"].values()
        ]
        print(f"{row['dim']:>10}  " + "  ".join(f"{c:>18}" for c in cells))
    if "engine" in data:
        _print_engine_info(data["engine"])
    return 0


def _print_engine_info(engine: dict[str, Any]) -> None:
    for key in ("engine", "where", "collection", "points", "state", "generation"):
        print(f"{key:>10}: {shown(str(engine[key]))}")
    ef, recall = engine.get("search_ef"), engine.get("ef_recall")
    if engine.get("ef_given"):
        print(f"{'hnsw ef':>10}: {ef} (given in --backend)")
    elif ef:
        print(f"{'hnsw ef':>10}: {ef} (measured: recall@10 {recall:.3f} of the exact funnel)")
    elif ef == 0:
        print(f"{'hnsw ef':>10}: none, scanned exactly (the widest beam kept {recall:.3f})")
    else:
        print(f"{'hnsw ef':>10}: Qdrant's default (measured once a collection is large)")
    print("engine tiers (named vectors; bytes per vector: float32 values, plus int8 codes and")
    print("HNSW links on the anchor tier):")
    for tier in engine["tiers"]:
        extras = ", ".join(
            x
            for x in ("int8" if tier["quantized"] == "int8" else "", "hnsw" if tier["hnsw"] else "")
            if x
        )
        print(
            f"{tier['name']:>10}  {_human(tier['bytes']):>10} ({tier['bytes_per_vector']} B)"
            + (f"  {extras}" if extras else "")
        )
    disk = engine.get("disk_bytes")
    total = _human(engine["vector_bytes"])
    print(f"{'total':>10}  {total:>10}" + (f"; on disk {_human(disk)}" if disk is not None else ""))


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _cmd_bench(args: argparse.Namespace) -> int:
    """Checks the flags, then renders what `core.evaluation.bench.run` measured."""
    from mrl_tui.core.errors import InputError
    from mrl_tui.core.evaluation import bench
    from mrl_tui.core.evaluation.report import CompareReport, to_json
    from mrl_tui.core.evaluation.svg import plot_svg

    if (args.path is None) == (args.beir is None):
        raise InputError("bench needs either a folder holding queries.tsv or --beir DIR")
    resolve_trained(args, args.beir or args.path)
    dims = bench.parse_dims(args.dims) if args.dims else None
    if args.plot and args.plot.suffix.lower() != ".svg":
        raise InputError(f"--plot {args.plot}: the plot is written as SVG; name it *.svg")
    if args.compare and args.plot:
        raise InputError("--compare prints a table only (no --plot)")
    if args.backend:
        from mrl_tui.core.engines import check_installed

        check_installed(args.backend)
        if args.compare or args.precision != "float32":
            raise InputError(
                "bench --backend measures float32 at --transform: no --compare, no --precision"
            )
    request = bench.BenchRequest(
        beir=args.beir,
        folder=args.path,
        dims=None if dims is None else tuple(dims),
        k=args.k,
        precision=args.precision,
        transform=args.transform,
        retrieval=args.retrieval,
        compare=args.compare,
        model_choice=model_choice(args),
        cache_root=args.cache_dir,
        backend=args.backend,
    )
    report = bench.run(request, _bench_hooks(args))
    if args.plot and not isinstance(report, CompareReport):
        args.plot.write_text(plot_svg(report), encoding="utf-8")
    if args.json:
        print(to_json(report))
    elif isinstance(report, CompareReport):
        _print_compare(report)
    else:
        _print_bench(report)
        _print_hybrid(report)
        _print_engine_bench(report)
    return 0


def _print_engine_bench(report: BenchReport) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    engine = report.engine
    if not engine:
        return
    key, k = f"ndcg{report.k}", report.k
    ingest = engine["ingest_s"]
    table = Table(
        title=Text(f"through {engine['engine']} ({engine['points']} points)"),
        caption=f"exact searches in the engine, nDCG@{k} against the local index; "
        + ("the collection already held this set" if ingest is None else f"ingest {ingest} s"),
        box=box.SIMPLE_HEAD,
    )
    for name in ("search", f"nDCG@{k}", "local", "diff", "R@100", "ms", "how"):
        table.add_column(name, justify="left" if name in ("search", "how") else "right")
    for row in engine["fixed"]:
        table.add_row(
            f"{row['dim']}d",
            f"{row[key]:.4f}",
            "" if row["local"] is None else f"{row['local']:.4f}",
            "" if row["diff"] is None else f"{row['diff']:+.4f}",
            f"{row['recall100']:.4f}",
            f"{row['search_ms']:.2f}",
            row["how"],
        )
    funnel = engine.get("funnel")
    if funnel:
        table.add_section()
        table.add_row(
            funnel["label"],
            f"{funnel[key]:.4f}",
            f"{funnel['local']:.4f}",
            f"{funnel['diff']:+.4f}",
            "",
            "",
            "prefetch",
        )
    Console().print(table)


def _bench_hooks(args: argparse.Namespace) -> BenchHooks:
    """Bench's long steps shown on stderr; a folder opened as the other commands open it."""
    import contextlib

    from mrl_tui.core.evaluation.bench import BenchHooks

    @contextlib.contextmanager
    def library(transform: str) -> Iterator[Library]:
        # The folder's own library stays local: an engine gets the eval set (`engines.bench`).
        local = {**vars(args), "transform": transform, "backend": None}
        opened = _open_library(argparse.Namespace(**local))
        try:
            yield opened
        finally:
            _print_messages(opened)
            opened.close()

    return BenchHooks(
        status=_status,
        phase=_phase,
        embedding=_bench_progress,
        library=library,
        index=lambda opened: _ensure_indexed(opened, wait=True),
        note=_say,
    )


def _print_hybrid(report: BenchReport) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    hybrid, k = report.hybrid, report.k
    if not hybrid:
        return
    console = Console()
    lexical = hybrid.lexical
    console.print(f"keywords only (bm25): nDCG@{k} {lexical.ndcg:.4f}, R@100 {lexical.recall:.4f}")
    if hybrid.rows is None:
        return
    table = Table(
        caption=f"cells: nDCG@{k}/recall@100; hybrid = bm25 fused with dense at the dim "
        f"(top {hybrid.candidates} of each). rrf: reciprocal-rank fusion (default "
        f"{hybrid.default}); mix: min-max cosine + bm25/max, equal weights.",
        box=box.SIMPLE_HEAD,
    )
    for name in ("dim", "dense", "hybrid rrf", "hybrid mix"):
        table.add_column(name, justify="right", no_wrap=True)
    for row in hybrid.rows:
        cells = [row.dense, row.fused["rrf"], row.fused["mix"]]
        table.add_row(str(row.dim), *(f"{c.ndcg:.4f}/{c.recall:.3f}" for c in cells))
    console.print(table)
    best = hybrid.best()
    for name, dim in hybrid.reaches_full().items():
        best_dim, best_ndcg = best[name]
        console.print(
            f"hybrid {name}: "
            + (
                f"reaches dense full-dim nDCG@{k} ({hybrid.dense_full:.4f}) at {dim}d"
                if dim is not None
                else f"best {best_ndcg:.4f} at {best_dim}d, below dense full-dim "
                f"{hybrid.dense_full:.4f}"
            ),
            markup=False,
            highlight=False,
        )


def _print_compare(report: CompareReport) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    k, cached = report.k, set(report.fit_cached)
    fits = ", ".join(
        f"{name} cached" if name in cached else f"{name} {s:.1f} s"
        for name, s in report.fit_seconds.items()
    )
    table = Table(
        title=Text(
            f"{shown(report.dataset)}: {report.docs} docs, {report.queries} judged "
            f"queries, {report.model.split('/')[-1]}"
        ),
        caption=f"cells: nDCG@{k}/recall@100. int8 and binary scan codes of the "
        f"{report.chosen} vectors, then rescore exactly. Fit: {fits}.",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("dim", justify="right", no_wrap=True)
    for name in report.columns:
        table.add_column(name, justify="right", no_wrap=True)
    for row in report.rows:
        cells = [row.cells[c] for c in report.columns]
        table.add_row(str(row.dim), *(f"{c.ndcg:.4f}/{c.recall:.3f}" for c in cells))
    Console().print(table)


def _phase(text: str) -> AbstractContextManager[None]:
    """A context manager for a long step that reports no progress: a spinner on stderr while it
    runs, then one line saying how long it took."""
    import contextlib
    import time

    from rich.console import Console

    @contextlib.contextmanager
    def phase() -> Iterator[None]:
        console = Console(stderr=True)
        started = time.perf_counter()
        with console.status(f"{text}…"):
            yield
        console.print(f"{text}: {time.perf_counter() - started:.1f} s", style="dim", markup=False)

    return phase()


def _bench_progress(
    silent: dict[str, str] | None = None,
) -> AbstractContextManager[Callable[[str, int, int], None]]:
    """A context manager yielding progress(what, done, total): one rich bar per stage, on stderr.
    `silent`: stages followed by one that reports nothing: once the first is done, a bar without
    a total says the second is under way."""
    import contextlib

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    @contextlib.contextmanager
    def bars() -> Iterator[Callable[[str, int, int], None]]:
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
            tasks: dict[str, Any] = {}

            def show(what: str, done: int, total: int) -> None:
                if what not in tasks:
                    tasks[what] = bar.add_task(what, total=total)
                bar.update(tasks[what], completed=done, total=total)
                after = (silent or {}).get(what)
                if after and done >= total and after not in tasks:
                    tasks[after] = bar.add_task(after, total=None)

            yield show

    return bars()


def _print_bench(report: BenchReport) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    k, full_dim = report.k, report.full_dim
    full = report.full.ndcg
    table = Table(
        title=Text(
            f"{shown(report.dataset)}: {report.docs} docs, {report.queries} judged "
            f"queries, {report.model.split('/')[-1]} ({report.transform})"
        ),
        caption="funnel d:c = exact scan at d keeping c, …, then a full-dim rerank; "
        "scan = values read ÷ a full exact scan.\nrouted: each query's own dimension "
        "(mrl_tui/core/search/router.py), calibrated on the corpus, no judgements.",
        box=box.SIMPLE_HEAD,
    )
    for name in ("search", f"nDCG@{k}", "of full", "R@100", "scan", "B/vec", "ms"):
        table.add_column(name, justify="left" if name == "search" else "right", no_wrap=True)

    def share(value: float) -> str:
        return f"{100 * value / full:.1f}%" if full else "-"

    for row in report.fixed:
        table.add_row(
            f"full {full_dim}d" if row.dim == full_dim else f"exact {row.dim}d",
            f"{row.cell.ndcg:.4f}",
            share(row.cell.ndcg),
            f"{row.cell.recall:.4f}",
            f"{100 * row.dim / full_dim:.1f}%",
            str(row.bytes_per_vector),
            f"{row.search_ms:.2f}",
        )
    table.add_section()
    for funnel in report.funnel:
        table.add_row(
            funnel.label,
            f"{funnel.cell.ndcg:.4f}",
            share(funnel.cell.ndcg),
            f"{funnel.cell.recall:.4f}",
            f"{100 * funnel.scan_fraction:.1f}%",
            "",
            "",
        )
    routed = report.routed
    if routed:
        table.add_section()
        table.add_row(
            f"routed (mean {routed.mean_dim:.0f}d)",
            f"{routed.cell.ndcg:.4f}",
            share(routed.cell.ndcg),
            f"{routed.cell.recall:.4f}",
            f"{100 * routed.scan_fraction:.1f}%",
            "",
            "",
        )
    console = Console()
    console.print(table)
    if routed and routed.against_fixed:
        cells = [
            f"{row.dim}d {row.ndcg_diff:+.4f} [{row.ci95[0]:+.3f}, {row.ci95[1]:+.3f}]"
            for row in routed.against_fixed
        ]
        console.print(
            f"routed − each fixed dim costing ≥ its {100 * routed.scan_fraction:.1f}% scan, "
            f"nDCG@{k} (95% paired-bootstrap interval over {report.queries} queries): "
            + " · ".join(cells),
            soft_wrap=False,
        )
