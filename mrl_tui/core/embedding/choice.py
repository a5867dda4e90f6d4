"""Which model, on which device, how: the user's choices an `Embedder` is made from, in one value.

The CLI, the server, the app, bench and training each take these from the user once and hand the
value on (`Library.open`, `BenchRequest`); `load` is the one place that turns it into a model.
Nothing heavy is imported until then: the CLI's warm path imports this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mrl_tui.core.embedding.embed import Embedder


@dataclass(frozen=True)
class ModelChoice:
    """The model and how it runs; `load` makes the `Embedder`."""

    model: str | None = None
    """A registry name, a hub id or a model folder; None: the bundled default."""
    device: str = "auto"
    """auto, cpu, cuda or mps (`embed.choose_device`)."""
    trust_remote_code: bool = False
    """Run a model's own code from its repository (a custom model class)."""
    mrl: bool = False
    """The user says the model was trained with a Matryoshka loss (`models.resolve_spec`)."""
    embed_backend: str = "auto"
    """auto (int8 on a CPU with onnxruntime, torch on a GPU), torch, or onnx / onnx-int8 on
    onnxruntime (`onnx_embed.resolve_backend`, `check_backend`)."""

    @property
    def source(self) -> str:
        """What the model loads from (`embed.resolve_model`): the bundled copy for the default,
        a folder's absolute path."""
        from mrl_tui.core.embedding.embed import resolve_model

        return resolve_model(self.model)[1]

    @property
    def facts_key(self) -> str:
        """Where `core.embedding.facts` keeps what this model said about itself, the key a loaded
        `Embedder` has too."""
        from mrl_tui.core.embedding.embed import resolve_model
        from mrl_tui.core.embedding.facts import facts_key

        name, source = resolve_model(self.model)
        return facts_key(name, source, mrl=self.mrl, backend=self.embed_backend)

    def load(
        self,
        *,
        cache_root: Path | None = None,
        full_precision: bool = False,
        on_status: Callable[[str], None] | None = None,
    ) -> Embedder:
        """The model, loaded (seconds: the ML stack). `cache_root`: where an ONNX export is
        cached (default: the platform cache dir); `full_precision`: float32 weights even on CUDA
        (training); `on_status`: told of the one-time ONNX export while it runs."""
        from mrl_tui.core.embedding.embed import Embedder

        return Embedder(
            self.model,
            device=self.device,
            trust_remote_code=self.trust_remote_code,
            mrl=self.mrl,
            backend=self.embed_backend,
            full_precision=full_precision,
            cache_root=cache_root,
            on_status=on_status,
        )
