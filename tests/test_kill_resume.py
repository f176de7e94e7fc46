"""Every trainer survives ``kill -9``: each task's run is SIGKILLed and resumed in a new process, and every number
it logs (losses, gradient norms, validation and final metrics) and its final weights and optimizer state must
equal, bit for bit, those of one uninterrupted run. Translation, the LM and distillation are killed three times —
inside a checkpoint write, between a checkpoint's rename and its ``latest`` marker, and between checkpoints —
the other tasks once, between checkpoints: the checkpoint writing is the Trainer's, the same code for every task
(a task only adds its config and tokenizer files), while the state to restore (data position, masks, shifts,
dropout) is each task's. Distillation is also killed while its teacher translates the training set. (A full disk
during a checkpoint write, and what a kill leaves behind: tests/test_full_disk.py.)

The runs are child processes (tests/kill_worker.py) forked from one clean forkserver that has imported torch
once; SIGKILL leaves no chance for clean-up, as in real life. Dropout is on in every model, so the RNG states
must come back too.
"""

from __future__ import annotations

import json
import multiprocessing
import queue as queue_module
import random
import signal
import time
from pathlib import Path

import kill_worker
import pytest
import torch
from safetensors.torch import load_file

from rosetta import checkpoint as ckpt

CTX = multiprocessing.get_context("forkserver")
CTX.set_forkserver_preload(kill_worker.PRELOAD)
RUN_TIMEOUT = 180  # seconds a child may take to reach its kill point or its end, on a busy 2-core machine
STEPS, SAVE_EVERY = 8, 2
# Kill chains: where each run is stopped (None: it finishes), and the step of the checkpoint `latest` names then.
FULL_CHAIN = [(("writing", 4), 2), (("marking", 6), 4), (("step", 7), 6), (None, STEPS)]
SHORT_CHAIN = [(("step", 5), 4), (None, STEPS)]
FULL = {"translation", "lm"}  # and distillation

TRAIN = f"""
[train]
max_steps = {STEPS}
max_tokens = {{max_tokens}}
batch_size = 8
lr = 3e-3
warmup_steps = 3
label_smoothing = 0.1
eval_every = 4
bleu_every = 0
bleu_sentences = 4
save_every = {SAVE_EVERY}
log_every = 1
keep_last = 2
precision = "fp32"
device = "cpu"
threads = 1
seed = 1
[decode]
max_len_offset = 4
"""


@pytest.fixture(autouse=True)
def restore_threads():
    """The teacher is built on one thread here (see below); the tests after this one get theirs back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


SMALL = "d_model = 32\nn_heads = 2\nd_ff = 64\ndropout = 0.1"
WORDS = "the a cat dog bird sees likes finds river ball house moon bread model data graph fast".split()


def _sentences(n: int, seed: int, length: int = 6) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, length))) for _ in range(n)]


# ------------------------------------------------------------------------------------- tiny data per task
def translation(tmp: Path) -> str:
    from tiny_translator import PAIRS

    for side, index in (("en", 0), ("zh", 1)):
        (tmp / f"pairs.{side}").write_text("".join(p[index] + "\n" for p in PAIRS), encoding="utf-8")
    return f"""[data]
train_src = "{tmp / 'pairs.en'}"
train_tgt = "{tmp / 'pairs.zh'}"
valid_src = "{tmp / 'pairs.en'}"
valid_tgt = "{tmp / 'pairs.zh'}"
[tokenizer]
vocab_size = 120
min_frequency = 1
joint = false
[model]
preset = "tiny"
{SMALL}
""" + TRAIN.format(max_tokens=60)


def lm(tmp: Path) -> str:
    (tmp / "text.txt").write_text(". ".join(_sentences(120, 0)) + "\n", encoding="utf-8")
    return f"""[data]
task = "lm"
train_src = "{tmp / 'text.txt'}"
block_size = 16
[tokenizer]
kind = "char"
[model]
{SMALL}
n_decoder_layers = 2
""" + TRAIN.format(max_tokens=4096)


def classification(tmp: Path) -> str:
    lines = [f"{s}\t{i % 2}" for i, s in enumerate(_sentences(60, 1))]
    (tmp / "cls.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return f"""[data]
