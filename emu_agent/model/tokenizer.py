"""The Emu2 tokenizer, reproducing BAAI's reference token ids exactly, with two interchangeable backends.

Why not ``transformers.LlamaTokenizer``
---------------------------------------
BAAI's reference code tokenises with the *slow* ``LlamaTokenizer`` of transformers 4.31 (legacy mode,
``add_bos_token=True``, ``add_eos_token=False``) plus the Emu2 tokens added with ``add_special_tokens``
(``Emu2/emu/lm.py``). The LM was trained on those ids, so they must be reproduced bit for bit. transformers 5
changed added-token handling: loaded from the same files with ``legacy=True`` and the same added tokens it
keeps the whitespace next to added tokens (``" [USER]: [IMG]"`` gains two ``▁`` tokens) and mismatches 7 of
the 14 reference cases in ``tests/fixtures/emu2-reference/tokenizer/token_ids.json``. Instead of pinning an
old transformers, this module implements the 4.31 algorithm directly over SentencePiece, which is small and
exact:

Encoding (4.31 ``PreTrainedTokenizer.tokenize`` + ``LlamaTokenizer._tokenize``, legacy):

1. Split the text on every *special string*: the Emu2 added tokens (``[PAD]``, ``[IMG]``, ... , ``[USER]``,
   ``[ASSISTANT]`` for the chat variant, then any extra tokens) and the base control tokens ``<s>``, ``</s>``,
   ``<unk>`` (which 4.31 also never splits, so ``"</s>"`` inside text becomes id 2). Matching is
   leftmost-longest, like 4.31's trie.
2. Strip *all* whitespace on both sides of every special string (``str.lstrip()`` of the text after it,
   ``str.rstrip()`` of the text before it). Whitespace at the very start or end of the text, away from any
   special string, is kept (``"  hello"`` -> ``▁▁``, ``▁hello``).
3. Encode every non-empty remaining chunk as a fresh SentencePiece ``encode``, which adds the dummy-prefix
   ``▁`` (``"[/IMG]wearing"`` -> ``[/IMG]``, ``▁we``, ``aring``; ``" [USER]: "`` -> ``[USER]``, ``▁:``).
4. Prepend BOS (1) when ``add_bos``; never append EOS.

Decoding (4.31 ``PreTrainedTokenizer._decode`` + ``LlamaTokenizer.convert_tokens_to_string``, with
``spaces_between_special_tokens=True`` and ``clean_up_tokenization_spaces=False``):

- with ``skip_special_tokens`` every special id (BOS, EOS, UNK, every added token) is dropped first, and the
  rest is decoded as one SentencePiece piece sequence;
- otherwise the ids are cut at the *added* tokens; each run of ordinary pieces is turned into a string (inside
  it, ``<s>``/``</s>``/``<unk>`` are written literally, with a space inserted before the text preceding one of
  them unless it is first or follows another one), and the runs and added tokens are joined with ``" "``.
  This reproduces quirks such as ``"[ASSISTANT]  : x</s> [USER]"`` (two spaces) exactly.

Every case of the reference file (ids of both variants, the padded batch, both decode results) is matched.

Backends
--------
- ``"sentencepiece"``: LLaMA's ``tokenizer.model`` (32000 pieces). The added tokens get ids 32000.. in
  :data:`EMU2_SPECIAL_TOKENS` order, then ``[USER]`` 32272 / ``[ASSISTANT]`` 32273 when ``instruct``, then the
  extra special tokens. ``len()`` is 32272 (Emu2 / Emu2-Gen) or 32274 (Emu2-Chat).
- ``"tokenizers"``: a ``tokenizer.json`` of the ``tokenizers`` library, as written by
  :meth:`EmuTokenizer.train` for the project's own small models: a byte-fallback BPE over a ``Metaspace``
  pre-tokenizer (dummy prefix ``▁`` prepended to every chunk, as in SentencePiece), ``<unk>``/``<s>``/``</s>``
  at 0/1/2 and the 256 byte pieces ``<0x00>``..``<0xFF>`` at 3..258 exactly like LLaMA, then the trained
  pieces; the Emu2 tokens follow the trained vocabulary in the same order as above. The special tokens are
  also registered in the file, so other consumers see them, but this class does its own splitting for both
  backends, so the whitespace semantics above are *identical* for both. The only difference is the sub-word
  model itself (and a character never seen in training falls back to byte pieces).

The module does not import torch; ids are plain Python lists.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import sentencepiece as spm
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from emu_agent.errors import ConfigError, InputError, ModelLoadError

__all__ = ["EMU2_CHAT_TOKENS", "EMU2_SPECIAL_TOKENS", "EmuTokenizer"]

#: The tokens Emu2 adds to LLaMA's vocabulary, in id order (32000..32271), excluding the chat role tokens.
EMU2_SPECIAL_TOKENS: tuple[str, ...] = (
    "[PAD]",
    "[IMG]",
    "[/IMG]",
    "<image>",
    "[gIMG]",
    "[/gIMG]",
    "[EOC]",
    "[VIDEO]",
    "<grounding>",
    "<phrase>",
    "</phrase>",
    "<object>",
    "</object>",
    "</delimiter_of_multi_objects/>",
    "<REC>",
    *(f"<patch_index_{i:04d}>" for i in range(257)),
)

#: The chat role tokens that Emu2-Chat (``instruct=True``) adds after :data:`EMU2_SPECIAL_TOKENS`.
EMU2_CHAT_TOKENS: tuple[str, str] = ("[USER]", "[ASSISTANT]")

UNK_TOKEN, BOS_TOKEN, EOS_TOKEN = "<unk>", "<s>", "</s>"
#: The base vocabulary's control tokens, at ids 0, 1, 2 in both backends.
CONTROL_TOKENS: tuple[str, str, str] = (UNK_TOKEN, BOS_TOKEN, EOS_TOKEN)
BYTE_TOKENS: tuple[str, ...] = tuple(f"<0x{i:02X}>" for i in range(256))

SIDECAR_NAME = "emu_tokenizer.json"
SP_MODEL_NAME = "tokenizer.model"
HF_TOKENIZER_NAME = "tokenizer.json"
_SP_SIDE_FILES = ("tokenizer_config.json", "special_tokens_map.json")

_LLAMA_TOKENIZER_CONFIG: dict[str, Any] = {
    "add_bos_token": True,
    "add_eos_token": False,
    "bos_token": BOS_TOKEN,
    "eos_token": EOS_TOKEN,
    "unk_token": UNK_TOKEN,
    "pad_token": None,
    "clean_up_tokenization_spaces": False,
    "legacy": True,
    "tokenizer_class": "LlamaTokenizer",
}


# ------------------------------------------------------------------------------------------------------------
# backends: only the sub-word model; splitting, stripping and the special-token ids live in EmuTokenizer


class _Backend(Protocol):
    kind: str

    def base_size(self) -> int: ...

    def encode_chunk(self, text: str) -> list[int]: ...

    def piece_to_id(self, piece: str) -> int | None: ...

    def id_to_piece(self, idx: int) -> str: ...

    def pieces_to_string(self, pieces: list[str]) -> str: ...


class _SentencePieceBackend:
    """LLaMA's SentencePiece model; added tokens live outside it (ids from ``base_size()`` on)."""

    kind = "sentencepiece"

    def __init__(self, model_file: Path) -> None:
        self.model_file = model_file
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.Load(str(model_file))
        except (OSError, RuntimeError) as exc:
            raise ModelLoadError(f"can't load the SentencePiece model {model_file}: {exc}") from exc
        self._size = self.sp.get_piece_size()

    def base_size(self) -> int:
        return self._size

    def encode_chunk(self, text: str) -> list[int]:
        return list(self.sp.encode(text))

    def piece_to_id(self, piece: str) -> int | None:
        idx = self.sp.piece_to_id(piece)
        if idx == self.sp.unk_id() and piece != self.sp.id_to_piece(idx):
            return None
        return idx

    def id_to_piece(self, idx: int) -> str:
        return self.sp.id_to_piece(idx)

    def pieces_to_string(self, pieces: list[str]) -> str:
        return self.sp.decode(pieces) if pieces else ""


