"""Visual-embedding regression: KV-cached loop vs recomputing the whole sequence per embedding.

Compared, on the same random-weight model (float32, CPU) and the same ~25-word prompt (and, to show how the
ratio scales with sequence length, that prompt repeated 8 times), one regression of ``n_query`` = 64
embeddings each:

- ours: ``model.regress_visual_embeddings(prompt)``, one prefill then 63 one-token steps through a KV cache;
- baseline: ``model.regress_visual_embeddings(prompt, use_cache=False)``, BAAI's reference loop, which reruns
  the LLaMA over prompt + all slots so far for every new embedding (64 full forwards).

Both compute the same thing; the max abs difference of the two outputs is printed to show it.
Goal: ours >= 10x faster (p50 over p50) on the ~25-word prompt.

Run: ``python bench/regression_kv_cache.py [--json] [--reps N]``
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from _common import PROMPT, emit, environment, print_table, setup, small_model, summarise, time_calls

GOAL = 10.0


def bench_prompt(model: Any, prompt: str, reps: int, warmup: int) -> dict[str, Any]:
    with torch.no_grad():
        cached_out = model.regress_visual_embeddings(prompt)
        uncached_out = model.regress_visual_embeddings(prompt, use_cache=False)
    cached = summarise(time_calls(lambda: model.regress_visual_embeddings(prompt), warmup=warmup, reps=reps))
    uncached = summarise(
        time_calls(lambda: model.regress_visual_embeddings(prompt, use_cache=False), warmup=warmup, reps=reps)
    )
    return {
        "prompt_words": len(prompt.split()),
        "prompt_tokens": len(model.tokenizer.encode(prompt + "[IMG]")),
        "max_abs_diff": float((cached_out - uncached_out).abs().max()),
        "output_max_abs": float(uncached_out.abs().max()),
        "cached": cached,
        "uncached": uncached,
        "speedup": uncached["p50_s"] / cached["p50_s"],
    }


def run(reps: int, warmup: int, n_query: int, repeats: list[int]) -> dict[str, Any]:
    setup(0)
    env = environment()  # before the run: its load average is the machine's, not ours
    model = small_model(n_query=n_query)
    text = model.config.text
    results = [bench_prompt(model, " ".join([PROMPT] * k), reps, warmup) for k in repeats]
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
        "prompt_repeats": repeats,
        "results": results,
        "goal": GOAL,
        "goal_met": results[0]["speedup"] >= GOAL,  # judged on the first (default: the ~25-word) prompt
        "environment": env,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--n-query", type=int, default=64)
    parser.add_argument(
        "--prompt-repeats", type=int, nargs="+", default=[1, 8], help="prompt = the ~25-word text repeated k times"
    )
    args = parser.parse_args()
    results = run(args.reps, args.warmup, args.n_query, args.prompt_repeats)
    if args.json:
        emit(results, True)
        return
    m = results["model"]
    print(
        f"model: hidden {m['hidden']}, {m['layers']} layers, {m['heads']} heads, FFN {m['intermediate']}, "
        f"vocab {m['vocab']}, {m['dtype']}; n_query {results['n_query']}"
    )
    rows = []
    for r in results["results"]:
        for name, key in (("kv cache (ours)", "cached"), ("no cache (reference)", "uncached")):
            t = r[key]
            extra = [f"{r['speedup']:.1f}x", f"{r['max_abs_diff']:.1e}"] if key == "cached" else ["", ""]
            rows.append([r["prompt_tokens"], name, t["p50_s"], t["min_s"], t["max_s"], f"{t['spread']:.1%}", *extra])
    print_table(["prompt tok", "path", "p50 s", "min s", "max s", "spread", "speed-up", "max|diff|"], rows)
    verdict = "met" if results["goal_met"] else "NOT met"
    print(f"goal >= {GOAL:g}x on the {results['results'][0]['prompt_tokens']}-token prompt: {verdict}")


if __name__ == "__main__":
    main()
