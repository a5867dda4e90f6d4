"""The selected hit in full: where it is, its heading trail, its text with query terms marked."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

if TYPE_CHECKING:
    from mrl_tui.core.library import Hit

STOPWORDS = frozenset(
    {"a", "an", "and", "are", "as", "at", "be", "by", "do", "for", "from", "how", "i", "in"}
    | {"is", "it", "of", "on", "or", "the", "to", "was", "what", "when", "where", "which", "who"}
    | {"why", "with"}
)


def query_terms(query: str) -> list[str]:
    """Words worth marking in the preview: no stop words, no single letters."""
    words = re.findall(r"\w+", query.lower())
    return sorted({w for w in words if len(w) > 1 and w not in STOPWORDS})


def trail_text(trail: dict[int, int | None], depth: int) -> Text:
    """ "rank by dim  32:4  64:2  128:1 …", with a rank past `depth` shown as ">depth"."""
    out = Text("rank by dim ", style="bold")
    for dim, rank in trail.items():
        shown = f">{depth}" if rank is None else str(rank)
        out.append(f" {dim}:", style="dim")
        out.append(shown, style="bold green" if rank == 1 else "")
    return out


class Preview(VerticalScroll):
    """Scrolls when the chunk is longer than the panel."""

    def compose(self) -> ComposeResult:
        yield Static("Select a hit to see it here.", id="preview-body")

    def show_hit(
        self, hit: Hit | None, query: str, trail: dict[int, int | None] | None, depth: int
    ) -> None:
        body = self.query_one("#preview-body", Static)
        if hit is None:
            body.update("Select a hit to see it here.")
            self.border_title = "preview"
            return
        chunk = hit.chunk
        self.border_title = f"{chunk.path}:{chunk.start_line}-{chunk.end_line}"
        text = Text()
        if trail:
            text.append_text(trail_text(trail, depth))
            text.append("\n")
        if chunk.heading:
            text.append(chunk.heading, style="bold")
            text.append("\n")
        content = Text(chunk.text.strip())
        terms = query_terms(query)
        if terms:
            words = "|".join(re.escape(term) for term in terms)
            content.highlight_regex(re.compile(rf"\b(?:{words})\w*", re.IGNORECASE), "bold reverse")
        text.append_text(content)
        body.update(text)
        self.scroll_home(animate=False)