class _TokenizersBackend:
    """A ``tokenizers`` ``Tokenizer``; the Emu2 tokens are registered in it after the trained vocabulary."""

    kind = "tokenizers"

    def __init__(self, tokenizer: Tokenizer, added: Sequence[str]) -> None:
        self.tok = tokenizer
        ids = [tokenizer.token_to_id(t) for t in added]
        # base = everything below the first added token (the trained model vocabulary)
        self._size = min((i for i in ids if i is not None), default=tokenizer.get_vocab_size(True))

    def base_size(self) -> int:
        return self._size

    def encode_chunk(self, text: str) -> list[int]:
        # chunks never contain a special string (EmuTokenizer split them out), so the library's own
        # added-token matching has nothing to do here
        return self.tok.encode(text, add_special_tokens=False).ids

    def piece_to_id(self, piece: str) -> int | None:
        return self.tok.token_to_id(piece)

    def id_to_piece(self, idx: int) -> str:
        piece = self.tok.id_to_token(idx)
        if piece is None:
            raise InputError(f"token id {idx} is not in the vocabulary")
        return piece

    def pieces_to_string(self, pieces: list[str]) -> str:
        if not pieces:
            return ""
        decoder = self.tok.decoder
        if decoder is None:
            return "".join(pieces)
        return decoder.decode(pieces)


