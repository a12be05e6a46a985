"""Training batches for Emu's unified objective: next-token CE on text targets, l2 on visual embeddings.

An example becomes one token sequence built with the model's own prompt code (``EmuModel.plan``), so training
sees exactly what inference sends:

- text targets (captions, answers, tool calls): ``plan(prompt)`` then the answer's tokens and ``</s>``; only the
  answer is scored;
- image targets (text->image, editing): Emu2-Gen's regression prompt ``plan(prompt) + [IMG]`` followed by the
  target image's ``n_query`` slots, filled with its own (teacher-forced) embeddings; the hidden state before
  each slot regresses that slot's embedding, as ``EmuModel.regress_visual_embeddings`` reads them out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from emu_agent.model.prompting import image_placeholder
from emu_agent.model.visual import pool_visual_tokens

__all__ = ["Batch", "collate", "forward_losses"]

IGNORE = -100


@dataclass
class _Sequence:
    ids: list[int]
    labels: list[int]
    images: list[Any]  # fill the <image> slots, in order
    frames: list[Any]  # fill the [gIMG] slots, in order
    target_image: int | None = None  # index into ``images`` of the image to regress


@dataclass
class Batch:
    """A right-padded batch. ``regress`` lists (row, first_slot_position, image_index) per image target."""

    input_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L)
    labels: torch.Tensor  # (B, L), IGNORE where not scored
    images: list[Any]
    frames: list[Any]
    regress: list[tuple[int, int, int]] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)


def _resolve_media(items: Sequence[Any], pil_by_sha: dict[str, Any] | None) -> list[Any]:
    if not pil_by_sha:
        return list(items)
    return [pil_by_sha.get(getattr(x, "sha256", None), x) for x in items]


def _sequence(model: Any, example: Any) -> _Sequence:
    tokenizer = model.tokenizer
    pil_by_sha = example.meta.get("pil_by_sha") if hasattr(example, "meta") else None
    if hasattr(example, "answer"):  # a TextExample
        plan = model.plan(example.prompt, chat=example.chat)
        prompt_ids = tokenizer.encode(plan.text)
        answer_ids = [*tokenizer.encode(example.answer, add_bos=False), tokenizer.eos_token_id]
        ids = prompt_ids + answer_ids
        labels = [IGNORE] * len(prompt_ids) + answer_ids
        return _Sequence(ids, labels, _resolve_media(plan.images, pil_by_sha), _resolve_media(plan.frames, pil_by_sha))
    plan = model.plan(example.prompt, chat=False)  # an ImageExample: Emu2-Gen regression prompt
    n_query = model.config.vision.n_query
    ids = tokenizer.encode(plan.text + image_placeholder(n_query))
    images = [*_resolve_media(plan.images, pil_by_sha), example.target]
    return _Sequence(ids, [IGNORE] * len(ids), images, list(plan.frames), target_image=len(images) - 1)


def collate(model: Any, examples: Sequence[Any]) -> Batch:
    """Examples (TextExample / ImageExample) -> a right-padded :class:`Batch`."""
    sequences = [_sequence(model, ex) for ex in examples]
    length = max(len(s.ids) for s in sequences)
    pad = model.tokenizer.pad_token_id
    image_id = model.tokenizer.image_token_id
    ids = torch.full((len(sequences), length), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    labels = torch.full((len(sequences), length), IGNORE, dtype=torch.long)
    images: list[Any] = []
    frames: list[Any] = []
    regress: list[tuple[int, int, int]] = []
    n_query = model.config.vision.n_query
    for row, seq in enumerate(sequences):
        n = len(seq.ids)
        ids[row, :n] = torch.tensor(seq.ids)
        mask[row, :n] = 1
        labels[row, :n] = torch.tensor(seq.labels)
        if seq.target_image is not None:
            slots = [i for i, t in enumerate(seq.ids) if t == image_id]
            first = slots[-n_query]  # the target image's slots are the last n_query
            regress.append((row, first, len(images) + seq.target_image))
        images.extend(seq.images)
        frames.extend(seq.frames)
    return Batch(ids, mask, labels, images, frames, regress, [getattr(ex, "task", "") for ex in examples])


def encode_media(model: Any, media: list[Any], n_query: int, *, train_visual: bool) -> torch.Tensor:
    """Pooled visual embeddings (N, n_query, width) of PIL images."""
    if not media:
        return torch.zeros(0, n_query, model.config.vision.width)
    pixels = model.preprocess(media)  # (N, 3, S, S)
    with torch.set_grad_enabled(train_visual and torch.is_grad_enabled()):
        return pool_visual_tokens(model.visual(pixels), n_query)  # (N, n_query, width)


def forward_losses(
    model: Any,
    batch: Batch,
    *,
    train_visual: bool = False,
    embedding_scale: torch.Tensor | None = None,
    own_slots: dict[int, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Text cross-entropy and visual-embedding regression (MSE, per-dim standardised by ``embedding_scale``).

    ``own_slots`` maps a batch row to the model's own free-running regression of its target image
    (n_query, width): that row's target slots are fed those embeddings instead of the true ones, as inference
    feeds them, while the loss still compares each prediction with the true embedding (training on its own
    rollouts, against exposure bias). Rows not in it are teacher-forced.
    """
    vision = model.config.vision
    tokenizer = model.tokenizer
    embeds = model.lm.get_input_embeddings()(batch.input_ids)  # (B, L, H)
    image_feats = encode_media(model, batch.images, vision.n_query, train_visual=train_visual)  # (N, nq, w)
    frame_feats = encode_media(model, batch.frames, vision.v_query, train_visual=train_visual)  # (F, vq, w)
    embeds = embeds.clone()
    if len(batch.images):
        embeds[batch.input_ids == tokenizer.image_token_id] = model.project_up(image_feats).flatten(0, 1)
    if len(batch.frames):
        embeds[batch.input_ids == tokenizer.frame_token_id] = model.project_up(frame_feats).flatten(0, 1)
    for row, start, _ in batch.regress:
        if own_slots and row in own_slots:
            own = own_slots[row].detach().to(embeds.dtype)  # (nq, width): what inference would feed
            embeds[row, start : start + vision.n_query] = model.project_up(own)
    hidden = model.lm.model(inputs_embeds=embeds, attention_mask=batch.attention_mask).last_hidden_state  # (B,L,H)
    losses: dict[str, torch.Tensor] = {}
    scored = batch.labels[:, 1:] != IGNORE  # (B, L-1): position t predicts token t+1
    if scored.any():
        logits = model.lm.lm_head(hidden[:, :-1][scored])  # (T, V)
        losses["text"] = F.cross_entropy(logits.float(), batch.labels[:, 1:][scored])
    if batch.regress:
        n_query = vision.n_query
        rows = torch.tensor([r for r, _, _ in batch.regress])
        starts = torch.tensor([s for _, s, _ in batch.regress])
        positions = starts[:, None] - 1 + torch.arange(n_query)[None, :]  # (R, nq): [IMG] and slots 1..nq-1
        predicted = model.project_down(hidden[rows[:, None], positions])  # (R, nq, width)
        target = image_feats[torch.tensor([i for _, _, i in batch.regress])].detach()  # (R, nq, width)
        scale = embedding_scale if embedding_scale is not None else torch.ones(target.shape[-1])
        losses["regression"] = ((predicted - target) / scale).pow(2).mean()
    return losses
