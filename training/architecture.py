"""The names that describe an AlexNet without building one (no torch here, so that the command line's
help and settings load fast): its variants, initialisations and fc7 width."""

from __future__ import annotations

from typing import Literal

Variant = Literal["grouped", "single"]
VARIANTS: tuple[str, ...] = ("grouped", "single")
Init = Literal["paper", "kaiming"]
INITS: tuple[str, ...] = ("paper", "kaiming")
FEATURE_DIM = 4096  # fc7 at the paper's width
