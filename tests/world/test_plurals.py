"""Seeding shape plurals' embeddings from their singulars (emu_agent.world.plurals), on the shipped tokenizer."""

from __future__ import annotations

import pytest
import torch

from emu_agent.errors import InputError
from emu_agent.model.loading import builtin_model_dir
from emu_agent.model.tokenizer import EmuTokenizer
from emu_agent.world.plurals import EMBEDDING_KEY, plural_pairs, seed_plural_embeddings


@pytest.fixture(scope="module")
def tokenizer() -> EmuTokenizer:
    return EmuTokenizer.from_pretrained(builtin_model_dir("emu-tiny"))


def test_the_shipped_tokenizer_has_three_plural_tokens_per_shape(tokenizer) -> None:
    pairs = plural_pairs(tokenizer)
    words = [(tokenizer.convert_ids_to_tokens(p)[0], tokenizer.convert_ids_to_tokens(s)[0]) for p, s in pairs]
    assert ("▁squares?", "▁square?") in words and ("▁circles", "▁circle") in words
    assert ("▁triangles.", "▁triangle.") in words and len(pairs) == 9
    assert tokenizer.encode("how many squares?", add_bos=False)[-1] == pairs[4][0]  # the question's own token


def test_seeding_copies_rows_and_leaves_the_rest(tokenizer) -> None:
    pairs = plural_pairs(tokenizer)
    embeddings = torch.randn(len(tokenizer), 8)
    other = torch.randn(3)
    state = {EMBEDDING_KEY: embeddings, "lm.lm_head.weight": other}
    seeded = seed_plural_embeddings(state, pairs)
    for plural, singular in pairs:
        assert torch.equal(seeded[EMBEDDING_KEY][plural], embeddings[singular])
    untouched = [i for i in range(len(tokenizer)) if i not in {p for p, _ in pairs}]
    assert torch.equal(seeded[EMBEDDING_KEY][untouched], embeddings[untouched])
    assert seeded["lm.lm_head.weight"] is other
    assert not torch.equal(embeddings[pairs[0][0]], embeddings[pairs[0][1]])  # the input is not modified


def test_bad_states_are_refused() -> None:
    with pytest.raises(InputError, match="embed_tokens"):
        seed_plural_embeddings({"lm.lm_head.weight": torch.zeros(2, 2)}, [(0, 1)])
    with pytest.raises(InputError, match=r"\(5, 1\)"):
        seed_plural_embeddings({EMBEDDING_KEY: torch.zeros(3, 2)}, [(5, 1)])
