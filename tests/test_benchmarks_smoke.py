"""benchmarks/peers.py on a minuscule configuration, so that the benchmark does not rot (a few seconds)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

PEERS = Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("rosetta_bench_peers", PEERS)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def two_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_same_architecture_in_every_system(peers):
    arch = peers.ARCHS["mini"]
    rosetta, torch_nn = peers.build_rosetta(arch), peers.build_torch_nn(arch)
    batch = peers.train_batches(arch, peers.WORKLOADS["mini"])[0]
    shapes = {"rosetta": rosetta(batch.src, batch.tgt_in).shape, "torch.nn": torch_nn(batch.src, batch.tgt_in).shape}
    # the same weights, counted once however they are tied (nn.Transformer adds 2 final LayerNorms)
    d = arch.d_model
    assert rosetta.num_parameters() == sum(p.numel() for p in torch_nn.parameters()) - 4 * d
    if peers.available("transformers"):
        marian = peers.build_marian(arch)
        shapes["hf-marian"] = peers.forward_fn("hf-marian", marian)(batch).shape
        assert rosetta.num_parameters() == sum(p.numel() for p in marian.parameters() if p.requires_grad)
    assert set(shapes.values()) == {(*batch.tgt_out.shape, arch.vocab)}


def test_cache_free_baseline_emits_what_the_cached_search_emits(peers):
    """The benchmark's no-cache baseline and Rosetta's cached greedy search emit the same token ids (same model,
    outputs forced to the same length): the speed ratio compares the cache alone, not different work."""
    from rosetta import decode

    arch, work = peers.ARCHS["mini"], peers.WORKLOADS["mini"]
    model = peers.build_rosetta(arch).eval()
    src = peers.pad(peers.decode_sources(arch, work))
    with torch.inference_mode():
        baseline = peers.greedy_no_cache(model, src, work.out_len)
        cached = decode.greedy_search(model, src, max_len=work.out_len, min_len=work.out_len)
    assert baseline.shape == (len(src), work.out_len)
    assert [len(row) for row in cached] == [work.out_len] * len(src)
    assert baseline.tolist() == cached
    # the ids are not trivially equal (a constant output would make the comparison empty)
    assert len({token for row in cached for token in row}) > 1


def test_whole_run_on_a_mini_config(peers, tmp_path):
    out = tmp_path / "bench.json"
    report = peers.main(["--config", "mini", "--only", "train,curve,decode", "--cpu-bf16", "on", "--json", str(out)])
    assert json.loads(out.read_text())["environment"]["torch"] == torch.__version__
    assert {"rosetta", "rosetta bf16", "torch.nn"} <= set(report["training_tokens_per_s"])
    assert all(s["median"] > 0 for s in report["training_tokens_per_s"].values())
    curves = report["loss_curves"]
    assert len(curves["fp32"]) == len(curves["bf16"]) == peers.WORKLOADS["mini"].curve_steps
    decoded = report["decoding_sentences_per_s"]
    assert {"rosetta", "rosetta int8", "rosetta no-cache"} <= set(decoded)
    if peers.available("ctranslate2") and peers.available("transformers"):
        assert {"hf-marian", "ct2 float32", "ct2 int8"} <= set(decoded)
    assert all(report["decoding_exact_length"].values()), report["decoding_exact_length"]


def test_memory_probe_reports_a_peak(peers, tmp_path):
    arch, work = peers.ARCHS["mini"], peers.WORKLOADS["mini"]
    out = peers.memory_probe("train rosetta", arch, work, torch.device("cpu"), 1, tmp_path)
    assert out["peak_rss_mb"] >= out["before_mb"] > 0


def test_peer_recipe_marian_has_the_recipe_sizes_and_vocabularies():
    """benchmarks/peer_recipe.py's Marian: the recipe's sizes, separate vocabularies, an output layer tied to the
    target embeddings, and Rosetta's forward(src, tgt_in) → logits (B, T, V_tgt) interface."""
    pytest.importorskip("transformers")
    spec = importlib.util.spec_from_file_location("rosetta_bench_peer_recipe", PEERS.parent / "peer_recipe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from rosetta import ModelConfig

    config = ModelConfig(src_vocab_size=50, tgt_vocab_size=30, d_model=32, n_heads=2, d_ff=64, n_encoder_layers=1,
                         n_decoder_layers=2, max_len=40, share_embeddings=False, tie_output=True, norm_first=False)
    marian = module.MarianSeq2Seq(config)
    src = torch.randint(4, 50, (3, 7))
    tgt_in = torch.randint(4, 30, (3, 5))
    assert marian(src, tgt_in).shape == (3, 5, 30)
    hf = marian.marian.config
    sizes = (hf.d_model, hf.encoder_layers, hf.decoder_layers, hf.vocab_size, hf.decoder_vocab_size)
    assert sizes == (32, 1, 2, 50, 30)
    assert marian.marian.lm_head.weight.data_ptr() == marian.marian.model.decoder.embed_tokens.weight.data_ptr()
