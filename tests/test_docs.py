"""Every docstring example in the package runs and shows what it says."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import matcher

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(matcher.__path__, "matcher.")
    if "._proto" not in m.name and not m.name.endswith("__main__")  # generated; runs the CLI
)


def test_every_module_is_found() -> None:
    assert {"matcher.encoding._textnorm", "matcher.audit._log", "matcher.service.matching"} <= set(
        MODULES
    )


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
