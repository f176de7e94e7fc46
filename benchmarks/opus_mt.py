"""The real shape users run (issue 21): an opus-mt-en-zh-shaped Marian decoded by Rosetta, transformers and
CTranslate2, each engine in its own process, on the same source id batches.

The model: Helsinki-NLP/opus-mt-en-zh's config.json — d_model 512, 8 heads, d_ff 2048, 6 + 6 layers, vocabulary
65,001 (</s> 0, <unk> 1, <pad> 65,000 = the decoder's start), swish, static sinusoidal positions, scaled
embeddings, one table for source, target and output — with random weights (seed 0, init_std 0.02; nothing is
downloaded), saved with ``MarianMTModel.save_pretrained`` next to a generation_config.json (num_beams 4,
max_length 512; no bad_words_ids, no forced EOS), SentencePiece models (tiny: only the ids are decoded here) and
a vocab.json of 65,001 names. The same directory is then read by

    rosetta fp32 / int8 / bf16     rosetta.load(DIR, precision=…); the search ``translate`` runs, on id batches
    transformers fp32 / bf16       MarianMTModel.from_pretrained(DIR).generate(...)
    ct2 float32 / int8 / bfloat16  converted once from DIR (ctranslate2.converters.TransformersConverter, float32),
                                   loaded with that compute_type; Translator.translate_batch on token names

Workload: 128 random source sentences of 21–30 ids (</s> included) decoded at batch 64 (sorted by length, two
batches, the same for every engine) and the first 16 of them one at a time (batch 1), greedy and beam 4, every
engine forced to emit exactly 30 tokens (random weights never end a sentence by themselves: min = max length,
the pad token suppressed in ``generate`` as Rosetta's search and CT2's vocabulary never produce it). 2 threads for
every engine (torch.set_num_threads; CT2 intra_threads). Reported: output tokens/s per engine and mode (median
[min–max] over rounds; in each round every engine runs every mode once, mode by mode — all engines one mode, then
the next — in an order rotating with the round, each call after a pause so no engine shares the cores with another's
spinning threads), the ratios Rosetta / CTranslate2 (fp32 vs float32, int8 vs int8, bf16 vs float32 and bfloat16)
and Rosetta / transformers — as ratios of the medians and paired by round (each round's two cells ran back to back:
the median [min–max] of the rounds' ratios, the figure least moved by a VM whose speed drifts) — and how often
greedy outputs are the same ids (Rosetta fp32 vs transformers fp32: the fraction of sentences with identical ids).

bf16 runs only where the CPU multiplies bf16 natively (AVX-512 BF16 / AMX; elsewhere torch emulates it, ~30×
slower, and CTranslate2 does not offer it): ``--bf16 on`` forces Rosetta's and transformers' bf16 on any CPU.

The full run, 2 cores, nothing else running (about 10 minutes; the script prints its estimate first, a
measured projection after the first round, and stops adding rounds once ``--max-minutes`` would be passed):

    .venv/bin/python benchmarks/opus_mt.py --out benchmarks/results/opus-mt-en-zh-cpu.json

Smoke (a tiny shape, a few seconds; tests/test_opus_mt_bench.py):

    .venv/bin/python benchmarks/opus_mt.py --tiny
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # peers.py and workers.py, also in spawned workers
from peers import (  # noqa: E402  (peers.py also makes `rosetta` importable from a checkout)
    FIRST_WORD,
    PAUSE_S,
    Stat,
    available,
    environment,
    interleaved,
    load_ct2,
    markdown_table,
    random_sentences,
    ratio,
)

EOS = 0  # opus-mt's </s>; <unk> is 1, <pad> (also the decoder's start token) the last id


# ---------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Shape:
    """A Marian's sizes (encoder layers = decoder layers)."""

    name: str
    d_model: int
    n_heads: int
    d_ff: int
    layers: int
    vocab: int
    max_positions: int
    init_std: float = 0.02

    @property
    def pad(self) -> int:
        return self.vocab - 1

    @property
    def parameters(self) -> int:
        d, f, n = self.d_model, self.d_ff, self.layers
        layer = 4 * d * d + 2 * d * f + 4 * d + f + d + 4 * d  # attention, feed-forward, their biases, 2 norms
        return self.vocab * d + n * layer + n * (layer + 4 * d * d + 4 * d + 2 * d)  # decoder: + cross-attention


