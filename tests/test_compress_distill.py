"""Knowledge distillation (rosetta.compress.distill): the word-level KD loss against a float64 hand computation,
the teacher-translation cache across an interruption, and a tiny end-to-end ``rosetta distill`` run."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

import rosetta
from rosetta.cli import app
from rosetta.compress.distill import DistillationTask, teacher_translations, word_kd_loss
from rosetta.train import label_smoothed_nll, load_recipe

runner = CliRunner()


def test_word_kd_loss_equals_a_float64_hand_computation():
    torch.manual_seed(0)
    student = torch.randn(2, 3, 5, requires_grad=True)
    teacher = torch.randn(2, 3, 5)
    target = torch.tensor([[4, 2, 0], [3, 1, 2]])  # one padded position (id 0)
    expected = 0.0
    for b in range(2):
        for t in range(3):
            if target[b, t] == 0:
                continue
            s_row, t_row = student[b, t].tolist(), teacher[b, t].tolist()
            log_zs = math.log(sum(math.exp(x) for x in s_row))
            log_zt = math.log(sum(math.exp(x) for x in t_row))
            expected += sum(math.exp(tv - log_zt) * ((tv - log_zt) - (sv - log_zs)) for sv, tv in zip(s_row, t_row))
    loss = word_kd_loss(student, teacher, target, pad_id=0)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # ∂KL/∂(student logits) = p_S − p_T at every real position, 0 at padding; the teacher gets no gradient
    loss.backward()
    want = (torch.softmax(student.detach().double(), -1) - torch.softmax(teacher.double(), -1))
    want[target == 0] = 0.0
    assert torch.allclose(student.grad.double(), want, atol=1e-6)


def _fake_teacher(calls: list, fail_after: int | None = None):
    def translate(chunk: list[str]) -> list[str]:
        if fail_after is not None and len(calls) == fail_after:
            raise KeyboardInterrupt  # the run is killed while this chunk is being translated
        calls.append(list(chunk))
        return [s.upper() + "!" for s in chunk]
    return translate


def test_cache_resumes_where_an_interrupted_run_stopped(tmp_path):
    sources = [f"sentence number {i}" for i in range(10)]
    meta = {"teacher": "t", "beam": 4}
    cache = tmp_path / "teacher"
    first: list = []
    with pytest.raises(KeyboardInterrupt):
        teacher_translations(sources, _fake_teacher(first, fail_after=2), cache, chunk_size=3, meta=meta)
    assert sorted(p.name for p in cache.iterdir()) == ["chunk_000000.json", "chunk_000001.json", "meta.json"]

    resumed: list = []
    out = teacher_translations(sources, _fake_teacher(resumed), cache, chunk_size=3, meta=meta)
    assert resumed == [sources[6:9], sources[9:]]  # only the chunks not finished before
    assert out == [s.upper() + "!" for s in sources]

    straight = tmp_path / "straight"
    teacher_translations(sources, _fake_teacher([]), straight, chunk_size=3, meta=meta)
    assert (cache / "translations.txt").read_bytes() == (straight / "translations.txt").read_bytes()

    again: list = []  # everything cached: nothing is translated
    assert teacher_translations(sources, _fake_teacher(again), cache, chunk_size=3, meta=meta) == out
    assert again == []

    (cache / "chunk_000001.json").write_text('{"sources_sha256": "', encoding="utf-8")  # a damaged chunk
    repaired: list = []
    assert teacher_translations(sources, _fake_teacher(repaired), cache, chunk_size=3, meta=meta) == out
    assert repaired == [sources[3:6]]

    with pytest.raises(ValueError, match="beam"):
        teacher_translations(sources, _fake_teacher([]), cache, chunk_size=3, meta={**meta, "beam": 1})


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory):
    from tiny_translator import PAIRS

    root = tmp_path_factory.mktemp("distill")
    (root / "train.en").write_text("\n".join(s for s, _ in PAIRS) + "\n", encoding="utf-8")
    (root / "train.zh").write_text("\n".join(t for _, t in PAIRS) + "\n", encoding="utf-8")
    recipe = root / "student.toml"
    recipe.write_text(f"""
