"""Extractive QA end to end: the span head, post-processing against brute force, a tiny model that overfits a
tiny set through `rosetta train`, starting from a Rosetta encoder run (its MLM head left behind) or MiniLM, and
`rosetta answer` (one question; a SQuAD file → the official prediction format)."""

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from rosetta import checkpoint as ckpt
from rosetta.cli import app
from rosetta.data.qa import char_span, make_windows, parse_squad, questions_of
from rosetta.data.tokenizer import Tokenizer
from rosetta.decode.loading import LoadedModel
from rosetta.decode.qa import QuestionAnswerer
from rosetta.models.encoder import EncoderModel, bert_config
from rosetta.tasks import build_task
from rosetta.train.recipe import load_recipe

runner = CliRunner()
PEOPLE = [("Ada", "Paris", "tea"), ("Bo", "Rome", "milk"), ("Cy", "Oslo", "juice"), ("Di", "Lima", "water")]


def tiny_squad() -> dict:
    """Two articles of made-up facts; every context is longer than one window of the recipe below."""
    data = []
    for a in range(2):
        people = PEOPLE[2 * a: 2 * a + 2]
        context = " ".join(f"{n} was born in {c} and drinks {d}." for n, c, d in people)
        qas = []
        for n, c, d in people:
            for q, ans in ((f"Where was {n} born?", c), (f"What does {n} drink?", d)):
                qas.append({"id": f"{n}-{ans}", "question": q,
                            "answers": [{"text": ans, "answer_start": context.index(f"{n} was") +
                                         (f"{n} was born in {c} and drinks {d}.").index(ans)}]})
        data.append({"title": f"t{a}", "paragraphs": [{"context": context, "qas": qas}]})
    return {"version": "1.1", "data": data}


RECIPE = """
[data]
task = "qa"
train_src = "{squad}"
valid_src = "{squad}"
max_length = 64
stride = 16
[tokenizer]
kind = "char"
[model]
{model}
[train]
max_steps = {steps}
batch_size = 16
lr = 3e-3
warmup_steps = 10
schedule = "cosine"
label_smoothing = 0.0
eval_every = 0
save_every = {steps}
log_every = 10
keep_last = 1
precision = "fp32"
device = "cpu"
threads = 1
seed = 1
"""
TINY = "d_model = 64\nn_heads = 4\nd_ff = 128\nn_encoder_layers = 2\ndropout = 0.0"


def write_recipe(tmp: Path, model: str = TINY, steps: int = 250) -> Path:
    squad = tmp / "tiny.json"
    squad.write_text(json.dumps(tiny_squad()), encoding="utf-8")
    recipe = tmp / "qa.toml"
    recipe.write_text(RECIPE.format(squad=squad, model=model, steps=steps), encoding="utf-8")
    return recipe


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory):
    before = torch.get_num_threads()
    tmp = tmp_path_factory.mktemp("qa")
    result = runner.invoke(app, ["train", str(write_recipe(tmp)), "--out", str(tmp / "run"), "--quiet"])
    torch.set_num_threads(before)
    assert result.exit_code == 0, result.output
    return tmp / "run"


