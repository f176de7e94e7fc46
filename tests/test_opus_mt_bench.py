"""benchmarks/opus_mt.py (issue 21) end to end on its tiny shape: every engine in its own process on the same ids,
every output exactly the forced length, and greedy Rosetta fp32 = greedy transformers fp32 (a few seconds)."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "opus_mt.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("rosetta_bench_opus_mt", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_the_full_shape_is_opus_mt_en_zh(bench):
    """The config.json the full run writes: Helsinki-NLP/opus-mt-en-zh's architecture and token ids."""
    config = bench.marian_config(bench.OPUS_MT_EN_ZH).to_dict()
    expected = {"d_model": 512, "encoder_attention_heads": 8, "decoder_attention_heads": 8, "encoder_ffn_dim": 2048,
                "decoder_ffn_dim": 2048, "encoder_layers": 6, "decoder_layers": 6, "vocab_size": 65001,
                "decoder_vocab_size": 65001, "activation_function": "swish", "static_position_embeddings": True,
                "scale_embedding": True, "share_encoder_decoder_embeddings": True, "tie_word_embeddings": True,
                "pad_token_id": 65000, "decoder_start_token_id": 65000, "eos_token_id": 0,
                "max_position_embeddings": 512}
    assert {k: config.get(k) for k in expected} == expected
    names = bench.vocabulary(bench.OPUS_MT_EN_ZH)
    assert len(names) == len(set(names)) == 65001 and names[:2] == ["</s>", "<unk>"] and names[-1] == "<pad>"
    assert bench.OPUS_MT_EN_ZH.parameters == pytest.approx(77.5e6, rel=0.01)  # the real model's 77.5 M


def test_tiny_run_end_to_end(bench, tmp_path):
    out = tmp_path / "opus-mt.json"
    report = bench.main(["--tiny", "--workdir", str(tmp_path), "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    engines = report["engines"]
    assert {"rosetta fp32", "rosetta int8"} <= set(engines)
    assert "transformers fp32" in engines, report["skipped"]
    work = report["workload"]
    for engine in engines:  # every engine, every mode: the same number of tokens, each output exactly out_len
        assert report["exact_length"][engine], engine
        assert report["output_tokens"][engine] == {
            "greedy b64": work["sentences"] * work["out_len"], "beam b64": work["sentences"] * work["out_len"],
            "greedy b1": work["batch1"] * work["out_len"], "beam b1": work["batch1"] * work["out_len"]}, engine
        assert all(s["median"] > 0 for s in report["tokens_per_s"][engine].values())
    agreement = report["agreement"]["rosetta fp32 vs transformers fp32"]
    assert agreement["greedy b64"] >= 0.75 and agreement["greedy b1"] >= 0.75, agreement
    assert set(report["ratios"]["rosetta fp32 / transformers fp32"]) == set(bench.MODES)
    paired = report["paired_ratios"]["rosetta fp32 / transformers fp32"]
    assert set(paired) == set(bench.MODES) and all(len(v["values"]) == report["rounds"] for v in paired.values())
    if "ct2 float32" in engines:
        assert report["agreement"]["ct2 float32 vs transformers fp32"]["greedy b64"] >= 0.75
        assert set(report["ratios"]["rosetta fp32 / ct2 float32"]) == set(bench.MODES)
    # the parameter count the estimate uses is the model's
    from safetensors import safe_open

    with safe_open(str(tmp_path / "tiny-hf" / "model.safetensors"), "pt") as f:
        stored = {k: f.get_slice(k).get_shape() for k in f.keys() if "embed_positions" not in k}
    count = sum(math.prod(shape) for name, shape in stored.items() if name != "final_logits_bias")
    assert count == bench.TINY.parameters


def test_a_wide_vocabulary_decodes_generates_ids(bench, tmp_path):
    """With 3,001 target ids the searches pick their tokens through ``decode.selection``'s two-pass path (chunk
    maxima, then a few chunks; below a few chunks per wanted token they call ``max`` / ``topk`` directly): greedy and
    beam 4, a padded batch of 6, every output forced to 8 tokens — the same ids as ``generate``, sentence for
    sentence."""
    from rosetta.decode.selection import CHUNK

    shape = bench.Shape("wide", d_model=16, n_heads=2, d_ff=32, layers=1, vocab=3001, max_positions=64, init_std=0.3)
    assert shape.vocab // CHUNK * CHUNK >= 4 * 8 * CHUNK  # beam 4 ranks 2·4 per row: the two-pass path
    hf_dir = str(bench.write_hf_dir(shape, tmp_path / "wide-hf"))
    work = bench.Workload(sentences=6, batch_size=6, batch1=1, src_lengths=(3, 9), out_len=8, repeats=1, pause=0.0)
    (batch,), _ = bench.sources(shape, work)
    ours, theirs = bench.rosetta_decoder(hf_dir, "fp32"), bench.transformers_decoder(hf_dir, "fp32")
    got = {beam: ours(batch, beam, work.out_len) for beam in (1, 4)}
    for beam, ids in got.items():
        assert ids == theirs(batch, beam, work.out_len), beam
        assert all(len(row) == work.out_len for row in ids)
    assert got[4] != got[1]  # beam search chose differently somewhere


def test_rounds_run_mode_by_mode_and_ratios_pair_each_rounds_cells(bench):
    """Every engine runs a mode before any runs the next, the engines' order rotating by round; a paired ratio is
    one per round, from that round's two cells (tokens/s of the first engine over the second's)."""
    engines = ["a", "b", "c"]
    for r in range(4):
        order = bench.round_order(engines, r)
        assert order == [f"{e}|{m}" for m in bench.MODES for e in (engines[r % 3:] + engines[: r % 3])]
    mode = bench.MODES[0]
    seconds = {f"a|{mode}": [1.0, 4.0, 2.0], f"b|{mode}": [2.0, 2.0, 2.0]}
    tokens = {f"a|{mode}": 30, f"b|{mode}": 60}
    (got,) = bench.paired_ratios(seconds, tokens, "a", "b").values()
    assert got.values == pytest.approx([1.0, 0.25, 0.5]) and got.median == pytest.approx(0.5)
