"""Using an extractive question-answering model: a question and a context in, the answer's characters out.

    qa = QuestionAnswerer.load("runs/xquad-en-minilm")
    qa.answer(["Who wrote it?"], ["It was written by Ada Lovelace in 1843."])
        → [Answer(text="Ada Lovelace", score=0.93, start=18, end=30)]        (context[start:end] == text)

How (the post-processing of BERT and Hugging Face's run_qa):

1. the context is cut into overlapping windows ([CLS] question [SEP] context slice [SEP], ``make_windows``);
2. the span head gives each token a start logit s_i and an end logit e_j;
3. in every window, the ``top_k`` best starts × the ``top_k`` best ends are candidates when both are context
   tokens, j ≥ i and the span has at most ``max_answer_len`` tokens; a candidate's rank is s_i + e_j, compared
   over all windows of the question;
4. the best candidate's characters are cut from the ORIGINAL context by the tokens' offsets (so Chinese gets its
   exact characters, English its original case and accents).

``score`` is p_start(i) · p_end(j), each a softmax over the window's context tokens and [CLS] (the "no answer
here" position), so a window that prefers [CLS] gives a low score.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rosetta.checkpoint import model_task
from rosetta.data.qa import Question, Window, char_span, collate_windows, make_windows, specials_of
from rosetta.decode.loading import LoadedModel, load_any

DEFAULT_MAX_LENGTH, DEFAULT_STRIDE = 384, 128


@dataclass
class Answer:
    """An answer: its text, score (0–1) and character span [start, end) in the context."""

    text: str
    score: float
    start: int
    end: int

    def to_dict(self) -> dict[str, Any]:
        return {"answer": self.text, "score": self.score, "start": self.start, "end": self.end}


def best_span(start: torch.Tensor, end: torch.Tensor, window: Window, max_answer_len: int, top_k: int
              ) -> tuple[float, int, int] | None:
    """(s_i + e_j, i, j) of the best valid span of one window (logits (T,) each), or ``None``."""
    usable = torch.tensor([o is not None for o in window.offsets])  # (T,) context tokens only
    s, e = start[: len(usable)].masked_fill(~usable, -torch.inf), end[: len(usable)].masked_fill(~usable, -torch.inf)
    k = min(top_k, int(usable.sum()))
    best = None
    for i in s.topk(k).indices.tolist():
        for j in e.topk(k).indices.tolist():
            if j < i or j - i + 1 > max_answer_len:
                continue
            rank = float(s[i] + e[j])
            if best is None or rank > best[0]:
                best = (rank, i, j)
    return best


def span_probability(start: torch.Tensor, end: torch.Tensor, window: Window, i: int, j: int) -> float:
    """p_start(i) · p_end(j), softmax over [CLS] and the window's context tokens."""
    keep = torch.tensor([t == 0 or o is not None for t, o in enumerate(window.offsets)])
    ps = start[: len(keep)].masked_fill(~keep, -torch.inf).softmax(-1)
    pe = end[: len(keep)].masked_fill(~keep, -torch.inf).softmax(-1)
    return float(ps[i] * pe[j])


