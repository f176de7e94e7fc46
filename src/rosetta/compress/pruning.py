"""Head pruning of a saved translation model: importance on validation pairs → remove heads → a new model
directory; and the pruning curve (BLEU against the fraction of heads removed, importance vs random order).

    >>> prune_directory("runs/tatoeba-en-zh", "runs/tatoeba-pruned", valid_pairs, fraction=0.25)

The new directory is an ordinary checkpoint (model.safetensors, config.json with ``heads_per_layer``,
tokenizers), so ``rosetta.load``, ``rosetta translate`` and the server use it unchanged. Its config.json also
holds "head_importance" (kind → layer → head, of the heads kept) for the attention explorer, and "pruning"
(where it came from, the order, the heads kept by their original index).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rosetta import checkpoint as ckpt
from rosetta.compress.heads import (
    Importance,
    count_heads,
    head_importance,
    heads_to_remove,
    kept_importance,
    pair_batches,
    prune_model,
)
from rosetta.data.tokenizer import save_tokenizers
from rosetta.decode.translator import Translator, load
from rosetta.tasks.metrics import score


def validation_importance(translator: Translator, pairs: Sequence[tuple[str, str]],
                          max_tokens: int = 2000) -> Importance:
    """Head importance of the translator's model over (source, reference) pairs."""
    pairs = [(s, t) for s, t in pairs if s.strip() and t.strip()]
    if not pairs:
        raise ValueError("no validation pairs with both sides non-empty: head importance needs some")
    config = translator.config
    src = [translator.encode_source(s, warn=False) for s, _ in pairs]
    tgt = [translator.tgt_tokenizer.encode(t)[: config.max_len - 1] for _, t in pairs]
    batches = pair_batches(src, tgt, config.pad_id, config.bos_id, config.eos_id, max_tokens)
    return head_importance(translator.model, batches)


def heads_for(total: int, n_heads: int | None, fraction: float | None) -> int:
    """How many heads to remove: ``n_heads``, or ``round(fraction · total)``; exactly one must be given."""
    if (n_heads is None) == (fraction is None):
        raise ValueError("give the number of heads to remove (--heads N) or the fraction (--fraction F), not both")
    if fraction is not None:
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"--fraction is the share of heads to remove, in [0, 1); got {fraction}")
        return round(fraction * total)
    if n_heads < 0:
        raise ValueError(f"--heads is the number of heads to remove, at least 0; got {n_heads}")
    return n_heads


def pruned_translator(translator: Translator, importance: Importance, n_remove: int, order: str = "importance",
                      seed: int = 1) -> tuple[Translator, dict[str, list[list[int]]]]:
    """A Translator over a copy of the model without ``n_remove`` heads, and the heads kept."""
    kept = heads_to_remove(importance, n_remove, order, seed)
    model = prune_model(translator.model, kept).eval()
    pruned = Translator(model, translator.src_tokenizer, translator.tgt_tokenizer, translator.info,
                        translator.device, translator.max_src_tokens)
    return pruned, kept


def prune_directory(model_dir: str | Path, out_dir: str | Path, valid_pairs: Sequence[tuple[str, str]],
                    n_heads: int | None = None, fraction: float | None = None, order: str = "importance",
                    seed: int = 1) -> Path:
    """Remove heads from the model in ``model_dir`` (see the module docstring) and save it to ``out_dir``."""
    translator = load(model_dir)
    if translator.config.positional == "relative":
        raise ValueError("models with relative position bias (T5) cannot be pruned: the bias table has one row "
                         "per head of the original model")
    importance = validation_importance(translator, valid_pairs)
    n_remove = heads_for(count_heads(importance), n_heads, fraction)
    pruned, kept = pruned_translator(translator, importance, n_remove, order, seed)
    info = {k: v for k, v in translator.info.items() if k not in ("training", "path")}
    info.update(model=pruned.config.to_dict(), head_importance=kept_importance(importance, kept),
                pruning={"from": str(ckpt.resolve_model_dir(model_dir)), "order": order, "seed": seed,
                         "heads_before": count_heads(importance), "heads_removed": n_remove, "kept": kept,
                         "importance_before": importance, "validation_pairs": len(valid_pairs)})
    return ckpt.save_checkpoint(out_dir, pruned.model, info,
                                lambda d: save_tokenizers(d, translator.src_tokenizer, translator.tgt_tokenizer))


def pruning_curve(translator: Translator, valid_pairs: Sequence[tuple[str, str]],
                  test_pairs: Sequence[tuple[str, str]], fractions: Sequence[float],
                  orders: Sequence[str] = ("importance", "random"), seeds: Sequence[int] = (1,), beam: int = 1,
                  progress=None) -> dict[str, Any]:
    """Test BLEU of the model with a growing fraction of its heads removed, in each order (greedy by default).
    The random order is drawn once per seed; its point holds the mean and each seed's BLEU and chrF.

    Returns {"importance": …, "points": [{order, fraction, heads_removed, heads_left, bleu, chrf,
    bleu_per_seed, chrf_per_seed}, …]}; ``progress(point)`` is called after each point."""
    importance = validation_importance(translator, valid_pairs)
    total = count_heads(importance)
    sources, refs = [s for s, _ in test_pairs], [t for _, t in test_pairs]
    points = []
    for order in orders:
        for fraction in fractions:
            n_remove = min(heads_for(total, None, fraction), total - sum(len(v) for v in importance.values()))
            results = []
            for seed in seeds if order == "random" else seeds[:1]:
                pruned, _ = pruned_translator(translator, importance, n_remove, order, seed)
                results.append(score(pruned.translate(sources, beam=beam), refs, translator.tgt_lang))
            point = {"order": order, "fraction": fraction, "heads_removed": n_remove,
                     "heads_left": total - n_remove, "bleu": sum(r.bleu for r in results) / len(results),
                     "chrf": sum(r.chrf for r in results) / len(results),
                     "bleu_per_seed": [r.bleu for r in results], "chrf_per_seed": [r.chrf for r in results]}
            points.append(point)
            if progress is not None:
                progress(point)
    return {"importance": importance, "heads": total, "points": points, "beam": beam, "random_seeds": list(seeds),
            "test_sentences": len(test_pairs), "validation_pairs": len(valid_pairs)}
