"""The QA yardstick: Hugging Face's ``BertForQuestionAnswering`` from the same MiniLM weights, trained side by side.

    python benchmarks/peer_qa.py configs/xquad-en-minilm.toml --out runs/hf-xquad-en-minilm [--set …]

The peer gets everything the Rosetta run (``rosetta train configs/xquad-en-minilm.toml``) gets: the same
pretrained encoder (all-MiniLM-L6-v2 from the packaged directory ``minilm_path()``, loaded by ``transformers``),
the same span-head initialisation (Rosetta's freshly initialised ``qa_outputs`` copied in), the same windows and
batches (``QATask``), the same loss, AdamW, schedule, clipping and number of steps (``rosetta.train.Trainer``),
and the same evaluation (``QuestionAnswerer``'s post-processing, SQuAD v1.1 EM / F1 on the held-out articles).
Only the model's code differs. Writes OUT/peer_scores.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

from rosetta.models.pretrained import resolve_pretrained
from rosetta.tasks.qa import QATask
from rosetta.train import Trainer
from rosetta.train.recipe import load_recipe


class HFSpanModel(nn.Module):
    """``BertForQuestionAnswering`` behind ``EncoderModel``'s interface: ``forward(ids, mask, types)`` returns the
    two logits stacked (B, T, 2) and ``span_logits`` splits them, so the task, the Trainer and the
    ``QuestionAnswerer`` use it unchanged."""

    def __init__(self, path: Path, like: nn.Module):
        super().__init__()
        from transformers import BertForQuestionAnswering
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # "qa_outputs newly initialized": it is, then overwritten below
        self.bert = BertForQuestionAnswering.from_pretrained(str(path))
        with torch.no_grad():
            self.bert.qa_outputs.weight.copy_(like.qa_outputs.weight)
            self.bert.qa_outputs.bias.copy_(like.qa_outputs.bias)

    @property
    def qa_outputs(self) -> nn.Linear:
        return self.bert.qa_outputs

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        out = self.bert(input_ids=ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return torch.stack([out.start_logits, out.end_logits], -1)  # (B, T, 2)

    def span_logits(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        start, end = logits.unbind(-1)
        return start, end


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    recipe = load_recipe(args.recipe, args.overrides)
    if not recipe.model.pretrained:
        parser.error("the recipe must fine-tune a Hugging Face BERT ([model] pretrained = …)")
    task = QATask(recipe, args.data_dir)
    task.model = HFSpanModel(resolve_pretrained(recipe.model.pretrained), task.model)
    trainer = Trainer(recipe, task, args.out, progress=False)
    start = time.time()
    trainer.fit()
    final = [json.loads(line) for line in (args.out / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "final"][-1]
    scores = {"model": "transformers BertForQuestionAnswering", "steps": trainer.step,
              "train_seconds": final["train_seconds"], "wall_seconds": round(time.time() - start, 1),
              "parameters": sum(p.numel() for p in task.model.parameters()),
              "em": final["final_metrics"]["em"], "f1": final["final_metrics"]["f1"],
              "questions": final["final_metrics"]["questions"], "recipe": str(args.recipe)}
    (args.out / "peer_scores.json").write_text(json.dumps(scores, indent=2) + "\n")
    print(json.dumps(scores))
    return scores


if __name__ == "__main__":
    main()
