"""Vectors → ranked hits.

The nested index, codes, HNSW, funnel, router, keyword and hybrid search, comparisons.
"""
