"""EmuTokenizer: exact reference ids (transformers 4.31 + Emu2 tokens) and the tokenizers backend."""

from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from emu_agent.errors import ConfigError, InputError, ModelLoadError
from emu_agent.model.tokenizer import EMU2_CHAT_TOKENS, EMU2_SPECIAL_TOKENS, EmuTokenizer

FIXTURES = Path(__file__).parents[1] / "fixtures" / "emu2-reference"
TOKENIZER_DIR = FIXTURES / "tokenizer"
REFERENCE: dict[str, Any] = json.loads((TOKENIZER_DIR / "token_ids.json").read_text(encoding="utf-8"))
CASES = [c for c in REFERENCE["cases"] if c["how"] != "batch"]
BATCH_CASES = [c for c in REFERENCE["cases"] if c["how"] == "batch"]
VARIANTS = {"emu2": False, "emu2_chat": True}


@pytest.fixture(scope="module")
def llama_tokenizers() -> dict[str, EmuTokenizer]:
    return {name: EmuTokenizer.from_pretrained(TOKENIZER_DIR, instruct=ins) for name, ins in VARIANTS.items()}


# ------------------------------------------------------------------------------------------ reference: LLaMA


def test_reference_has_cases() -> None:
    assert len(CASES) >= 14
    assert BATCH_CASES


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_reference_input_ids(llama_tokenizers: dict[str, EmuTokenizer], variant: str, case: dict) -> None:
    tok = llama_tokenizers[variant]
    ids = tok.encode(case["text"])
    assert ids == case[f"input_ids_{variant}"]
    assert tok.convert_ids_to_tokens(ids) == case[f"tokens_{variant}"]
    assert tok.encode(case["text"], add_bos=False) == ids[1:]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_reference_decode(llama_tokenizers: dict[str, EmuTokenizer], case: dict) -> None:
    tok = llama_tokenizers["emu2_chat"]
    ids = case["input_ids_emu2_chat"]
    assert tok.decode(ids, skip_special_tokens=False) == case["decode_emu2_chat_skip_special_false"]
    assert tok.decode(ids, skip_special_tokens=True) == case["decode_emu2_chat_skip_special_true"]
    assert tok.decode(ids) == case["decode_emu2_chat_skip_special_true"]  # skip is the default


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("case", BATCH_CASES, ids=[c["name"] for c in BATCH_CASES])
def test_reference_batch_left_padding(llama_tokenizers: dict[str, EmuTokenizer], variant: str, case: dict) -> None:
    ids, mask = llama_tokenizers[variant].batch_encode(case["texts"])
    assert ids == case[f"input_ids_{variant}"]
    assert mask == case[f"attention_mask_{variant}"]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_reference_lengths_and_ids(llama_tokenizers: dict[str, EmuTokenizer], variant: str) -> None:
    tok = llama_tokenizers[variant]
    assert len(tok) == REFERENCE[f"len_{variant}"]
    assert tok.instruct is VARIANTS[variant]
    assert tok.backend == "sentencepiece"
    assert (tok.bos_token_id, tok.eos_token_id, tok.unk_token_id, tok.pad_token_id) == (
        REFERENCE["bos_token_id"],
        REFERENCE["eos_token_id"],
        REFERENCE["unk_token_id"],
        REFERENCE["pad_token_id"],
    )
    expected = dict(REFERENCE["added_token_ids_emu2_chat"])
    if not tok.instruct:
        for t in EMU2_CHAT_TOKENS:
            del expected[t]
        assert tok.convert_tokens_to_ids("[USER]") == tok.unk_token_id  # not a token of the base variant
    assert tok.special_tokens == list(expected)
    for token, idx in expected.items():
        assert tok.convert_tokens_to_ids(token) == idx
        assert tok.convert_ids_to_tokens([idx]) == [token]
        assert tok.encode(token) == [1, idx]
    assert (tok.image_token_id, tok.boi_token_id, tok.eoi_token_id) == (32003, 32001, 32002)
    assert (tok.frame_token_id, tok.video_token_id) == (32004, 32007)
    if tok.instruct:
        assert (tok.user_token_id, tok.assistant_token_id) == (32272, 32273)
    else:
        assert tok.user_token_id is None and tok.assistant_token_id is None


