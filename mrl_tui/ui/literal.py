"""Text from the user's files (paths, headings, chunk text, skip reasons) made safe to show.

Such text is shown literally: it goes into `rich.text.Text` or `textual.content.Content`, never
into markup, so ``[b]`` or ``[@click=app.quit]`` in a file is just text. File names that are not
valid UTF-8 come from the OS with lone surrogates (``surrogateescape``), which no terminal can
draw; `shown` replaces them. This module imports nothing heavy: the CLI uses it too.
"""

from __future__ import annotations

import re

_SURROGATE = re.compile("[\ud800-\udfff]")


def shown(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD (�), so it can be drawn."""
    return _SURROGATE.sub("\ufffd", text)
