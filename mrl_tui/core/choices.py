"""The values each setting takes, named once for the core and its front ends.

Only the standard library is imported here (and `core.errors`, which needs nothing more), so
the CLI's ``--help`` can use it without loading numpy or torch. The modules that act on a
setting import its values from here.
"""

PRECISIONS = ("float32", "int8", "binary")
"""What a prefix scan reads: float32 vectors, or int8 / binary codes rescored exactly."""
RETRIEVALS = ("dense", "lexical", "hybrid")
"""Embeddings, keywords (bm25), or both fused."""
FUSIONS = ("rrf", "mix")
"""How hybrid retrieval fuses: reciprocal ranks, or a calibrated score mix."""
DEVICES = ("auto", "cpu", "cuda", "mps")
"""Where the model runs (auto: the fastest available)."""
EMBED_BACKENDS = ("auto", "torch", "onnx", "onnx-int8")
"""What runs the model: torch, or ONNX Runtime in fp32 or int8 (CPU only); auto: int8 on a CPU
where onnxruntime is installed, torch on a GPU (`onnx_embed.resolve_backend`)."""
TRANSFORMS = ("auto", "naive", "pca", "adaptor")
"""`--transform`: `core.transforms.kind.CHOICES` (a test keeps them equal), named here too so the
CLI's parser needs no dataclasses (the warm `search` imports as little as it can)."""


def dim_list(text: str) -> list[int]:
    """``"32,64,128"`` → [32, 64, 128], in the order given (`--dims` of bench and train); a part
    that is not a positive whole number is an `InputError` naming the setting."""
    from mrl_tui.core.errors import InputError  # stdlib only, like this module

    dims = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise InputError(
                f"dims: {part!r} is not a positive whole number (e.g. 32,64,128)",
                settings=("dims",),
            )
        dims.append(int(part))
    return dims