def test_special_token_constants() -> None:
    assert len(EMU2_SPECIAL_TOKENS) == 272
    assert EMU2_SPECIAL_TOKENS[:4] == ("[PAD]", "[IMG]", "[/IMG]", "<image>")
    assert EMU2_SPECIAL_TOKENS[-1] == "<patch_index_0256>"
    assert EMU2_CHAT_TOKENS == ("[USER]", "[ASSISTANT]")
    assert list(REFERENCE["added_token_ids_emu2_chat"]) == [*EMU2_SPECIAL_TOKENS, *EMU2_CHAT_TOKENS]


def test_llama_extra_special_tokens_follow_spec_ids() -> None:
    tok = EmuTokenizer.from_pretrained(
        TOKENIZER_DIR, instruct=True, extra_special_tokens=["<tool_call>", "</tool_call>"]
    )
    assert len(tok) == 32276
    assert tok.convert_tokens_to_ids("<tool_call>") == 32274
    assert tok.convert_tokens_to_ids("</tool_call>") == 32275
    ids = tok.encode('[ASSISTANT]: <tool_call> {"x": 1} </tool_call>')
    assert ids[:3] == [1, 32273, 584] and ids[3] == 32274 and ids[-1] == 32275
    assert tok.decode(ids) == ': {"x": 1}'
    # all reference ids unchanged
    for case in CASES:
        assert tok.encode(case["text"]) == case["input_ids_emu2_chat"]


def test_llama_save_load_round_trip(tmp_path: Path, llama_tokenizers: dict[str, EmuTokenizer]) -> None:
    chat = llama_tokenizers["emu2_chat"]
    chat.save_pretrained(tmp_path / "chat")
    assert {p.name for p in (tmp_path / "chat").iterdir()} >= {"tokenizer.model", "emu_tokenizer.json"}
    loaded = EmuTokenizer.from_pretrained(tmp_path / "chat")  # instruct from the sidecar
    assert loaded.instruct and len(loaded) == 32274
    for case in CASES:
        assert loaded.encode(case["text"]) == case["input_ids_emu2_chat"]
    # a bare folder with only tokenizer.model -> base variant
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copyfile(TOKENIZER_DIR / "tokenizer.model", bare / "tokenizer.model")
    base = EmuTokenizer.from_pretrained(bare)
    assert not base.instruct and len(base) == 32272


def test_long_prompt_is_fast(llama_tokenizers: dict[str, EmuTokenizer]) -> None:
    import time

    tok = llama_tokenizers["emu2_chat"]
    text = ("[USER]: [IMG]" + "<image>" * 256 + "[/IMG] describe the picture in detail. [ASSISTANT]: ok") * 100
    start = time.perf_counter()
    ids = tok.encode(text)
    assert time.perf_counter() - start < 2.0
    assert ids.count(tok.image_token_id) == 25600


# ------------------------------------------------------------------------------------------ errors


def test_non_str_input_raises(llama_tokenizers: dict[str, EmuTokenizer]) -> None:
    tok = llama_tokenizers["emu2"]
    with pytest.raises(InputError, match="bytes"):
        tok.encode(b"hello")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="NoneType"):
        tok.encode(None)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="int"):
        tok.batch_encode(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(InputError):
        tok.batch_encode("a single string")
    with pytest.raises(InputError):
        tok.decode([1, len(tok)])
    with pytest.raises(InputError):
        tok.decode([-1])


def test_batch_encode_empty_and_no_bos(llama_tokenizers: dict[str, EmuTokenizer]) -> None:
    tok = llama_tokenizers["emu2"]
    assert tok.batch_encode([]) == ([], [])
    ids, mask = tok.batch_encode(["", "short"], add_bos=False)
    assert ids == [[32000], [3273]] and mask == [[0], [1]]


def test_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="nope"):
        EmuTokenizer.from_pretrained(tmp_path / "nope")
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="empty_folder"):
        EmuTokenizer.from_pretrained(empty)