def test_a_tiny_qa_model_overfits_a_tiny_set(qa_run):
    final = [json.loads(line) for line in (qa_run / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "final"][0]["final_metrics"]
    assert final["em"] == 100.0 and final["f1"] == 100.0 and final["questions"] == 8
    config = json.loads((qa_run / "model" / "config.json").read_text())
    assert config["task"] == "qa" and config["family"] == "encoder" and config["stride"] == 16
    assert ckpt.model_task(config) == "qa"


def brute_force(model, windows, question_count, max_len):
    """Best (s_i + e_j) over every window, every context-token pair i ≤ j < i + max_len; one window at a time,
    unpadded (so padding and batching are checked too)."""
    best = {}
    with torch.no_grad():
        for w in windows:
            ids = torch.tensor([w.ids])
            start, end = model.span_logits(model(ids, torch.ones_like(ids), torch.tensor([w.type_ids])))
            ctx = [t for t, o in enumerate(w.offsets) if o is not None]
            for i in ctx:
                for j in ctx:
                    if i <= j < i + max_len:
                        score = float(start[0, i] + end[0, j])
                        if w.question not in best or score > best[w.question][0]:
                            best[w.question] = (score, w, i, j)
    return [best[q] for q in range(question_count)]


def test_post_processing_equals_brute_force_over_all_windows():
    torch.manual_seed(0)
    questions = ["Who?", "where is it, and what for?", "Ω"]
    contexts = ["Ada Lovelace wrote the notes in 1843 in London.", "北京大学位于北京市海淀区，创办于1898年。" * 3,
                "x y"]
    tokenizer = Tokenizer.train_chars(questions + contexts)
    model = EncoderModel(bert_config(tokenizer.vocab_size, d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1),
                         span_head=True).eval()
    info = {"family": "encoder", "task": "qa", "max_length": 24, "stride": 6}
    qa = QuestionAnswerer(LoadedModel("encoder", model, tokenizer, info), batch_size=2)
    answers = qa.answer(questions, contexts, max_answer_len=5, top_k=1000)  # top_k ≥ tokens: exhaustive
    windows = qa.windows(questions, contexts)
    assert len({w.question for w in windows if w.question == 1}) == 1 and sum(w.question == 1 for w in windows) > 3
    for (_, w, i, j), answer, context in zip(brute_force(model, windows, 3, 5), answers, contexts):
        s, e = char_span(context, w, i, j)
        assert (answer.start, answer.end, answer.text) == (s, e, context[s:e])
        assert context[answer.start:answer.end] == answer.text and 0 < answer.score <= 1
    assert qa.answer(["Who?"], [""]) == [type(answers[0])("", 0.0, 0, 0)]  # nothing to point at
    with pytest.raises(ValueError, match="one context per question"):
        qa.answer(["a", "b"], ["c"])
    with pytest.raises(TypeError, match="lists of strings"):
        qa.answer("a", "b")


def test_question_answerer_refuses_a_model_without_span_head():
    model = EncoderModel(bert_config(10, d_model=8, n_heads=2, d_ff=16, n_encoder_layers=1), num_labels=2)
    with pytest.raises(ValueError, match='task = "qa"'):
        QuestionAnswerer(LoadedModel("encoder", model, None, {"family": "encoder", "num_labels": 2}))
    with pytest.raises(ValueError, match="no span head"):
        model.span_logits(torch.zeros(1, 2, 8))


def mlm_run(tmp: Path) -> tuple[Path, EncoderModel]:
    """A Rosetta encoder run as the MLM pretraining leaves it: config task "mlm", an MLM head, its tokenizer."""
    tokenizer = Tokenizer.train_chars([json.dumps(tiny_squad(), ensure_ascii=False)])
    model = EncoderModel(bert_config(tokenizer.vocab_size, d_model=48, n_heads=4, d_ff=96, n_encoder_layers=2,
                                     max_len=64), mlm_head=True)
    config = {"family": "encoder", "task": "mlm", "mlm_head": True, "model": model.config.to_dict(),
              "num_labels": 0, "tokenizer": "char"}
    ckpt.save_checkpoint(tmp / "mlm" / ckpt.FINAL_DIR, model, config, lambda d: tokenizer.save(d / "tokenizer.json"))
    return tmp / "mlm", model


def test_fine_tuning_starts_from_a_rosetta_encoder_run_without_its_mlm_head(tmp_path):
    run, pretrained = mlm_run(tmp_path)
    task = build_task(load_recipe(write_recipe(tmp_path, f'pretrained = "{run}"')))
    state, reference = task.model.state_dict(), pretrained.state_dict()
    encoder = [k for k in reference if not k.startswith("mlm.")]
    assert encoder and all(torch.equal(state[k], reference[k]) for k in encoder)
    assert not any(k.startswith("mlm.") for k in state) and state["qa_outputs.weight"].shape == (2, 48)
    assert task.tokenizer == Tokenizer.load(run / ckpt.FINAL_DIR)
    assert task.model_config()["tokenizer"] == "char" and task.model_config()["pretrained_weights"]
    scratch = build_task(load_recipe(write_recipe(tmp_path, f'pretrained = "{run}"\nload_weights = false')))
    assert scratch.model.config == task.model.config and scratch.windows == task.windows
    assert not torch.equal(scratch.model.embeddings.token.weight, reference["embeddings.token.weight"])
    with pytest.raises(FileNotFoundError, match="Rosetta encoder run"):
        build_task(load_recipe(write_recipe(tmp_path, 'pretrained = "/nonexistent/run"')))


def test_fine_tuning_starts_from_minilm(tmp_path):
    from rosetta.models.pretrained import load_pretrained, minilm_path

    task = build_task(load_recipe(write_recipe(tmp_path, 'pretrained = "all-MiniLM-L6-v2"')))
    reference = load_pretrained(minilm_path()).state_dict()
    state = task.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in reference.items() if not k.startswith("pooler."))
    assert all(w.ids[0] == 101 and w.ids[-1] == 102 for w in task.windows)  # [CLS] … [SEP]
    assert task.model_config()["tokenizer"] == "pretrained"


def test_answer_command_one_question(qa_run):
    context = " ".join(f"{n} was born in {c} and drinks {d}." for n, c, d in PEOPLE[:2])
    result = runner.invoke(app, ["answer", "--model", str(qa_run), "--context", context, "Where was Bo born?"])
    assert result.exit_code == 0, result.output
    text, span = result.output.splitlines()
    start = context.index("Rome")
    assert text == "Rome" and span.endswith(f"characters [{start}, {start + 4})")
    as_json = runner.invoke(app, ["answer", "--model", str(qa_run), "--context", context, "--json",
                                  "What does Ada drink?"])
    assert json.loads(as_json.output)["answer"] == "tea"


