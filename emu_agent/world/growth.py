"""Depth growth of a trained LLaMA: more decoder layers, the same function at the start.

This is the block expansion of LLaMA Pro (Wu et al., 2024): each new layer is a copy of the layer before it with
its two output projections (``self_attn.o_proj`` and ``mlp.down_proj``) set to zero. A pre-norm residual block
whose outputs are zero adds nothing to the residual stream, so the grown model computes exactly what the trained
one did, and training then finds a use for the new layers. The new layers are spread evenly through the stack
(4 -> 8 puts one after every layer; 4 -> 6 one after the 2nd and the 4th).

It works on state dicts keyed as the LM stage saves them (``lm.model.layers.{i}.*``); every other key passes
through unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from emu_agent.errors import InputError

if TYPE_CHECKING:
    import torch

LAYER_PREFIX = "lm.model.layers."
_LAYER_KEY = re.compile(r"^lm\.model\.layers\.(\d+)\.(.+)$")
ZEROED_OUTPUTS = ("self_attn.o_proj.weight", "mlp.down_proj.weight")  # (hidden, *): the block's writes


def layer_count(keys: Iterable[str]) -> int:
    """The number of decoder layers among an LM state dict's keys (0 when it holds none)."""
    indices = {int(match.group(1)) for key in keys if (match := _LAYER_KEY.match(key))}
    if indices and indices != set(range(len(indices))):
        raise InputError(f"LM weights have non-contiguous layers {sorted(indices)}")
    return len(indices)


def expansion_plan(layers: int, target: int) -> list[int | None]:
    """The grown stack, layer by layer: the old layer's index it keeps, or ``None`` for a new identity layer,
    which sits right after the old layer it copies. New layers are spread evenly."""
    if layers < 1:
        raise InputError(f"cannot grow an LM with {layers} layers")
    if target < layers:
        raise InputError(f"lm_layers={target} is fewer than the {layers} layers the LM starts from (growth only)")
    new = target - layers
    after = [((j + 1) * layers - 1) // new for j in range(new)]  # the old layer each new one follows
    plan: list[int | None] = []
    for index in range(layers):
        plan.append(index)
        plan.extend([None] * after.count(index))
    return plan


def grow_layers(state: dict[str, torch.Tensor], target: int) -> dict[str, torch.Tensor]:
    """``state`` with ``target`` decoder layers; the grown LM computes the same outputs as the original.

    Raises:
        InputError: ``target`` is below the current depth, or the state has no decoder layers.
    """
    layers = layer_count(state)
    plan = expansion_plan(layers, target)
    per_layer: dict[int, dict[str, torch.Tensor]] = {}
    grown = {key: value for key, value in state.items() if not _LAYER_KEY.match(key)}
    for key, value in state.items():
        if match := _LAYER_KEY.match(key):
            per_layer.setdefault(int(match.group(1)), {})[match.group(2)] = value
    previous = 0
    for new_index, old_index in enumerate(plan):
        if old_index is not None:
            previous = old_index
            block = per_layer[old_index]
        else:  # a copy of the layer before it, its writes to the residual stream zeroed
            block = {
                name: value.new_zeros(value.shape) if name in ZEROED_OUTPUTS else value.clone()
                for name, value in per_layer[previous].items()
            }
        for name, value in block.items():
            grown[f"{LAYER_PREFIX}{new_index}.{name}"] = value
    return grown
