"""Shape plurals (emu_agent.world.plurals): seeding their embeddings from their singulars, and splitting them
out of a tokenizer, on a tokenizer trained on the world's text (which merges plurals) and on the shipped one."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

from emu_agent.errors import InputError
from emu_agent.model.loading import builtin_model_dir
from emu_agent.model.tokenizer import EmuTokenizer
from emu_agent.world.plurals import EMBEDDING_KEY, plural_pairs, seed_plural_embeddings, split_plurals


@pytest.fixture(scope="module")
def world_tokenizer_folder(tmp_path_factory) -> Path:
    """A tokenizer trained on the world's text as ``train-tiny`` trains one: its BPE merges the plurals."""
    from emu_agent.world.tiny import train_tiny_tokenizer

    folder = tmp_path_factory.mktemp("world-tokenizer")
    train_tiny_tokenizer(0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tokenizer(world_tokenizer_folder) -> EmuTokenizer:
    return EmuTokenizer.from_pretrained(world_tokenizer_folder)


def test_a_world_tokenizer_has_three_plural_tokens_per_shape(tokenizer) -> None:
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


def test_split_plurals_encodes_plurals_as_the_singular_and_keeps_every_id(world_tokenizer_folder, tmp_path) -> None:
    folder = tmp_path / "tokenizer"
    shutil.copytree(world_tokenizer_folder, folder)
    original = EmuTokenizer.from_pretrained(folder)
    dropped = split_plurals(folder)
    split = EmuTokenizer.from_pretrained(folder)
    assert len(dropped) == 9 and "▁triangles?" in dropped and "▁circles." in dropped
    assert split.convert_ids_to_tokens(split.encode("how many squares?", add_bos=False)) == [
        "▁how", "▁many", "▁square", "s", "?",
    ]  # fmt: skip
    assert len(split) == len(original)
    assert all(split.convert_tokens_to_ids(t) == original.convert_tokens_to_ids(t) for t in dropped)
    for text in (
        "a red square at top left and a blue circle at bottom",
        "where is the red triangle?",
        '<tool_call>{"name": "generate_image", "arguments": {"prompt": "a red square"}}</tool_call>',
    ):
        assert split.encode(text) == original.encode(text)  # only plurals encode differently
    written = (folder / "tokenizer.json").read_bytes()
    assert split_plurals(folder) == dropped  # a second call finds it split and leaves the file alone
    assert (folder / "tokenizer.json").read_bytes() == written


def test_split_plurals_refuses_a_folder_without_a_bpe_tokenizer(tmp_path) -> None:
    with pytest.raises(InputError, match=r"tokenizer\.json"):
        split_plurals(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"model": {"type": "WordLevel"}}')
    with pytest.raises(InputError, match=re.escape(str(tmp_path))):
        split_plurals(tmp_path)


def test_the_shipped_tokenizer_reads_plurals_as_the_caption_shape(tmp_path) -> None:
    """emu-tiny v12 was trained on the split tokenizer: "squares?" is its caption's ``▁square`` then ``s?``."""
    shipped = EmuTokenizer.from_pretrained(builtin_model_dir("emu-tiny"))
    pieces = shipped.convert_ids_to_tokens(shipped.encode("how many squares can you see?", add_bos=False))
    assert pieces[2:4] == ["▁square", "s"]
    shutil.copytree(builtin_model_dir("emu-tiny"), tmp_path / "copy", ignore=shutil.ignore_patterns("*.safetensors"))
    before = (tmp_path / "copy" / "tokenizer.json").read_bytes()
    assert len(split_plurals(tmp_path / "copy")) == 9  # split already: nothing to drop, the file is unchanged
    assert (tmp_path / "copy" / "tokenizer.json").read_bytes() == before