OPUS_MT_EN_ZH = Shape("opus-mt-en-zh", d_model=512, n_heads=8, d_ff=2048, layers=6, vocab=65001, max_positions=512)
TINY = Shape("tiny", d_model=16, n_heads=2, d_ff=32, layers=1, vocab=101, max_positions=64, init_std=0.3)


@dataclass(frozen=True)
class Workload:
    sentences: int = 128  # decoded at batch_size
    batch_size: int = 64
    batch1: int = 16  # the first ones of the sentences, one call each
    src_lengths: tuple[int, int] = (20, 29)  # + </s>: 21–30 source ids
    out_len: int = 30  # every engine emits exactly this many tokens
    beam: int = 4
    repeats: int = 2
    seed: int = 0
    pause: float = PAUSE_S  # idle seconds before each timed call (peers.PAUSE_S: other engines' threads stop spinning)


WORKLOADS = {"full": Workload(),
             "tiny": Workload(sentences=8, batch_size=4, batch1=2, src_lengths=(3, 6), out_len=6, repeats=1,
                               pause=0.0)}
MODES = ("greedy b64", "beam b64", "greedy b1", "beam b1")  # "b64": at the workload's batch size
WARMUP_LEN = 3  # the warm-up call decodes the largest batch and one sentence, this many tokens each

ENGINES = ("rosetta fp32", "rosetta int8", "rosetta bf16", "transformers fp32", "transformers bf16", "ct2 float32",
           "ct2 int8", "ct2 bfloat16")
# (numerator, denominator): Rosetta against CTranslate2 in the same precision class, then against transformers
RATIOS = (("rosetta fp32", "ct2 float32"), ("rosetta int8", "ct2 int8"), ("rosetta bf16", "ct2 float32"),
          ("rosetta bf16", "ct2 bfloat16"), ("rosetta fp32", "transformers fp32"),
          ("rosetta int8", "transformers fp32"), ("rosetta bf16", "transformers bf16"))
AGREEMENT = (("rosetta fp32", "transformers fp32"), ("ct2 float32", "transformers fp32"),
             ("rosetta fp32", "ct2 float32"))


# ---------------------------------------------------------------------------------------------- the directory
def vocabulary(shape: Shape) -> list[str]:
    """Token names by id, Marian's layout: </s>, <unk>, pieces, <pad> last. CT2's Marian converter drops that last
    name (its decoder starts from a zero embedding instead), so no source id may reach it (peers.FIRST_WORD's rule:
    random ids are drawn from [FIRST_WORD, vocab − 1))."""
    return ["</s>", "<unk>"] + [f"▁w{i}" for i in range(2, shape.vocab - 1)] + ["<pad>"]


def write_spm(out: Path) -> None:
    """A tiny SentencePiece model (the directory needs source.spm / target.spm; ids are decoded, not text)."""
    import sentencepiece as spm

    lines = ["the cat sits on the mat", "we like green apples", "where is the train station",
             "my brother drinks coffee", "they play football in the park", "the weather is nice today"]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines * 4), model_prefix=str(out), vocab_size=40, model_type="unigram",
        hard_vocab_limit=False, character_coverage=1.0, bos_id=-1, eos_id=1, unk_id=0, pad_id=-1, minloglevel=2)
    Path(f"{out}.model").rename(out)
    Path(f"{out}.vocab").unlink()


def quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def marian_config(shape: Shape):
    """Helsinki-NLP/opus-mt-en-zh's config.json for ``shape`` (its generation options go to generation_config.json)."""
    from transformers import MarianConfig

    return MarianConfig(
        vocab_size=shape.vocab, decoder_vocab_size=shape.vocab, d_model=shape.d_model,
        encoder_layers=shape.layers, decoder_layers=shape.layers, encoder_attention_heads=shape.n_heads,
        decoder_attention_heads=shape.n_heads, encoder_ffn_dim=shape.d_ff, decoder_ffn_dim=shape.d_ff,
        activation_function="swish", scale_embedding=True, static_position_embeddings=True,
        share_encoder_decoder_embeddings=True, tie_word_embeddings=True, normalize_before=False,
        normalize_embedding=False, dropout=0.1, attention_dropout=0.0, activation_dropout=0.0,
        max_position_embeddings=shape.max_positions, init_std=shape.init_std, pad_token_id=shape.pad,
        decoder_start_token_id=shape.pad, eos_token_id=EOS, bos_token_id=EOS, forced_eos_token_id=None)


