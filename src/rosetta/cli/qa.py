"""``rosetta answer``: extractive question answering with a model trained with task "qa".

    rosetta answer --model RUN --context FILE|TEXT "question"      the answer, its score, its character span
    rosetta answer --model RUN --squad DATA.json --out PRED.json   every question of a SQuAD-format file, in the
                                                                   official prediction format {id: answer text}
    rosetta answer --model RUN --corpus xquad-zh                   EM / F1 on a corpus's held-out articles

With ``--squad`` or ``--corpus`` the gold answers are scored too (SQuAD v1.1 EM / F1 for English, CMRC 2018's
for Chinese: ``--metric`` overrides the choice made from the corpus or the text).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from rosetta.cli.app import DataDir, app, fail, load_model

CHUNK = 64  # questions per model call


def _context(value: str) -> str:
    """``--context``: a readable file's text, else the text itself."""
    path = Path(value)
    try:
        if len(value) < 4096 and path.is_file():
            return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        fail(f"{path} is not UTF-8 text; convert it, e.g. iconv -t UTF-8")
    return value


def _questions(squad: Path | None, corpus: str | None, split: str, data_dir: Path | None, seed: int):
    """(questions, language guess) of a SQuAD file or a corpus split."""
    from rosetta.data.qa import load_qa, qa_language, questions_of, read_squad

    try:
        if squad is not None:
            qs = questions_of(read_squad(squad))
            text = "".join(q.context for q in qs[:50])
            cjk = sum("\u4e00" <= ch <= "\u9fff" for ch in text)
            return qs, "zh" if cjk > 0.2 * max(len(text), 1) else "en"
        splits = load_qa(corpus, data_dir, seed)
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    if split not in splits:
        fail(f"split {split!r} does not exist; choose one of {', '.join(splits)}")
    return questions_of(splits[split]), qa_language(corpus)


def _answer_many(qa, questions, out: Path | None, metric: str | None, language: str, max_answer_len: int) -> None:
    from rosetta.tasks.qa_metrics import metric_for, qa_scores

    predictions = {}
    for start in range(0, len(questions), CHUNK):
        chunk = questions[start:start + CHUNK]
        answers = qa.answer([q.question for q in chunk], [q.context for q in chunk], max_answer_len)
        predictions.update({q.id: a.text for q, a in zip(chunk, answers)})
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(predictions, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        typer.echo(f"{len(predictions)} predictions → {out}")
    golds = {q.id: q.answer_texts for q in questions if q.answers}
    if golds:
        name = metric or metric_for(language)
        scores = qa_scores(predictions, golds, name)
        typer.echo(f"{name} EM {scores['em']:.2f}  F1 {scores['f1']:.2f}  ({len(golds)} questions)")


@app.command("answer")
def answer(
    question: str = typer.Argument(None, help="The question (with --context)."),
    model: Path = typer.Option(..., "--model", help="A QA run or model directory (trained with task = \"qa\")."),
    context: str = typer.Option(None, "--context", help="The context: a UTF-8 file, or the text itself."),
    squad: Path = typer.Option(None, "--squad", help="Answer every question of a SQuAD-format JSON file."),
    corpus: str = typer.Option(None, "--corpus", help="Answer a QA corpus's split: xquad-en, xquad-zh, xquad-de, "
                                                       "cmrc2018 (split by article as in training), "
                                                       "drcd (train only); join with +."),
    split: str = typer.Option("test", "--split", help="With --corpus: test or train."),
    seed: int = typer.Option(1, "--seed", help="With --corpus: the split's seed (the recipe's data.seed)."),
    out: Path = typer.Option(None, "--out", help="With --squad/--corpus: write {question_id: answer} here."),
    metric: str = typer.Option(None, "--metric", help="squad or cmrc (default: by language)."),
    max_answer_len: int = typer.Option(30, "--max-answer-len", help="Longest answer, in tokens."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object: answer, score, start, end."),
    device: str = typer.Option("cpu", "--device"),
    data_dir: Path = DataDir,
) -> None:
    """Answer a question from a context, or every question of a SQuAD file or corpus (EM / F1 when gold)."""
    from rosetta.decode.qa import QuestionAnswerer

    modes = sum(x is not None for x in (context, squad, corpus))
    if modes != 1:
        fail('give exactly one of --context (with a "question"), --squad FILE or --corpus NAME')
    if context is not None and not question:
        fail('--context needs a question: rosetta answer --model RUN --context FILE|TEXT "question"')
    if metric not in (None, "squad", "cmrc"):
        fail(f"--metric {metric!r}: choose squad or cmrc")
    if max_answer_len < 1:
        fail("--max-answer-len must be at least 1")
    try:
        qa = QuestionAnswerer(load_model(model, device))
    except ValueError as e:
        fail(str(e))
    if context is None:
        questions, language = _questions(squad, corpus, split, data_dir, seed)
        _answer_many(qa, questions, out, metric, language, max_answer_len)
        return
    text = _context(context)
    if not text.strip():
        fail("the context is empty")
    result = qa.answer([question], [text], max_answer_len)[0]
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        typer.echo(f"{result.text}\nscore {result.score:.3f}  characters [{result.start}, {result.end})")
