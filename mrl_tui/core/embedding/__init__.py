"""Chunks → vectors: the model registry, the user's choice of model (`ModelChoice`), the
sentence-transformers embedder, the ONNX backend."""
