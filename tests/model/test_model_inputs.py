"""Prompt forms, generation options and bad input on the tiny reference model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from emu_agent.errors import ConfigError, ContextLengthError, InputError, PromptError
from emu_agent.media import MediaStore
from emu_agent.messages import Message
from emu_agent.model.config import EmuConfig, TextConfig, VisionConfig
from emu_agent.model.prompting import VideoFrames


def test_placeholder_count_must_match_images(emu2: Any) -> None:
    with pytest.raises(PromptError, match=r"4 <image> slots but 0 image\(s\)"):
        emu2.generate_text(["[IMG]<image><image><image><image>[/IMG] what is this?"])
    with pytest.raises(PromptError, match=r"5 <image> slots but 1 image"):
        emu2.generate_text([Image.new("RGB", (8, 8)), "and <image>"])


def test_prompt_longer_than_context(emu2: Any) -> None:
    with pytest.raises(ContextLengthError, match=r"is \d+ tokens; the context window is 2048"):
        emu2.generate_text("word " * 3000)


def test_empty_prompt_is_refused_where_needed(emu2: Any, emu2_gen: Any) -> None:
    with pytest.raises(PromptError, match="prompt 0 is empty"):
        emu2.generate_text("")
    with pytest.raises(PromptError, match="empty"):
        emu2_gen.generate_image([""], height=64, width=64, num_inference_steps=1)


def test_model_without_decoder_cannot_paint(emu2: Any) -> None:
    with pytest.raises(ConfigError, match="no image decoder"):
        emu2.generate_image("a red circle")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": 0}, "temperature=0"),
        ({"max_new_tokens": 0}, "max_new_tokens=0"),
        ({"top_p": 1.5}, "top_p=1.5"),
        ({"beams": 3}, "beams"),
        ({"num_beams": 2, "do_sample": True}, "beam sampling"),
    ],
)
def test_bad_generation_options(emu2: Any, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        emu2.generate_text("hello", **kwargs)


def test_unsupported_prompt_item(emu2: Any) -> None:
    with pytest.raises(PromptError, match="prompt item 1 has unsupported type int"):
        emu2.generate_text(["hello", 42])


def test_sampling_is_reproducible_from_seed(emu2: Any) -> None:
    kwargs = {"do_sample": True, "temperature": 1.5, "top_k": 50, "top_p": 0.9, "max_new_tokens": 8}
    a = emu2.generate_token_ids([["Once upon a time"]], seed=7, **kwargs)
    b = emu2.generate_token_ids([["Once upon a time"]], seed=7, **kwargs)
    c = emu2.generate_token_ids([["Once upon a time"]], seed=8, **kwargs)
    greedy = emu2.generate_token_ids([["Once upon a time"]], max_new_tokens=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c) or not torch.equal(a, greedy)


def test_top_k_one_equals_greedy(emu2: Any) -> None:
    sampled = emu2.generate_token_ids([["Once upon a time"]], do_sample=True, top_k=1, seed=3, max_new_tokens=6)
    greedy = emu2.generate_token_ids([["Once upon a time"]], max_new_tokens=6)
    assert torch.equal(sampled, greedy)


def test_stop_strings_cut_the_answer(emu2: Any) -> None:
    full = emu2.generate_text("The quick brown fox", max_new_tokens=12)
    words = full.split()
    assert len(words) >= 2
    stop = words[1]
    cut = emu2.generate_text("The quick brown fox", max_new_tokens=12, stop=[stop])
    assert cut == full[: full.index(stop)]
    streamed = "".join(emu2.stream_text("The quick brown fox", max_new_tokens=12, stop=stop))
    assert streamed == cut


def test_logits_processor_constrains_generate_text_as_it_does_stream_text(emu2: Any) -> None:
    """``generate_text`` / ``generate_texts`` take ``logits_processor`` like ``stream_text`` does."""
    forced = emu2.tokenizer.encode("fox", add_bos=False)[0]

    def only_fox(generated: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        masked = torch.full_like(logits, float("-inf"))
        masked[..., forced] = 0.0
        return masked

    text = emu2.generate_text("The quick brown", max_new_tokens=4, logits_processor=only_fox)
    assert text == emu2.tokenizer.decode([forced] * 4)
    assert "".join(emu2.stream_text("The quick brown", max_new_tokens=4, logits_processor=only_fox)) == text
    assert emu2.generate_texts(["The quick brown"], max_new_tokens=4, logits_processor=only_fox) == [text]


def test_max_new_tokens_and_min_new_tokens(emu2: Any) -> None:
    ids = emu2.generate_token_ids([["hi"]], max_new_tokens=5, min_new_tokens=5)
    assert ids.shape == (1, 6)
    assert emu2.tokenizer.eos_token_id not in ids[0, 1:].tolist()


def test_messages_use_the_chat_template(emu2_chat: Any, tmp_path: Path) -> None:
    store = MediaStore(tmp_path / "media")
    ref = store.add_image(Image.new("RGB", (32, 32), (200, 30, 30)))
    messages = [
        Message.system("Be brief."),
        Message.user(ref, "What colour?"),
        Message.assistant("Red."),
        Message.user("Sure?"),
    ]
    plan = emu2_chat.plan(messages)
    nq = emu2_chat.config.vision.n_query
    assert plan.text == (
        "Be brief. [USER]: [IMG]"
        + "<image>" * nq
        + "[/IMG]What colour? [ASSISTANT]: Red.</s>[USER]: Sure? [ASSISTANT]:"
    )
    assert plan.images == [ref]
    assert isinstance(emu2_chat.generate_text(messages, max_new_tokens=3), str)


def test_video_frames_fill_gimg_slots(emu2_chat: Any) -> None:
    frames = [Image.new("RGB", (16, 16), (i * 60, 0, 0)) for i in range(3)]
    plan = emu2_chat.plan([VideoFrames(frames), "What moved?"])
    vq = emu2_chat.config.vision.v_query
    assert plan.text == "[VIDEO]" + ("[IMG]" + "[gIMG]" * vq + "[/IMG]") * 3 + "What moved?"
    _, _, ids = emu2_chat.embed_plans([plan])
    assert int((ids == emu2_chat.tokenizer.frame_token_id).sum()) == 3 * vq


def test_encode_images_shape(emu2: Any) -> None:
    out = emu2.encode_images([Image.new("RGB", (300, 200)), Image.new("L", (50, 50))])
    assert out.shape == (2, emu2.config.vision.n_query, emu2.config.vision.width)


def test_config_roundtrip_and_validation(tmp_path: Path) -> None:
    config = EmuConfig.preset("emu2-chat")
    assert config.vision.n_query == 256 and config.text.vocab_size == 32274 and config.instruct
    config.to_json_file(tmp_path / "config.json")
    assert EmuConfig.from_json_file(tmp_path / "config.json") == config
    with pytest.raises(ConfigError, match="n_query=5"):
        EmuConfig(vision=VisionConfig(n_query=5))
    with pytest.raises(ConfigError, match="unknown text config field"):
        TextConfig.from_llama({"hidden_size": 8, "bogus": 1})
    with pytest.raises(ConfigError, match="rope=True"):
        VisionConfig.from_baai({"width": 56, "rope": True})


def test_stored_video_enters_as_frames(emu2_chat: Any, tmp_path: Path) -> None:
    import av
    import numpy as np

    path = tmp_path / "clip.mp4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for i in range(20):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 10 * i, dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    ref = MediaStore(tmp_path / "media").add_video(path)
    plan = emu2_chat.plan([("user", [ref, "What happened?"])])
    assert len(plan.frames) == 8  # the default loader samples 8 frames, as BAAI's demo does
    vq = emu2_chat.config.vision.v_query
    assert plan.text.count("[gIMG]") == 8 * vq and "[VIDEO]" in plan.text
    levels = [int(np.asarray(f).mean()) for f in plan.frames]
    assert levels == sorted(levels) and levels[-1] > levels[0]  # in time order
    assert isinstance(emu2_chat.generate_text([("user", [ref, "What happened?"])], max_new_tokens=2), str)
