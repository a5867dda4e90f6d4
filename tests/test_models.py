"""The model registry and its quirks, checked on tiny randomly initialised stand-in models.

The real models (nomic, gemma, Qwen3, …) cannot be downloaded here, so each stand-in is a one-layer
BERT with the bundled MiniLM tokenizer, saved as a sentence-transformers folder named like the
model whose rules it should pick up. The loading code under test is the real one.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mrl_tui.cli import FLAGS
from mrl_tui.core.embedding import embed as embed_module
from mrl_tui.core.embedding.embed import Embedder, hub_reachable, layer_norm
from mrl_tui.core.embedding.models import KNOWN_MODELS, bundled_model_path, find_spec, resolve_spec
from mrl_tui.core.errors import InputError, spelled
from mrl_tui.core.library import Library

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)

StandIn = Callable[..., Path]


@pytest.fixture(scope="session")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> StandIn:
    """make(folder_name, prompts=None, default_prompt_name=None) -> a saved stand-in model."""
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Pooling, Transformer

    bundled = bundled_model_path()
    assert bundled is not None
    base = tmp_path_factory.mktemp("stand-in-base")
    for name in TOKENIZER_FILES:
        if (bundled / name).exists():
            shutil.copy(bundled / name, base / name)
    vocab = len(transformers.AutoTokenizer.from_pretrained(base))
    torch.manual_seed(0)
    config = transformers.BertConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        vocab_size=vocab,
        max_position_embeddings=128,
    )
    transformers.BertModel(config).save_pretrained(base)
    root = tmp_path_factory.mktemp("stand-ins")

    def make(
        folder: str, prompts: dict[str, str] | None = None, default_prompt_name: str | None = None
    ) -> Path:
        path = root / folder
        if not path.exists():
            modules = [Transformer(str(base), max_seq_length=128), Pooling(32, "mean")]
            model = SentenceTransformer(
                modules=modules,
                prompts=prompts,
                default_prompt_name=default_prompt_name,
                device="cpu",
            )
            model.save(str(path))
        return path

    return make


def raw_encode(path: Path, texts: list[str]) -> np.ndarray:
    """What the plain sentence-transformers model gives, with no prompt of its own added."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    return model.encode(texts, prompt="", convert_to_numpy=True)


# -- the registry on its own --------------------------------------------------------------------


def test_rules_for_known_unknown_and_mrl_models() -> None:
    """Each model gets the treatment its family needs, and the rule line names the facts a user
    needs to see why (the model, MRL or not, what the mrl setting, `--mrl`, would change)."""
    spec, rule = resolve_spec("nomic-ai/nomic-embed-text-v1.5")
    assert spec.native_mrl and spec.layer_norm and spec.needs_remote_code
    assert spec.name in rule and "native MRL" in rule and "layer norm" in rule
    assert f"{spec.mrl_dims[0]}" in rule and f"{spec.mrl_dims[-1]}" in rule
    minilm, rule = resolve_spec("all-MiniLM-L6-v2")  # an alias finds the card
    assert minilm is find_spec("sentence-transformers/all-MiniLM-L6-v2")
    assert not minilm.native_mrl and minilm.name in rule and "PCA" in rule
    for name in ("/models/my-finetune", "not-a-model-anyone-registered"):
        unknown, rule = resolve_spec(name)
        assert unknown.name == name and not unknown.native_mrl and unknown.full_dim is None
        assert "PCA" in rule and "--mrl" in spelled(rule, FLAGS)  # says how to opt out
        flagged, rule = resolve_spec(name, mrl=True)
        assert flagged.native_mrl and "--mrl" in spelled(rule, FLAGS) and "PCA" not in rule
    # --mrl overrides the registry for a known non-MRL model, and keeps the rest of its card
    flagged, rule = resolve_spec("all-MiniLM-L6-v2", mrl=True)
    assert flagged.native_mrl and flagged.full_dim == minilm.full_dim and minilm.name in rule
    assert not minilm.native_mrl  # the registry's own entry is untouched
    # --mrl on a model that is MRL anyway changes nothing
    assert resolve_spec("nomic-ai/nomic-embed-text-v1.5", mrl=True)[0] == spec
    # a local folder named like a known model gets its rules
    assert find_spec("/data/models/embeddinggemma-300m/") is find_spec("google/embeddinggemma-300m")


