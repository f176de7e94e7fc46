"""What would a compiled decoding step give at batch 1? An experiment, not a Rosetta feature (issue 21).

At one sentence the ``small`` model's greedy step is ~3 ms against CTranslate2's ~0.8: per-call cost, not memory
(RESULTS.md). This script writes the same step as one function over a static cache — K/V buffers of a fixed
length, the new position written with ``index_copy_``, later positions masked — so that ``torch.compile`` can
trace it whole, and times it eager and compiled (inductor, CPU), against Rosetta's own ``greedy_search`` on the
same weights. Each variant must produce ``greedy_search``'s ids (checked, printed).

    .venv/bin/python benchmarks/compiled_step.py [--vocab 8000] [--freeze/--no-freeze] [--blocks/--no-blocks]

``--blocks``: the step's one-row products through ``rosetta.decode.precision.times_blocks`` (Wᵀ in one block of
columns per thread), as fp32 decoding runs them; ``--freeze``: inductor's weight freezing (its own oneDNN packing).
Needs a C++ compiler for inductor (gcc here). Post-LN ``small`` preset (its defaults), random weights, one
25-token source, 30 steps.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from rosetta import ModelConfig, Transformer  # noqa: E402
from rosetta.decode import for_inference, greedy_search  # noqa: E402
from rosetta.decode.precision import column_blocks, times_blocks  # noqa: E402

STEPS, SOURCE = 30, 25


def one_row_blocks(model: Transformer, threads: int) -> None:
    """The decoder's and output layer's Linears multiply one row through Wᵀ's column blocks, in place."""
    for module in [*model.decoder.modules(), model.output]:
        if isinstance(module, torch.nn.Linear):
            blocks = column_blocks(module.weight, module.bias, threads)

            def forward(x, module=module, blocks=blocks):
                if x.numel() != module.in_features:  # the cross-attention keys / values of the whole source
                    return F.linear(x, module.weight, module.bias)
                return times_blocks(x, *blocks, module.out_features)

            module.forward = forward


def static_step(model: Transformer, src: torch.Tensor):
    """(step, caches): step(token (1,), t (0-d long), k_cache, v_cache) → logits (1, V), the caches (L, 1, H, T, d)
    written at t. The Post-LN decoder layer: x = LN(x + SelfAttn(x)); x = LN(x + CrossAttn(x)); x = LN(x + FFN(x))."""
    config = model.config
    heads, d_model, total = config.n_heads, config.d_model, STEPS + 2
    d_k = d_model // heads
    memory, _, _ = model.encode(src)
    token_table = model.tgt_embed.token.weight
    scale = math.sqrt(d_model) if config.scale_embeddings else 1.0
    positions = model.tgt_embed(torch.zeros(1, total, dtype=torch.long), offset=0)[0] - token_table[0] * scale
    layers = model.decoder.layers
    cross = [layer.cross_attn.kv_proj(memory).view(1, -1, 2, heads, d_k).permute(2, 0, 3, 1, 4) for layer in layers]
    cross_k = [kv[0].contiguous() for kv in cross]  # (1, H, S, d) per layer
    cross_v = [kv[1].contiguous() for kv in cross]
    index = torch.arange(total)

    def attend(q, k, v, allowed=None):  # q (1, H, d), k / v (1, H, T, d) → (1, D)
        scores = torch.einsum("bhd,bhtd->bht", q, k) / math.sqrt(d_k)
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        return torch.einsum("bht,bhtd->bhd", scores.softmax(-1), v).reshape(1, d_model)

    def step(token, t, k_cache, v_cache):
        x = F.embedding(token, token_table) * scale + positions.index_select(0, t.view(1))  # (1, D)
        for i, layer in enumerate(layers):
            q, k, v = layer.self_attn.qkv_proj(x).view(1, 3, heads, d_k).unbind(1)  # (1, H, d) each
            k_cache[i].index_copy_(2, t.view(1), k[:, :, None])
            v_cache[i].index_copy_(2, t.view(1), v[:, :, None])
            x = layer.self_attn_norm(x + layer.self_attn.out_proj(attend(q, k_cache[i], v_cache[i], index <= t)))
            q = layer.cross_attn.q_proj(x).view(1, heads, d_k)
            x = layer.cross_attn_norm(x + layer.cross_attn.out_proj(attend(q, cross_k[i], cross_v[i])))
            x = layer.feed_forward_norm(x + layer.feed_forward(x))
        return model.output(x)

    caches = (torch.zeros(len(layers), 1, heads, total, d_k), torch.zeros(len(layers), 1, heads, total, d_k))
    return step, caches


def greedy(step, caches, config, steps: int = STEPS) -> list[int]:
    token, out = torch.full((1,), config.bos_id), []
    for i in range(steps):
        logits = step(token, torch.tensor(i), *caches)
        logits[:, [config.pad_id, config.bos_id, config.eos_id]] = -math.inf
        token = logits.argmax(-1)
        out.append(int(token[0]))
    return out


def ms_per_step(fn, repeats: int = 5):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times) / STEPS * 1e3, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--freeze", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--blocks", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    config = ModelConfig.preset("small", src_vocab_size=args.vocab, tgt_vocab_size=args.vocab, dropout=0.0,
                                share_embeddings=True)
    model = Transformer(config).eval()
    rosetta_model = for_inference(Transformer(config).eval(), "fp32")
    rosetta_model.load_state_dict(model.state_dict())
    if args.blocks:
        one_row_blocks(model, torch.get_num_threads())
    src = torch.randint(4, args.vocab, (1, SOURCE))
    with torch.inference_mode():
        want = greedy_search(rosetta_model, src, max_len=STEPS, min_len=STEPS)[0]
        ms, _ = ms_per_step(lambda: greedy_search(rosetta_model, src, max_len=STEPS, min_len=STEPS))
        print(f"rosetta greedy_search (fp32, packed): {ms:.2f} ms/step")
        step, caches = static_step(model, src)
        ms, got = ms_per_step(lambda: greedy(step, caches, config))
        print(f"static step, eager: {ms:.2f} ms/step, same ids: {got == want}")
        import torch._inductor.config as inductor

        inductor.freezing = args.freeze
        compiled = torch.compile(step, dynamic=False, fullgraph=True)
        start = time.perf_counter()
        greedy(compiled, caches, config, steps=2)
        print(f"compiling: {time.perf_counter() - start:.1f} s (freeze={args.freeze}, blocks={args.blocks})")
        ms, got = ms_per_step(lambda: greedy(compiled, caches, config))
        print(f"static step, compiled: {ms:.2f} ms/step, same ids: {got == want}")


if __name__ == "__main__":
    main()
