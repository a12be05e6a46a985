"""Shape plurals that start out reading as their singular: a fix for a blind spot the tokenizer made.

emu-tiny's tokenizer (BPE on the world's text, Metaspace pre-tokenizer) keeps punctuation on the word, so
"how many squares?" is ``["▁how", "▁many", "▁squares?"]``, and each shape has three plural tokens of its own
(``▁squares``, ``▁squares?``, ``▁squares.``) that only counting questions use. Their embeddings learn which
shape they name from a few percent of the training data, and with a direct answer ("2") the gradient says little
about it. Measured on emu-tiny v11 (session 14): 211 of 211 total counts right on four eval seeds, 75 of 83
counts by colour, 71 of 106 counts by shape; and a run taught to work the count out in the open
(:func:`emu_agent.world.tasks.tallied`) marked "a green triangle at left" as not one of the "triangles?" asked
about: the model could not tell which shape the plural named. The embeddings of the singular tokens
(``▁square``, ``▁square?``, ``▁square.``) do know, from every caption, question and prompt.

:func:`seed_plural_embeddings` copies each singular token's input embedding row into its plural's, at the start
of an LM phase (``emu-agent train-tiny --lm-seed-plurals``); training goes on from there. Only input
embeddings change (``lm.model.embed_tokens.weight``); the output head is untied and left alone. Measured in
session 14 (docs/emu-tiny-history.md, "Phase 15"; not in v11's recipe): copied into v11 with no training, counts by
shape fell from 29 to 12 of 38 on eval seed 2026 (its counting had been built on the old rows); 1,200 steps
from the copy with counting at .12 and lr 2e-4 (run P1) counted 78 of 106 by shape on four seeds (v11: 71)
and 91.8% overall (v11: 89.2%) but lost captions (64 / 67%); with counting at its old weight (P3, lr 1e-4) it
counted no better than v11. Seeding alone is not the fix.

:func:`split_plurals` goes further (``emu-agent train-tiny --lm-split-plurals``): it drops the tokenizer's
merges that build a plural, keeping every id, so "squares?" reads as the caption's own ``▁square`` then
``s``, ``?``. Measured in session 15 (docs/emu-tiny-history.md, "Phase 16"): on its own it is not the fix
either (1,200 steps from v11 on the split tokenizer counted 25 of 38 by shape on eval seed 2026; v11: 29), and
after 1,200 steps of counting object by object on it the model still marked objects at random against the
question's shape. After 2,400 steps of that training it counted 37 of 38, and emu-tiny v12, trained so
(v11 → A → TB → TB3 → R), counts 97.6% over five eval seeds. The split tokenizer is part of v12's recipe.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emu_agent.errors import InputError
from emu_agent.world.vocab import SHAPES

if TYPE_CHECKING:
    import torch

__all__ = ["EMBEDDING_KEY", "plural_pairs", "seed_plural_embeddings", "split_plurals"]

EMBEDDING_KEY = "lm.model.embed_tokens.weight"  # (vocab, hidden), as the LM stage saves it
_SUFFIXES = ("", "?", ".")  # the forms the world's templates give a plural: "squares are", "squares?", "squares."


def plural_pairs(tokenizer: Any) -> list[tuple[int, int]]:
    """``(plural id, singular id)`` for each shape and suffix where the tokenizer has both as single tokens
    (``"▁squares?"`` and ``"▁square?"``); empty for a tokenizer that splits plurals already."""
    pairs = []
    for shape in SHAPES:
        for suffix in _SUFFIXES:
            plural = tokenizer.convert_tokens_to_ids(f"▁{shape}s{suffix}")
            singular = tokenizer.convert_tokens_to_ids(f"▁{shape}{suffix}")
            if tokenizer.unk_token_id not in (plural, singular):
                pairs.append((plural, singular))
    return pairs


def seed_plural_embeddings(state: dict[str, torch.Tensor], pairs: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
    """``state`` with each plural's input embedding row replaced by its singular's (a new dict; the rows are
    copied, every other tensor passes through). ``InputError`` when ``state`` has no input embeddings or an id
    is out of range."""
    if EMBEDDING_KEY not in state:
        raise InputError(f"seed plurals: the LM weights have no {EMBEDDING_KEY!r}")
    embeddings = state[EMBEDDING_KEY].clone()
    for plural, singular in pairs:
        if not (0 <= plural < embeddings.shape[0] and 0 <= singular < embeddings.shape[0]):
            raise InputError(
                f"seed plurals: token ids {(plural, singular)} outside a vocabulary of {embeddings.shape[0]}"
            )
        embeddings[plural] = embeddings[singular]
    return {**state, EMBEDDING_KEY: embeddings}


def split_plurals(tokenizer_folder: str | Path) -> list[str]:
    """Rewrite the BPE tokenizer saved in ``tokenizer_folder`` so that no shape plural is one token (once: a
    split tokenizer is left as it is), and return the plural tokens it can no longer produce (sorted; empty for
    a vocabulary that never had any).

    The merges that build a plural (``▁square`` + ``s``, ``▁square`` + ``s.``, ``▁squares`` + ``?``) are
    dropped, so "how many squares?" encodes as ``["▁how", "▁many", "▁square", "s", "?"]``: the shape is the
    caption's own ``▁square`` token, whose embedding every caption trains. Every id stays what it was (the
    plural tokens stay in the vocabulary, unused), so an LM trained with the old tokenizer loads and trains on
    with the new one. Only text holding a shape plural encodes differently. ``InputError`` when the folder holds
    no ``tokenizers`` BPE ``tokenizer.json``.
    """
    path = Path(tokenizer_folder) / "tokenizer.json"
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
        merges = spec["model"]["merges"]
        vocab = spec["model"]["vocab"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"split plurals: {str(path)!r} is not a tokenizers BPE tokenizer.json ({exc})") from None
    plurals = tuple(f"▁{shape}s" for shape in SHAPES)

    def builds_plural(merge: list[str] | str) -> bool:
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        return (left + right).startswith(plurals)

    kept = [m for m in merges if not builds_plural(m)]
    if len(kept) != len(merges):
        spec["model"]["merges"] = kept
        path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return sorted(token for token in vocab if token.startswith(plurals))
