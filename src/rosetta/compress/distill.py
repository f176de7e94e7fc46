"""Knowledge distillation for translation (Kim & Rush, 2016, "Sequence-Level Knowledge Distillation").

    sequence-level   a trained teacher translates the training sources (beam search); the student is
                     trained on (source, teacher translation) pairs instead of (source, reference): it learns
                     the teacher's single mode, which greedy decoding then finds more easily
    word-level       optional: the loss also pulls the student's next-token distribution towards the teacher's
                     at every target position,  L = L_NLL + α · Σ_t KL(p_T(· | y<t, x) ‖ p_S(· | y<t, x))

Translating the training set is the long part, so it is cached in chunks under OUT/teacher/: each chunk file
is written atomically (a run killed at any moment, even by ``kill -9``, loses no finished chunk) and carries the
sha256 of its sources, so a rerun translates only what is missing, then writes OUT/teacher/translations.txt (one line a
source). meta.json records the teacher (its weights' sha256) and the beam: a cache made by another teacher is
refused, not mixed in.

Word-level KD compares distributions over one vocabulary, so the student then uses the teacher's tokenizers.
Validation BLEU is computed against the real references.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rosetta import checkpoint as ckpt
from rosetta.decode.translator import Translator
from rosetta.tasks.translation import TranslationTask
from rosetta.train import label_smoothed_nll
from rosetta.train.recipe import Recipe

CACHE_DIR = "teacher"
META_FILE = "meta.json"
TRANSLATIONS_FILE = "translations.txt"


def word_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
                 pad_id: int | None) -> torch.Tensor:
    """Σ over non-pad target positions of KL(p_T ‖ p_S) = Σ_v p_T(v) (log p_T(v) − log p_S(v)).

    Logits (B, T, V) of the student and the teacher at the same positions, target (B, T) (for the padding).
    Computed in float32 whatever the autocast dtype; the gradient flows into the student only."""
    log_s = F.log_softmax(student_logits.float(), dim=-1)
    log_t = F.log_softmax(teacher_logits.detach().float(), dim=-1)
    kl = (log_t.exp() * (log_t - log_s)).sum(dim=-1)  # (B, T)
    return kl[target != pad_id].sum() if pad_id is not None else kl.sum()


def _sha256(texts: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode("utf-8")).hexdigest()


def _read_chunk(path: Path, sources: Sequence[str]) -> list[str] | None:
    """A finished chunk's translations, or None when the file is missing, unreadable or for other sources."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("sources_sha256") != _sha256(sources):
        return None
    done = data.get("translations")
    return done if isinstance(done, list) and len(done) == len(sources) else None


