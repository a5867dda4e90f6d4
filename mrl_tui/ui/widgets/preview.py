"""The selected hit in full: where it is, its heading trail, its text with query terms marked:
the words keyword search matched where a side ranks by keywords, else the query's words.

The screen sets what it shows (`Preview.selected`, a `SelectedHit`); its watcher draws it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.reactive import var
from textual.widgets import Static

from mrl_tui.ui.literal import shown

if TYPE_CHECKING:
    from mrl_tui.core.library import Hit

STOPWORDS = frozenset(
    {"a", "an", "and", "are", "as", "at", "be", "by", "do", "for", "from", "how", "i", "in"}
    | {"is", "it", "of", "on", "or", "the", "to", "was", "what", "when", "where", "which", "who"}
    | {"why", "with"}
)


def query_terms(query: str) -> list[str]:
    """Words worth marking in the preview: no stop words, no single letters; an identifier
    gives its parts and its joined form too, as keyword search reads it (`core.lexical`)."""
    from mrl_tui.core.search.lexical import query_terms as keyword_terms

    return sorted({w for w in keyword_terms(query) if len(w) > 1 and w not in STOPWORDS})


def rank_style(rank: int | None, k: int) -> str:
    """Green at the top, plain within the top k shown, yellow below it, red past the trail."""
    if rank is None:
        return "red"
    if rank == 1:
        return "bold green"
    return "" if rank <= k else "yellow"


def trail_text(trail: dict[int, int | None], depth: int, dim: int, k: int) -> Text:
    """The hit's rank at each dim, as two aligned rows; the chosen dim's column is underlined::

        dim     8  16  32  64 128 256 384
        rank   14   3   2   1   1   1   1

    A rank past `depth` shows as ">depth".
    """
    ranks = {d: f">{depth}" if r is None else str(r) for d, r in trail.items()}
    dims_row, ranks_row = Text("dim  ", style="dim"), Text("rank ", style="bold")
    for d, rank in trail.items():
        width = max(len(str(d)), len(ranks[d])) + 1
        mark = " underline" if d == dim else ""
        dims_row.append(" " * (width - len(str(d))))
        dims_row.append(str(d), style="dim" + mark)
        ranks_row.append(" " * (width - len(ranks[d])))
        ranks_row.append(ranks[d], style=(rank_style(rank, k) + mark).strip())
    return Text("\n").join([dims_row, ranks_row])


@dataclass(frozen=True)
class SelectedHit:
    """The hit to show and how: `query` for its marks; `trail`, its rank by dim (down to
    `depth`; None: no trail); `dim`, the slider's; `k`, the number of hits the tables show.
    `matched`: the query terms keyword search matched in this hit
    (`side_by_side.keyword_matches`), marked exactly and named under the preview; None (dense
    search only): every word starting with a query term is marked."""

    hit: Hit
    query: str
    trail: tuple[tuple[int, int | None], ...] | None
    depth: int
    dim: int
    k: int
    matched: tuple[str, ...] | None = None


class Preview(VerticalScroll):
    """Scrolls when the chunk is longer than the panel."""

    selected: var[SelectedHit | None] = var(None, init=False, always_update=True)
    """What is shown (None: no hit selected). Drawn again even when equal to the last: the
    preview then scrolls back to the top, as it did when the hit was first shown."""

    def compose(self) -> ComposeResult:
        yield Static("Select a hit to see it here.", id="preview-body")

    def watch_selected(self, selected: SelectedHit | None) -> None:
        body = self.query_one("#preview-body", Static)
        if selected is None:
            body.update("Select a hit to see it here.")
            self.border_title = "preview"
            self.border_subtitle = ""
            return
        hit, query, matched = selected.hit, selected.query, selected.matched
        trail = None if selected.trail is None else dict(selected.trail)
        depth, dim, k = selected.depth, selected.dim, selected.k
        chunk = hit.chunk
        # Content, not a str: a border title given a str is read as markup.
        self.border_title = Content(shown(f"{chunk.path}:{chunk.start_line}-{chunk.end_line}"))
        self.border_subtitle = f"score {hit.score:.3f}"
        if matched is not None:
            words = [term for term in matched if len(term) > 1 and term not in STOPWORDS]
            said = ", ".join(words) if words else "none"
            self.border_subtitle = Content(shown(f"score {hit.score:.3f} · keywords: {said}"))
        text = Text()
        if trail:
            text.append_text(trail_text(trail, depth, dim, k))
            text.append("\n")
        if chunk.heading:
            text.append(shown(chunk.heading), style="bold")
            text.append("\n")
        content = Text(shown(chunk.text.strip()))
        for start, end in self._marks(content.plain, query, matched):
            content.stylize("bold reverse", start, end)
        text.append_text(content)
        body.update(text)
        self.scroll_home(animate=False)

    @staticmethod
    def _marks(text: str, query: str, matched: tuple[str, ...] | None) -> list[tuple[int, int]]:
        if matched is not None:
            from mrl_tui.core.search.side_by_side import term_spans

            return term_spans(text, [t for t in matched if len(t) > 1 and t not in STOPWORDS])
        terms = query_terms(query)
        if not terms:
            return []
        from mrl_tui.core.search.lexical import marked_spans

        return marked_spans(text, terms)
