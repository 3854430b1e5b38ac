"""Message text: the user's messages (torch's errors, reprs) cut to fit a note without cutting a word in
two (:func:`shorten`), and type names read with their article (:func:`with_article`).

A message shown in a graph (an unreadable saved value's ``Unavailable`` reason, a statistics note)
is kept to a few hundred characters, but a cut in mid-word or mid-sentence reads as a bug and hides
that anything was left out: :func:`shorten` keeps it whole when it fits, or ends it at the last
sentence (or, with none, the last word) that fits, and says it was shortened.

>>> shorten("One sentence. Another one that is long.", 30)
'One sentence. … (shortened)'
>>> shorten("Freed, e.g. by a second backward. Call it once.", 40)  # "e.g." ends no sentence
'Freed, e.g. by a second … (shortened)'
>>> shorten("fits", 20)
'fits'
"""

from __future__ import annotations

import re

SHORTENED = " … (shortened)"
# a period, ! or ? before a space, but not that of "e.g.", "i.e.", "vs." or "cf."
_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)(?<!\bvs)(?<!\bcf)[.!?](?=\s)")


def shorten(text: str, limit: int = 300) -> str:
    """``text`` whole if it has at most ``limit`` characters; otherwise cut after the last sentence
    that ends within it (when that keeps at least half of it), else at the last space, else in the
    word, and marked with :data:`SHORTENED` — at most ``limit`` characters, the mark included."""
    if len(text) <= limit:
        return text
    room = limit - len(SHORTENED)
    if room < 1:  # no room for the mark: the text cut, with an ellipsis
        return text[: limit - 1] + "…" if limit >= 1 else ""
    head = text[: room + 1]
    ends = [m.end() for m in _SENTENCE_END.finditer(head) if m.end() <= room]
    if ends and ends[-1] >= room // 2:
        cut = ends[-1]
    else:
        space = head.rfind(" ")
        cut = space if space >= room // 2 else room
    return text[:cut].rstrip() + SHORTENED


def with_article(word: str) -> str:
    """``word`` after "a" or "an", by how it is read out: an int64, a uint8 ("you-int"), a bool.

    >>> with_article("int64"), with_article("uint8"), with_article("bool")
    ('an int64', 'a uint8', 'a bool')
    """
    return f"an {word}" if word[:1].lower() in ("a", "e", "i", "o") else f"a {word}"
