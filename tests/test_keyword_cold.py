"""`search --retrieval lexical` without a server: the index opens from the model's recorded facts
(`core.embedding.facts`), torch is never imported, and the model loads only when something must
be embedded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import write_files

from mrl_tui.core.embedding import facts
from mrl_tui.core.library import Library

REPO = Path(__file__).resolve().parent.parent

_PROBE = """
import json, sys
from mrl_tui.cli import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "torch": "torch" in sys.modules,
                  "st": "sentence_transformers" in sys.modules}), file=sys.stderr)
"""


def _search(folder: Path, cache: Path, *args: str) -> tuple[dict, dict, str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, "search", str(folder), *args, "--json", "--no-server"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "MRL_TUI_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO)},
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    probe = json.loads(lines[-1])
    return json.loads(done.stdout), probe, "\n".join(lines[:-1])


def test_a_keyword_search_of_an_indexed_folder_never_loads_the_model(
    embedder, tmp_path: Path
) -> None:
    folder = write_files(
        tmp_path / "folder",
        {"a.md": "# Rates\n\ncall parse_rate before refill\n", "b.md": "# Bread\n\nflour oven\n"},
    )
    cache = tmp_path / "cache"
    library = Library(folder, embedder, cache_root=cache)  # records the model's facts
    library.update()
    library.close()

    torch = ("--embed-backend", "torch")  # the session model's backend, recorded above
    data, probe, said = _search(folder, cache, "parse_rate", "--retrieval", "lexical", *torch)
    assert probe == {"rc": 0, "torch": False, "st": False}, said
    assert [r["path"] for r in data["results"]] == ["a.md"]
    assert data["model"] == embedder.name and data["full_dim"] == embedder.full_dim
    assert data["transform"] == "PCA" and data["timings_ms"]["embed"] == 0.0

    # A new file must be embedded first: then (and only then) the model loads, and finds it.
    (folder / "c.md").write_text("# Sails\n\nharbour zeppelin\n", encoding="utf-8")
    data, probe, said = _search(folder, cache, "zeppelin", "--retrieval", "lexical", *torch)
    assert probe["rc"] == 0 and probe["torch"], said
    assert [r["path"] for r in data["results"]] == ["c.md"]


def test_without_a_record_the_model_is_loaded_as_before(tmp_path: Path) -> None:
    key = facts.facts_key("some/model", "some/model", mrl=False, backend="torch")
    assert facts.read(tmp_path, key) is None
    path = tmp_path / facts.FACTS_DIR / f"{key}.json"
    path.parent.mkdir()
    for bad in ("not json", "[]", json.dumps({"format": 1, "name": "x", "full_dim": "384"})):
        path.write_text(bad, encoding="utf-8")
        assert facts.read(tmp_path, key) is None


def test_a_model_folder_rewritten_in_place_gets_another_record(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")
    before = facts.facts_key("m", str(model), mrl=False, backend="torch")
    (model / "config.json").write_text('{"hidden_size": 8}', encoding="utf-8")
    after = facts.facts_key("m", str(model), mrl=False, backend="torch")
    assert before != after
    assert facts.facts_key("m", str(model), mrl=True, backend="torch") != after
