from __future__ import annotations

import matcher
from matcher import errors


def test_public_api_is_exactly_the_intended_names() -> None:
    public = {n for n in dir(matcher) if not n.startswith("_")} - {
        # sub-modules imported as a side effect
        "batch",
        "encoding",
        "errors",
        "evaluate",
        "keys",
        "linkage",
        "schema",
        "scoring",
        "normalise",
        "similarity",
        "cli",
        "lsh",
        "index",
        "datasets",
        "audit",
        "store",
        "service",
        "pki",
    }
    assert public == set(matcher.__all__) - {"__version__"}
    assert matcher.__all__ == sorted(matcher.__all__)


def test_every_error_is_in_the_one_tree() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, matcher.MatcherError)
    from matcher.normalise import UnparseableValue

    assert issubclass(UnparseableValue, matcher.MatcherError)
