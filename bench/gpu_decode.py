"""Batch-1 greedy decode at Emu2-Chat LLaMA dims on a GPU vs the memory-bandwidth bound (for a GPU machine).

A batch-1 decode step must read every LLaMA weight once (plus the KV cache), so its time is bounded below by
``bytes read per token / peak memory bandwidth``. This script builds an ``EmuModel`` with Emu2-Chat text dims
(hidden 6656, 60 layers, 52 heads, FFN 17920, vocab 32274; ~65 GB of random bfloat16 weights, created on the
meta device then ``to_empty`` on the GPU and filled with ``normal_``; a tiny EVA) and times:

- ours: ``model.generate_token_ids([prompt], max_new_tokens=N, min_new_tokens=N)``;
- baseline: ``model.lm.generate(inputs_embeds=..., max_new_tokens=N, min_new_tokens=N, do_sample=False)``.

Per-token decode time is ``(t(N) - t(1)) / (N - 1)`` (p50 of each), which removes the prefill. Reported:
ms/token, tokens/s, achieved GB/s and the fraction of ``--peak-gbps`` (default 4800, H200 HBM3e; use 3350 for an
H100 SXM). Goal: close to the bound (fraction near 1) and ours/transformers >= 1.0.

Run (GPU only): ``python bench/gpu_decode.py [--json] [--peak-gbps 4800] [--layers 60]``; ``--smoke`` runs tiny
dims on the CPU to check the script itself (its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch
from _common import PROMPT, REFERENCE_TOKENIZER, emit, environment, print_table, summarise, time_calls


def build(layers: int, smoke: bool, device: str) -> Any:
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    from emu_agent.model.config import EmuConfig, TextConfig, VisionConfig
    from emu_agent.model.emu import EmuModel
    from emu_agent.model.tokenizer import EmuTokenizer

    dims = {"hidden_size": 6656, "intermediate_size": 17920, "num_attention_heads": 52}
    if smoke:
        dims = {"hidden_size": 256, "intermediate_size": 688, "num_attention_heads": 4}
    text = TextConfig(**dims, num_hidden_layers=layers, vocab_size=32274)
    vision = VisionConfig(image_size=112, width=112, layers=1, head_width=56, mlp_ratio=2.0, n_query=64, v_query=64)
    config = EmuConfig(vision=vision, text=text, instruct=True)
    tokenizer = EmuTokenizer.from_pretrained(REFERENCE_TOKENIZER, instruct=True)
    with torch.device("meta"):
        model = EmuModel(config, tokenizer=tokenizer).to(torch.bfloat16)
    model.to_empty(device=device)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:  # RMSNorm / LayerNorm: weight 1, bias 0
                param.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                param.normal_(0.0, 0.02)
    model.lm.model.rotary_emb = LlamaRotaryEmbedding(config=model.lm.config).to(device)  # to_empty left garbage
    return model.eval()


def time_tokens(fn: Any, new_tokens: int, warmup: int, reps: int) -> dict[str, Any]:
    full = summarise(time_calls(lambda: fn(new_tokens), warmup=warmup, reps=reps))
    one = summarise(time_calls(lambda: fn(1), warmup=warmup, reps=reps))
    per_token = (full["p50_s"] - one["p50_s"]) / (new_tokens - 1)
    return {"full": full, "prefill_plus_one": one, "s_per_token": per_token, "tokens_per_s": 1 / per_token}


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = "cpu" if args.smoke else "cuda"
    torch.manual_seed(0)
    model = build(args.layers, args.smoke, device)
    tok = model.tokenizer
    lm_params = sum(p.numel() for p in model.lm.parameters())
    embed = model.lm.get_input_embeddings().weight.numel()
    embeds, mask, _ = model.embed_plans([model.plan(PROMPT)])
    context = embeds.shape[1] + args.new_tokens // 2  # mean context length while decoding
    text = model.config.text
    kv_bytes = 2 * text.num_hidden_layers * text.hidden_size * 2 * context  # K and V, bf16
    step_bytes = (lm_params - embed) * 2 + kv_bytes  # one embedding row is read, not the table

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def ours(n: int) -> Any:
        out = model.generate_token_ids([PROMPT], max_new_tokens=n, min_new_tokens=n)
        sync()
        return out

    @torch.no_grad()
    def theirs(n: int) -> Any:
        out = model.lm.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        sync()
        return out

    agree = bool(torch.equal(ours(args.new_tokens)[:, 1:].cpu(), theirs(args.new_tokens).cpu()))
    paths = {"ours": time_tokens(ours, args.new_tokens, args.warmup, args.reps),
             "transformers": time_tokens(theirs, args.new_tokens, args.warmup, args.reps)}  # fmt: skip
    for r in paths.values():
        r["achieved_gbps"] = step_bytes / r["s_per_token"] / 1e9
        r["fraction_of_peak"] = r["achieved_gbps"] / args.peak_gbps
        r["bound_s_per_token"] = step_bytes / (args.peak_gbps * 1e9)
    env = environment()
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
        env["max_memory_allocated_gb"] = torch.cuda.max_memory_allocated() / 1e9
    return {"benchmark": "gpu_decode", "smoke": args.smoke, "layers": text.num_hidden_layers,
            "lm_params": lm_params, "bytes_per_token": step_bytes, "prompt_tokens": int(embeds.shape[1]),
            "new_tokens": args.new_tokens, "peak_gbps": args.peak_gbps, "ids_agree": agree, "paths": paths,
            "ratio": paths["ours"]["tokens_per_s"] / paths["transformers"]["tokens_per_s"],
            "environment": env}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    parser.add_argument("--peak-gbps", type=float, default=4800.0, help="the GPU's peak memory bandwidth, GB/s")
    parser.add_argument("--layers", type=int, default=60, help="LLaMA layers (fewer to fit a smaller GPU)")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="tiny dims on the CPU, to check the script only")
    args = parser.parse_args()
    if not args.smoke and not torch.cuda.is_available():
        sys.exit("gpu_decode.py needs a CUDA GPU (none is available); nothing was measured. "
                 "Use --smoke to check the script on the CPU.")  # fmt: skip
    if args.smoke:
        args.layers = min(args.layers, 2)
    torch.set_num_threads(2)
    results = run(args)
    if args.json:
        emit(results, True)
        return
    gb = results["bytes_per_token"] / 1e9
    where = results["environment"].get("gpu", "cpu (smoke)")
    print(f"{where}: {results['layers']} layers, {results['lm_params'] / 1e9:.2f}B LM params, "
          f"{gb:.2f} GB read per token, peak {args.peak_gbps:g} GB/s")  # fmt: skip
    rows = [[name, r["s_per_token"] * 1e3, r["tokens_per_s"], r["achieved_gbps"], f"{r['fraction_of_peak']:.1%}",
             r["bound_s_per_token"] * 1e3] for name, r in results["paths"].items()]  # fmt: skip
    print_table(["path", "ms/token", "tok/s", "GB/s", "of peak", "bound ms/token"], rows)
    print(f"ours / transformers: {results['ratio']:.2f}x; greedy ids agree: {results['ids_agree']}")


if __name__ == "__main__":
    main()
