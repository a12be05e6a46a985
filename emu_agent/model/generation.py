"""Text decoding as small pure functions: options, token selection, and beam search.

The model supplies two callables: a prefill (done before these functions run) and ``step(tokens, beam_origin)``
that feeds one token per row through the KV cache (after reordering it by ``beam_origin``) and returns the next
logits. Greedy and sampling decoding are a generator (:func:`sample_tokens`) so streaming falls out.

Beam search reproduces the semantics of the transformers 4.31 ``BeamSearchScorer`` that BAAI's reference ran
under: hypotheses are scored ``sum_logprobs / len ** length_penalty`` where ``len`` counts the BOS start token
that ``generate(inputs_embeds=...)`` puts in front of the new tokens (EOS excluded); 2 x num_beams candidates per
step; a batch row is done when it holds num_beams hypotheses and the best running score can't beat the worst.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emu_agent.errors import InputError

__all__ = [
    "GenerationOptions",
    "LogitsProcessor",
    "beam_search",
    "parse_generation_options",
    "sample_tokens",
    "select_tokens",
]

StepFn = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
#: ``processor(generated_ids (B, T), logits (B, V)) -> logits``, applied before each token is selected (HF style).
LogitsProcessor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class GenerationOptions(BaseModel):
    """Text generation options, in Hugging Face's names."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(64, ge=1)
    min_new_tokens: int = Field(0, ge=0)
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_k: int = Field(0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    num_beams: int = Field(1, ge=1)
    length_penalty: float = 1.0
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None
    skip_special_tokens: bool = True


def parse_generation_options(kwargs: dict[str, object]) -> GenerationOptions:
    """Validate generation kwargs, turning pydantic's error into an :class:`InputError` naming the field."""
    if isinstance(kwargs.get("stop"), str):
        kwargs = {**kwargs, "stop": [kwargs["stop"]]}
    try:
        options = GenerationOptions(**kwargs)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}={err.get('input')!r}: {err['msg']}" for err in exc.errors()
        )
        raise InputError(f"invalid generation option(s): {problems}") from exc
    if options.num_beams > 1 and options.do_sample:
        raise InputError("num_beams > 1 with do_sample=True (beam sampling) is not supported")
    return options


def _filter_top_k(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    if top_k <= 0 or top_k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def _filter_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)  # (B, V)
    cumulative = sorted_logits.softmax(-1).cumsum(-1)
    remove = cumulative - sorted_logits.softmax(-1) >= top_p  # keep the smallest set reaching top_p
    remove[..., 0] = False
    mask = remove.scatter(-1, order, remove)
    return logits.masked_fill(mask, float("-inf"))


