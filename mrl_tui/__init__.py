"""mrl-tui: explore Matryoshka embeddings over your own folder."""

__version__ = "0.1.0"