[data]
src_lang = "en"
tgt_lang = "zh"
train_src = "{root / 'train.en'}"
train_tgt = "{root / 'train.zh'}"
valid_src = "{root / 'train.en'}"
valid_tgt = "{root / 'train.zh'}"
[tokenizer]
vocab_size = 120
min_frequency = 1
joint = false
[model]
preset = "tiny"
d_model = 32
d_ff = 64
n_heads = 2
dropout = 0.0
[train]
max_steps = 12
max_tokens = 400
warmup_steps = 4
eval_every = 0
precision = "fp32"
device = "cpu"
threads = 1
""", encoding="utf-8")
    return recipe


def test_distill_end_to_end(tmp_path, recipe_file):
    from tiny_translator import PAIRS, tiny_model_dir

    out = tmp_path / "student"
    args = ["distill", "--teacher", str(tiny_model_dir()), "--recipe", str(recipe_file), "--out", str(out),
            "--word-kd", "0.5", "--chunk-size", "5", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    teacher = rosetta.load(tiny_model_dir())
    lines = (out / "teacher" / "translations.txt").read_text(encoding="utf-8").splitlines()
    assert lines == teacher.translate([s for s, _ in PAIRS], beam=teacher.decode_options.beam)
    assert len(list((out / "teacher").glob("chunk_*.json"))) == 3  # 12 sources, 5 a chunk
    student = rosetta.load(out)
    assert student.config.d_model == 32 and len(student.translate(["I am a student."])) == 1
    info = json.loads((out / "model" / "config.json").read_text())
    assert info["distillation"]["word_kd"] == 0.5 and info["distillation"]["beam"] == 1
    # word-level KD: the student reads and writes the teacher's vocabulary
    assert student.tgt_tokenizer.vocab_size == teacher.tgt_tokenizer.vocab_size
    assert student.tgt_tokenizer.encode("我是学生。") == teacher.tgt_tokenizer.encode("我是学生。")

    wrong = tmp_path / "wrong.toml"
    wrong.write_text(recipe_file.read_text(encoding="utf-8").replace('src_lang = "en"', 'src_lang = "de"'))
    bad = runner.invoke(app, ["distill", "--teacher", str(tiny_model_dir()), "--recipe", str(wrong),
                              "--out", str(tmp_path / "w"), "--quiet"])
    assert bad.exit_code == 2 and "direction" in bad.output


def test_kd_term_is_alpha_times_kl_and_the_teacher_stays_frozen(tmp_path, recipe_file):
    from tiny_translator import tiny_model_dir

    teacher = rosetta.load(tiny_model_dir())
    task = DistillationTask(load_recipe(recipe_file), teacher, tiny_model_dir(), run_dir=tmp_path / "run",
                            word_kd=0.7)
    batch = next(iter(task.batches(0, 1)))
    task.model.train()  # the recipe has dropout 0: train and eval mode compute the same logits
    with_kd, nll, count = task.loss(task.model, batch, 0.1)
    plain, plain_nll, _ = label_smoothed_nll(task.model(batch.src, batch.tgt_in), batch.tgt_out, 0, 0.1)
    assert torch.equal(nll, plain_nll) and count == batch.n_tgt_tokens
    with torch.no_grad():  # KL(teacher ‖ student) by hand, in float64, from the two models' logits
        s = task.model(batch.src, batch.tgt_in).double().log_softmax(-1)
        t = teacher.model(batch.src, batch.tgt_in).double().log_softmax(-1)
        kl = (t.exp() * (t - s)).sum(-1)[batch.tgt_out != 0].sum()
    assert kl > 0.1
    assert (with_kd - plain).item() == pytest.approx(0.7 * kl.item(), rel=1e-4)
    with_kd.backward()
    assert all(p.grad is None for p in teacher.model.parameters()) and not teacher.model.training
    assert all(p.grad is not None for p in task.model.parameters())
    task.model.eval()  # validation loss: no KD term (0.7 · KL > 0.07 would be in it); without gradients attention
    with torch.no_grad():  # takes PyTorch's fused kernel, with them the explicit formula: equal to float rounding
        torch.testing.assert_close(task.loss(task.model, batch, 0.1)[0], plain.detach(), rtol=1e-6, atol=1e-6)
