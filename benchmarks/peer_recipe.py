"""The quality yardstick on this machine: Hugging Face Marian trained by Rosetta's recipe, scored like Rosetta.

    python benchmarks/peer_recipe.py configs/tatoeba-en-zh.toml --out runs/marian-tatoeba \
        [--set train.lr=7e-4 …] [--post-ln-lr 7e-4] [--beam 4]

Issue 3's yardstick ("HF Marian of that size, trained 15 minutes on 2 cores") was measured on another machine
and on its own held-out pairs. This script repeats it here, side by side with a Rosetta run of the same recipe:
``MarianMTModel`` built from a config of the recipe's sizes (d_model, heads, d_ff, layers, vocabularies and
their sharing, dropout; Marian's own layout: post-LN, sinusoidal positions, embeddings × √d, tied output), trained by
``rosetta.train.Trainer`` on the *same* token batches, tokenizer, label-smoothed loss, Adam, clipping and
wall-clock budget, then decoded with ``transformers``' ``generate`` (greedy and beam) on the recipe's test split
and scored by the same sacreBLEU call as ``rosetta evaluate``.

Post-LN Marian does not train at the Pre-LN recipe's peak learning rate (it diverges early), so its learning rate
is set by ``--post-ln-lr`` (default 7e-4, fairseq's Post-LN range); everything else is the recipe's.
Writes OUT/peer_scores.json; the run directory's metrics.jsonl has the loss curve.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

from rosetta.data.batching import pad
from rosetta.nn.config import ModelConfig
from rosetta.tasks.metrics import score
from rosetta.tasks.translation import TranslationTask, load_pairs
from rosetta.train import Trainer
from rosetta.train.recipe import load_recipe


class MarianSeq2Seq(nn.Module):
    """``MarianMTModel`` behind Rosetta's ``forward(src, tgt_in) → logits`` interface."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        from transformers import MarianConfig, MarianMTModel
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        self.pad_id = config.pad_id
        self.marian = MarianMTModel(MarianConfig(
            vocab_size=config.src_vocab_size, decoder_vocab_size=config.tgt_vocab_size, d_model=config.d_model,
            encoder_layers=config.n_encoder_layers,
            decoder_layers=config.n_decoder_layers, encoder_attention_heads=config.n_heads,
            decoder_attention_heads=config.n_heads, encoder_ffn_dim=config.d_ff, decoder_ffn_dim=config.d_ff,
            activation_function="relu", scale_embedding=True, dropout=config.dropout,
            attention_dropout=config.attention_dropout, activation_dropout=config.activation_dropout,
            pad_token_id=config.pad_id, eos_token_id=config.eos_id, bos_token_id=config.bos_id,
            decoder_start_token_id=config.bos_id, forced_eos_token_id=None, max_position_embeddings=config.max_len,
            share_encoder_decoder_embeddings=config.share_embeddings, tie_word_embeddings=config.tie_output))

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.marian(input_ids=src, attention_mask=src.ne(self.pad_id), decoder_input_ids=tgt_in,
                           decoder_attention_mask=tgt_in.ne(self.pad_id)).logits


class MarianTask(TranslationTask):
    """The recipe's translation task with Marian as the model (validation loss only: BLEU comes at the end)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        torch.manual_seed(self.recipe.train.seed)
        self.model = MarianSeq2Seq(self.config)

    def evaluate(self, model: nn.Module, full: bool) -> dict[str, float]:
        return super().evaluate(model, full=False)


@torch.inference_mode()
def translate(task: TranslationTask, model: MarianSeq2Seq, sources: list[str], beam: int,
              batch_size: int = 64) -> list[str]:
    """Marian's ``generate`` with the recipe's length limit (ratio · source length + offset)."""
    dec = task.recipe.decode
    model.eval()
    out: list[str] = []
    ids = [s + [task.config.eos_id] for s in task.src_tok.encode_batch(sources)]
    for start in range(0, len(ids), batch_size):
        src = pad(ids[start : start + batch_size], task.config.pad_id)
        max_new = min(int(dec.max_len_ratio * src.shape[1]) + dec.max_len_offset, task.config.max_len - 1)
        gen = model.marian.generate(input_ids=src, attention_mask=src.ne(task.config.pad_id), num_beams=beam,
                                    do_sample=False, max_new_tokens=max_new, length_penalty=dec.length_penalty,
                                    early_stopping=True)
        for row in gen[:, 1:].tolist():  # gen[:, 0] is the decoder start token
            row = [t for t in row if t != task.config.pad_id]
            if task.config.eos_id in row:
                row = row[: row.index(task.config.eos_id)]
            out.append(task.tgt_tok.decode(row))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--post-ln-lr", type=float, default=7e-4)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--beams", type=int, nargs="+", default=[4, 1])
    args = parser.parse_args()

    overrides = [f"train.lr={args.post_ln_lr}", "model.norm_first=false", "train.bleu_every=0",
                 "train.average_last=1", "train.save_every=0", *args.overrides]
    recipe = load_recipe(args.recipe, overrides)
    task = MarianTask(recipe, data_dir=args.data_dir, run_dir=args.out)
    print(f"Marian: {sum(p.numel() for p in task.model.parameters()):,} parameters")
    Trainer(recipe, task, args.out, progress=False).fit()

    pairs = load_pairs(recipe, args.split, args.data_dir)
    sources, refs = [s for s, _ in pairs], [t for _, t in pairs]
    results = {"recipe": str(args.recipe), "overrides": overrides, "split": args.split, "pairs": len(pairs)}
    for beam in args.beams:
        start = time.perf_counter()
        hyps = translate(task, task.model, sources, beam)
        scores = score(hyps, refs, recipe.data.tgt_lang)
        results[f"beam{beam}"] = {**scores.to_dict(), "decode_seconds": round(time.perf_counter() - start, 1)}
        print(f"beam {beam}: {scores}")
    (args.out / "peer_scores.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