def test_answer_command_squad_file_writes_official_predictions(qa_run, tmp_path):
    squad = tmp_path / "tiny.json"
    squad.write_text(json.dumps(tiny_squad()), encoding="utf-8")
    out = tmp_path / "pred" / "predictions.json"
    result = runner.invoke(app, ["answer", "--model", str(qa_run), "--squad", str(squad), "--out", str(out)])
    assert result.exit_code == 0, result.output
    predictions = json.loads(out.read_text(encoding="utf-8"))
    golds = {q.id: q.answer_texts[0] for q in questions_of(parse_squad(tiny_squad()))}
    assert predictions == golds  # {question_id: answer_text}, the official format; the model overfit these
    assert "squad EM 100.00  F1 100.00  (8 questions)" in result.output


def test_answer_command_errors(qa_run, tmp_path):
    for args, message in [(["--context", "some text"], "needs a question"),
                          (["--context", "x", "--squad", "f.json", "q"], "exactly one of"),
                          (["--context", "   ", "q"], "context is empty"),
                          (["--squad", str(tmp_path / "missing.json")], "missing.json")]:
        result = runner.invoke(app, ["answer", "--model", str(qa_run), *args])
        assert result.exit_code == 2 and message in result.output, result.output
    result = runner.invoke(app, ["answer", "--model", "all-MiniLM-L6-v2", "--context", "x", "q"])
    assert result.exit_code == 2 and "without a span head" in result.output


def test_windows_for_training_target_the_gold_tokens():
    questions = questions_of(parse_squad(tiny_squad()))
    tokenizer = Tokenizer.train_chars([json.dumps(tiny_squad())])
    windows = make_windows(questions, tokenizer, max_length=64, stride=16)
    for w in windows:
        if w.start:
            q = questions[w.question]
            s, e = char_span(q.context, w, w.start, w.end)
            assert q.context[s:e] == q.answer_texts[0]
    assert {w.question for w in windows if w.start} == set(range(len(questions)))


def test_the_hf_yardstick_starts_from_the_same_model(tmp_path):
    """benchmarks/peer_qa.py's BertForQuestionAnswering, built from the same MiniLM directory with our head's
    initial weights copied in, computes the same start/end logits as our EncoderModel before any training."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "peer_qa.py"
    spec = importlib.util.spec_from_file_location("rosetta_bench_peer_qa", path)
    peer = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = peer
    spec.loader.exec_module(peer)
    from rosetta.data.qa import collate_windows
    from rosetta.models.pretrained import minilm_path

    task = build_task(load_recipe(write_recipe(tmp_path, 'pretrained = "all-MiniLM-L6-v2"')))
    hf = peer.HFSpanModel(minilm_path(), task.model).eval()
    ours = task.model.eval()
    batch = collate_windows(task.windows[:4], task.pad_id)
    with torch.no_grad():
        expected = hf.span_logits(hf(batch.ids, batch.mask, batch.type_ids))
        got = ours.span_logits(ours(batch.ids, batch.mask, batch.type_ids))
    real = batch.mask.bool()
    for a, b in zip(got, expected):
        assert torch.allclose(a[real], b[real], atol=1e-4)
    assert QuestionAnswerer(LoadedModel("encoder", hf, task.tokenizer, task.model_config())).answer(
        ["Where was Bo born?"], ["Bo was born in Rome."])[0].text


def test_attention_of_one_window_marks_question_and_context():
    questions, contexts = ["Who?"], ["Ada Lovelace wrote the notes in 1843 in London." * 2]
    tokenizer = Tokenizer.train_chars(questions + contexts)
    model = EncoderModel(bert_config(tokenizer.vocab_size, d_model=16, n_heads=2, d_ff=32, n_encoder_layers=2),
                         span_head=True).eval()
    qa = QuestionAnswerer(LoadedModel("encoder", model, tokenizer, {"max_length": 40, "stride": 8}))
    view = qa.attention("Who?", contexts[0], window=1)
    n = len(view["tokens"])
    assert view["question"] == (1, 5) and view["tokens"][1:5] == list("Who?")
    assert view["context"][1] == n - 1 and view["windows"] > 2
    assert len(view["attention"]) == 2 and view["attention"][0].shape == (2, n, n)
    assert torch.allclose(view["attention"][1].sum(-1), torch.ones(2, n), atol=1e-5)
    with pytest.raises(ValueError, match="window 99 does not exist"):
        qa.attention("Who?", contexts[0], window=99)
