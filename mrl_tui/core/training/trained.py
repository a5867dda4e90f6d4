"""Models trained by `mrl-tui train`: where they live, what they record, how they are found.

Each is an ordinary sentence-transformers folder in ``<cache>/models/`` (never in the user's
folder), with ``mrl_tui_training.json`` next to the weights: base model, source folder, corpus
fingerprint, Matryoshka dims, pairs, steps, date, validation figures, and whether training was
stopped early (``partial``). A folder is written under a temporary name and renamed only once
complete, so a model folder that exists is whole. Every run gets a new folder name: the index
caches are keyed by the model's path, so a retrained model can never meet vectors of the old one.

Light on purpose (no torch): the CLI resolves ``--model trained`` before loading anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrl_tui.core.cache.store import default_cache_root

PROVENANCE_FILE = "mrl_tui_training.json"
FORMAT = 1
TEMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class TrainedModel:
    path: Path
    provenance: dict[str, Any]

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.provenance["dims"])

    @property
    def partial(self) -> bool:
        return bool(self.provenance.get("partial"))


def models_root(cache_root: Path | None = None) -> Path:
    return (cache_root or default_cache_root()) / "models"


def training_key(base: str, dims: tuple[int, ...], source: Path, fingerprint: str = "") -> str:
    """What makes a trained model current: same base, dims, source folder and corpus content.
    Without `fingerprint`: its *slot*, which a newer training of a changed corpus takes over."""
    key = {"base": base, "dims": list(dims), "source": str(source), "corpus": fingerprint}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def read_provenance(folder: Path | str) -> dict[str, Any] | None:
    """The training record of a model folder, or None when it is no model mrl-tui trained."""
    path = Path(folder).expanduser() / PROVENANCE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    dims = data.get("dims")
    if not isinstance(dims, list) or not dims or not all(isinstance(d, int) for d in dims):
        return None
    return data


def when_trained(record: dict[str, Any]) -> str:
    """The record's date as people read it, in local time ("2026-12-03 06:29"); the raw value
    where it is not an ISO date."""
    from datetime import datetime

    raw = str(record.get("date", ""))
    try:
        return datetime.fromisoformat(raw).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return raw


def steps_phrase(record: dict[str, Any]) -> str:
    """How long a recorded run trained, for "up to date" lines: "12 steps", or "kept step 6 of
    12" when the stop rule kept an earlier checkpoint, plus the encoder stage when there was one."""
    kept, run = record.get("steps"), record.get("steps_run")
    text = f"kept step {kept} of {run}" if run and kept != run else f"{kept} steps"
    stage = record.get("encoder_stage")
    if isinstance(stage, dict) and stage.get("steps_run"):
        text += f", then {stage['steps_run']} encoder steps"
    return text


def trained_models(cache_root: Path | None = None) -> list[TrainedModel]:
    """Every complete trained model in the cache, newest first."""
    root = models_root(cache_root)
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        provenance = read_provenance(folder)
        if provenance is not None:
            found.append(TrainedModel(folder, provenance))
    return sorted(found, key=lambda m: str(m.provenance.get("date", "")), reverse=True)


def trained_for(source: Path, cache_root: Path | None = None) -> TrainedModel | None:
    """The newest model trained on `source` (a folder or a BEIR set), if any; a complete one
    wins over one stopped early."""
    wanted = str(Path(source).expanduser().resolve())
    mine = [m for m in trained_models(cache_root) if m.provenance.get("source") == wanted]
    return min(mine, key=lambda m: m.partial, default=None)  # min is stable: newest first


def current_model(key: str, cache_root: Path | None = None) -> TrainedModel | None:
    """A complete (not stopped early) model for this training key: training again is not needed."""
    for model in trained_models(cache_root):
        if model.provenance.get("key") == key and not model.partial:
            return model
    return None


def partial_model(key: str, cache_root: Path | None = None) -> TrainedModel | None:
    """The newest model for this training key that was stopped early: training again restarts
    from the base model (and replaces it once it has a checkpoint of its own)."""
    for model in trained_models(cache_root):
        if model.provenance.get("key") == key and model.partial:
            return model
    return None


def new_temp_dir(cache_root: Path | None = None) -> Path:
    """An empty folder to write a model into; leftovers of dead runs are removed first."""
    root = models_root(cache_root)
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob(f"{TEMP_PREFIX}*"):
        match = re.match(rf"{re.escape(TEMP_PREFIX)}(\d+)-", old.name)
        if match and not _alive(int(match.group(1))):
            shutil.rmtree(old, ignore_errors=True)
    path = root / f"{TEMP_PREFIX}{os.getpid()}-{time.time_ns()}"
    path.mkdir()
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def publish(
    temp: Path, name: str, provenance: dict[str, Any], cache_root: Path | None = None
) -> Path:
    """Write the record into the finished `temp` folder and rename it into place under a new
    name. Older models of the same slot are removed after (superseded), except that a model
    stopped early never replaces a complete one of the same corpus."""
    root = models_root(cache_root)
    record = temp / PROVENANCE_FILE
    record.write_text(json.dumps(provenance, indent=2, sort_keys=True), encoding="utf-8")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:60]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    final = root / f"{slug}-{provenance['key'][:10]}-{stamp}"
    suffix = 1
    while final.exists():
        suffix += 1
        final = root / f"{slug}-{provenance['key'][:10]}-{stamp}-{suffix}"
    temp.rename(final)
    for model in trained_models(cache_root):
        if model.path == final or model.provenance.get("slot") != provenance["slot"]:
            continue
        same_corpus = model.provenance.get("key") == provenance["key"]
        if not same_corpus or model.partial or not provenance.get("partial"):
            shutil.rmtree(model.path, ignore_errors=True)
    return final