class QuestionAnswerer:
    """A loaded QA model: ``loaded`` is a ``LoadedModel`` of an encoder with a span head (task "qa").

    ``max_length`` / ``stride`` (tokens per window / tokens shared by neighbouring windows) default to the
    values the model was trained with (config.json), else 384 / 128."""

    def __init__(self, loaded: LoadedModel, max_length: int | None = None, stride: int | None = None,
                 batch_size: int = 32):
        if loaded.family != "encoder" or getattr(loaded.model, "qa_outputs", None) is None:
            task = model_task({**loaded.info, "family": loaded.family})
            raise ValueError(f"{loaded.info.get('path', 'this model')} is a {loaded.family} model (task {task!r}) "
                             'without a span head; a QA model is an encoder trained with task = "qa" '
                             "(e.g. configs/xquad-en-minilm.toml)")
        self.loaded, self.model, self.tokenizer, self.info = loaded, loaded.model, loaded.tokenizer, loaded.info
        self.max_length = max_length or self.info.get("max_length") or DEFAULT_MAX_LENGTH
        self.stride = stride if stride is not None else self.info.get("stride", DEFAULT_STRIDE)
        self.max_query_length = self.info.get("max_query_length", 64)
        self.batch_size = batch_size
        self.pad_id = specials_of(self.tokenizer).pad

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu", **options: Any) -> QuestionAnswerer:
        """Load a trained QA run or model directory (see ``rosetta.decode.loading.load_any``)."""
        return cls(load_any(directory, device), **options)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def windows(self, questions: list[str], contexts: list[str]) -> list[Window]:
        """The model inputs of each (question, context) pair (``Window.question`` = index of the pair)."""
        if isinstance(questions, str) or isinstance(contexts, str):
            raise TypeError("questions and contexts are lists of strings (one context per question)")
        if len(questions) != len(contexts):
            raise ValueError(f"{len(questions)} questions but {len(contexts)} contexts: give one context per question")
        for name, texts in (("question", questions), ("context", contexts)):
            bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
            if bad:
                raise TypeError(f"{name} {bad[0]} is a {type(texts[bad[0]]).__name__}, not a string")
        items = [Question(str(i), q, c) for i, (q, c) in enumerate(zip(questions, contexts))]
        return make_windows(items, self.tokenizer, self.max_length, self.stride, self.max_query_length, targets=False)

    @torch.no_grad()
    def logits(self, windows: list[Window]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Start and end logits (T,) of every window, in float32 on the CPU, batched ``batch_size`` at a time."""
        out = []
        for b in range(0, len(windows), self.batch_size):
            batch = collate_windows(windows[b:b + self.batch_size], self.pad_id)
            ids, mask, types = (x.to(self.device) for x in (batch.ids, batch.mask, batch.type_ids))
            start, end = self.model.span_logits(self.model(ids, mask, types))
            out.extend(zip(start.float().cpu(), end.float().cpu()))
        return out

    def answer(self, questions: list[str], contexts: list[str], max_answer_len: int = 30,
               top_k: int = 20) -> list[Answer]:
        """The best answer to each question in its context (an empty answer, score 0, when none is possible)."""
        if max_answer_len < 1 or top_k < 1:
            raise ValueError(f"max_answer_len and top_k must be at least 1, got {max_answer_len} and {top_k}")
        windows = self.windows(questions, contexts)
        best: dict[int, tuple[float, Window, int, int, torch.Tensor, torch.Tensor]] = {}
        for w, (start, end) in zip(windows, self.logits(windows)):
            found = best_span(start, end, w, max_answer_len, top_k)
            if found and (w.question not in best or found[0] > best[w.question][0]):
                best[w.question] = (found[0], w, found[1], found[2], start, end)
        answers = []
        for qi, context in enumerate(contexts):
            if qi not in best:
                answers.append(Answer("", 0.0, 0, 0))
                continue
            _, w, i, j, start, end = best[qi]
            s, e = char_span(context, w, i, j)
            answers.append(Answer(context[s:e], span_probability(start, end, w, i, j), s, e))
        return answers

    @torch.no_grad()
    def attention(self, question: str, context: str, window: int = 0) -> dict[str, Any]:
        """One window's tokens and every layer's attention (H, T, T), for the question → context view.

        Returns {"tokens", "question" and "context": [first, last) token ranges, "attention": list of (H, T, T)
        tensors, "windows": how many windows the context needs}."""
        windows = self.windows([question], [context])
        if not 0 <= window < len(windows):
            raise ValueError(f"window {window} does not exist: this context has {len(windows)} window(s)")
        w = windows[window]
        batch = collate_windows([w], self.pad_id)
        _, weights = self.model(batch.ids.to(self.device), batch.mask.to(self.device),
                                batch.type_ids.to(self.device), return_attention=True)
        ctx = [t for t, o in enumerate(w.offsets) if o is not None]
        n_question = w.type_ids.index(1) - 2 if 1 in w.type_ids else len(w.ids) - 2
        tokens = [self.tokenizer.id_to_token(i) or f"<{i}>" for i in w.ids]
        return {"tokens": tokens, "question": (1, 1 + n_question),
                "context": (ctx[0], ctx[-1] + 1) if ctx else (len(w.ids) - 1, len(w.ids) - 1),
                "attention": [a[0].float().cpu() for a in weights], "windows": len(windows)}
