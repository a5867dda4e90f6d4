"""The headless core. No Textual here; the CLI, the TUI and the benchmarks all call it the same way.

One package per stage of the data flow, files → chunks → vectors → index → hits:

- `corpus`: walk a folder, read files safely, cut chunks;
- `embedding`: the model registry and the embedder (torch or ONNX);
- `transforms`: what prefixes are taken of (naive, PCA, adaptor);
- `search`: the nested index and everything that ranks (codes, HNSW, funnel, router, keywords);
- `cache`: the store of one folder, the indexer that fills it, derived files, the watcher;
- `evaluation`: BEIR sets, metrics, `mrl-tui bench`;
- `training`: `mrl-tui train`.

`library.Library` is the facade over them; `errors` holds the user's errors.
"""
