"""Messages of the user's (torch's errors, reprs) cut to fit a note without cutting a word in two.

A message shown in a graph (an unreadable saved value's ``Unavailable`` reason, a statistics note)
is kept to a few hundred characters, but a cut in mid-word or mid-sentence reads as a bug and hides
that anything was left out: :func:`shorten` keeps it whole when it fits, or ends it at the last
sentence (or, with none, the last word) that fits, and says it was shortened.

>>> shorten("One sentence. Another one that is long.", 20)
'One sentence. … (shortened)'
>>> shorten("fits", 20)
'fits'
"""

from __future__ import annotations

import re

SHORTENED = " … (shortened)"
_SENTENCE_END = re.compile(r"[.!?](?=\s)")


def shorten(text: str, limit: int = 300) -> str:
    """``text`` whole if it has at most ``limit`` characters; otherwise cut after the last sentence
    that ends within ``limit`` (when that keeps at least half of it), else at the last space, else at
    ``limit``, and marked with :data:`SHORTENED`."""
    if len(text) <= limit:
        return text
    head = text[: limit + 1]
    ends = [m.end() for m in _SENTENCE_END.finditer(head)]
    if ends and ends[-1] >= limit // 2:
        cut = ends[-1]
    else:
        space = head.rfind(" ")
        cut = space if space >= limit // 2 else limit
    return text[:cut].rstrip() + SHORTENED
