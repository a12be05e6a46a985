"""Naming what doesn't fit when a state dict is loaded into a module: missing, unexpected, mis-shaped keys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["key_mismatches", "name_list"]


def name_list(keys: list[str], limit: int = 10) -> str:
    """The first ``limit`` names, then how many there are in all."""
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > limit else shown


def key_mismatches(expected: Mapping[str, Any], state: Mapping[str, Any], *, prefix: str = "") -> list[str]:
    """Problems between a module's ``expected`` tensors and a checkpoint's ``state``; empty when they fit."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(expected) & set(state)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    problems = []
    for label, keys in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("mis-shaped", misshaped),  # entries: "key (checkpoint shape) != (model shape)"
    ):
        if keys:
            problems.append(f"{label} keys: {name_list([prefix + k for k in keys])}")
    return problems
