"""Head importance and pruning (rosetta.compress.heads / pruning): the mask's gradient against float64 finite
differences, a masked head against the same head physically removed, and a pruned model on disk that loads,
decodes and is served its importance."""

import json

import pytest
import torch
from typer.testing import CliRunner

import rosetta
from rosetta import ModelConfig, Transformer
from rosetta.cli import app
from rosetta.compress.heads import (
    KINDS,
    batch_loss,
    head_importance,
    heads_to_remove,
    ones_mask,
    prune_model,
)
from rosetta.compress.pruning import prune_directory, pruning_curve
from rosetta.data.batching import collate_translation

VOCAB = 29


def tiny(**overrides) -> Transformer:
    config = ModelConfig.preset("tiny", src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, dropout=0.0, max_len=32,
                                **overrides)
    torch.manual_seed(0)
    return Transformer(config).eval()


def random_batch(seed: int, n: int = 3):
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(n):
        s_len, t_len = torch.randint(2, 8, (2,), generator=g).tolist()
        pairs.append((torch.randint(4, VOCAB, (s_len,), generator=g).tolist() + [2],
                      torch.randint(4, VOCAB, (t_len,), generator=g).tolist()))
    return collate_translation(pairs, 0, 1, 2)  # padded: lengths differ


def finite_difference(model, batch, eps=1e-6):
    """∂L/∂ξ_h by central differences, head by head, in float64."""
    grads = {}
    for kind in KINDS:
        grads[kind] = []
        for layer, attn in enumerate(ones_mask(model)[kind]):
            row = []
            for h in range(attn.numel()):
                plus, minus = ones_mask(model), ones_mask(model)
                plus[kind][layer][h] += eps
                minus[kind][layer][h] -= eps
                with torch.no_grad():
                    diff = batch_loss(model, batch, plus) - batch_loss(model, batch, minus)
                row.append(float(diff) / (2 * eps))
            grads[kind].append(row)
    return grads


def test_mask_gradient_and_importance_match_finite_differences_in_float64():
    model = tiny(norm_first=True, n_encoder_layers=1, n_decoder_layers=1).double()
    batches = [random_batch(1), random_batch(2)]
    fd = [finite_difference(model, b) for b in batches]
    mask = ones_mask(model, requires_grad=True)
    flat = [m for kind in KINDS for m in mask[kind]]
    grads = torch.autograd.grad(batch_loss(model, batches[0], mask), flat)
    expected = torch.tensor([g for kind in KINDS for layer in fd[0][kind] for g in layer], dtype=torch.float64)
    assert torch.allclose(torch.cat(grads), expected, rtol=1e-6, atol=1e-9)
    assert expected.abs().min() > 0  # every head matters a little: the comparison is not 0 == 0

    importance = head_importance(model, batches)
    raw = head_importance(model, batches, normalize=False)
    for kind in KINDS:
        for layer in range(len(fd[0][kind])):
            mean_abs = (torch.tensor(fd[0][kind][layer], dtype=torch.float64).abs()
                        + torch.tensor(fd[1][kind][layer], dtype=torch.float64).abs()) / 2
            assert torch.allclose(torch.tensor(raw[kind][layer], dtype=torch.float64), mean_abs, rtol=1e-6)
            normalised = mean_abs / mean_abs.norm()
            assert torch.allclose(torch.tensor(importance[kind][layer], dtype=torch.float64), normalised, rtol=1e-6)


@pytest.mark.parametrize("overrides", [
    {},  # the paper's post-LN, sinusoidal positions
    {"norm_first": True, "positional": "rope", "d_k": 8, "d_v": 12},  # d_k ≠ d_v: V rows are sliced apart
])
def test_a_masked_head_equals_the_head_removed(overrides):
    model = tiny(**overrides)
    kept = {"encoder": [[0, 2], [1, 2, 3]], "decoder": [[3], [0, 1, 2, 3]], "cross": [[1, 3], [0]]}
    mask = ones_mask(model)
    for kind in KINDS:
        for layer, heads in enumerate(kept[kind]):
            for h in range(4):
                if h not in heads:
                    mask[kind][layer][h] = 0.0
    batch = random_batch(3, n=4)
    pruned = prune_model(model, kept)
    assert pruned.config.heads_per_layer == {"encoder": [2, 3], "decoder": [1, 4], "cross": [2, 1]}
    with torch.no_grad():
        masked = model(batch.src, batch.tgt_in, head_mask=mask)
        removed = pruned(batch.src, batch.tgt_in)
        full = model(batch.src, batch.tgt_in)
    assert torch.allclose(removed, masked, atol=1e-5, rtol=0)
    assert (full - masked).abs().max() > 1e-3  # the mask does remove something
    per_head = 3 * 16 * 64 + 3 * 16 + 16 * 64 if not overrides else (2 * 8 + 12) * 64 + 2 * 8 + 12 + 12 * 64
    assert model.num_parameters() - pruned.num_parameters() == 11 * per_head  # 11 heads gone, physically


