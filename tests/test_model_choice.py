"""One value says which model, on which device, how (`ModelChoice`): the CLI makes it from its
flags, the server compares it, and `load` makes the model from it."""

from __future__ import annotations

import dataclasses

from mrl_tui.cli import SERVER_OPTIONS, build_parser, model_choice
from mrl_tui.core.embedding.choice import ModelChoice


def test_the_flags_make_the_choice_and_the_server_compares_all_of_it() -> None:
    parser = build_parser()
    flags = ["--model", "some/model", "--device", "cpu", "--trust-remote-code", "--mrl"]
    args = parser.parse_args(["search", "folder", "a query", *flags, "--embed-backend", "onnx"])
    assert model_choice(args) == ModelChoice(
        "some/model", device="cpu", trust_remote_code=True, mrl=True, embed_backend="onnx"
    )
    assert model_choice(parser.parse_args(["train", "folder"])) == ModelChoice()  # no --mrl
    # A warm server answers only a request whose choice equals its own: every part is compared.
    assert tuple(field.name for field in dataclasses.fields(ModelChoice)) == SERVER_OPTIONS


def test_the_lazy_key_is_the_one_the_loaded_model_records() -> None:
    """`Library.open(lazy=True)` finds a model's record by the choice's key, before loading it."""
    choice = ModelChoice(device="cpu")
    assert choice.facts_key == choice.load().facts_key
    assert dataclasses.replace(choice, mrl=True).facts_key != choice.facts_key
    assert dataclasses.replace(choice, embed_backend="onnx").facts_key != choice.facts_key
    assert dataclasses.replace(choice, device="auto").facts_key == choice.facts_key  # same model
