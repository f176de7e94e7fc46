"""Text-to-text (T5, Raffel et al. 2020): one encoder–decoder, several tasks, told apart by a prefix in the input.

    "translate English to Chinese: I am a student."  ─┐                      ┌─ "我是学生。"
    "translate German to English: Ein Hund läuft."   ─┴─ one model, one vocabulary ─┴─ "A dog runs."

A recipe lists the tasks as ``[[data.mixture]]`` tables (``corpus``, ``src_lang``, ``tgt_lang``, ``prefix``).
Training mixes their pairs in proportion to their sizes (T5's "examples-proportional mixing"); one joint
vocabulary covers every language. Validation reports each task's BLEU (``bleu_<corpus>``, decoded with its
prefix and scored with its target language's tokenizer) and their mean as ``bleu``, which picks the best
checkpoint. The saved model is a translation model whose config.json lists the tasks, so ``rosetta.load``,
``rosetta translate`` (write the prefix) and ``rosetta evaluate --corpus NAME`` (adds the prefix) work on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from rosetta.data import corpora
from rosetta.data.registry import REGISTRY, get_corpus
from rosetta.tasks.translation import TranslationTask
from rosetta.train.recipe import Recipe

MIXTURE_KEYS = {"corpus", "src_lang", "tgt_lang", "prefix"}


def check_mixture(mixture: list[dict[str, Any]] | None) -> list[dict[str, str]]:
    """The recipe's ``[[data.mixture]]`` entries, validated: each names a corpus, its two languages and a prefix."""
    if not mixture:
        raise ValueError('task "text-to-text" needs [[data.mixture]] tables, each with corpus, src_lang, '
                         'tgt_lang and prefix (e.g. prefix = "translate English to Chinese: ")')
    entries = []
    for i, entry in enumerate(mixture):
        missing, unknown = MIXTURE_KEYS - set(entry), set(entry) - MIXTURE_KEYS
        if missing or unknown:
            raise ValueError(f"[[data.mixture]] #{i + 1}: missing {sorted(missing)}, unknown {sorted(unknown)}; "
                             f"each entry has exactly {sorted(MIXTURE_KEYS)}")
        entries.append({k: str(entry[k]) for k in sorted(MIXTURE_KEYS)})
    prefixes = [e["prefix"] for e in entries]
    if len(set(prefixes)) != len(prefixes):
        raise ValueError(f"[[data.mixture]] prefixes must differ (they tell the tasks apart), got {prefixes}")
    return entries


def task_for(info: dict[str, Any], corpus: str) -> dict[str, str]:
    """The task of a saved text-to-text model for evaluating on ``corpus`` (its prefix goes on every source): the
    one trained on ``corpus``; else, for tasks that name no corpus (a Hugging Face directory's
    ``task_specific_params``: t5-small's, an exported run's), the one task whose two languages ``corpus`` has."""
    tasks = info.get("tasks", [])
    for entry in tasks:
        if entry["corpus"] == corpus:
            return entry
    languages = set(get_corpus(corpus).languages) if corpus in REGISTRY else set()
    fits = [e for e in tasks if e["corpus"] is None and {e["src_lang"], e["tgt_lang"]} <= languages]
    if len(fits) == 1:
        return fits[0]
    known = [e["corpus"] or f"{e['src_lang']}→{e['tgt_lang']}" for e in tasks]
    raise ValueError(f"this text-to-text model was not trained on {corpus!r}, and {len(fits)} of its tasks that name "
                     f"no corpus fit that corpus's languages (one must); its tasks: {known}")


class TextToTextTask(TranslationTask):
    """Several translation tasks in one model (see the module docstring); the rest is ``TranslationTask``'s."""

    def __init__(self, recipe: Recipe, data_dir: Path | None = None, run_dir: Path | None = None,
                 resume: bool = False):
        self.mixture = check_mixture(recipe.data.mixture)
        if not recipe.tokenizer.joint:
            raise ValueError("text-to-text needs one joint vocabulary (tokenizer.joint = true): every task's "
                             "source and target go through the same embedding table")
        super().__init__(recipe, data_dir, run_dir, resume)

    def _load_pairs(self, entry: dict[str, str], split: str, data_dir: Path | None) -> list[tuple[str, str]]:
        d = self.recipe.data
        pairs = corpora.load_parallel(entry["corpus"], split, data_dir, src_lang=entry["src_lang"],
                                      tgt_lang=entry["tgt_lang"], seed=d.seed, clean=d.clean)
        return [(entry["prefix"] + s, t) for s, t in pairs if s.strip() and t.strip()]

    def _load_data(self, data_dir: Path | None) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Training pairs of every task, concatenated (proportional mixing: the batches shuffle them); the
        validation pairs task after task, with ``self.valid_spans`` saying where each task's are."""
        d = self.recipe.data
        train, valid, self.valid_spans = [], [], []
        for entry in self.mixture:
            pairs = self._load_pairs(entry, "train", data_dir)
            train += pairs[: d.max_train_examples] if d.max_train_examples else pairs
            pairs = self._load_pairs(entry, "valid", data_dir)
            pairs = pairs[: d.valid_size] if d.valid_size else pairs
            self.valid_spans.append((len(valid), len(valid) + len(pairs)))
            valid += pairs
        return train, valid

    def evaluate(self, model: nn.Module, full: bool) -> dict[str, float]:
        """Validation loss over every task; with ``full`` each task's greedy BLEU and chrF, and the mean BLEU."""
        metrics = super().evaluate(model, full=False)
        if full:
            n, bleus = self.recipe.train.bleu_sentences, []
            for entry, (start, end) in zip(self.mixture, self.valid_spans):
                stop = min(end, start + n)
                result = self.greedy_scores(model, self.valid_ids[start:stop], self.valid_pairs[start:stop],
                                            entry["tgt_lang"])
                metrics[f"bleu_{entry['corpus']}"] = result.bleu
                metrics[f"chrf_{entry['corpus']}"] = result.chrf
                bleus.append(result.bleu)
            metrics["bleu"] = sum(bleus) / len(bleus)
        return metrics

    def model_config(self) -> dict[str, Any]:
        config = super().model_config()
        config.update(src_lang=None, tgt_lang=None, corpus=None, tasks=self.mixture)
        return config
