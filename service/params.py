"""Request parameters that may come as a form field or a query parameter (``top_k``, ``k``, ...),
and range checks whose bounds are settings."""

from __future__ import annotations

from typing import TypeVar

from service.errors import InvalidParameter

T = TypeVar("T")


def form_or_query(name: str, form: T | None, query: T | None, default: T) -> T:
    if form is not None and query is not None and form != query:
        raise InvalidParameter(f"{name} is given as a form field ({form!r}) and a query parameter ({query!r})")
    value = form if form is not None else query
    return default if value is None else value


def in_range(name: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise InvalidParameter(f"{name} must be between {low} and {high}, got {value}")
    return value