task = "classification"
train_src = "{tmp / 'cls.tsv'}"
valid_src = "{tmp / 'cls.tsv'}"
max_length = 16
[tokenizer]
vocab_size = 100
min_frequency = 1
[model]
{SMALL}
n_encoder_layers = 1
""" + TRAIN.format(max_tokens=4096)


def mlm(tmp: Path) -> str:
    rng = random.Random(2)
    who, where = ["我", "他", "她", "我们"], ["北京", "上海", "学校", "公园"]
    docs = ["".join(f"{rng.choice(who)}今天在{rng.choice(where)}。" for _ in range(3)) for _ in range(30)]
    (tmp / "zh.txt").write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return f"""[data]
task = "mlm"
train_src = "{tmp / 'zh.txt'}"
max_length = 24
valid_size = 4
[tokenizer]
kind = "wordpiece"
vocab_size = 100
min_frequency = 1
[model]
{SMALL}
n_encoder_layers = 1
""" + TRAIN.format(max_tokens=4096)


def qa(tmp: Path) -> str:
    people = [("Ada", "Paris", "tea"), ("Bo", "Rome", "milk"), ("Cy", "Oslo", "juice")]
    context = " ".join(f"{n} was born in {c} and drinks {d}." for n, c, d in people)
    qas = [{"id": f"{n}-{a}", "question": q, "answers": [{"text": a, "answer_start": context.index(a)}]}
           for n, c, d in people for q, a in ((f"Where was {n} born?", c), (f"What does {n} drink?", d))]
    squad = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}
    (tmp / "squad.json").write_text(json.dumps(squad), encoding="utf-8")
    return f"""[data]
task = "qa"
train_src = "{tmp / 'squad.json'}"
valid_src = "{tmp / 'squad.json'}"
max_length = 48
stride = 16
[tokenizer]
kind = "char"
[model]
{SMALL}
n_encoder_layers = 1
""" + TRAIN.format(max_tokens=4096)


def vit(tmp: Path) -> str:
    pytest.importorskip("sklearn")
    return """[data]
task = "image-classification"
corpus = "digits"
valid_size = 32
max_train_examples = 48
augment_shift = 1
[model]
preset = "vit-tiny"
image_size = 8
patch_size = 4
d_model = 32
n_heads = 2
d_ff = 64
n_encoder_layers = 1
dropout = 0.1
""" + TRAIN.format(max_tokens=4096)


def summarisation(tmp: Path) -> str:
    folder = tmp / "scitldr"
    folder.mkdir()
    for split, seed, n in (("train", 3, 16), ("dev", 4, 4)):
        texts = _sentences(n * 3, seed, 9)
        records = [{"source": [s.capitalize() + "." for s in texts[3 * i: 3 * i + 3]], "target": [texts[3 * i]],
                    "paper_id": f"{split}{i}", "title": f"{split} paper {i}"} for i in range(n)]
        (folder / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    return f"""[data]
