"""`mrl-tui train`.

Pairs cut from a corpus, MatryoshkaLoss fine-tuning, the registry of trained models.
"""
