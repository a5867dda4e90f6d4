"""The on-disk cache of a folder.

The store, the indexer that fills it, derived files, the writer lock, the folder watcher.
"""
