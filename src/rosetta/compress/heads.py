"""Which attention heads matter, and a smaller model without the others (Michel et al., 2019, "Are Sixteen
Heads Really Better than One?").

    head mask      MultiHead(x) = Concat(ξ_1 head_1, …, ξ_H head_H) W^O, ξ = 1 is the trained model
    importance     I_h = E_x |∂L(x)/∂ξ_h| at ξ = 1: the first-order (Taylor) estimate of how much the loss
                   changes when head h is removed (ξ_h: 1 → 0); x runs over validation batches, L(x) is the
                   batch's mean token NLL (as the paper's code does it)
    normalised     per attention layer, I_h / ‖I_layer‖₂, so that layers can be compared (the paper, §4.2)

Heads are removed globally, least important first (or in a random order, the baseline), always keeping one
head per attention layer. Removal is physical: head h's rows of W^Q, W^K, W^V and its columns of W^O go, so
the pruned model is smaller and faster; its config records the per-layer head counts
(``ModelConfig.heads_per_layer``) and it loads and decodes like any other model.

Attention kinds, as the attention maps name them: "encoder" (encoder self-attention), "decoder" (decoder
self-attention), "cross" (decoder → encoder). ``HeadMask`` holds per kind a list of per-layer tensors (H_l,).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rosetta.data import batching
from rosetta.data.batching import TranslationBatch
from rosetta.models.transformer import HeadMask, Transformer
from rosetta.nn.attention import MultiHeadAttention

KINDS = ("encoder", "decoder", "cross")
Importance = dict[str, list[list[float]]]  # kind → per layer → per head
Kept = dict[str, list[list[int]]]  # kind → per layer → indices of the heads kept


def attention_modules(model: Transformer) -> dict[str, list[MultiHeadAttention]]:
    """The model's attention modules by kind, layer by layer."""
    return {"encoder": [layer.self_attn for layer in model.encoder.layers],
            "decoder": [layer.self_attn for layer in model.decoder.layers],
            "cross": [layer.cross_attn for layer in model.decoder.layers]}


def ones_mask(model: Transformer, requires_grad: bool = False, dtype: torch.dtype | None = None) -> HeadMask:
    """ξ = 1 for every head (the unmasked model), per kind and layer (H_l,)."""
    device = next(model.parameters()).device
    dtype = dtype or next(model.parameters()).dtype
    return {kind: [torch.ones(m.n_heads, device=device, dtype=dtype, requires_grad=requires_grad) for m in mods]
            for kind, mods in attention_modules(model).items()}


def batch_loss(model: Transformer, batch: TranslationBatch, head_mask: HeadMask | None = None) -> torch.Tensor:
    """L(x): the mean NLL per target token of a batch (no label smoothing), under ``head_mask``; in float32, or
    float64 for a float64 model (the finite-difference test)."""
    device = next(model.parameters()).device
    logits = model(batch.src.to(device), batch.tgt_in.to(device), head_mask=head_mask)  # (B, T, V)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(logits.flatten(0, 1), batch.tgt_out.to(device).flatten(), ignore_index=model.config.pad_id)


def head_importance(model: Transformer, batches: Iterable[TranslationBatch], normalize: bool = True) -> Importance:
    """I_h = mean over batches of |∂L/∂ξ_h| at ξ = 1, normalised per layer by its L2 norm (module docstring).

    The model runs in eval mode (no dropout); only the mask's gradient is computed, the weights' are not."""
    was_training = model.training
    model.eval()
    mask = ones_mask(model, requires_grad=True)
    flat = [m for kind in KINDS for m in mask[kind]]
    total = [torch.zeros_like(m) for m in flat]
    n_batches = 0
    try:
        for batch in batches:
            grads = torch.autograd.grad(batch_loss(model, batch, mask), flat)
            total = [t + g.abs() for t, g in zip(total, grads)]
            n_batches += 1
    finally:
        model.train(was_training)
    if not n_batches:
        raise ValueError("head importance needs at least one validation batch; the validation data is empty")
    scores = iter(t / n_batches for t in total)
    importance = {kind: [next(scores) for _ in mask[kind]] for kind in KINDS}
    if normalize:
        importance = {kind: [s / s.norm().clamp(min=1e-20) for s in layers] for kind, layers in importance.items()}
    return {kind: [s.tolist() for s in layers] for kind, layers in importance.items()}


def pair_batches(src_ids: Sequence[list[int]], tgt_ids: Sequence[list[int]], pad_id: int, bos_id: int, eos_id: int,
                 max_tokens: int = 2000) -> list[TranslationBatch]:
    """Validation batches (sources with their </s>, targets without BOS/EOS), sorted by length."""
    indices = batching.make_batches([len(s) for s in src_ids], [len(t) + 1 for t in tgt_ids], max_tokens,
                                    shuffle=False)
    return [batching.collate_translation([(src_ids[i], tgt_ids[i]) for i in batch], pad_id, bos_id, eos_id)
            for batch in indices]


