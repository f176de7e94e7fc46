"""Translation end to end through the ``rosetta`` command: train on a tiny made-up corpus until it overfits,
then translate, evaluate and inspect it — including the bad inputs a user will feed it."""

import json

import pytest
from typer.testing import CliRunner

import rosetta
from rosetta.cli import app

# Made-up sentence pairs (never corpus text): a tiny English→Chinese "corpus" the model must memorise.
PAIRS = [
    ("I am a student.", "我是学生。"),
    ("You are a teacher.", "你是老师。"),
    ("He is a doctor.", "他是医生。"),
    ("She likes tea.", "她喜欢茶。"),
    ("We like music.", "我们喜欢音乐。"),
    ("They read books.", "他们看书。"),
    ("The cat is black.", "猫是黑色的。"),
    ("The dog is white.", "狗是白色的。"),
    ("I drink water.", "我喝水。"),
    ("You eat rice.", "你吃米饭。"),
    ("It is raining today.", "今天下雨。"),
    ("Good morning.", "早上好。"),
]

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-mt")
    (root / "train.en").write_text("\n".join(s for s, _ in PAIRS) + "\n", encoding="utf-8")
    (root / "train.zh").write_text("\n".join(t for _, t in PAIRS) + "\n", encoding="utf-8")
    recipe = root / "tiny.toml"
    recipe.write_text(f"""
[data]
task = "translation"
src_lang = "en"
tgt_lang = "zh"
train_src = "{root / 'train.en'}"
train_tgt = "{root / 'train.zh'}"
valid_src = "{root / 'train.en'}"
valid_tgt = "{root / 'train.zh'}"
[tokenizer]
vocab_size = 120
min_frequency = 1
[model]
preset = "tiny"
dropout = 0.0
share_embeddings = true
tie_output = true
norm_first = true
[train]
max_steps = 300
max_tokens = 400
lr = 3e-3
warmup_steps = 30
schedule = "cosine"
label_smoothing = 0.0
eval_every = 150
bleu_every = 300
save_every = 150
average_last = 1
log_every = 50
seed = 0
precision = "fp32"
[decode]
beam = 1
""", encoding="utf-8")
    out = root / "run"
    result = runner.invoke(app, ["train", str(recipe), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return root, out


def test_training_overfits_and_greedy_reproduces_the_training_sentences(trained):
    _, out = trained
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["nll"] for r in log if r["kind"] == "train"]
    assert losses[-1] < 0.1 < losses[0]
    translator = rosetta.load(out)
    assert translator.translate([s for s, _ in PAIRS], beam=1) == [t for _, t in PAIRS]
    assert translator.translate([s for s, _ in PAIRS], beam=4) == [t for _, t in PAIRS]


def test_translate_reads_stdin_and_keeps_empty_lines(trained):
    _, out = trained
    text = "I am a student.\n\n   \nGood morning.\n"
    result = runner.invoke(app, ["translate", "--model", str(out), "--beam", "1"], input=text)
    assert result.exit_code == 0, result.output
    assert result.stdout.split("\n")[:4] == ["我是学生。", "", "", "早上好。"]


def test_translate_arguments_and_file(trained):
    root, out = trained
    result = runner.invoke(app, ["translate", "--model", str(out), "He is a doctor.", "I drink water."])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["他是医生。", "我喝水。"]
    lines = root / "in.txt"
    lines.write_text("She likes tea.\nThe dog is white.\n", encoding="utf-8")
    result = runner.invoke(app, ["translate", "--model", str(out), "-i", str(lines)])
    assert result.stdout.splitlines() == ["她喜欢茶。", "狗是白色的。"]


def test_very_long_line_is_truncated_with_a_warning(trained):
    _, out = trained
    translator = rosetta.load(out)
    long_line = " ".join(["I am a student."] * 200)
    with pytest.warns(UserWarning, match="truncated"):
        (translation,) = translator.translate([long_line], beam=1)
    assert isinstance(translation, str)


def test_non_utf8_input_is_a_clear_error(trained):
    root, out = trained
    bad = root / "latin1.txt"
    bad.write_bytes("Guten Tag, schöne Grüße\n".encode("latin-1"))
    result = runner.invoke(app, ["translate", "--model", str(out), "-i", str(bad)])
    assert result.exit_code == 2
    assert "not UTF-8" in result.output and "line 1" in result.output


def test_missing_model_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["translate", "--model", str(tmp_path / "nothing"), "hello"])
    assert result.exit_code == 2
    assert "is not a Rosetta model" in result.output


def test_evaluate_with_files_prints_bleu_chrf_and_signature(trained):
    root, out = trained
    result = runner.invoke(app, ["evaluate", "--model", str(out), "--src", str(root / "train.en"),
                                 "--ref", str(root / "train.zh"), "--beam", "1", "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["bleu"] == pytest.approx(100.0)
    assert "tok:zh" in scores["bleu_signature"] and "chrF" not in scores["bleu_signature"]
    assert scores["chrf"] == pytest.approx(100.0)


def test_info_reports_parameters_and_training(trained):
    _, out = trained
    result = runner.invoke(app, ["info", str(out)])
    assert result.exit_code == 0, result.output
    n = rosetta.load(out).model.num_parameters()
    assert f"parameters: {n:,}" in result.stdout
    assert '"stop_reason": "max_steps"' in result.stdout


def test_resume_without_checkpoint_is_a_clear_error(trained, tmp_path):
    root, _ = trained
    result = runner.invoke(app, ["train", str(root / "tiny.toml"), "--out", str(tmp_path / "fresh"), "--resume"])
    assert result.exit_code == 2
    assert "no checkpoint to resume from" in result.output