task = "summarisation"
corpus = "scitldr"
max_length = 32
[tokenizer]
vocab_size = 100
min_frequency = 1
[model]
preset = "tiny"
{SMALL}
""" + TRAIN.format(max_tokens=200)


TASKS = {"translation": translation, "lm": lm, "classification": classification, "mlm": mlm, "qa": qa,
         "image-classification": vit, "summarisation": summarisation}


# ------------------------------------------------------------------------------------- running and killing
def train_in_child(recipe: Path, out: Path, resume: bool, kill: tuple[str, int] | None, **extra) -> None:
    """One run of kill_worker.run in a new process; SIGKILL it when it reports its kill point."""
    queue = CTX.Queue()
    process = CTX.Process(target=kill_worker.run, args=(str(recipe), str(out), resume, kill, queue), kwargs=extra)
    process.start()
    deadline = time.monotonic() + RUN_TIMEOUT
    message = None
    while message is None:
        try:
            message = queue.get(timeout=0.05)
        except queue_module.Empty:
            if not process.is_alive() or time.monotonic() > deadline:
                process.kill()
                process.join()
                pytest.fail(f"the run ended without a word (exit code {process.exitcode}) or took too long")
    if message[0] == "paused":
        process.kill()  # SIGKILL: no finally, no atexit, no flush
    process.join()
    assert message[0] != "error", message[1]
    assert message == ("done",) if kill is None else message == ("paused", *kill)
    assert process.exitcode == (0 if kill is None else -signal.SIGKILL)


def records(run: Path, kind: str | None = None) -> list[dict]:
    lines = (run / ckpt.METRICS_FILE).read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if kind in (None, r["kind"])]


CLOCK = {"time", "elapsed", "tokens_per_s", "train_seconds"}  # the only numbers a kill may change


def numbers(run: Path) -> list[dict]:
    """The metrics log without its clock readings and ``resume`` records."""
    return [{k: v for k, v in r.items() if k not in CLOCK} for r in records(run) if r["kind"] != "resume"]


def latest_step(run: Path) -> int:
    return int(ckpt.marked_checkpoint(run, ckpt.LATEST).name.removeprefix("step_"))


def assert_resumed_exactly(run: Path, reference: Path, chain: list) -> None:
    """The killed-and-resumed run logged the same losses, validation metrics and final metrics as the
    uninterrupted one, in the same order, and its last checkpoint (weights, optimizer) and final model are equal."""
    assert [r["step"] for r in records(run, "resume")] == [latest for _, latest in chain[:-1]]
    assert numbers(run) == numbers(reference)
    assert len(records(run, "train")) == STEPS  # the killed runs' records of redone steps were dropped
    last = f"{ckpt.CHECKPOINTS_DIR}/{ckpt.step_name(STEPS)}"
    for relative in (f"{ckpt.FINAL_DIR}/{ckpt.MODEL_FILE}", f"{last}/{ckpt.MODEL_FILE}",
                     f"{last}/{ckpt.OPTIMIZER_FILE}"):
        a, b = load_file(reference / relative), load_file(run / relative)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), relative
    leftovers = [p.name for p in ckpt.checkpoints_dir(run).iterdir() if p.name.startswith(".")]
    assert not leftovers, f"temporary files left behind: {leftovers}"


def kill_and_resume(recipe: Path, tmp: Path, chain: list, first_resume: bool = False, **extra) -> Path:
    """The uninterrupted reference run, then the same run killed at each point of ``chain`` and resumed."""
    train_in_child(recipe, tmp / "reference", False, None, **extra)
    run = tmp / "killed"
    for i, (kill, latest) in enumerate(chain):
        train_in_child(recipe, run, i > 0 or first_resume, kill, **extra)
        assert latest_step(run) == latest, kill
        ckpt.verify_checkpoint(ckpt.marked_checkpoint(run, ckpt.LATEST))
    assert_resumed_exactly(run, tmp / "reference", chain)
    return run


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_trainer_resumes_bit_identically_after_kill_9(task, tmp_path):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(TASKS[task](tmp_path), encoding="utf-8")
    kill_and_resume(recipe, tmp_path, FULL_CHAIN if task in FULL else SHORT_CHAIN, data_dir=str(tmp_path))


@pytest.mark.slow
def test_distillation_resumes_its_teacher_cache_and_its_training_after_kill_9(tmp_path):
    from tiny_translator import tiny_model_dir

    torch.set_num_threads(1)  # the teacher is built here if no test before built it: 5 s on one thread, a minute on
    #                           two of a busy 2-core machine (restored by restore_threads)
    recipe = tmp_path / "student.toml"
    recipe.write_text(translation(tmp_path), encoding="utf-8")
    extra = dict(teacher=str(tiny_model_dir()), chunk_size=5, word_kd=0.5)
    run = tmp_path / "killed"
    train_in_child(recipe, run, False, ("teacher", 1), **extra)  # 12 sources: chunks of 5, 5, 2
    cache = run / "teacher"
    assert sorted(p.name for p in cache.glob("chunk_*")) == ["chunk_000000.json"]
    first_chunk = (cache / "chunk_000000.json").stat().st_mtime_ns
    kill_and_resume(recipe, tmp_path, FULL_CHAIN, first_resume=True, **extra)
    assert (cache / "chunk_000000.json").stat().st_mtime_ns == first_chunk  # read back, not translated again
    reference = (tmp_path / "reference" / "teacher" / "translations.txt").read_bytes()
    assert (cache / "translations.txt").read_bytes() == reference
