"""Chunks → vectors: the model registry, the sentence-transformers embedder, the ONNX backend."""
