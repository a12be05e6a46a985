"""Recall across modalities, scoping, hybrid scores, and the token-budgeted context."""

from __future__ import annotations

from typing import Any

import pytest

from emu_agent.errors import InputError
from emu_agent.memory import MemoryConfig, MultimodalMemory, ScoreWeights
from emu_agent.messages import Message, ToolCallPart, ToolResultPart

DAY = 86_400.0


@pytest.fixture
def gallery(memory: Any, media: Any, kit: Any) -> dict[str, Any]:
    """A conversation about three pictures plus unrelated chat, in two sessions."""
    refs = {
        "red": media.add_image(kit.draw("red", "circle", "top left")),
        "blue": media.add_image(kit.draw("blue", "square", "bottom right")),
        "green": media.add_image(kit.draw("green", "triangle")),
    }
    ids = memory.add(
        [
            Message.user("Here is the first picture", refs["red"]),
            Message.assistant("Thanks, got it."),
            Message.user("And a second one", refs["blue"]),
            Message.user("What should we cook for dinner tonight? Pasta with tomatoes."),
        ],
        session="s1",
    )
    ids += memory.add([Message.user(refs["green"]), Message.assistant("The weather in Paris is sunny")], session="s2")
    return {"refs": refs, "ids": ids}


def test_text_to_image_by_caption(memory: Any, gallery: dict) -> None:
    hit = memory.search("the red circle", k=1)[0]
    assert hit.turn.id == gallery["ids"][0]
    assert hit.matched == "caption" and hit.image == gallery["refs"]["red"]
    assert hit.image.load().size == (64, 64)  # a ref bound to the memory's media store


def test_text_to_text(memory: Any, gallery: dict) -> None:
    hit = memory.search("cook dinner pasta", k=1)[0]
    assert hit.turn.id == gallery["ids"][3] and hit.matched == "text" and hit.image is None


def test_image_to_image_by_visual_vector(make_memory: Any, media: Any, kit: Any) -> None:
    memory = make_memory(captioner=lambda im: "")  # no captions: only the visual encoder can match
    red, blue = media.add_image(kit.draw("red", "circle")), media.add_image(kit.draw("blue", "square"))
    ids = memory.add([Message.user("one", red), Message.user("two", blue)])
    hits = memory.search(red, k=2, modalities=["image"])
    assert hits[0].turn.id == ids[0] and hits[0].matched == "image" and hits[0].semantic == pytest.approx(1.0, abs=1e-4)
    query = kit.draw("red", "circle")  # a PIL image never stored: encoded on the fly
    assert memory.search(query, k=1, modalities=["image"])[0].turn.id == ids[0]


def test_image_to_text_through_the_query_images_caption(memory: Any, gallery: dict, kit: Any) -> None:
    memory.add(Message.assistant("a blue square at bottom right is a nice shape"), session="s3")
    hits = memory.search(kit.draw("blue", "square", "bottom right"), k=5, modalities=["text"])
    assert hits[0].turn.message.text == "a blue square at bottom right is a nice shape"
    assert all(h.matched == "text" for h in hits)


def test_text_and_image_together(memory: Any, gallery: dict) -> None:
    # A random encoder maps every picture to nearly the same vector (cosine > 0.99), so the visual weight is
    # lowered here; a text+image query then finds the text match and the image match.
    weights = ScoreWeights(visual=0.5)
    hits = memory.search(["weather in paris", gallery["refs"]["green"]], k=2, weights=weights)
    assert {h.turn.id for h in hits} == {gallery["ids"][4], gallery["ids"][5]}


def test_modalities_filter(memory: Any, gallery: dict) -> None:
    images_only = memory.search("the red circle and the pasta dinner", k=10, modalities=["image"])
    assert images_only and all(h.matched in ("caption", "image") for h in images_only)
    text_only = memory.search("the red circle and the pasta dinner", k=10, modalities=("text",))
    assert text_only and all(h.matched == "text" for h in text_only)
    with pytest.raises(InputError):
        memory.search("x", modalities=["audio"])


def test_session_and_namespace_scopes(memory: Any, gallery: dict) -> None:
    assert {h.turn.session for h in memory.search("picture", k=10, session="s2")} == {"s2"}
    assert memory.search("red circle", k=10, session="nope") == []
    memory.add(Message.user("the red circle belongs to alice"), namespace="alice")
    assert all(h.turn.namespace == "default" for h in memory.search("red circle", k=10))
    alice = memory.search("red circle", k=10, namespace="alice")
    assert [h.turn.namespace for h in alice] == ["alice"]
    both = memory.search("red circle", k=10, namespace=memory.namespaces())
    assert {h.turn.namespace for h in both} == {"alice", "default"}
    assert {h.turn.session for h in memory.search("picture", k=10, exclude_session="s1")} == {"s2"}


def test_hits_keep_interleaved_parts_and_tool_names(memory: Any, media: Any, kit: Any) -> None:
    ref = media.add_image(kit.draw("yellow", "circle"))
    call = ToolCallPart(id="c1", name="generate_image", arguments={"prompt": "a yellow circle"})
    ids = memory.add(
        [
            Message.user("before", ref, "after"),
            Message.assistant(call),
            Message.tool(ToolResultPart(tool_call_id="c1", name="generate_image", content=["done", ref])),
        ]
    )
    turns = {t.id: t for t in memory.turns()}
    assert [p.type for p in turns[ids[0]].message.parts] == ["text", "image", "text"]
    assert turns[ids[1]].tool_names == ("generate_image",)
    hit = memory.search("generate_image yellow circle", k=3)
    assert ids[1] in {h.turn.id for h in hit}