def test_registry_entries_are_consistent() -> None:
    for spec in KNOWN_MODELS:
        assert spec.full_dim is not None
        if spec.native_mrl:
            assert list(spec.mrl_dims) == sorted(set(spec.mrl_dims)), spec.name
            assert spec.mrl_dims[-1] == spec.full_dim, spec.name
            assert resolve_spec(spec.name)[1].count(spec.name) == 1
        else:
            assert spec.mrl_dims == ()
        for prompt in (spec.query_prompt, spec.document_prompt):
            # a prompt is glued in front of the text: it must end where the text can begin
            assert prompt is None or (prompt.strip() and prompt.rstrip().endswith(":")), spec.name
        if spec.document_prompt is not None:  # asymmetric: queries are told apart too
            assert spec.query_prompt not in (None, spec.document_prompt), spec.name
        for alias in spec.aliases:
            assert find_spec(alias) is spec
    gemma = find_spec("google/embeddinggemma-300m")
    assert gemma is not None and not gemma.allow_fp16  # it overflows in float16
    for name in (
        "Qwen/Qwen3-Embedding-0.6B",
        "mixedbread-ai/mxbai-embed-large-v1",
        "Snowflake/snowflake-arctic-embed-m-v1.5",
    ):
        spec = find_spec(name)  # query-only prompts: documents are embedded as they are
        assert spec is not None and spec.query_prompt and spec.document_prompt is None, name


# -- quirks applied by the Embedder, on stand-ins ------------------------------------------------


