"""Checkpoints: atomic writes, exact round trips, clear errors for missing or corrupt files."""

import json
import os
from unittest import mock

import pytest
import torch

from rosetta import ModelConfig, Transformer
from rosetta import checkpoint as ckpt


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    config = ModelConfig.preset("tiny", src_vocab_size=30, tgt_vocab_size=30, share_embeddings=True, **overrides)
    return Transformer(config)


def save(path, model, **kw):
    return ckpt.save_checkpoint(path, model, {"family": "translation", "model": model.config.to_dict()}, **kw)


def test_round_trip_restores_every_weight_and_keeps_ties(tmp_path):
    model = tiny_model(0)
    save(tmp_path / "c", model)
    other = tiny_model(1)
    ckpt.load_weights(tmp_path / "c", other)
    for (name, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), name
    assert other.output.weight is other.tgt_embed.token.weight is other.src_embed.token.weight


def test_optimizer_state_round_trip(tmp_path):
    model = tiny_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    src = torch.randint(3, 30, (2, 5))
    model(src, src).sum().backward()
    opt.step()
    save(tmp_path / "c", model, optimizer=opt, trainer_state={"step": 1})
    state, tensors = ckpt.load_trainer_state(tmp_path / "c")
    restored = ckpt.optimizer_from_tensors(
        {k.removeprefix("optimizer."): v for k, v in tensors.items() if k.startswith("optimizer.")},
        state["optimizer"])
    original = opt.state_dict()
    assert restored["param_groups"] == json.loads(json.dumps(original["param_groups"]))
    for index, per_param in original["state"].items():
        for name, value in per_param.items():
            assert torch.equal(torch.as_tensor(restored["state"][index][name]), torch.as_tensor(value))
    assert state["step"] == 1


def test_no_pickle_files(tmp_path):
    model = tiny_model()
    save(tmp_path / "c", model, optimizer=torch.optim.Adam(model.parameters()), trainer_state={"step": 0})
    names = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert names == ["config.json", "manifest.json", "model.safetensors", "optimizer.safetensors",
                     "trainer_state.json"]


def test_interrupted_save_leaves_last_good_checkpoint(tmp_path):
    model = tiny_model(0)
    save(tmp_path / "c", model)
    good = (tmp_path / "c" / "model.safetensors").read_bytes()

    def explode(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-save")

    with mock.patch.object(ckpt.files, "sha256_file", side_effect=explode), pytest.raises(KeyboardInterrupt):
        save(tmp_path / "c", tiny_model(1))
    assert (tmp_path / "c" / "model.safetensors").read_bytes() == good
    ckpt.verify_checkpoint(tmp_path / "c")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")], "temporary directory left behind"


@pytest.mark.parametrize("victim", ["model.safetensors", "config.json"])
def test_missing_file_is_named(tmp_path, victim):
    save(tmp_path / "c", tiny_model())
    os.remove(tmp_path / "c" / victim)
    with pytest.raises(ckpt.CheckpointError, match=victim):
        ckpt.verify_checkpoint(tmp_path / "c")


def test_corrupt_file_is_named(tmp_path):
    save(tmp_path / "c", tiny_model())
    path = tmp_path / "c" / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ckpt.CheckpointError, match="model.safetensors is corrupt"):
        ckpt.verify_checkpoint(tmp_path / "c")


def test_truncated_weights_named_on_load(tmp_path):
    save(tmp_path / "c", tiny_model())
    path = tmp_path / "c" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ckpt.CheckpointError, match="model.safetensors"):
        ckpt.load_weights(tmp_path / "c", tiny_model())


def test_weights_of_another_architecture_are_refused(tmp_path):
    save(tmp_path / "c", tiny_model())
    bigger = Transformer(ModelConfig.preset("tiny", src_vocab_size=30, tgt_vocab_size=30, share_embeddings=True,
                                            n_encoder_layers=3))
    with pytest.raises(ckpt.CheckpointError, match="missing"):
        ckpt.load_weights(tmp_path / "c", bigger)


def test_average_is_elementwise_mean(tmp_path):
    models = [tiny_model(s) for s in range(3)]
    for i, m in enumerate(models):
        save(tmp_path / f"c{i}", m)
    avg = ckpt.average_checkpoints([tmp_path / f"c{i}" for i in range(3)])
    name = "encoder.layers.0.self_attn.qkv_proj.weight"
    expected = sum(m.state_dict()[name].double() for m in models) / 3
    assert torch.allclose(avg[name].double(), expected, atol=1e-7)