def test_recency_breaks_ties_and_weights_are_configurable(memory: Any) -> None:
    now = 1_800_000_000.0
    old, new = (
        memory.add(Message.user("the lighthouse photo"), timestamp=now - 30 * DAY),
        memory.add(Message.user("the lighthouse photo"), timestamp=now - DAY),
    )
    hits = memory.search("lighthouse photo", k=2, now=now)
    assert [h.turn.id for h in hits] == [new[0], old[0]]
    assert hits[0].semantic == pytest.approx(hits[1].semantic) and hits[0].recency > hits[1].recency
    flat = memory.search("lighthouse photo", k=2, now=now, weights=ScoreWeights(recency=0.0))
    assert flat[0].score == pytest.approx(flat[1].score)
    semantic_only = hits[0].score - 0.2 * hits[0].recency
    assert semantic_only == pytest.approx(hits[0].semantic)


def test_retention_hides_expired_turns(make_memory: Any, tmp_path: Any) -> None:
    memory = make_memory(config=MemoryConfig(retention_s=10 * DAY))
    import time

    memory.add(Message.user("an ancient memory"), timestamp=time.time() - 20 * DAY)
    memory.add(Message.user("a recent memory"))
    assert [h.turn.message.text for h in memory.search("memory", k=5)] == ["a recent memory"]


def test_context_for_counts_images_as_visual_tokens_within_budget(
    memory: Any, gallery: dict, random_model: Any
) -> None:
    n_query = random_model.config.vision.n_query
    assert memory.image_tokens == n_query + 2
    ctx = memory.context_for("the red circle picture", token_budget=10_000)
    assert ctx and ctx.tokens <= 10_000
    times = [h.turn.timestamp for h in ctx.hits]
    assert times == sorted(times)  # chronological
    message = ctx.to_message()
    assert message is not None and message.role == "user"
    text_tokens = sum(memory.count_tokens(x) for x in ctx.items if isinstance(x, str))
    n_images = sum(1 for x in ctx.items if not isinstance(x, str))
    assert n_images >= 1 and ctx.tokens == text_tokens + n_images * (n_query + 2)
    small = memory.context_for("the red circle picture", token_budget=ctx.tokens - 1)
    assert small.tokens <= ctx.tokens - 1 and len(small.hits) < len(ctx.hits)
    assert not memory.context_for("the red circle picture", token_budget=0)


def test_context_for_with_a_custom_token_counter(make_memory: Any, media: Any, kit: Any) -> None:
    memory = make_memory(token_counter=lambda text: len(text.split()), config=MemoryConfig(image_tokens=100))
    memory.add(Message.user("look", media.add_image(kit.draw("red", "circle"))))
    ctx = memory.context_for("red circle", token_budget=1000)
    assert ctx.tokens == sum(len(x.split()) for x in ctx.items if isinstance(x, str)) + 100


def test_bad_queries(memory: Any) -> None:
    with pytest.raises(InputError):
        memory.search("")
    with pytest.raises(InputError):
        memory.search("x", k=0)
    with pytest.raises(InputError):
        memory.search(42)
    with pytest.raises(InputError):
        memory.add("not a message")
    assert memory.search("nothing stored yet") == []


def test_minilm_end_to_end_paraphrase(tmp_path: Any, minilm: Any, random_model: Any, kit: Any, media: Any) -> None:
    memory = MultimodalMemory(tmp_path / "m", model=random_model, text_embedder=minilm, captioner=kit.SceneCaptioner())
    try:
        ids = memory.add(
            [
                Message.user("Here you go", media.add_image(kit.draw("red", "circle", "top left"))),
                Message.user("Let's book the train tickets to Berlin"),
            ]
        )
        assert memory.search("crimson round shape in the corner", k=1)[0].turn.id == ids[0]
        assert memory.search("railway travel plans", k=1)[0].turn.id == ids[1]
    finally:
        memory.close()


def test_chromas_default_embedding_function_is_never_used(
    make_memory: Any, media: Any, kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("chromadb's default embedding function (it downloads a model) was called")

    monkeypatch.setattr(ONNXMiniLM_L6_V2, "__call__", refuse)
    monkeypatch.setattr(ONNXMiniLM_L6_V2, "__init__", refuse)
    memory = make_memory()
    ref = media.add_image(kit.draw("red", "circle"))
    memory.add([Message.user("hello", ref), Message.assistant("hi")], session="s")
    assert memory.search("hello", k=1, session="s") and memory.search(ref, k=1)
    for col in memory.backend.list_collections():
        assert col.configuration_json["embedding_function"] in (None, {"type": "legacy"})


def test_agent_flow_store_the_turn_then_recall_without_it(memory: Any, media: Any, kit: Any, captioner: Any) -> None:
    """The hook an agent uses: store the incoming message, then recall for it (its image captioned only once)."""
    old = memory.add(Message.user("yesterday I showed you", media.add_image(kit.draw("red", "circle"))), session="a")
    incoming = Message.user(
        "is this like the one from yesterday?", media.add_image(kit.draw("red", "circle", "top left"))
    )
    calls = captioner.calls
    [turn_id] = memory.add(incoming, session="b")
    assert captioner.calls == calls + 1
    ctx = memory.context_for(incoming, token_budget=1000, exclude_ids=[turn_id])
    assert captioner.calls == calls + 1  # the query image's caption came from the registry
    assert [h.turn.id for h in ctx.hits] == old
    assert turn_id in {h.turn.id for h in memory.search(incoming, k=3)}
