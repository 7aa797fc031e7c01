"""Fixtures of tests/compose: the running stack (stack_helpers.py says how it is made and torn down)."""

import pytest
from stack_helpers import http, stack  # noqa: F401  (fixtures)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here needs the stack: marked `compose` (excluded by default, pyproject.toml). They are one
    file, so they run on one pytest-xdist worker (`--dist loadfile`), in order: they share the stack and build
    on each other."""
    for item in items:
        if "tests/compose/" in str(item.fspath):
            item.add_marker(pytest.mark.compose)
