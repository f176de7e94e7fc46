"""Does a summariser (or any encoder–decoder) read its source? The mean NLL of the references given the true
sources, given the sources shuffled across documents, and given empty sources: a model that ignores its source
scores the three the same.

    python benchmarks/source_use.py --model runs/s15-self500 --corpus scitldr --split valid --documents 64

Teacher-forced, fp32, the first reference of each document, sources cut as the model cuts them.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

import rosetta
from rosetta.data.batching import collate_translation
from rosetta.data.summaries import load_summaries
from rosetta.train.losses import label_smoothed_nll


def mean_nll(model, sources: list[list[int]], targets: list[list[int]], batch: int = 16) -> float:
    """Mean negative log-likelihood (nats/token) of ``targets`` (ids without framing) given ``sources``: the
    training batches (``collate_translation``) and loss (``label_smoothed_nll``, no smoothing)."""
    cfg, total, count = model.config, 0.0, 0
    with torch.no_grad():
        for i in range(0, len(sources), batch):
            b = collate_translation(list(zip(sources[i:i + batch], targets[i:i + batch])), cfg.pad_id,
                                    cfg.bos_id, cfg.eos_id)
            _, nll, n = label_smoothed_nll(model(b.src, b.tgt_in), b.tgt_out, cfg.pad_id, 0.0)
            total, count = total + nll.item(), count + n
    return total / count


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--corpus", default="scitldr")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--documents", type=int, default=64)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    translator = rosetta.load(args.model)
    docs = load_summaries(args.corpus, args.split, args.data_dir)[: args.documents]
    sources = [translator.encode_source(d.text, warn=False) for d in docs]
    targets = translator.tgt_tokenizer.encode_batch([d.references[0] for d in docs])
    order = list(range(len(docs)))
    random.Random(args.seed).shuffle(order)
    empty = translator.encode_source("", warn=False)
    report = {"model": str(args.model), "documents": len(docs),
              "nll_true": mean_nll(translator.model, sources, targets),
              "nll_shuffled": mean_nll(translator.model, [sources[j] for j in order], targets),
              "nll_empty": mean_nll(translator.model, [empty] * len(docs), targets)}
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