def test_heads_to_remove_goes_least_important_first_and_keeps_one_per_layer():
    importance = {"encoder": [[0.1, 0.9, 0.5]], "decoder": [[0.05, 0.2]], "cross": [[0.3, 0.01]]}
    assert heads_to_remove(importance, 2) == {"encoder": [[0, 1, 2]], "decoder": [[1]], "cross": [[0]]}
    # 0.01 and 0.05 go first, then 0.1; next 0.2 and 0.3 are each the last head of their layer, so 0.5 goes
    assert heads_to_remove(importance, 3) == {"encoder": [[1, 2]], "decoder": [[1]], "cross": [[0]]}
    assert heads_to_remove(importance, 4) == {"encoder": [[1]], "decoder": [[1]], "cross": [[0]]}
    with pytest.raises(ValueError, match="at most 4"):
        heads_to_remove(importance, 5)
    random_a = heads_to_remove(importance, 3, order="random", seed=7)
    assert random_a == heads_to_remove(importance, 3, order="random", seed=7)
    assert sum(len(h) for kind in KINDS for h in random_a[kind]) == 4
    with pytest.raises(ValueError, match="order"):
        heads_to_remove(importance, 1, order="best")


def test_config_rejects_bad_head_counts():
    with pytest.raises(ValueError, match="at least 1"):
        ModelConfig.preset("tiny", heads_per_layer={"encoder": [4, 0]})
    with pytest.raises(ValueError, match="one per layer"):
        ModelConfig.preset("tiny", heads_per_layer={"cross": [4]})
    with pytest.raises(ValueError, match="unknown kinds"):
        ModelConfig.preset("tiny", heads_per_layer={"self": [4, 4]})
    config = ModelConfig.preset("tiny", heads_per_layer={"decoder": [1, 3]})
    assert ModelConfig.from_json(config.to_json()) == config


def test_pruned_model_on_disk_loads_decodes_and_records_importance(tmp_path):
    from tiny_translator import PAIRS, SENTENCES, tiny_model_dir

    out = prune_directory(tiny_model_dir(), tmp_path / "pruned", PAIRS, fraction=0.5)
    info = json.loads((out / "config.json").read_text())
    counts = info["model"]["heads_per_layer"]
    assert sum(sum(c) for c in counts.values()) == 12  # 24 heads, half removed
    assert {k: [len(h) for h in v] for k, v in info["head_importance"].items()} == counts
    assert info["pruning"]["heads_removed"] == 12 and info["pruning"]["order"] == "importance"

    loaded = rosetta.load(out)
    original = rosetta.load(tiny_model_dir())
    kept = info["pruning"]["kept"]
    in_memory = prune_model(original.model, kept)
    batch = random_batch(5)
    with torch.no_grad():
        src = batch.src.clamp(max=loaded.config.src_vocab_size - 1)
        tgt = batch.tgt_in.clamp(max=loaded.config.tgt_vocab_size - 1)
        assert torch.equal(loaded.model(src, tgt), in_memory(src, tgt))
    outputs = loaded.translate(SENTENCES[:4], beam=2)
    assert len(outputs) == 4 and all(isinstance(o, str) for o in outputs)
    # the importance kept equals the original model's at those heads, layer by layer
    before = info["pruning"]["importance_before"]
    for kind in KINDS:
        for layer, heads in enumerate(kept[kind]):
            assert info["head_importance"][kind][layer] == [before[kind][layer][h] for h in sorted(heads)]


def test_pruning_curve_at_zero_is_the_model_itself(tmp_path):
    from tiny_translator import PAIRS, tiny_model_dir

    translator = rosetta.load(tiny_model_dir())
    curve = pruning_curve(translator, PAIRS, PAIRS[:6], [0.0, 0.5], orders=("importance", "random"), seeds=(1, 2))
    points = {(p["order"], p["fraction"]): p for p in curve["points"]}
    from rosetta.tasks.metrics import score

    direct = score(translator.translate([s for s, _ in PAIRS[:6]], beam=1), [t for _, t in PAIRS[:6]], "zh").bleu
    assert points["importance", 0.0]["bleu"] == points["random", 0.0]["bleu"] == pytest.approx(direct)
    assert points["importance", 0.5]["heads_left"] == 12
    random_half = points["random", 0.5]
    assert len(random_half["bleu_per_seed"]) == 2 and len(points["importance", 0.5]["bleu_per_seed"]) == 1
    assert random_half["bleu"] == pytest.approx(sum(random_half["bleu_per_seed"]) / 2)

    from rosetta.view.plots import save_figure
    from rosetta.view.pruning import pruning_figure

    (path,) = save_figure(pruning_figure(curve["points"], "tiny"), tmp_path / "pruning.png")
    assert path.stat().st_size > 1000


def test_prune_command_and_its_errors(tmp_path):
    from tiny_translator import PAIRS, tiny_model_dir

    src, ref = tmp_path / "v.en", tmp_path / "v.zh"
    src.write_text("\n".join(s for s, _ in PAIRS) + "\n", encoding="utf-8")
    ref.write_text("\n".join(t for _, t in PAIRS) + "\n", encoding="utf-8")
    runner = CliRunner()
    base = ["prune", "--model", str(tiny_model_dir()), "--src", str(src), "--ref", str(ref)]
    result = runner.invoke(app, base + ["--heads", "5", "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert "removed 5 of 24 heads" in result.output
    assert rosetta.load(tmp_path / "p").translate(["I am a student."])
    both = runner.invoke(app, base + ["--heads", "2", "--fraction", "0.1", "--out", str(tmp_path / "q")])
    assert both.exit_code == 2 and "not both" in both.output
    too_many = runner.invoke(app, base + ["--heads", "23", "--out", str(tmp_path / "q")])
    assert too_many.exit_code == 2 and "at most 18" in too_many.output
    no_data = runner.invoke(app, ["prune", "--model", str(tiny_model_dir()), "--heads", "1", "--out",
                                  str(tmp_path / "q")])
    assert no_data.exit_code == 2 and "--src FILE --ref FILE" in no_data.output
