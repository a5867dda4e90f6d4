"""The core's errors speak the user's words; the CLI spells the settings they name as its flags."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from mrl_tui.cli import FLAGS
from mrl_tui.core.errors import CacheUnwritable, InputError, MrlError, spelled
from mrl_tui.core.library import Library, Query

CORE = Path(__file__).resolve().parent.parent / "mrl_tui" / "core"
VECTOR = np.ones(32, np.float32)
FLAG = re.compile(r"(?<![\w-])--[a-z]")


def test_a_leading_setting_and_one_in_the_advice_are_spelled() -> None:
    assert spelled(InputError("k must be at least 1", settings=("k",)), FLAGS) == (
        "--k must be at least 1"
    )
    # The word in a path before the advice is left alone: the advice's own is replaced.
    exc = CacheUnwritable(
        "cannot write /tmp/cache folder/x (denied): give a writable cache folder",
        settings=("cache folder",),
    )
    assert str(exc).endswith("give a writable cache folder")
    assert spelled(exc, FLAGS) == (
        "cannot write /tmp/cache folder/x (denied): give a writable --cache-dir"
    )
    two = InputError(
        "embed backend onnx runs on the CPU only; use device cpu",
        settings=("embed backend", "device"),
    )
    assert spelled(two, FLAGS) == "--embed-backend onnx runs on the CPU only; use --device cpu"
    assert spelled(InputError("dims must increase"), FLAGS) == "dims must increase"  # none named
    assert spelled(MrlError("x", settings=("unknown",)), FLAGS) == "x"


def test_the_library_says_k_not_a_flag(tmp_path: Path, hash_embedder) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text("some words to index\n", encoding="utf-8")
    library = Library(folder, hash_embedder, cache_root=tmp_path / "cache", transform="naive")
    try:
        with pytest.raises(InputError) as raised:
            library.search(Query("words", VECTOR, VECTOR, 0, 0.0), 8, k=0)
    finally:
        library.close()
    assert str(raised.value) == "k must be at least 1"  # what the TUI shows
    assert spelled(raised.value, FLAGS) == "--k must be at least 1"  # what the CLI prints


def test_every_spelling_is_a_flag_of_the_cli() -> None:
    import argparse

    from mrl_tui.cli import build_parser

    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    flags = {
        option
        for command in sub.choices.values()
        for action in command._actions
        for option in action.option_strings
    }
    assert set(FLAGS.values()) <= flags


def _message_parts(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values if isinstance(v, ast.Constant)]
    if isinstance(node, ast.BinOp):
        return _message_parts(node.left) + _message_parts(node.right)
    return []


def test_no_core_error_message_names_a_cli_flag() -> None:
    """Every error made in the core (``...Error(...)``, ``CacheUnwritable(...)``), every note and
    model rule (``Message(...)``) and every piece of advice they are built from: no ``--flag``.
    The CLI adds its flags (`FLAGS`)."""
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            texts: list[str] = []
            if isinstance(node, ast.Call) and node.args:
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if name.endswith(("Error", "Unwritable", "Damaged", "Message")):
                    texts = _message_parts(node.args[0])
            elif isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == [
                "advice"
            ]:
                texts = _message_parts(node.value)
            offenders += [f"{path.name}:{node.lineno}: {t}" for t in texts if FLAG.search(t)]
    assert offenders == []


def test_the_model_rules_name_the_mrl_setting_and_the_cli_spells_it_as_before() -> None:
    """What `info` says chose native MRL: the core names the setting, the CLI prints its flag."""
    from mrl_tui.core.embedding.models import resolve_spec

    unknown = resolve_spec("someone/unknown-model")[1]
    given = resolve_spec("someone/unknown-model", mrl=True)[1]
    overruled = resolve_spec("sentence-transformers/all-MiniLM-L6-v2", mrl=True)[1]
    for rule in (unknown, given, overruled):
        assert rule.settings == ("mrl",) and not FLAG.search(rule)
    assert spelled(unknown, FLAGS).endswith("; pass --mrl if it was trained with Matryoshka loss")
    assert spelled(given, FLAGS) == "--mrl given: treated as native MRL"
    assert spelled(overruled, FLAGS).startswith("--mrl given: sentence-transformers/all-MiniLM")
    known = resolve_spec("sentence-transformers/all-MiniLM-L6-v2")[1]
    assert known.settings == () and spelled(known, FLAGS) == known  # names no setting


def test_a_note_from_a_full_disk_names_the_cache_folder_in_words(tmp_path: Path) -> None:
    """A derived file that cannot be saved is used from memory; the note says so, and the CLI
    spells its advice as the flag."""
    import errno

    from mrl_tui.core.cache import artifacts

    def full(_tmp: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    notes: list[str] = []
    shelf = artifacts.Shelf.folder(tmp_path / "bench", notes.append)
    value = shelf.get(
        tmp_path / "bench" / "x.npy",
        (1,),
        load=artifacts.load_npy,
        build=lambda: np.zeros(1, np.float32),
        writer=lambda _value: full,
        what="cached embeddings",
    )
    assert value.tolist() == [0.0]
    [note] = notes
    assert note.endswith("or give another cache folder; used from memory this time")
    assert spelled(note, FLAGS).endswith("give another --cache-dir; used from memory this time")
