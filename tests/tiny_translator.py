"""A tiny English→Chinese translation model on disk, for the plot, server and browser tests.

Every piece of the pipeline is real: BPE tokenizers learned from a dozen made-up sentence pairs, a ``tiny``
Transformer (seeded), a checkpoint directory written by ``rosetta.checkpoint.save_checkpoint`` and read back
by ``rosetta.load``. A random model emits one token over and over for every input ("老老老…"), which would
make "the server's answer equals the direct answer" a weak check, so the model first memorises the pairs
for a few dozen full-batch steps (about a second on one core); then different sentences get different
translations, and the training sentences their own.

    from tiny_translator import tiny_model_dir
    translator = rosetta.load(tiny_model_dir())     # built once per test process
"""

from __future__ import annotations

import atexit
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

# Made up for these tests (no corpus text): short, everyday, with CJK punctuation on the target side.
PAIRS = [
    ("I am a student.", "我是学生。"),
    ("You are a teacher.", "你是老师。"),
    ("He reads a book.", "他看一本书。"),
    ("She likes green tea.", "她喜欢绿茶。"),
    ("We walk to school.", "我们走路去学校。"),
    ("The cat is sleeping.", "猫在睡觉。"),
    ("It is raining today.", "今天下雨。"),
    ("Where is the station?", "车站在哪里？"),
    ("How are you?", "你好吗？"),
    ("I like to read books.", "我喜欢看书。"),
    ("The weather is nice today.", "今天天气很好。"),
    ("They eat rice at home.", "他们在家吃米饭。"),
]

# The sentences the tests translate (a mix of lengths, so that a merged batch needs padding).
SENTENCES = [p[0] for p in PAIRS] + ["A student likes tea.", "Is the teacher at home?", "Books."]


def build_tiny_model(directory: str | Path, seed: int = 0, steps: int = 60, max_len_offset: int = 4,
                     task: str | None = None, copy: bool = False) -> Path:
    """Write a loadable tiny model to ``directory`` (created) and return it.

    ``steps`` full-batch Adam steps on PAIRS (0: random weights). ``max_len_offset`` keeps outputs that never
    reach </s> short, so decoding in the tests is fast: at most int(1.5 · source tokens) + offset tokens.
    ``task``: config.json's "task" (e.g. "summarisation": the same model, served as a summariser).
    ``copy``: a pointer-generator (``copy_attention``), with the one shared vocabulary it needs.
    """
    from rosetta import ModelConfig, Transformer
    from rosetta.checkpoint import save_checkpoint
    from rosetta.data.batching import collate_translation
    from rosetta.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, save_tokenizers, train_tokenizers
    from rosetta.train import label_smoothed_nll

    directory = Path(directory)
    src_tok, tgt_tok = train_tokenizers([s for s, _ in PAIRS], [t for _, t in PAIRS], vocab_size=120 + 120 * copy,
                                        joint=copy, min_frequency=1)
    config = ModelConfig.preset("tiny", src_vocab_size=src_tok.vocab_size, tgt_vocab_size=tgt_tok.vocab_size,
                                pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, max_len=128, dropout=0.0,
                                share_embeddings=copy, copy_attention=copy)
    torch.manual_seed(seed)
    model = Transformer(config)
    batch = collate_translation([(src_tok.encode(s) + [EOS_ID], tgt_tok.encode(t)) for s, t in PAIRS],
                                PAD_ID, BOS_ID, EOS_ID)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        loss_sum, _, count = label_smoothed_nll(model(batch.src, batch.tgt_in), batch.tgt_out, PAD_ID, 0.0)
        optimizer.zero_grad()
        (loss_sum / count).backward()
        optimizer.step()
    model.eval()
    info = {"family": "translation", "model": config.to_dict(), "src_lang": "en", "tgt_lang": "zh",
            "corpus": None, "data_seed": 0, "clean": None,
            "decode": {"beam": 1, "length_penalty": 0.6, "max_len_ratio": 1.5, "max_len_offset": max_len_offset}}
    if task is not None:
        info["task"] = task
    save_checkpoint(directory, model, info, lambda d: save_tokenizers(d, src_tok, tgt_tok))
    return directory


@contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", timeout: float = 20.0) -> Iterator[str]:
    """Run ``app`` with a real uvicorn server on a free loopback port in a daemon thread; yield its URL.

    The socket is bound here (port 0: the kernel picks a free port), so there is no race for the port."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    # uvicorn closes a connection idle for 5 s by default; a client that then reuses it gets a ReadError. On a
    # busy machine a test's client can pause that long between requests, so idle connections stay open here.
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_keep_alive=3600))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on {host}:{port} within {timeout} s")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


_CACHE: dict[tuple[int, int], Path] = {}


def tiny_model_dir(seed: int = 0, steps: int = 60) -> Path:
    """``build_tiny_model`` once per test process (the plot, server and browser tests share it); the
    directory is removed when the process exits."""
    if (seed, steps) not in _CACHE:
        root = Path(tempfile.mkdtemp(prefix="rosetta-tiny-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _CACHE[seed, steps] = build_tiny_model(root / "model", seed=seed, steps=steps)
    return _CACHE[seed, steps]