def _check_meta(cache_dir: Path, meta: dict[str, Any]) -> None:
    """Write meta.json for a new cache; refuse a cache made with another teacher, beam or chunk size."""
    path = cache_dir / META_FILE
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != meta:
            diff = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
            raise ValueError(f"{cache_dir} holds teacher translations made differently ({', '.join(diff)} "
                             f"differ: {path} says { {k: old.get(k) for k in diff} }, this run "
                             f"{ {k: meta.get(k) for k in diff} }); use another --out or delete {cache_dir}")
    else:
        ckpt.atomic_write_text(path, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")


def teacher_translations(sources: Sequence[str], translate: Callable[[list[str]], list[str]], cache_dir: str | Path,
                         chunk_size: int = 1000, meta: dict[str, Any] | None = None,
                         progress: Callable[[int, int], None] | None = None) -> list[str]:
    """``translate`` every source, chunk by chunk, through the cache in ``cache_dir`` (module docstring).

    Chunks already on disk are read, not translated again. ``progress(done, total)`` is called per chunk.
    Returns the translations in source order and writes them to cache_dir/translations.txt."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    ckpt.remove_leftovers(cache_dir)  # a chunk file half written when a run was killed
    _check_meta(cache_dir, {**(meta or {}), "chunk_size": chunk_size, "sources": len(sources),
                            "sources_sha256": _sha256(sources)})
    out: list[str] = []
    n_chunks = -(-len(sources) // chunk_size)
    for i in range(n_chunks):
        chunk = list(sources[i * chunk_size : (i + 1) * chunk_size])
        path = cache_dir / f"chunk_{i:06d}.json"
        done = _read_chunk(path, chunk)
        if done is None:
            done = list(translate(chunk))
            if len(done) != len(chunk):
                raise RuntimeError(f"the teacher returned {len(done)} translations for {len(chunk)} sources")
            record = {"sources_sha256": _sha256(chunk), "translations": done}
            ckpt.atomic_write_text(path, json.dumps(record, ensure_ascii=False) + "\n")
        out.extend(done)
        if progress is not None:
            progress(i + 1, n_chunks)
    lines = (t.replace("\n", " ") for t in out)
    ckpt.atomic_write_text(cache_dir / TRANSLATIONS_FILE, "".join(line + "\n" for line in lines))
    return out


class DistillationTask(TranslationTask):
    """A translation task whose training targets are the teacher's translations (validation keeps the
    references), with the optional word-level KD term in its loss (module docstring)."""

    def __init__(self, recipe: Recipe, teacher: Translator, teacher_dir: str | Path, data_dir: Path | None = None,
                 run_dir: Path | None = None, resume: bool = False, word_kd: float = 0.0, beam: int | None = None,
                 chunk_size: int = 1000, progress: Callable[[int, int], None] | None = None):
        if word_kd < 0:
            raise ValueError(f"--word-kd is the weight α of the KL term, at least 0; got {word_kd}")
        check_direction(teacher, recipe)
        self.teacher, self.teacher_dir, self.word_kd = teacher, str(teacher_dir), word_kd
        self.chunk_size, self.progress = chunk_size, progress
        self.beam = beam or teacher.decode_options.beam
        self.cache_dir = Path(run_dir) / CACHE_DIR if run_dir else None
        teacher.model.eval().requires_grad_(False)
        super().__init__(recipe, data_dir, run_dir, resume)

    def _load_data(self, data_dir: Path | None) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        train_pairs, valid_pairs = super()._load_data(data_dir)
        if self.cache_dir is None:
            raise ValueError("distillation needs a run directory (--out) for its teacher-translation cache")
        sources = [s for s, _ in train_pairs]
        # the teacher's weights by their checksum: a retrained teacher in the same directory is another teacher
        manifest = json.loads((Path(self.teacher_dir) / ckpt.MANIFEST_FILE).read_text(encoding="utf-8"))
        meta = {"teacher_weights_sha256": manifest[ckpt.MODEL_FILE]["sha256"], "beam": self.beam}
        translations = teacher_translations(sources, lambda chunk: self.teacher.translate(chunk, beam=self.beam),
                                            self.cache_dir, self.chunk_size, meta, self.progress)
        return list(zip(sources, translations)), valid_pairs

    def _tokenizers(self, train_pairs: list[tuple[str, str]], run_dir: Path | None, resume: bool):
        if self.word_kd > 0:  # one vocabulary for p_T and p_S
            return self.teacher.src_tokenizer, self.teacher.tgt_tokenizer
        return super()._tokenizers(train_pairs, run_dir, resume)

    def to(self, device: torch.device) -> None:
        super().to(device)
        self.teacher.model.to(device)

    def loss(self, model: nn.Module, batch, label_smoothing: float):
        """Label-smoothed NLL on the teacher's translations, + α · Σ KL(teacher ‖ student) while training."""
        src, tgt_in, tgt_out = batch.src.to(self.device), batch.tgt_in.to(self.device), batch.tgt_out.to(self.device)
        logits, pad_id = model(src, tgt_in), self.config.pad_id
        loss, nll, count = label_smoothed_nll(logits, tgt_out, pad_id, label_smoothing)
        if self.word_kd > 0 and model.training:
            with torch.no_grad():
                teacher_logits = self.teacher.model(src, tgt_in)
            loss = loss + self.word_kd * word_kd_loss(logits, teacher_logits, tgt_out, pad_id)
        return loss, nll, count

    def model_config(self) -> dict[str, Any]:
        return {**super().model_config(), "distillation": {
            "teacher": self.teacher_dir, "beam": self.beam, "word_kd": self.word_kd,
            "teacher_parameters": sum(p.numel() for p in self.teacher.model.parameters())}}


def check_direction(teacher: Translator, recipe: Recipe) -> None:
    """The teacher must translate the recipe's direction (when both say theirs)."""
    for side in ("src_lang", "tgt_lang"):
        mine, theirs = getattr(recipe.data, side), teacher.info.get(side)
        if theirs is not None and mine != theirs:
            raise ValueError(f"the teacher translates {teacher.info.get('src_lang')}→{teacher.info.get('tgt_lang')} "
                             f"but the recipe is {recipe.data.src_lang}→{recipe.data.tgt_lang}; "
                             "give a teacher for the recipe's direction")


def distill(teacher_dir: str | Path, recipe: Recipe, out: str | Path, word_kd: float = 0.0, beam: int | None = None,
            chunk_size: int = 1000, data_dir: Path | None = None, resume: bool = False, quiet: bool = False,
            progress: Callable[[int, int], None] | None = None) -> Path:
    """Translate the recipe's training sources with the teacher (cached in OUT/teacher/), train the recipe's
    student on them with the Trainer, and return the student's model directory (OUT/model)."""
    from rosetta.decode.translator import load
    from rosetta.train import Trainer

    teacher_path = ckpt.resolve_model_dir(teacher_dir)
    teacher = load(teacher_path)
    task = DistillationTask(recipe, teacher, teacher_path, data_dir, Path(out), resume, word_kd, beam, chunk_size,
                            progress)
    return Trainer(recipe, task, out, progress=not quiet).fit(resume=resume)