def write_hf_dir(shape: Shape, out: Path, seed: int = 0) -> Path:
    """The Hugging Face directory every engine reads: config.json + model.safetensors (save_pretrained),
    generation_config.json, source.spm / target.spm / vocab.json / tokenizer_config.json (MarianTokenizer)."""
    from transformers import GenerationConfig, MarianMTModel, MarianTokenizer

    quiet_transformers()
    out.mkdir(parents=True, exist_ok=True)
    for side in ("source.spm", "target.spm"):
        write_spm(out / side)
    (out / "vocab.json").write_text(json.dumps({name: i for i, name in enumerate(vocabulary(shape))},
                                               ensure_ascii=False), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Recommended: pip install sacremoses."
        MarianTokenizer(str(out / "source.spm"), str(out / "target.spm"), str(out / "vocab.json")).save_pretrained(out)
    config = marian_config(shape)
    torch.manual_seed(seed)
    model = MarianMTModel(config).eval()
    with torch.no_grad():  # <pad> (the decoder's first input) embeds to zeros: what CT2's Marian decoder starts from
        model.get_input_embeddings().weight[shape.pad].zero_()
    model.generation_config = GenerationConfig(num_beams=4, max_length=512, bos_token_id=EOS, eos_token_id=EOS,
                                               pad_token_id=shape.pad, decoder_start_token_id=shape.pad)
    model.save_pretrained(out)
    return out


def convert_ct2(hf_dir: Path, out: Path) -> Path:
    """CTranslate2's own converter on the directory (float32; int8 / bfloat16 are its compute_type at load)."""
    from ctranslate2.converters import TransformersConverter

    quiet_transformers()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MarianTokenizer: "Recommended: pip install sacremoses."
        TransformersConverter(str(hf_dir)).convert(str(out), force=True)
    return out


# ---------------------------------------------------------------------------------------------- data
def sources(shape: Shape, work: Workload) -> tuple[list[list[list[int]]], list[list[int]]]:
    """(batches of ``work.batch_size`` sentences sorted by length, the batch-1 sentences); ids end with </s>."""
    rng = random.Random(work.seed)
    sentences = [s + [EOS] for s in random_sentences(rng, work.sentences, work.src_lengths, shape.vocab - 1)]
    assert all(FIRST_WORD <= i < shape.pad for s in sentences for i in s[:-1])
    ordered = sorted(sentences, key=len)  # as Translator.translate batches: similar lengths together
    batches = [ordered[i : i + work.batch_size] for i in range(0, len(ordered), work.batch_size)]
    return batches, sentences[: work.batch1]


def padded(batch: list[list[int]], pad: int) -> torch.Tensor:
    out = torch.full((len(batch), max(map(len, batch))), pad, dtype=torch.long)
    for i, row in enumerate(batch):
        out[i, : len(row)] = torch.tensor(row)
    return out


def emitted(row: list[int], pad: int) -> list[int]:
    """The tokens of one output: up to </s>, pads dropped."""
    if EOS in row:
        row = row[: row.index(EOS)]
    return [t for t in row if t != pad]


# ---------------------------------------------------------------------------------------------- engines
def rosetta_decoder(hf_dir: str, precision: str):
    import rosetta

    translator = rosetta.load(hf_dir, precision=precision)
    options = translator.decode_options
    alpha = options.length_penalty
    # min_len: a decoding option where DecodeOptions has it (then _search passes it itself), else a search argument
    in_options = "min_len" in {f.name for f in dataclasses.fields(options)}

    def decode(batch: list[list[int]], beam: int, n: int) -> list[list[int]]:
        # what Translator.translate runs on each batch once the texts are ids: its own search with the
        # directory's generation options (length_norm "hf", …), here forced to exactly n tokens
        if in_options:
            translator.decode_options = dataclasses.replace(options, min_len=n)
        limits = {"max_len": n} if in_options else {"max_len": n, "min_len": n}
        with torch.inference_mode():
            return translator._search(translator._src_tensor(batch), beam, alpha, **limits)

    return decode


def transformers_decoder(hf_dir: str, precision: str):
    from transformers import MarianMTModel

    quiet_transformers()
    model = MarianMTModel.from_pretrained(hf_dir).eval()
    if precision == "bf16":
        model = model.to(torch.bfloat16)
    pad = model.config.pad_token_id

    def decode(batch: list[list[int]], beam: int, n: int) -> list[list[int]]:
        src = padded(batch, pad)
        with torch.inference_mode():
            out = model.generate(input_ids=src, attention_mask=(src != pad).long(), num_beams=beam, do_sample=False,
                                 min_new_tokens=n, max_new_tokens=n, suppress_tokens=[pad])
        return [emitted(row[1:], pad) for row in out.tolist()]  # row[0] is the decoder's start token

    return decode


def ct2_decoder(hf_dir: str, ct2_dir: str, compute_type: str, threads: int):
    names = json.loads((Path(hf_dir) / "vocab.json").read_text(encoding="utf-8"))
    by_id = {i: name for name, i in names.items()}
    translator = load_ct2(Path(ct2_dir), "cpu", compute_type, threads)

    def decode(batch: list[list[int]], beam: int, n: int) -> list[list[int]]:
        results = translator.translate_batch([[by_id[i] for i in row] for row in batch], beam_size=beam,
                                             min_decoding_length=n, max_decoding_length=n)
        return [[names[t] for t in r.hypotheses[0]] for r in results]

    return decode


def engine_runs(engine: str, hf_dir: str, ct2_dir: str | None, threads: int, batches: list[list[list[int]]],
                singles: list[list[int]], work: Workload) -> dict[str, Any]:
    """Built in the engine's own process (``workers.IsolatedSystems``): mode → a call decoding the workload in
    that mode and returning the output ids per sentence (batch-64 modes: in the sorted order of the batches)."""
    family, precision = engine.split()
    if family == "rosetta":
        decode = rosetta_decoder(hf_dir, precision)
    elif family == "transformers":
        decode = transformers_decoder(hf_dir, precision)
    else:
        decode = ct2_decoder(hf_dir, ct2_dir, precision, threads)
    n, k = work.out_len, work.beam
    largest = max(batches, key=len)

    def warmup() -> None:
        for beam in (1, k):
            decode(largest, beam, WARMUP_LEN)
            decode(singles[:1], beam, WARMUP_LEN)

    return {"warmup": warmup,
            "greedy b64": lambda: [out for b in batches for out in decode(b, 1, n)],
            "beam b64": lambda: [out for b in batches for out in decode(b, k, n)],
            "greedy b1": lambda: [decode([s], 1, n)[0] for s in singles],
            "beam b1": lambda: [decode([s], k, n)[0] for s in singles]}


def engine_plan(requested: str, bf16: str) -> tuple[list[str], dict[str, str]]:
    """(engines to run, skipped engine → why). ``requested``: comma-separated engine names or families."""
    wanted = [e.strip() for e in requested.split(",") if e.strip()]
    unknown = [w for w in wanted if w not in ENGINES and not any(e.split()[0] == w for e in ENGINES)]
    if unknown:
        raise SystemExit(f"unknown engines {unknown}; known: {', '.join(ENGINES)} (or a family: rosetta, …)")
    chosen = [e for e in ENGINES if e in wanted or e.split()[0] in wanted]
    from rosetta.hardware import cpu_has_native_bf16

    native = cpu_has_native_bf16()
    skipped: dict[str, str] = {}
    for engine in chosen:
        family, precision = engine.split()
        if family in ("transformers", "ct2") and not available("transformers"):
            skipped[engine] = "transformers is not installed"
        elif family == "ct2" and not available("ctranslate2"):
            skipped[engine] = "ctranslate2 is not installed"
        elif family == "ct2" and precision != "float32":
            import ctranslate2

            if precision not in ctranslate2.get_supported_compute_types("cpu"):
                skipped[engine] = f"CTranslate2 offers no {precision} on this CPU (AVX-512 BF16 needed)"
        elif precision == "bf16" and (bf16 == "off" or bf16 == "auto" and not native):
            skipped[engine] = ("--bf16 off" if bf16 == "off" else
                               "this CPU has no native bf16 (AVX-512 BF16 / AMX): emulated, ~30× slower; --bf16 on")
    return [e for e in chosen if e not in skipped], skipped


# ---------------------------------------------------------------------------------------------- estimate
GFLOPS_PER_THREAD = 30.0  # fp32 decoding at many rows a step, per AVX2 core: the matrix products run at ≈ 45 a core
# (RESULTS.md, profile_decode.py), attention, search and Python around them take about a third of the time
SPEEDUP = {"fp32": 1.0, "float32": 1.0, "int8": 1.5, "bf16": 1.5, "bfloat16": 1.5}


def estimate_seconds(shape: Shape, work: Workload, engines: list[str], threads: int, rounds: int) -> float:
    """A FLOP model of the run: setup, then ``rounds`` + warm-up of every engine in every mode. Rough: the
    projection after the first round is measured."""
    d, f, layers, vocab = shape.d_model, shape.d_ff, shape.layers, shape.vocab
    src_len = sum(work.src_lengths) / 2 + 1
    step = layers * (6 * d * d + 2 * d * f) + d * vocab  # one row of one step: self + cross attention, FFN, output

    def seconds(sentences: int, batch: int, beam: int, n: int) -> float:
        flops = 2 * sentences * (layers * (6 * d * d + 2 * d * f) * src_len + beam * n * step)
        rows = batch * beam
        return flops / (GFLOPS_PER_THREAD * 1e9 * threads * rows / (rows + 4))  # few rows: memory-bound

    per_round = 0.0
    for engine in engines:
        work_s = sum(seconds(work.sentences, work.batch_size, beam, work.out_len)
                     + seconds(work.batch1, 1, beam, work.out_len) for beam in (1, work.beam))
        per_round += work_s / SPEEDUP[engine.split()[1]] + work.pause * len(MODES)
    setup = 10 + shape.parameters / 1e6 * 0.8  # save, convert, start and load every engine
    return setup + per_round * (rounds + 0.1)


# ---------------------------------------------------------------------------------------------- order
def round_order(engines: list[str], r: int) -> list[str]:
    """The cases of round ``r``, mode by mode: every engine runs one mode before any runs the next, the engines'
    order rotating with the round. The cells a ratio compares thus run seconds apart, not minutes: on a VM whose
    speed drifts (the same step 2.9–5.4 ms within a session, RESULTS.md) a ratio of cells timed minutes apart
    measures the drift as much as the engines."""
    shift = r % len(engines)
    rotated = engines[shift:] + engines[:shift]
    return [f"{e}|{m}" for m in MODES for e in rotated]


def paired_ratios(seconds: dict[str, list[float]], tokens: dict[str, int], a: str, b: str) -> dict[str, Stat]:
    """Engine ``a`` / engine ``b`` per mode, one ratio of tokens/s per round (the two cells of a round run
    back to back, ``round_order``): mode → Stat over rounds."""
    out = {}
    for mode in MODES:
        ca, cb = f"{a}|{mode}", f"{b}|{mode}"
        if ca in seconds and cb in seconds:
            out[mode] = Stat([(tokens[ca] / sa) / (tokens[cb] / sb) for sa, sb in zip(seconds[ca], seconds[cb])])
    return out


# ---------------------------------------------------------------------------------------------- report
def agreement(a: list[list[int]], b: list[list[int]]) -> float:
    return sum(x == y for x, y in zip(a, b)) / len(a)


def report_tables(report: dict[str, Any]) -> str:
    speed = {e: {m: Stat(v["values"]) for m, v in modes.items()} for e, modes in report["tokens_per_s"].items()}
    n, beam = report["workload"]["out_len"], report["workload"]["beam"]
    heads = {"greedy b64": f"greedy b{report['workload']['batch_size']}",
             "beam b64": f"beam {beam} b{report['workload']['batch_size']}", "greedy b1": "greedy b1",
             "beam b1": f"beam {beam} b1"}
    rows = [[e] + [modes[m].fmt() if m in modes else "–" for m in MODES]
            + ["yes" if report["exact_length"][e] else "**no**"] for e, modes in speed.items()]
    tables = ["### Output tokens/s (median [min–max])\n\n"
              + markdown_table(["engine"] + [heads[m] for m in MODES] + [f"all outputs {n} tokens"], rows)]
    ratio_rows = [[f"{a} / {b}"] + [ratio(speed[a].get(m), speed[b].get(m)) for m in MODES]
                  for a, b in RATIOS if a in speed and b in speed]
    if ratio_rows:
        tables.append("### Ratios of medians (> 1: the first is faster)\n\n"
                      + markdown_table(["engines"] + [heads[m] for m in MODES], ratio_rows))
    paired = {pair: {m: Stat(v["values"]) for m, v in modes.items()}
              for pair, modes in report.get("paired_ratios", {}).items()}
    paired_rows = [[pair] + [modes[m].fmt(2) + "×" if m in modes else "–" for m in MODES]
                   for pair, modes in paired.items()]
    if paired_rows:
        tables.append("### Ratios paired by round: the two cells run back to back (median [min–max] over rounds)\n\n"
                      + markdown_table(["engines"] + [heads[m] for m in MODES], paired_rows))
    agree_rows = [[pair] + [f"{modes[m]:.0%}" if m in modes else "–" for m in MODES]
                  for pair, modes in report["agreement"].items()]
    if agree_rows:
        tables.append("### Sentences with identical output ids\n\n"
                      + markdown_table(["engines"] + [heads[m] for m in MODES], agree_rows))
    if report["skipped"]:
        tables.append("Skipped: " + "; ".join(f"{e} ({why})" for e, why in report["skipped"].items()))
    return "\n\n".join(tables)


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="a tiny shape and workload (tests, smoke: seconds)")
    p.add_argument("--sentences", type=int, help="sentences decoded at batch 64 (default 128)")
    p.add_argument("--batch1", type=int, help="sentences decoded one at a time (default 16)")
    p.add_argument("--out-len", type=int, help="tokens every engine emits per sentence (default 30)")
    p.add_argument("--engines", default=",".join(ENGINES), help="comma-separated engines or families")
    p.add_argument("--repeats", type=int, help="rounds (default 2)")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads of every engine")
    p.add_argument("--bf16", choices=["auto", "on", "off"], default="auto",
                   help="bf16 engines: auto = only where the CPU has native bf16 (AVX-512 BF16 / AMX)")
    p.add_argument("--max-minutes", type=float, default=12.0,
                   help="no new round once the run would pass this (at least one round; 0: no limit)")
    p.add_argument("--workdir", type=Path, help="keep the Hugging Face and CT2 directories here (reused if present)")
    p.add_argument("--out", type=Path, help="write the report as JSON here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from workers import IsolatedSystems

    args = parse_args(argv)
    started = time.perf_counter()
    shape = TINY if args.tiny else OPUS_MT_EN_ZH
    work = WORKLOADS["tiny" if args.tiny else "full"]
    overrides = {"sentences": args.sentences, "batch1": args.batch1, "out_len": args.out_len, "repeats": args.repeats}
    work = replace(work, **{k: v for k, v in overrides.items() if v is not None})
    work = replace(work, batch1=min(work.batch1, work.sentences))
    engines, skipped = engine_plan(args.engines, args.bf16)

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    for engine, why in skipped.items():
        log(f"{engine}: skipped — {why}")
    estimate = estimate_seconds(shape, work, engines, args.threads, work.repeats)
    log(f"{shape.name} ({shape.parameters / 1e6:.1f} M parameters), {len(engines)} engines × {len(MODES)} modes, "
        f"{work.repeats} rounds, {args.threads} threads: estimated {estimate / 60:.1f} min (a FLOP model; the "
        "first round's time gives a measured projection)")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="rosetta-opus-mt-") as tmp_name:
        workdir = args.workdir or Path(tmp_name)
        hf_dir, ct2_dir = workdir / f"{shape.name}-hf", workdir / f"{shape.name}-ct2"
        if not (hf_dir / "model.safetensors").exists():
            write_hf_dir(shape, hf_dir)
        if any(e.startswith("ct2") for e in engines) and not (ct2_dir / "model.bin").exists():
            convert_ct2(hf_dir, ct2_dir)
        log(f"directories ready ({time.perf_counter() - started:.0f} s): {hf_dir}")
        batches, singles = sources(shape, work)
        builders = {e: (engine_runs, (e, str(hf_dir), str(ct2_dir), args.threads, batches, singles, work))
                    for e in engines}
        seconds: dict[str, list[float]] = {}
        outputs: dict[str, Any] = {}
        with IsolatedSystems(builders, args.threads) as systems:
            for engine, error in systems.errors.items():
                skipped[engine] = f"failed to build: {error}"
                log(f"{engine}: failed to build, left out: {error}")
            names = list(systems.modes)
            for engine in names:
                systems.case(engine, "warmup")()
            log(f"{len(names)} engines loaded and warmed up ({time.perf_counter() - started:.0f} s)")
            cases = {f"{e}|{m}": systems.case(e, m) for e in names for m in MODES}
            rounds = 0
            for r in range(work.repeats):
                round_start = time.perf_counter()
                secs, results = interleaved({c: cases[c] for c in round_order(names, r)}, 1, 0,
                                            torch.device("cpu"), work.pause)
                for case, s in secs.items():
                    seconds.setdefault(case, []).extend(s)
                outputs.update(results)
                rounds += 1
                took = time.perf_counter() - round_start
                elapsed = time.perf_counter() - started
                left = work.repeats - rounds
                if left:
                    log(f"round {rounds}: {took:.0f} s → about {left * took:.0f} s more for {left} rounds")
                    if args.max_minutes and elapsed + took > args.max_minutes * 60:
                        log(f"stopping after {rounds} rounds: another would pass --max-minutes {args.max_minutes}")
                        break
                else:
                    log(f"round {rounds}: {took:.0f} s")
    report = build_report(args, shape, work, names, seconds, outputs, skipped, rounds, estimate, started)
    env = report["environment"]
    print(f"## {shape.name}-shaped Marian, random weights: Rosetta vs transformers vs CTranslate2 — "
          f"{args.threads} threads, {env['date']}\n")
    print(f"{work.sentences} sentences at batch {work.batch_size} and {work.batch1} at batch 1, sources of "
          f"{work.src_lengths[0] + 1}–{work.src_lengths[1] + 1} ids, every output exactly {work.out_len} tokens; "
          f"{rounds} rounds, each engine in its own process; torch {env['torch']}, transformers "
          f"{env['transformers']}, ctranslate2 {env['ctranslate2']}, CPU {env['cpu']} ({env['cpu_count']} cores)\n")
    print(report_tables(report))
    print(f"\n({report['elapsed_s']:.0f} s; estimated {estimate:.0f} s)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        log(f"wrote {args.out}")
    return report


def build_report(args: argparse.Namespace, shape: Shape, work: Workload, engines: list[str],
                 seconds: dict[str, list[float]], outputs: dict[str, Any], skipped: dict[str, str], rounds: int,
                 estimate: float, started: float) -> dict[str, Any]:
    out_tokens = {case: sum(map(len, out)) for case, out in outputs.items()}  # output tokens of each "engine|mode"
    tokens: dict[str, dict[str, Any]] = {}
    exact: dict[str, bool] = {}
    for engine in engines:
        for mode in MODES:
            case = f"{engine}|{mode}"
            if case not in outputs:
                continue
            tokens.setdefault(engine, {})[mode] = Stat([out_tokens[case] / s for s in seconds[case]]).as_dict()
            exact[engine] = exact.get(engine, True) and all(len(o) == work.out_len for o in outputs[case])
    agree: dict[str, dict[str, float]] = {}
    for a, b in AGREEMENT:
        for mode in MODES:
            if f"{a}|{mode}" in outputs and f"{b}|{mode}" in outputs:
                agree.setdefault(f"{a} vs {b}", {})[mode] = agreement(outputs[f"{a}|{mode}"], outputs[f"{b}|{mode}"])
    speed = {e: {m: Stat(v["values"]) for m, v in modes.items()} for e, modes in tokens.items()}
    ratios = {f"{a} / {b}": {m: speed[a][m].median / speed[b][m].median for m in MODES
                             if m in speed[a] and m in speed[b]}
              for a, b in RATIOS if a in speed and b in speed}
    paired = {f"{a} / {b}": {m: st.as_dict() for m, st in paired_ratios(seconds, out_tokens, a, b).items()}
              for a, b in RATIOS if a in speed and b in speed}
    env = environment(SimpleNamespace(device="cpu", config=shape.name, workload_name="tiny" if args.tiny else "full"))
    env["threads"] = args.threads
    return {"environment": env, "shape": asdict(shape), "parameters": shape.parameters, "workload": asdict(work),
            "engines": engines, "skipped": skipped, "rounds": rounds, "tokens_per_s": tokens, "exact_length": exact,
            "ratios": ratios, "paired_ratios": paired, "agreement": agree,
            "output_tokens": {e: {m: out_tokens[f"{e}|{m}"] for m in MODES if f"{e}|{m}" in out_tokens}
                              for e in engines},
            "estimate_s": estimate, "elapsed_s": time.perf_counter() - started}


if __name__ == "__main__":
    main()
