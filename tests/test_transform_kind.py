"""One transform vocabulary: the user's choices, how `auto` resolves, what each loads and how it
is named, shared by the library, the CLI, the UI and bench."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mrl_tui.cli import build_parser
from mrl_tui.core.errors import InputError
from mrl_tui.core.transforms.kind import ADAPTOR, CHOICES, NAIVE, PCA, kind_for, resolve


def test_auto_keeps_a_native_mrl_model_as_it_is_and_rotates_the_rest() -> None:
    assert resolve("auto", native_mrl=True) is NAIVE
    assert resolve("auto", native_mrl=False) is PCA
    for native in (True, False):  # an explicit choice is taken as it is
        assert [resolve(c, native) for c in ("naive", "pca", "adaptor")] == [NAIVE, PCA, ADAPTOR]


def test_only_the_users_words_are_choices() -> None:
    for internal in ("identity", "none", "PCA", ""):
        with pytest.raises(InputError, match="choose one of"):
            resolve(internal, native_mrl=False)
    with pytest.raises(InputError):
        kind_for("auto")  # needs a model to mean something


def test_naive_prefixes_of_a_native_mrl_model_are_called_native_mrl() -> None:
    assert NAIVE.label_for(True) == NAIVE.short_for(True) == "native MRL"
    assert NAIVE.label_for(False) == "none (naive truncation)"
    assert NAIVE.short_for(False) == "naive"
    assert PCA.label_for(True) == PCA.short_for(False) == "PCA"  # only naive is renamed


@pytest.mark.parametrize("flag, ok", [("auto", True), ("adaptor", True), ("identity", False)])
def test_the_cli_accepts_the_core_choices(flag: str, ok: bool, capsys) -> None:
    parser = build_parser()
    argv = ["search", ".", "q", "--transform", flag]
    if ok:
        assert parser.parse_args(argv).transform == flag
    else:
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and all(choice in err for choice in CHOICES)


def test_the_cli_names_the_core_choices() -> None:
    """`core.choices.TRANSFORMS` (the parser's, without dataclasses) is the kinds' own list."""
    from mrl_tui.core.choices import TRANSFORMS

    assert TRANSFORMS == CHOICES


def test_the_vocabulary_imports_nothing_heavy() -> None:
    """The CLI builds `--transform` from it at `--help` time."""
    code = "import sys, mrl_tui.core.transforms.kind\nassert 'numpy' not in sys.modules\n"
    subprocess.run([sys.executable, "-c", code], check=True)