def select_tokens(
    logits: torch.Tensor, options: GenerationOptions, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Pick the next token per row from ``logits`` (B, V): argmax, or sampling with temperature/top-k/top-p."""
    if not options.do_sample:
        return logits.argmax(dim=-1)  # (B,)
    logits = logits.float() / options.temperature
    logits = _filter_top_p(_filter_top_k(logits, options.top_k), options.top_p)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (B,)


def sample_tokens(
    first_logits: torch.Tensor,
    step: StepFn,
    options: GenerationOptions,
    *,
    eos_token_id: int,
    pad_token_id: int,
    generator: torch.Generator | None = None,
    logits_processor: LogitsProcessor | None = None,
) -> Iterator[torch.Tensor]:
    """Greedy or sampled decoding. Yields the next token of every row (B,) per step.

    Rows that produced EOS keep yielding ``pad_token_id``; the generator stops when every row is done or after
    ``max_new_tokens``. EOS is suppressed until ``min_new_tokens`` tokens exist. ``logits_processor`` (e.g. a
    grammar constraint) sees the tokens generated so far and may rewrite the logits before each selection.
    """
    logits = first_logits
    finished = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
    generated = torch.zeros(logits.shape[0], 0, dtype=torch.long, device=logits.device)  # (B, T)
    for index in range(options.max_new_tokens):
        if index < options.min_new_tokens:
            logits = logits.clone()
            logits[:, eos_token_id] = float("-inf")
        if logits_processor is not None:
            logits = logits_processor(generated, logits)
        tokens = select_tokens(logits, options, generator)
        tokens = tokens.masked_fill(finished, pad_token_id)
        yield tokens
        if logits_processor is not None:
            generated = torch.cat([generated, tokens[:, None]], dim=1)
        finished |= tokens == eos_token_id
        if bool(finished.all()) or index + 1 == options.max_new_tokens:
            return
        logits = step(tokens, None)


@dataclass
class _Hypotheses:
    num_beams: int
    length_penalty: float
    beams: list[tuple[float, list[int]]] = field(default_factory=list)
    worst_score: float = 1e9

    def add(self, tokens: list[int], sum_logprobs: float) -> None:
        score = sum_logprobs / (len(tokens) ** self.length_penalty)
        if len(self.beams) < self.num_beams or score > self.worst_score:
            self.beams.append((score, tokens))
            if len(self.beams) > self.num_beams:
                ranked = sorted((s, i) for i, (s, _) in enumerate(self.beams))
                del self.beams[ranked[0][1]]
                self.worst_score = ranked[1][0]
            else:
                self.worst_score = min(score, self.worst_score)

    def is_done(self, best_sum_logprobs: float, cur_len: int) -> bool:
        if len(self.beams) < self.num_beams:
            return False
        return self.worst_score >= best_sum_logprobs / cur_len**self.length_penalty


def beam_search(
    first_logits: torch.Tensor,
    step: StepFn,
    *,
    num_beams: int,
    max_new_tokens: int,
    eos_token_id: int,
    pad_token_id: int,
    bos_token_id: int,
    length_penalty: float,
    min_new_tokens: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Beam search over rows whose caches were expanded to ``B * num_beams`` (beam-major within a row).

    ``first_logits`` (B * K, V) are the prefill logits (identical within a row). ``step(tokens, origin)`` must
    reorder the cache by ``origin`` (B * K,) and feed ``tokens`` (B * K,). Returns ``sequences`` (B, 1 + T)
    starting with BOS and right-padded with ``pad_token_id``, and the best hypothesis score per row (B,).
    """
    rows = first_logits.shape[0] // num_beams
    vocab = first_logits.shape[-1]
    device = first_logits.device
    hyps = [_Hypotheses(num_beams, length_penalty) for _ in range(rows)]
    done = [False] * rows
    sequences = [[bos_token_id] for _ in range(rows * num_beams)]
    beam_scores = torch.zeros(rows, num_beams, device=device)
    beam_scores[:, 1:] = -1e9
    beam_scores = beam_scores.view(-1)  # (B*K,)
    logits = first_logits
    for index in range(max_new_tokens):
        log_probs = torch.log_softmax(logits.float(), dim=-1)  # (B*K, V)
        if index < min_new_tokens:
            log_probs[:, eos_token_id] = float("-inf")
        scores = (log_probs + beam_scores[:, None]).view(rows, num_beams * vocab)
        top_scores, top_ids = torch.topk(scores, 2 * num_beams, dim=1, largest=True, sorted=True)
        origins, tokens = top_ids // vocab, top_ids % vocab  # (B, 2K)
        next_scores = torch.zeros(rows, num_beams, device=device)
        next_tokens = torch.full((rows, num_beams), pad_token_id, dtype=torch.long, device=device)
        next_origin = torch.zeros(rows, num_beams, dtype=torch.long, device=device)
        cur_len = len(sequences[0])
        for row in range(rows):
            if done[row]:
                continue
            slot = 0
            for rank in range(2 * num_beams):
                token = int(tokens[row, rank])
                origin = row * num_beams + int(origins[row, rank])
                score = float(top_scores[row, rank])
                if token == eos_token_id:
                    if rank < num_beams:
                        hyps[row].add(list(sequences[origin]), score)
                else:
                    next_scores[row, slot] = score
                    next_tokens[row, slot] = token
                    next_origin[row, slot] = origin
                    slot += 1
                if slot == num_beams:
                    break
            done[row] = done[row] or hyps[row].is_done(float(top_scores[row].max()), cur_len)
        beam_scores = next_scores.view(-1)
        origin_flat = next_origin.view(-1)
        token_flat = next_tokens.view(-1)
        sequences = [sequences[int(o)] + [int(t)] for o, t in zip(origin_flat, token_flat, strict=True)]
        if all(done) or index + 1 == max_new_tokens:
            break
        logits = step(token_flat, origin_flat)
    for row in range(rows):
        if done[row]:
            continue
        for beam in range(num_beams):
            flat = row * num_beams + beam
            hyps[row].add(sequences[flat], float(beam_scores[flat]))
    best = [max(h.beams, key=lambda b: b[0]) for h in hyps]
    width = min(max(len(tokens) for _, tokens in best) + 1, 1 + max_new_tokens)
    out = torch.full((rows, width), pad_token_id, dtype=torch.long)
    for row, (_, tokens) in enumerate(best):
        out[row, : len(tokens)] = torch.tensor(tokens)
        if len(tokens) < width:  # 4.31 puts EOS after a hypothesis that ended early
            out[row, len(tokens)] = eos_token_id
    return out, torch.tensor([score for score, _ in best])