def heads_to_remove(importance: Importance, n_remove: int, order: str = "importance", seed: int = 1) -> Kept:
    """The heads to keep after removing ``n_remove``: the least important first over the whole model (or in a
    seeded random order: ``order="random"``), skipping a head that is the last one left in its layer."""
    heads = [(kind, layer, head) for kind in KINDS for layer, scores in enumerate(importance[kind])
             for head in range(len(scores))]
    removable = len(heads) - sum(len(importance[kind]) for kind in KINDS)
    if not 0 <= n_remove <= removable:
        raise ValueError(f"cannot remove {n_remove} heads: the model has {len(heads)} heads in "
                         f"{len(heads) - removable} attention layers, each keeps one (at most {removable})")
    if order == "importance":
        heads.sort(key=lambda h: importance[h[0]][h[1]][h[2]])
    elif order == "random":
        random.Random(seed).shuffle(heads)
    else:
        raise ValueError(f"order must be 'importance' or 'random', got {order!r}")
    kept = {kind: [list(range(len(scores))) for scores in importance[kind]] for kind in KINDS}
    removed = 0
    for kind, layer, head in heads:
        if removed == n_remove:
            break
        if len(kept[kind][layer]) > 1:
            kept[kind][layer].remove(head)
            removed += 1
    return kept


def count_heads(importance: Importance) -> int:
    return sum(len(scores) for kind in KINDS for scores in importance[kind])


def _head_rows(heads: Sequence[int], size: int, offset: int = 0) -> torch.Tensor:
    """Row indices of ``heads`` in a projection whose output is H blocks of ``size`` rows, starting at offset."""
    return torch.cat([torch.arange(offset + h * size, offset + (h + 1) * size) for h in heads])


def _sliced_linear(linear: nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None
                   ) -> nn.Linear:
    """A new Linear with only the given output rows and/or input columns of ``linear``."""
    weight = linear.weight.detach()
    weight = weight[rows] if rows is not None else weight
    weight = weight[:, cols] if cols is not None else weight
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=linear.bias is not None,
                    device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if linear.bias is not None:
            new.bias.copy_(linear.bias[rows] if rows is not None else linear.bias)
    return new


def prune_attention(attn: MultiHeadAttention, heads: Sequence[int]) -> None:
    """Keep only ``heads`` of ``attn`` (in place): their rows of W^Q, W^K, W^V, their columns of W^O.
    The fused projections are [Q; K; V] (self) and [K; V] (cross), each H blocks of d_k (d_v) rows."""
    qk_size = attn.n_heads * attn.d_k
    q_rows, v_rows = _head_rows(heads, attn.d_k), _head_rows(heads, attn.d_v)
    if attn.cross:
        attn.q_proj = _sliced_linear(attn.q_proj, rows=q_rows)
        attn.kv_proj = _sliced_linear(attn.kv_proj, rows=torch.cat([q_rows, qk_size + v_rows]))
    else:
        rows = torch.cat([q_rows, qk_size + q_rows, 2 * qk_size + v_rows])
        attn.qkv_proj = _sliced_linear(attn.qkv_proj, rows=rows)
    attn.out_proj = _sliced_linear(attn.out_proj, cols=v_rows)
    attn.n_heads = len(heads)


def prune_model(model: Transformer, kept: Kept) -> Transformer:
    """A copy of ``model`` with only the ``kept`` heads; its config's ``heads_per_layer`` says how many."""
    modules = attention_modules(model)
    for kind in KINDS:
        if len(kept[kind]) != len(modules[kind]):
            raise ValueError(f"kept[{kind!r}] lists {len(kept[kind])} layers, the model has {len(modules[kind])}")
        for heads, attn in zip(kept[kind], modules[kind]):
            if not heads or len(set(heads)) != len(heads) or not all(0 <= h < attn.n_heads for h in heads):
                raise ValueError(f"kept[{kind!r}] = {heads}: need distinct head indices in [0, {attn.n_heads})")
    pruned = copy.deepcopy(model)
    for kind, attns in attention_modules(pruned).items():
        for heads, attn in zip(kept[kind], attns):
            prune_attention(attn, sorted(heads))
    pruned.config = model.config.replace(heads_per_layer={kind: [len(h) for h in kept[kind]] for kind in KINDS})
    return pruned


def kept_importance(importance: Importance, kept: Kept) -> Importance:
    """The importance of the heads kept, in their new order (what the pruned model's config.json records)."""
    return {kind: [[importance[kind][layer][h] for h in sorted(heads)] for layer, heads in enumerate(kept[kind])]
            for kind in KINDS}