def test_corrupt_sentencepiece_model_raises(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.model").write_bytes(b"not a model")
    with pytest.raises(ModelLoadError):
        EmuTokenizer.from_pretrained(tmp_path)


def test_bad_extra_tokens_raise() -> None:
    with pytest.raises(InputError):
        EmuTokenizer.from_pretrained(TOKENIZER_DIR, extra_special_tokens=["[IMG]"])
    with pytest.raises(InputError):
        EmuTokenizer.from_pretrained(TOKENIZER_DIR, extra_special_tokens=["<a>", "<a>"])
    with pytest.raises(InputError):
        EmuTokenizer.from_pretrained(TOKENIZER_DIR, extra_special_tokens=[" <a>"])


def test_module_does_not_import_torch() -> None:
    import subprocess

    code = "import sys, emu_agent.model.tokenizer; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------------------- tokenizers backend

TOOL_TOKENS = ("<tool_call>", "</tool_call>")


def _corpus(n: int = 400) -> list[str]:
    rng = random.Random(0)
    subjects = ["the red cat", "a small dog", "my friend", "the old house", "a blue car", "the tall tree"]
    verbs = ["sits on", "looks at", "runs past", "stands near", "shows", "describes"]
    objects = ["the mat", "a picture", "the window", "the river", "an image", "the green field"]
    extras = ["", " today", " in the morning", " again", " quickly", " with a smile"]
    return [
        f"{rng.choice(subjects).capitalize()} {rng.choice(verbs)} {rng.choice(objects)}{rng.choice(extras)}."
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def trained() -> EmuTokenizer:
    return EmuTokenizer.train(_corpus(), 600, instruct=True, extra_special_tokens=TOOL_TOKENS)


def test_trained_layout(trained: EmuTokenizer) -> None:
    tok = trained
    assert tok.backend == "tokenizers"
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert tok.convert_ids_to_tokens([0, 1, 2, 3, 258]) == ["<unk>", "<s>", "</s>", "<0x00>", "<0xFF>"]
    expected = [*EMU2_SPECIAL_TOKENS, *EMU2_CHAT_TOKENS, *TOOL_TOKENS]
    assert tok.special_tokens == expected
    ids = [tok.convert_tokens_to_ids(t) for t in expected]
    base = ids[0]
    assert 259 < base <= 600
    assert ids == list(range(base, base + len(expected)))  # consecutive, right after the trained vocab
    assert len(tok) == base + len(expected)
    assert tok.pad_token_id == base
    assert tok.boi_token_id == base + 1 and tok.eoi_token_id == base + 2 and tok.image_token_id == base + 3
    assert tok.frame_token_id == base + 4 and tok.video_token_id == base + 7
    assert tok.user_token_id == base + 272 and tok.assistant_token_id == base + 273


def test_trained_special_tokens_are_single_ids(trained: EmuTokenizer) -> None:
    tok = trained
    for t in [*tok.special_tokens, "<s>", "</s>", "<unk>"]:
        assert tok.encode(t, add_bos=False) == [tok.convert_tokens_to_ids(t)], t
    text = "[IMG]<image><image>[/IMG]The red cat <tool_call>{}</tool_call></s>"
    ids = tok.encode(text)
    assert ids[:5] == [1, tok.boi_token_id, tok.image_token_id, tok.image_token_id, tok.eoi_token_id]
    assert ids[-1] == tok.eos_token_id
    assert tok.convert_tokens_to_ids("<tool_call>") in ids


def test_trained_whitespace_semantics_match_llama(trained: EmuTokenizer) -> None:
    tok = trained
    # whitespace around special tokens is stripped; each chunk gets a fresh dummy prefix
    assert tok.encode("the cat [IMG]  the cat") == tok.encode("the cat[IMG]the cat")
    assert tok.encode(" [USER]:  the cat  </s> ") == tok.encode("[USER]:  the cat</s>")
    a = tok.encode("the cat", add_bos=False)
    assert tok.encode("[IMG]the cat", add_bos=False) == [tok.boi_token_id, *a]
    assert tok.convert_ids_to_tokens(a)[0].startswith("▁")
    # the base vocabulary's byte pieces are ordinary pieces, not special strings
    assert tok.encode("<0x41>", add_bos=False) != [tok.convert_tokens_to_ids("<0x41>")]


def test_trained_decode(trained: EmuTokenizer) -> None:
    tok = trained
    text = "The red cat sits on the mat."
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.decode(ids, skip_special_tokens=False) == "<s>" + text
    prompt = "[USER]: [IMG]<image>[/IMG]The red cat sits on the mat. [ASSISTANT]: a dog</s>"
    ids = tok.encode(prompt)
    assert tok.decode(ids) == ": The red cat sits on the mat. : a dog"
    assert tok.decode(ids, skip_special_tokens=False) == (
        "<s> [USER] : [IMG] <image> [/IMG] The red cat sits on the mat. [ASSISTANT]  : a dog</s>"
    )
    # unseen characters survive through byte fallback
    unicode_text = "café 日本 🙂\nLine\ttab"
    assert tok.decode(tok.encode(unicode_text)) == unicode_text
    assert tok.unk_token_id not in tok.encode(unicode_text)


def test_trained_save_load_round_trip(tmp_path: Path, trained: EmuTokenizer) -> None:
    trained.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").is_file() and (tmp_path / "emu_tokenizer.json").is_file()
    loaded = EmuTokenizer.from_pretrained(tmp_path)
    assert loaded.backend == "tokenizers"
    assert loaded.instruct and loaded.extra_special_tokens == list(TOOL_TOKENS)
    assert len(loaded) == len(trained) and loaded.special_tokens == trained.special_tokens
    texts = [*_corpus(50), "[USER]: [IMG]<image>[/IMG]hi <tool_call>x</tool_call> [ASSISTANT]: café 🙂"]
    for text in texts:
        assert loaded.encode(text) == trained.encode(text)
    assert loaded.batch_encode(texts) == trained.batch_encode(texts)
    ids = trained.encode(texts[-1])
    assert loaded.decode(ids, skip_special_tokens=False) == trained.decode(ids, skip_special_tokens=False)

    # without the sidecar, instruct and the extra tokens are read off tokenizer.json
    (tmp_path / "emu_tokenizer.json").unlink()
    inferred = EmuTokenizer.from_pretrained(tmp_path)
    assert inferred.instruct and inferred.extra_special_tokens == list(TOOL_TOKENS)
    assert inferred.encode(texts[-1]) == ids
    with pytest.raises(ConfigError):
        EmuTokenizer.from_pretrained(tmp_path, instruct=False)


def test_trained_base_variant_and_batch(tmp_path: Path) -> None:
    tok = EmuTokenizer.train(_corpus(300), 400, instruct=False)
    assert not tok.instruct and tok.user_token_id is None
    assert tok.special_tokens == list(EMU2_SPECIAL_TOKENS)
    ids, mask = tok.batch_encode(["The cat.", "The red cat sits on the mat [IMG]"])
    assert len(ids[0]) == len(ids[1]) and ids[0][0] == tok.pad_token_id and mask[0][0] == 0
    assert all(m == 1 for m in mask[1]) and ids[1][-1] == tok.boi_token_id
    tok.save_pretrained(tmp_path)
    assert not EmuTokenizer.from_pretrained(tmp_path).instruct


def test_train_rejects_bad_arguments() -> None:
    with pytest.raises(InputError):
        EmuTokenizer.train(["a b c"], 100)
    with pytest.raises(InputError):
        EmuTokenizer.train("a single string", 400)
    with pytest.raises(InputError, match="int"):
        EmuTokenizer.train(["ok", 5], 400)  # type: ignore[list-item]