def test_nomic_needs_trust_remote_code_before_anything_loads(
    stand_in: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = stand_in("nomic-embed-text-v1.5")
    monkeypatch.setattr(Embedder, "_load", lambda *a: pytest.fail("loaded without consent"))
    with pytest.raises(InputError, match="runs code from its repository") as raised:
        Embedder(str(path), device="cpu")
    assert "--" not in str(raised.value)  # the user's words; the CLI spells its flag
    assert "--trust-remote-code" in spelled(raised.value, FLAGS)


def test_nomic_layer_norm_and_prefixes(stand_in: StandIn) -> None:
    import torch
    import torch.nn.functional as F

    path = stand_in("nomic-embed-text-v1.5")
    embedder = Embedder(str(path), device="cpu", trust_remote_code=True)
    assert embedder.spec.layer_norm and embedder.spec.native_mrl
    assert "layer norm before truncation" in embedder.rule
    assert "the registry says 768 dims, this one has 32" in embedder.rule
    expected_query = F.layer_norm(
        torch.from_numpy(raw_encode(path, ["search_query: red planet"])), (32,)
    ).numpy()
    np.testing.assert_allclose(embedder.embed_query("red planet"), expected_query[0], atol=1e-5)
    docs = ["Mars has two moons.", "Bread needs flour."]
    expected_docs = F.layer_norm(
        torch.from_numpy(raw_encode(path, [f"search_document: {d}" for d in docs])), (32,)
    ).numpy()
    np.testing.assert_allclose(embedder.embed_documents(docs), expected_docs, atol=1e-5)
    # the layer norm is over the full vector: zero mean, unit variance before any truncation
    vector = embedder.embed_query("anything")
    assert abs(vector.mean()) < 1e-5 and vector.std() == pytest.approx(1.0, abs=1e-3)
    assert np.allclose(layer_norm(vector[None, :]), vector, atol=1e-4)  # idempotent


def test_saved_prompts_win_and_a_default_prompt_is_not_added_twice(stand_in: StandIn) -> None:
    prompts = {"query": "find: ", "document": "doc: "}
    path = stand_in("tiny-unknown-prompted", prompts=prompts, default_prompt_name="query")
    embedder = Embedder(str(path), device="cpu")
    assert embedder.info.query_prompt == "find: " and embedder.info.document_prompt == "doc: "
    np.testing.assert_allclose(
        embedder.embed_query("x"), raw_encode(path, ["find: x"])[0], atol=1e-6
    )
    np.testing.assert_allclose(
        embedder.embed_documents(["x"])[0], raw_encode(path, ["doc: x"])[0], atol=1e-6
    )


def test_registry_prompts_fill_in_when_the_model_saved_none(stand_in: StandIn) -> None:
    path = stand_in("embeddinggemma-300m")
    embedder = Embedder(str(path), device="cpu")
    card = find_spec("google/embeddinggemma-300m")
    assert card is not None and card.query_prompt and card.document_prompt
    assert embedder.info.query_prompt == card.query_prompt
    assert embedder.info.document_prompt == card.document_prompt
    assert not embedder.spec.layer_norm
    # and they are what the model is fed
    np.testing.assert_allclose(
        embedder.embed_query("red planet"),
        raw_encode(path, [card.query_prompt + "red planet"])[0],
        atol=1e-6,
    )
    np.testing.assert_allclose(
        embedder.embed_documents(["Mars has two moons."])[0],
        raw_encode(path, [card.document_prompt + "Mars has two moons."])[0],
        atol=1e-6,
    )


def test_unknown_model_and_mrl_flag(stand_in: StandIn, tmp_path: Path, topic_folder: Path) -> None:
    path = stand_in("tiny-unknown")
    plain = Embedder(str(path), device="cpu")
    assert not plain.spec.native_mrl and plain.info.rule.startswith("unknown model:")
    library = Library(topic_folder, plain, cache_root=tmp_path / "cache")
    assert library.transform_name == "PCA"
    library.close()
    flagged = Embedder(str(path), device="cpu", mrl=True)
    assert flagged.spec.native_mrl and flagged.rule.settings == ("mrl",)  # names the setting
    assert spelled(flagged.rule, FLAGS).startswith("--mrl given:")  # the CLI spells its flag
    library = Library(topic_folder, flagged, cache_root=tmp_path / "cache")
    assert library.transform_name == "native MRL"
    library.close()


def test_a_model_trained_here_is_native_mrl_without_the_flag(
    trained_notes, tmp_path: Path, topic_folder: Path
) -> None:
    """The real Matryoshka model of the session (conftest), not a stand-in: the registry reads
    its training record, and the library searches its prefixes as they are (no PCA)."""
    embedder = Embedder(str(trained_notes.path), device="cpu")
    assert embedder.spec.native_mrl and embedder.spec.mrl_dims == (32, 64, 128, 256, 384)
    assert embedder.rule.startswith("native MRL: trained by mrl-tui on ")
    library = Library(topic_folder, embedder, cache_root=tmp_path / "cache")
    assert library.transform_name == "native MRL"
    library.update()
    library.load()
    hits = library.search(library.query("moons of the red planet"), 32, 3).hits
    assert hits[0].chunk.path == "space/mars.md"
    library.close()


@pytest.mark.parametrize(
    ("folder", "trust", "device", "dtype"),
    [
        ("tiny-unknown", False, "cpu", "float32"),
        ("mxbai-embed-large-v1", False, "cpu", "float32"),
        ("nomic-embed-text-v1.5", True, "cpu", "float32"),
        ("mpnet-base-nli-matryoshka", False, "cuda", "float16"),
        ("embeddinggemma-300m", False, "cuda", "float32"),  # never float16
    ],
)
def test_what_the_loader_is_asked_for(
    stand_in: StandIn,
    monkeypatch: pytest.MonkeyPatch,
    folder: str,
    trust: bool,
    device: str,
    dtype: str,
) -> None:
    """trust_remote_code only when the user asked, and the dtype the registry allows.

    "cuda" is pretended (the stand-in still runs on the CPU) to see what the loader is asked for.
    """
    import sentence_transformers

    real = sentence_transformers.SentenceTransformer
    calls: list[dict] = []

    def recording(*args, **kwargs):
        calls.append(dict(kwargs))
        return real(*args, **{**kwargs, "device": "cpu"})

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", recording)
    monkeypatch.setattr(embed_module, "choose_device", lambda requested: device)
    embedder = Embedder(str(stand_in(folder)), device=device, trust_remote_code=trust)
    assert len(calls) == 1
    assert calls[0]["trust_remote_code"] is trust
    assert embedder.dtype == dtype == embedder.info.dtype


def test_hub_reachable_tries_the_endpoint_unless_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        assert not hub_reachable()  # HF_HUB_OFFLINE=1 (conftest): no connection is tried
        monkeypatch.delenv("HF_HUB_OFFLINE")
        assert hub_reachable(timeout=2)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")  # nobody listens now
    assert not hub_reachable(timeout=2)
