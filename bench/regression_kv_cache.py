"""Visual-embedding regression: KV-cached loop vs recomputing the whole sequence per embedding.

Compared, on the same random-weight model (float32, CPU) and the same ~25-word prompt, one regression of
``n_query`` = 64 embeddings each:

- ours: ``model.regress_visual_embeddings(prompt)``, one prefill then 63 one-token steps through a KV cache;
- baseline: ``model.regress_visual_embeddings(prompt, use_cache=False)``, BAAI's reference loop, which reruns
  the LLaMA over prompt + all slots so far for every new embedding (64 full forwards).

Both compute the same thing; the max abs difference of the two outputs is printed to show it.
Goal: ours >= 10x faster (p50 over p50).

Run: ``python bench/regression_kv_cache.py [--json] [--reps N]``
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from _common import PROMPT, emit, environment, print_table, setup, small_model, summarise, time_calls

GOAL = 10.0


def run(reps: int, warmup: int, n_query: int) -> dict[str, Any]:
    setup(0)
    model = small_model(n_query=n_query)
    prompt_tokens = len(model.tokenizer.encode(PROMPT + "[IMG]"))

    with torch.no_grad():
        cached_out = model.regress_visual_embeddings(PROMPT)
        uncached_out = model.regress_visual_embeddings(PROMPT, use_cache=False)
    max_abs_diff = float((cached_out - uncached_out).abs().max())
    scale = float(uncached_out.abs().max())

    cached = summarise(time_calls(lambda: model.regress_visual_embeddings(PROMPT), warmup=warmup, reps=reps))
    uncached = summarise(
        time_calls(lambda: model.regress_visual_embeddings(PROMPT, use_cache=False), warmup=warmup, reps=reps)
    )
    speedup = uncached["p50_s"] / cached["p50_s"]
    text = model.config.text
    return {
        "benchmark": "regression_kv_cache",
        "model": {
            "hidden": text.hidden_size,
            "layers": text.num_hidden_layers,
            "heads": text.num_attention_heads,
            "intermediate": text.intermediate_size,
            "vocab": text.vocab_size,
            "vision_width": model.config.vision.width,
            "dtype": str(model.dtype),
        },
        "n_query": n_query,
        "prompt_tokens": prompt_tokens,
        "max_abs_diff": max_abs_diff,
        "output_max_abs": scale,
        "cached": cached,
        "uncached": uncached,
        "speedup": speedup,
        "goal": GOAL,
        "goal_met": speedup >= GOAL,
        "environment": environment(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--n-query", type=int, default=64)
    args = parser.parse_args()
    results = run(args.reps, args.warmup, args.n_query)
    if args.json:
        emit(results, True)
        return
    m = results["model"]
    print(
        f"model: hidden {m['hidden']}, {m['layers']} layers, {m['heads']} heads, FFN {m['intermediate']}, "
        f"vocab {m['vocab']}, {m['dtype']}; prompt {results['prompt_tokens']} tokens, "
        f"n_query {results['n_query']}"
    )
    rows = [
        [name, r["p50_s"], r["min_s"], r["max_s"], f"{r['spread']:.1%}", r["reps"]]
        for name, r in (("kv cache (ours)", results["cached"]), ("no cache (reference)", results["uncached"]))
    ]
    print_table(["path", "p50 s", "min s", "max s", "spread", "reps"], rows)
    verdict = "met" if results["goal_met"] else "NOT met"
    print(f"speed-up (p50): {results['speedup']:.1f}x  (goal >= {GOAL:g}x: {verdict})")
    print(
        f"max |cached - uncached| = {results['max_abs_diff']:.2e} "
        f"(output max |x| = {results['output_max_abs']:.3g})"
    )


if __name__ == "__main__":
    main()
