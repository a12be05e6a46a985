"""Greedy text decode speed: our ``generate_token_ids`` loop vs transformers' ``LlamaForCausalLM.generate``.

Compared on the same random-weight LLaMA (float32, CPU) and the same prompts:

- ours: ``model.generate_token_ids(prompts, max_new_tokens=N, min_new_tokens=N)`` (prefill + one-token steps
  through a ``DynamicCache``; the timing also includes planning, tokenising and embedding the prompts);
- baseline: ``model.lm.generate(inputs_embeds=..., attention_mask=..., max_new_tokens=N, min_new_tokens=N,
  do_sample=False)`` with the ``inputs_embeds`` from ``model.embed_plans([model.plan(p) ...])`` (not timed).

``min_new_tokens=N`` on both sides suppresses EOS so both produce exactly N tokens; the greedy ids must agree.
Reported per batch size (1 and 4, left-padded): new tokens/s of each and the ratio ours / transformers.
Goal: ratio >= 1.0.

Run: ``python bench/text_decode.py [--json] [--new-tokens N] [--reps R]``
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from _common import PROMPT, emit, environment, print_table, setup, small_model, summarise, time_calls

GOAL = 1.0
PROMPTS = [
    PROMPT,
    "Describe the picture in one sentence.",
    "Write a short story about a robot who learns to paint portraits of the people in its village",
    "What is the capital of France?",
]


def bench_batch(model: Any, prompts: list[str], new_tokens: int, warmup: int, reps: int) -> dict[str, Any]:
    tok = model.tokenizer
    embeds, mask, _ = model.embed_plans([model.plan(p) for p in prompts])

    def ours() -> torch.Tensor:
        return model.generate_token_ids(prompts, max_new_tokens=new_tokens, min_new_tokens=new_tokens)

    @torch.no_grad()
    def theirs() -> torch.Tensor:
        return model.lm.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )

    ours_ids, theirs_ids = ours()[:, 1:], theirs()  # ours starts with BOS; HF returns only the new tokens
    same_shape = tuple(ours_ids.shape) == tuple(theirs_ids.shape)
    agree = same_shape and bool(torch.equal(ours_ids, theirs_ids.cpu()))
    ours_t = summarise(time_calls(ours, warmup=warmup, reps=reps))
    theirs_t = summarise(time_calls(theirs, warmup=warmup, reps=reps))
    produced = len(prompts) * new_tokens
    ours_tps, theirs_tps = produced / ours_t["p50_s"], produced / theirs_t["p50_s"]
    return {
        "batch": len(prompts),
        "prompt_tokens": int(mask.shape[1]),
        "new_tokens": new_tokens,
        "ours": {**ours_t, "tokens_per_s": ours_tps, "shape": list(ours_ids.shape)},
        "transformers": {**theirs_t, "tokens_per_s": theirs_tps, "shape": list(theirs_ids.shape)},
        "ratio": ours_tps / theirs_tps,
        "ids_agree": agree,
        "goal_met": ours_tps / theirs_tps >= GOAL,
    }


def run(new_tokens: int, warmup: int, reps: int, batches: list[int]) -> dict[str, Any]:
    setup(0)
    env = environment()  # before the run: its load average is the machine's, not ours
    model = small_model()
    model.lm.generation_config.pad_token_id = model.tokenizer.pad_token_id
    text = model.config.text
    import transformers

    return {
        "benchmark": "text_decode",
        "model": {
            "hidden": text.hidden_size,
            "layers": text.num_hidden_layers,
            "heads": text.num_attention_heads,
            "intermediate": text.intermediate_size,
            "vocab": text.vocab_size,
            "dtype": str(model.dtype),
        },
        "transformers": transformers.__version__,
        "results": [bench_batch(model, PROMPTS[:b], new_tokens, warmup, reps) for b in batches],
        "goal": GOAL,
        "environment": env,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    results = run(args.new_tokens, args.warmup, args.reps, args.batches)
    if args.json:
        emit(results, True)
        return
    m = results["model"]
    print(
        f"model: hidden {m['hidden']}, {m['layers']} layers, FFN {m['intermediate']}, vocab {m['vocab']}, "
        f"{m['dtype']}; transformers {results['transformers']}; {args.new_tokens} new tokens per row"
    )
    rows = []
    for r in results["results"]:
        for name in ("ours", "transformers"):
            t = r[name]
            ratio = f"{r['ratio']:.2f}x" if name == "ours" else ""
            rows.append([r["batch"], name, t["tokens_per_s"], t["p50_s"], f"{t['spread']:.1%}", ratio,
                         r["ids_agree"]])  # fmt: skip
    print_table(["batch", "path", "tok/s", "p50 s", "spread", "ours/hf", "ids agree"], rows)
    met = all(r["goal_met"] for r in results["results"])
    print(f"goal ours/hf >= {GOAL:g}x: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