def _llama_style_decoder() -> decoders.Decoder:
    # the decoder of LLaMA's own tokenizer.json: ▁ -> space, byte pieces -> bytes, drop one leading space
    return decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )


# ------------------------------------------------------------------------------------------------------------


class EmuTokenizer:
    """Tokenizer for Emu2 / Emu2-Chat / Emu2-Gen and the project's own models.

    Load with :meth:`from_pretrained` (a folder with LLaMA's ``tokenizer.model`` or a ``tokenizer.json``
    written by :meth:`save_pretrained`) or build one with :meth:`train`. See the module docstring for the
    exact encoding and decoding rules, which reproduce the reference transformers 4.31 tokenizer.

    Attributes:
        instruct: whether the chat role tokens ``[USER]`` / ``[ASSISTANT]`` are in the vocabulary.
        special_tokens: the added tokens in id order (Emu2 tokens, role tokens when ``instruct``, extras).
        extra_special_tokens: the extra tokens beyond Emu2's (e.g. tool-call markers), in id order.
        bos_token_id, eos_token_id, unk_token_id, pad_token_id: 1, 2, 0 and the id of ``[PAD]``.
        image_token_id, boi_token_id, eoi_token_id, frame_token_id, video_token_id: ids of ``<image>``,
            ``[IMG]``, ``[/IMG]``, ``[gIMG]`` (the per-frame video slot) and ``[VIDEO]``.
        user_token_id, assistant_token_id: ids of ``[USER]`` / ``[ASSISTANT]``, or None when not ``instruct``.
    """

    instruct: bool
    special_tokens: list[str]
    extra_special_tokens: list[str]
    bos_token_id: int
    eos_token_id: int
    unk_token_id: int
    pad_token_id: int
    image_token_id: int
    boi_token_id: int
    eoi_token_id: int
    frame_token_id: int
    video_token_id: int
    user_token_id: int | None
    assistant_token_id: int | None

    def __init__(self, backend: _Backend, *, instruct: bool, extra_special_tokens: Sequence[str] = ()) -> None:
        """Internal; use :meth:`from_pretrained` or :meth:`train`."""
        self._backend = backend
        self.instruct = bool(instruct)
        self.extra_special_tokens = _check_extra_tokens(extra_special_tokens)
        self.special_tokens = _added_token_list(self.instruct, self.extra_special_tokens)

        base = backend.base_size()
        if backend.kind == "sentencepiece":
            self._added_to_id = {tok: base + i for i, tok in enumerate(self.special_tokens)}
        else:
            self._added_to_id = {}
            for tok in self.special_tokens:
                idx = backend.piece_to_id(tok)
                if idx is None:
                    raise ModelLoadError(f"the tokenizer.json has no token {tok!r}")
                self._added_to_id[tok] = idx
        self._id_to_added = {i: t for t, i in self._added_to_id.items()}
        if len(self._id_to_added) != len(self._added_to_id):
            raise ModelLoadError("two added tokens share one id in the tokenizer")
        self._len = max(base, *(i + 1 for i in self._id_to_added))

        control_ids = {}
        for tok in CONTROL_TOKENS:
            idx = backend.piece_to_id(tok)
            if idx is None:
                raise ModelLoadError(f"the base vocabulary has no {tok!r} token")
            control_ids[tok] = idx
        self._control_to_id = control_ids
        self._control_ids = frozenset(control_ids.values())
        self._special_ids = frozenset(self._id_to_added) | self._control_ids

        self.unk_token_id = control_ids[UNK_TOKEN]
        self.bos_token_id = control_ids[BOS_TOKEN]
        self.eos_token_id = control_ids[EOS_TOKEN]
        ids = self._added_to_id
        self.pad_token_id = ids["[PAD]"]
        self.image_token_id = ids["<image>"]
        self.boi_token_id = ids["[IMG]"]
        self.eoi_token_id = ids["[/IMG]"]
        self.frame_token_id = ids["[gIMG]"]
        self.video_token_id = ids["[VIDEO]"]
        self.user_token_id = ids.get("[USER]")
        self.assistant_token_id = ids.get("[ASSISTANT]")

        # every string that is never split: added tokens and the control tokens; longest first so that the
        # regex alternation gives leftmost-longest matches (like 4.31's trie)
        split_strings = sorted({*self.special_tokens, *CONTROL_TOKENS}, key=lambda s: (-len(s), s))
        self._split_to_id = {**control_ids, **ids}
        self._split_re = re.compile("(" + "|".join(re.escape(s) for s in split_strings) + ")")

    # ---------------------------------------------------------------------------------------------- loading

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike[str],
        *,
        instruct: bool | None = None,
        extra_special_tokens: Sequence[str] | None = None,
    ) -> EmuTokenizer:
        """Load a tokenizer from a folder.

        Args:
            folder: holds ``tokenizer.model`` (LLaMA SentencePiece; ``tokenizer_config.json`` /
                ``special_tokens_map.json`` may sit next to it and are not needed) -> SentencePiece backend,
                or a ``tokenizer.json`` written by :meth:`save_pretrained` -> ``tokenizers`` backend. When
                both are present, the ``backend`` field of the ``emu_tokenizer.json`` sidecar decides, else
                ``tokenizer.model`` wins (BAAI's folder ships an unused fast ``tokenizer.json`` too).
            instruct: add the chat role tokens (Emu2-Chat). None -> the sidecar's value, else False. For the
                ``tokenizers`` backend it must agree with the tokens stored in ``tokenizer.json``.
            extra_special_tokens: extra added tokens (e.g. tool-call markers) after the Emu2 ones. None -> the
                sidecar's list, else none. For the ``tokenizers`` backend they must exist in the file.

        Raises:
            ModelLoadError: the folder is missing, has neither file, or the files can't be read.
            ConfigError: ``instruct`` / ``extra_special_tokens`` contradict a ``tokenizer.json``.
        """
        path = Path(folder)
        if not path.is_dir():
            raise ModelLoadError(f"tokenizer folder {str(path)!r} does not exist or is not a folder")
        sidecar: dict[str, Any] = {}
        sidecar_file = path / SIDECAR_NAME
        if sidecar_file.is_file():
            try:
                sidecar = json.loads(sidecar_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ModelLoadError(f"can't read {sidecar_file}: {exc}") from exc
            if not isinstance(sidecar, dict):
                raise ModelLoadError(f"{sidecar_file} does not hold a JSON object")

        has_sp = (path / SP_MODEL_NAME).is_file()
        has_hf = (path / HF_TOKENIZER_NAME).is_file()
        kind = sidecar.get("backend")
        if kind not in ("sentencepiece", "tokenizers"):
            kind = "sentencepiece" if has_sp else "tokenizers" if has_hf else None
        if kind == "sentencepiece" and not has_sp:
            kind = None
        if kind == "tokenizers" and not has_hf:
            kind = None
        if kind is None:
            raise ModelLoadError(
                f"tokenizer folder {str(path)!r} has neither {SP_MODEL_NAME!r} nor {HF_TOKENIZER_NAME!r}"
            )

        if kind == "sentencepiece":
            if instruct is None:
                instruct = bool(sidecar.get("instruct", False))
            if extra_special_tokens is None:
                extra_special_tokens = list(sidecar.get("extra_special_tokens", []))
            return cls(
                _SentencePieceBackend(path / SP_MODEL_NAME),
                instruct=instruct,
                extra_special_tokens=extra_special_tokens,
            )

        try:
            hf = Tokenizer.from_file(str(path / HF_TOKENIZER_NAME))
        except Exception as exc:  # the library raises a bare Exception for a malformed file
            raise ModelLoadError(f"can't load {path / HF_TOKENIZER_NAME}: {exc}") from exc
        # without a sidecar, the flag and the extra tokens are read off the file's added tokens
        stored = [t.content for _, t in sorted(hf.get_added_tokens_decoder().items())]
        present = set(stored)
        if instruct is None:
            instruct = bool(sidecar.get("instruct", EMU2_CHAT_TOKENS[0] in present))
        if extra_special_tokens is None:
            known = {*CONTROL_TOKENS, *EMU2_SPECIAL_TOKENS, *EMU2_CHAT_TOKENS}
            extra_special_tokens = sidecar.get("extra_special_tokens", [t for t in stored if t not in known])
        extras = _check_extra_tokens(extra_special_tokens)
        wanted = _added_token_list(instruct, extras)
        missing = [t for t in wanted if t not in present]
        unexpected = [
            t for t in (*EMU2_CHAT_TOKENS, *sidecar.get("extra_special_tokens", [])) if t in present and t not in wanted
        ]
        if missing or unexpected:
            raise ConfigError(
                f"{path / HF_TOKENIZER_NAME} does not match instruct={instruct} / "
                f"extra_special_tokens={extras}: "
                f"missing {missing}, unexpected {unexpected}; retrain or omit the arguments"
            )
        return cls(_TokenizersBackend(hf, wanted), instruct=instruct, extra_special_tokens=extras)

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        *,
        instruct: bool = True,
        extra_special_tokens: Sequence[str] = (),
    ) -> EmuTokenizer:
        """Train a byte-fallback BPE tokenizer (``tokenizers`` backend) on ``texts``.

        Layout: ``<unk>``/``<s>``/``</s>`` at 0/1/2, the byte pieces ``<0x00>``..``<0xFF>`` at 3..258, then
        the trained pieces, up to ``vocab_size`` ids in all (fewer if the corpus is too small to fill it);
        then the Emu2 tokens (:data:`EMU2_SPECIAL_TOKENS`), ``[USER]``/``[ASSISTANT]`` when ``instruct``, and
        ``extra_special_tokens``, in that order. Text is pre-tokenized with ``Metaspace`` (spaces become
        ``▁``, a ``▁`` is prepended to every chunk), like LLaMA's SentencePiece model.

        Args:
            texts: the training corpus; special-token strings in it are removed before training.
            vocab_size: size of the base vocabulary (control + byte + trained pieces), at least 260.
            instruct: add the chat role tokens.
            extra_special_tokens: extra added tokens, e.g. tool-call markers.

        Raises:
            InputError: ``vocab_size`` too small, a non-str text, or bad extra tokens.
        """
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
            raise InputError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
        n_reserved = len(CONTROL_TOKENS) + len(BYTE_TOKENS)
        if vocab_size <= n_reserved:
            raise InputError(f"vocab_size must be larger than {n_reserved} (control + byte pieces), got {vocab_size}")
        if isinstance(texts, str):
            raise InputError("texts must be an iterable of strings, not a single str")
        extras = _check_extra_tokens(extra_special_tokens)
        added = _added_token_list(instruct, extras)
        splitter = re.compile("|".join(re.escape(s) for s in sorted({*added, *CONTROL_TOKENS}, key=len, reverse=True)))

        def corpus() -> Iterable[str]:
            for text in texts:
                if not isinstance(text, str):
                    raise InputError(f"training texts must be str, got {type(text).__name__}")
                yield splitter.sub(" ", text)

        hf = Tokenizer(models.BPE(unk_token=UNK_TOKEN, byte_fallback=True))
        hf.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
        hf.decoder = _llama_style_decoder()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[*CONTROL_TOKENS, *BYTE_TOKENS],
            show_progress=False,
        )
        hf.train_from_iterator(corpus(), trainer=trainer)

        # The trainer registered the byte pieces as *added* tokens, so the library would turn a literal
        # "<0x41>" in text into a byte id. LLaMA treats them as ordinary pieces: re-register only the control
        # tokens as added tokens (the pieces stay in the BPE vocabulary at 3..258).
        spec = json.loads(hf.to_str())
        spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] in CONTROL_TOKENS]
        hf = Tokenizer.from_str(json.dumps(spec))
        hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in added])
        return cls(_TokenizersBackend(hf, added), instruct=instruct, extra_special_tokens=extras)

    def save_pretrained(self, folder: str | os.PathLike[str]) -> None:
        """Write the backend file(s) and the ``emu_tokenizer.json`` sidecar to ``folder`` (created if needed).

        SentencePiece backend: ``tokenizer.model`` plus ``tokenizer_config.json`` /
        ``special_tokens_map.json`` (copied from the source folder when present). ``tokenizers`` backend:
        ``tokenizer.json``. The sidecar holds the backend, the ``instruct`` flag and the extra special tokens,
        so :meth:`from_pretrained` restores the same ids.
        """
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        backend = self._backend
        if isinstance(backend, _SentencePieceBackend):
            src = backend.model_file
            if src.resolve() != (path / SP_MODEL_NAME).resolve():
                shutil.copyfile(src, path / SP_MODEL_NAME)
            for name in _SP_SIDE_FILES:
                side = src.parent / name
                if (path / name).exists() and side.exists() and side.resolve() == (path / name).resolve():
                    continue
                if side.is_file():
                    shutil.copyfile(side, path / name)
                elif name == "tokenizer_config.json":
                    (path / name).write_text(json.dumps(_LLAMA_TOKENIZER_CONFIG, indent=2), encoding="utf-8")
                else:
                    tokens = {"bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN, "unk_token": UNK_TOKEN}
                    (path / name).write_text(json.dumps(tokens, indent=2), encoding="utf-8")
        elif isinstance(backend, _TokenizersBackend):
            backend.tok.save(str(path / HF_TOKENIZER_NAME))
        sidecar = {
            "backend": backend.kind,
            "instruct": self.instruct,
            "extra_special_tokens": list(self.extra_special_tokens),
            "special_tokens": {t: self._added_to_id[t] for t in self.special_tokens},
            "len": len(self),
        }
        (path / SIDECAR_NAME).write_text(json.dumps(sidecar, indent=2, ensure_ascii=False), encoding="utf-8")

    # --------------------------------------------------------------------------------------------- encoding

    @property
    def backend(self) -> str:
        """``"sentencepiece"`` or ``"tokenizers"``."""
        return self._backend.kind

    def __len__(self) -> int:
        """Total vocabulary size including the added tokens (32272 / 32274 for Emu2 / Emu2-Chat)."""
        return self._len

    def __repr__(self) -> str:
        return f"EmuTokenizer(backend={self.backend!r}, instruct={self.instruct}, len={len(self)})"

    def encode(self, text: str, *, add_bos: bool = True) -> list[int]:
        """Token ids of ``text`` (BOS first when ``add_bos``; never EOS).

        Special-token strings in the text (``[IMG]``, ``<image>``, ``</s>``, ...) become their single ids,
        with the whitespace on both sides of them removed; see the module docstring.

        Raises:
            InputError: ``text`` is not a str.
        """
        if not isinstance(text, str):
            raise InputError(f"text must be a str, got {type(text).__name__}")
        ids: list[int] = [self.bos_token_id] if add_bos else []
        parts = self._split_re.split(text)
        # parts alternate: chunk, special, chunk, special, ..., chunk
        last = len(parts) - 1
        encode_chunk = self._backend.encode_chunk
        split_to_id = self._split_to_id
        for i, part in enumerate(parts):
            if i % 2:
                ids.append(split_to_id[part])
                continue
            if i > 0:
                part = part.lstrip()
            if i < last:
                part = part.rstrip()
            if part:
                ids.extend(encode_chunk(part))
        return ids

    def batch_encode(self, texts: Sequence[str], *, add_bos: bool = True) -> tuple[list[list[int]], list[list[int]]]:
        """Encode several texts and left-pad them to the longest with ``pad_token_id``.

        Returns:
            ``(input_ids, attention_mask)`` as lists of lists (mask 0 at padding, 1 elsewhere).

        Raises:
            InputError: ``texts`` is a single str, or one of them is not a str.
        """
        if isinstance(texts, str):
            raise InputError("batch_encode takes a sequence of str, not a single str; use encode()")
        try:
            encoded = [self.encode(t, add_bos=add_bos) for t in texts]
        except TypeError as exc:
            raise InputError(f"texts must be a sequence of str, got {type(texts).__name__}") from exc
        width = max((len(e) for e in encoded), default=0)
        input_ids = [[self.pad_token_id] * (width - len(e)) + e for e in encoded]
        mask = [[0] * (width - len(e)) + [1] * len(e) for e in encoded]
        return input_ids, mask

    # --------------------------------------------------------------------------------------------- decoding

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        """Text of ``ids``, as the reference (transformers 4.31 slow LlamaTokenizer) decodes it.

        With ``skip_special_tokens`` BOS, EOS, UNK and every added token (Emu2 tokens, role tokens and the
        extra special tokens) are dropped. Without it, added tokens are written with single spaces around
        them (``"<s> [IMG] <image> [/IMG] text"``), as 4.31 does.

        Raises:
            InputError: an id that is not an int or outside the vocabulary.
        """
        tokens = [
            self._id_to_token(i) for i in self._check_ids(ids) if not (skip_special_tokens and i in self._special_ids)
        ]
        sub_texts: list[str] = []
        current: list[str] = []
        for tok in tokens:
            if tok in self._added_to_id:
                if current:
                    sub_texts.append(self._tokens_to_string(current))
                    current = []
                sub_texts.append(tok)
            else:
                current.append(tok)
        if current:
            sub_texts.append(self._tokens_to_string(current))
        return " ".join(sub_texts)

    def _tokens_to_string(self, tokens: list[str]) -> str:
        # 4.31 LlamaTokenizer.convert_tokens_to_string: control tokens literally, the rest through the model
        out = ""
        pending: list[str] = []
        prev_is_special = False
        for i, tok in enumerate(tokens):
            if tok in self._control_to_id:
                if not prev_is_special and i != 0:
                    out += " "
                out += self._backend.pieces_to_string(pending) + tok
                prev_is_special = True
                pending = []
            else:
                pending.append(tok)
                prev_is_special = False
        return out + self._backend.pieces_to_string(pending)

    # ------------------------------------------------------------------------------------------- conversion

    def convert_tokens_to_ids(self, token: str) -> int:
        """Id of one token (an added token or a piece of the base vocabulary); unknown -> ``unk_token_id``."""
        if not isinstance(token, str):
            raise InputError(f"token must be a str, got {type(token).__name__}")
        idx = self._added_to_id.get(token)
        if idx is not None:
            return idx
        idx = self._backend.piece_to_id(token)
        if idx is None or idx in self._id_to_added:
            return self.unk_token_id
        return idx

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> list[str]:
        """Tokens (pieces or added tokens) of ``ids``; a single int gives a one-element list."""
        if isinstance(ids, int) and not isinstance(ids, bool):
            ids = [ids]
        return [self._id_to_token(i) for i in self._check_ids(ids)]

    def _id_to_token(self, idx: int) -> str:
        tok = self._id_to_added.get(idx)
        return tok if tok is not None else self._backend.id_to_piece(idx)

    def _check_ids(self, ids: Sequence[int]) -> list[int]:
        if isinstance(ids, (str, bytes)):
            raise InputError(f"ids must be a sequence of int, got {type(ids).__name__}")
        if hasattr(ids, "tolist"):  # numpy arrays / torch tensors without importing either
            ids = ids.tolist()
        try:
            out = [int(i) for i in ids]
        except (TypeError, ValueError) as exc:
            raise InputError(f"ids must be a sequence of int: {exc}") from exc
        n = len(self)
        for i in out:
            if not 0 <= i < n:
                raise InputError(f"token id {i} is outside the vocabulary (0..{n - 1})")
        return out


def _added_token_list(instruct: bool, extras: Sequence[str]) -> list[str]:
    return [*EMU2_SPECIAL_TOKENS, *(EMU2_CHAT_TOKENS if instruct else ()), *extras]


def _check_extra_tokens(tokens: Sequence[str]) -> list[str]:
    if isinstance(tokens, str):
        raise InputError("extra_special_tokens must be a sequence of str, not a single str")
    out: list[str] = []
    reserved = {*EMU2_SPECIAL_TOKENS, *EMU2_CHAT_TOKENS, *CONTROL_TOKENS}
    for tok in tokens:
        if not isinstance(tok, str):
            raise InputError(f"extra special tokens must be str, got {type(tok).__name__}")
        if not tok or tok != tok.strip():
            raise InputError(f"extra special token {tok!r} is empty or has surrounding whitespace")
        if tok in reserved:
            raise InputError(f"extra special token {tok!r} is already an Emu2 special token")
        if tok in out:
            raise InputError(f"extra special token {tok!r} is given twice")
        out.append(tok)
    return out
