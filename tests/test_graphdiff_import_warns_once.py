"""``from gradsight import GraphDiff`` (deprecated) warns once, not once for import's probe and again
for the name itself."""

from __future__ import annotations

import warnings


def test_importing_the_deprecated_graphdiff_warns_once() -> None:
    from gradsight.diff import GraphDiff

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ns: dict[str, object] = {}
        exec("from gradsight import GraphDiff", ns)
    deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning) and "GraphDiff" in str(w.message)]
    assert len(deprecations) == 1
    assert ns["GraphDiff"] is GraphDiff
