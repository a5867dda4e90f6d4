"""`o` opens the selected hit in the user's editor at its best line, in the form that editor
reads; `c` copies path:line through the terminal (OSC 52). The editors are recorders named like
the real ones; the library is the hash stand-in (no model needed)."""

from __future__ import annotations

import base64
import contextlib
import os
import sys
from pathlib import Path

import pytest
from fakes import LIBRARY_DIM, HashEmbedder
from ui_helpers import shown_locations, submit_query, wait_for, write_corpus

from mrl_tui.core.library import Library
from mrl_tui.ui.app import MrlApp

# Every note has the query's words on its line 4 only: whichever note ranks first, its best line
# is 4 (its chunk starts at line 1).
NOTES = {
    f"{topic}.md": f"# {topic.title()}\n\nSome words about {topic}.\nfeed the sourdough starter\n"
    for topic in ("bread", "mars", "bikes", "budget")
}
QUERY = "feed sourdough starter"


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    root = tmp_path_factory.mktemp("editor")
    lib = Library(write_corpus(root / "notes", NOTES), HashEmbedder(LIBRARY_DIM), cache_root=root)
    lib.update()
    lib.load()
    return lib


def recorder(folder: Path, name: str) -> Path:
    """An executable called `name` that writes the arguments it was given to `name`.argv."""
    folder.mkdir(parents=True, exist_ok=True)
    program = folder / name
    out = folder / f"{name}.argv"
    program.write_text(
        f"#!{sys.executable}\nimport sys\nopen({str(out)!r}, 'w').write('\\n'.join(sys.argv[1:]))\n"
    )
    program.chmod(0o755)
    return program


def argv_of(program: Path) -> list[str]:
    return program.with_name(f"{program.name}.argv").read_text().splitlines()


def messages(app: MrlApp) -> list[str]:
    return [n.message for n in app._notifications]


@contextlib.asynccontextmanager
async def searched(library: Library, monkeypatch: pytest.MonkeyPatch):
    """An app that has searched `QUERY`: yields (pilot, the selected hit's file)."""
    app = MrlApp(library.root, device="cpu", library=library, auto_router=False, remember=False)
    # A headless terminal cannot suspend; the editor still runs, which is what is checked.
    monkeypatch.setattr(app, "suspend", contextlib.nullcontext)
    async with app.run_test(size=(110, 34)) as pilot:
        await wait_for(pilot, lambda: app.search_screen.library is not None)
        await submit_query(pilot, QUERY)
        await wait_for(pilot, lambda: app.search_screen.selected_hit() is not None)
        hit = app.search_screen.selected_hit()
        assert hit is not None and hit.chunk.start_line == 1
        yield pilot, library.root / hit.chunk.path


async def press_o(pilot, visual: str | None, editor: str | None) -> list[str]:  # type: ignore[no-untyped-def]
    """Press `o` with these $VISUAL and $EDITOR; the messages it gave."""
    for name, value in (("VISUAL", visual), ("EDITOR", editor)):
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    before = len(messages(pilot.app))
    await pilot.press("o")
    await pilot.pause()
    return messages(pilot.app)[before:]


FORMS = [
    ("vi", ["+4", "{path}"]),
    ("nano", ["+4", "{path}"]),
    ("emacs", ["+4", "{path}"]),
    ("code", ["-g", "{path}:4"]),
    ("code --wait", ["--wait", "-g", "{path}:4"]),
]


async def test_o_opens_the_editor_at_the_best_line_in_its_own_form(
    library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VISUAL", raising=False)  # restored after the test, like EDITOR
    monkeypatch.delenv("EDITOR", raising=False)
    async with searched(library, monkeypatch) as (pilot, path):
        for i, (editor, form) in enumerate(FORMS):
            name, *flags = editor.split()
            program = recorder(tmp_path / f"bin{i}", name)
            said = await press_o(pilot, None, " ".join([str(program), *flags]))
            assert argv_of(program) == [part.format(path=path) for part in form], editor
            assert not any("at its start" in m for m in said), editor  # it went to the line
        # $VISUAL wins over $EDITOR
        visual, editor = recorder(tmp_path / "a", "nvim"), recorder(tmp_path / "b", "nano")
        await press_o(pilot, str(visual), str(editor))
        assert argv_of(visual) == ["+4", str(path)]
        assert not editor.with_name("nano.argv").exists()


async def test_an_unknown_or_missing_editor_is_said_in_one_line(
    library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.delenv("EDITOR", raising=False)
    async with searched(library, monkeypatch) as (pilot, path):
        program = recorder(tmp_path / "bin", "myeditor")
        said = await press_o(pilot, str(program), None)
        assert argv_of(program) == [str(path)]  # no "+4" it might take for a file name
        assert len(said) == 1 and "at its start" in said[0]
        assert "line 4" in said[0] and "myeditor" in said[0]

        said = await press_o(pilot, None, str(tmp_path / "no-such-dir" / "vim"))
        assert len(said) == 1 and said[0].startswith("Could not start") and "vim" in said[0]


async def test_c_copies_path_and_line_through_osc_52(library: Library) -> None:
    app = MrlApp(library.root, device="cpu", library=library, auto_router=False, remember=False)
    async with app.run_test(size=(110, 34)) as pilot:
        await wait_for(pilot, lambda: app.search_screen.library is not None)
        written: list[str] = []
        assert app._driver is not None
        real_write = app._driver.write

        def recording(data: str) -> None:
            written.append(data)
            real_write(data)

        app._driver.write = recording  # type: ignore[method-assign]
        await pilot.press("tab", "c")  # nothing searched yet: the key is off, nothing is sent
        await pilot.pause()
        assert not any("\x1b]52;" in data for data in written) and app.clipboard == ""

        await submit_query(pilot, QUERY)
        await wait_for(pilot, lambda: app.search_screen.selected_hit() is not None)
        hit = app.search_screen.selected_hit()
        assert hit is not None
        where = f"{hit.chunk.path}:1"
        await pilot.press("c")  # the slider has the keyboard after Enter
        await pilot.pause()
        sequence = f"\x1b]52;c;{base64.b64encode(where.encode()).decode()}\a"
        assert sequence in written
        assert app.clipboard == where
        assert any(m.startswith(f"Sent {where} to the terminal's clipboard") for m in messages(app))
        # the row the user moves to is what is copied
        app.search_screen.query_one("#left").table.focus()
        await pilot.press("down", "c")
        await pilot.pause()
        second = shown_locations(app)[1]
        assert app.clipboard == second != where
        assert f"\x1b]52;c;{base64.b64encode(second.encode()).decode()}\a" in written
