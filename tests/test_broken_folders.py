"""Model folders that lie: each kind of broken folder gives one clear line naming the file, from the Python API,
every CLI command that loads a model, and ``rosetta serve`` alike; never a traceback, never a model.

Each case copies a tiny real model (tiny_translator.py, tiny_models.py, tiny_vit.py; random weights, since only
loading is tested) into tmp_path, breaks the copy one way, and opens it through one entry point. The config.json
edits are re-sealed with ``write_manifest`` (as a deliberate edit, or a tool that rewrote the folder, would leave
them), so the loader meets the lie itself rather than a sha256 mismatch. The intact twin of every entry point
loads and answers, so these checks can fail.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from typer.testing import CliRunner

import rosetta
from rosetta.checkpoint import CONFIG_FILE, MANIFEST_FILE, MODEL_FILE, CheckpointError, write_manifest
from rosetta.cli import app
from rosetta.decode.loading import load_any

runner = CliRunner()


# ------------------------------------------------------------------------------------------------ the folders
FAMILIES = ("translation", "summariser", "classifier", "lm", "qa", "vit")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """One intact folder per kind of model, built once for the module (the summariser: the translation model
    with config.json's "task" = "summarisation", as ``build_tiny_model(task=…)`` writes it)."""
    from tiny_models import build_tiny_classifier, build_tiny_lm, build_tiny_qa
    from tiny_translator import build_tiny_model
    from tiny_vit import build_tiny_vit

    root = tmp_path_factory.mktemp("intact")
    folders = {"translation": build_tiny_model(root / "translation", steps=0),
               "classifier": build_tiny_classifier(root / "classifier", steps=0),
               "lm": build_tiny_lm(root / "lm", steps=0), "qa": build_tiny_qa(root / "qa"),
               "vit": build_tiny_vit(root / "vit", steps=0), "summariser": root / "summariser"}
    shutil.copytree(folders["translation"], folders["summariser"])
    _edit_config(folders["summariser"], lambda c: c.update(task="summarisation"))
    return folders


# ------------------------------------------------------------------------------------------------ the lies
def _edit_config(folder: Path, change) -> None:
    config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    change(config)
    (folder / CONFIG_FILE).write_text(json.dumps(config), encoding="utf-8")
    write_manifest(folder)


def truncated(folder: Path) -> list[str]:
    path = folder / MODEL_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return [MODEL_FILE, "truncated", "copy it again"]


def corrupt(folder: Path) -> list[str]:
    path = folder / MODEL_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return [MODEL_FILE, "sha256", MANIFEST_FILE]


def weights_missing(folder: Path) -> list[str]:
    (folder / MODEL_FILE).unlink()
    return [MODEL_FILE, "missing", MANIFEST_FILE]


def no_manifest(folder: Path) -> list[str]:
    (folder / MANIFEST_FILE).unlink()
    return [MANIFEST_FILE, "write_manifest"]


def config_wrong_type(folder: Path) -> list[str]:
    _edit_config(folder, lambda c: c["model"].update(d_model=str(c["model"]["d_model"])))
    return [CONFIG_FILE, "d_model", "a string", "expected an integer"]


def config_unknown_key(folder: Path) -> list[str]:
    _edit_config(folder, lambda c: c["model"].update(n_head=c["model"]["n_heads"]))  # a misspelt n_heads
    return [CONFIG_FILE, "n_head", "known fields", "n_heads"]


def config_top_level_type(folder: Path) -> list[str]:
    _edit_config(folder, lambda c: c.update(task=7))
    return [CONFIG_FILE, "task", "an integer"]


def shapes(folder: Path) -> list[str]:
    _edit_config(folder, lambda c: c["model"].update(d_ff=c["model"]["d_ff"] * 2))
    return [MODEL_FILE, CONFIG_FILE, "implies"]


def no_tokenizer(folder: Path) -> list[str]:
    for path in folder.glob("tokenizer*.json"):
        path.unlink()
    write_manifest(folder)
    return ["tokenizer.json", "no tokenizer"]


def pickle_weights(folder: Path) -> list[str]:
    torch.save(load_file(folder / MODEL_FILE), folder / "pytorch_model.bin")
    (folder / MODEL_FILE).unlink()
    return ["pytorch_model.bin", "never unpickles", "weights_only=True", "save_file"]


def pickle_only_folder(folder: Path) -> list[str]:
    shutil.rmtree(folder)
    folder.mkdir()
    torch.save({"weight": torch.zeros(2)}, folder / "model.pt")
    return ["model.pt", "never unpickles", "save_file"]


BREAKAGES = [truncated, corrupt, weights_missing, no_manifest, config_wrong_type, config_unknown_key,
             config_top_level_type, shapes, no_tokenizer, pickle_weights, pickle_only_folder]


# ------------------------------------------------------------------------------------------------ the entry points
def _cli_commands(folder: Path, tmp: Path) -> dict[str, dict[str, list[str]]]:
    """Per kind of model: each CLI command that loads it, with arguments that succeed on the intact folder."""
    src = tmp / "src.txt"
    src.write_text("I am a student.\n", encoding="utf-8")
    m = ["--model", str(folder)]
    return {
        "translation": {"translate": ["translate", *m, "I am a student."],
                        "evaluate": ["evaluate", *m, "--src", str(src), "--ref", str(src)],
                        "export": ["export", *m, "--format", "onnx", "--out", str(tmp / "exported")],
                        "embed": ["embed", *m, "I am a student."]},
        "summariser": {"summarise": ["summarise", *m, "I am a student."]},
        "classifier": {"classify": ["classify", *m, "a wonderful film"], "embed": ["embed", *m, "a film"]},
        "lm": {"generate": ["generate", *m, "the", "--max-new-tokens", "3"]},
        "qa": {"answer": ["answer", *m, "--context", "Ada wrote the first program.", "Who wrote it?"]},
        "vit": {"classify": ["classify", *m, str(tmp / "digit.png")],
                "evaluate": ["evaluate", *m, "--corpus", "digits", "--limit", "8"]},
    }


def _entries(family: str) -> list[str]:
    """The ways into a ``family`` model: "api", "serve" and "cli-COMMAND" (the keys of ``_cli_commands``)."""
    commands = {"translation": ["translate", "evaluate", "export", "embed"], "summariser": ["summarise"],
                "classifier": ["classify", "embed"], "lm": ["generate"], "qa": ["answer"],
                "vit": ["classify", "evaluate"]}
    return ["api", "serve", *(f"cli-{c}" for c in commands[family])]


def _picture(path: Path) -> None:
    from tiny_vit import digit_picture

    digit_picture(0)[0].save(path)


def run_entry(entry: str, family: str, folder: Path, tmp: Path, monkeypatch) -> tuple[bool, str]:
    """Open ``folder`` through ``entry``: (it loaded, the error line or ""). Asserts the shape of a failure:
    the API raises CheckpointError, the CLI and serve exit 2 with one "error: …" line and no traceback."""
    if entry == "api":
        loader = rosetta.load if family in ("translation", "summariser") else load_any
        try:
            loaded = loader(folder)
        except CheckpointError as e:
            return False, str(e)
        assert loaded is not None
        return True, ""
    served = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: served.append(app))
    if entry == "serve":
        args = ["serve", "--model", str(folder)]
    else:
        if family == "vit":
            _picture(tmp / "digit.png")
        args = _cli_commands(folder, tmp)[family][entry.removeprefix("cli-")]
    result = runner.invoke(app, args)
    assert "Traceback" not in result.output, result.output
    if result.exit_code == 0:
        assert served or entry != "serve", "serve returned without serving"
        return True, ""
    assert not served, "uvicorn started on a broken folder"
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return False, lines[0].removeprefix("error: ")


CASES = [(family, breakage, entry) for family in FAMILIES for breakage in BREAKAGES for entry in _entries(family)
         if not (breakage is no_tokenizer and family == "vit")]  # a ViT reads pixels: it has no tokenizer


@pytest.fixture(autouse=True)
def _no_unpickling(monkeypatch):
    """Nothing may unpickle while loading (``torch.load`` runs pickle); breakages call the real one first."""
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called while loading a model"))
    yield real


@pytest.mark.parametrize("family,breakage,entry", CASES,
                         ids=[f"{f}-{b.__name__}-{e}" for f, b, e in CASES])
def test_broken_folder_gives_one_line_naming_the_file(models, tmp_path, monkeypatch, family, breakage, entry):
    folder = tmp_path / "model"
    shutil.copytree(models[family], folder)
    expected = breakage(folder)
    loaded, message = run_entry(entry, family, folder, tmp_path, monkeypatch)
    assert not loaded, f"{breakage.__name__}: {entry} loaded a broken {family} folder"
    assert "\n" not in message
    for piece in expected:
        assert piece in message, f"{piece!r} not in: {message}"
    assert str(tmp_path) in message, f"the message does not say where: {message}"
    if breakage is shapes:  # the tensor named, with its shape in the file and a different one the config implies
        name, in_file, implied = re.search(r"tensor (\S+) is (\[[\d, ]*\]) in the file, but config.json implies "
                                           r"(\[[\d, ]*\])", message).groups()
        with safe_open(str(folder / MODEL_FILE), "pt") as f:
            assert json.loads(in_file) == list(f.get_slice(name).get_shape())
        assert json.loads(implied) != json.loads(in_file)


@pytest.mark.parametrize("family,entry", [(f, e) for f in FAMILIES for e in _entries(f) if e != "cli-export"])
def test_intact_twin_loads(models, tmp_path, monkeypatch, family, entry):
    folder = tmp_path / "model"
    shutil.copytree(models[family], folder)
    loaded, message = run_entry(entry, family, folder, tmp_path, monkeypatch)
    assert loaded, message


def test_pickle_conversion_one_liner_gives_a_folder_that_loads(models, tmp_path, monkeypatch, _no_unpickling):
    """The command in the pickle message, run as given (with the real ``torch.load``, weights_only), turns the
    pickle into model.safetensors: the folder then loads with the original weights."""
    folder = tmp_path / "model"
    shutil.copytree(models["classifier"], folder)
    monkeypatch.setattr(torch, "load", _no_unpickling)
    pickle_weights(folder)
    with pytest.raises(CheckpointError) as error:
        load_any(folder)
    code = re.search(r'python -c "(.*)"$', str(error.value)).group(1)
    exec(code, {})  # the message's own one-liner
    loaded = load_any(folder)
    original = load_file(models["classifier"] / MODEL_FILE)
    state = loaded.model.state_dict()
    assert all(torch.equal(state[name], tensor) for name, tensor in original.items())


def test_a_failed_load_leaves_the_model_untouched(models, tmp_path):
    """``load_weights`` checks every name and shape before copying: a model it refuses keeps its weights."""
    from rosetta.checkpoint import load_weights
    from rosetta.models.lm import LanguageModel
    from rosetta.nn.config import ModelConfig

    folder = tmp_path / "model"
    shutil.copytree(models["lm"], folder)
    config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))["model"]
    wider = LanguageModel(ModelConfig.from_dict({**config, "d_ff": config["d_ff"] * 2}))
    before = {k: v.clone() for k, v in wider.state_dict().items()}
    with pytest.raises(CheckpointError, match="implies"):
        load_weights(folder, wider)
    assert all(torch.equal(before[k], v) for k, v in wider.state_dict().items())


def test_exported_folder_with_a_missing_or_truncated_engine_file(models, tmp_path):
    """A CTranslate2 export (``rosetta export``) whose model.bin is cut short or gone: one line naming it, from
    the API and the CLI. ``write_manifest`` re-seals the folder, so the engine's own check is what speaks."""
    pytest.importorskip("ctranslate2")
    from rosetta.compress.export import export_model
    from rosetta.decode.engines import engine_files

    out = export_model(models["translation"], tmp_path / "exported", "ctranslate2")
    assert len(rosetta.load(out).translate(["I am a student."])) == 1  # the intact export loads
    victim = engine_files(out, "ctranslate2")[0]
    victim.write_bytes(victim.read_bytes()[:100])
    for reseal in (False, True):  # against the manifest, then CTranslate2's own reading of the file
        if reseal:
            write_manifest(out)
        with pytest.raises(CheckpointError, match="truncated" if not reseal else "ctranslate2 cannot load") as error:
            rosetta.load(out)
        assert str(out) in str(error.value) and "\n" not in str(error.value)
    victim.unlink()
    write_manifest(out)
    result = runner.invoke(app, ["translate", "--model", str(out), "I am a student."])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.startswith("error: ") and str(victim) in result.stderr and "missing" in result.stderr


def test_folder_claiming_an_onnx_export_with_unreadable_graphs(models, tmp_path):
    """config.json says "format": "onnx" but the graphs are not ONNX (then one is gone): one line, no model."""
    pytest.importorskip("onnxruntime")
    from rosetta.decode.engines import engine_files

    folder = tmp_path / "model"
    shutil.copytree(models["translation"], folder)
    (folder / MODEL_FILE).unlink()
    graphs = engine_files(folder, "onnx")
    for graph in graphs:
        graph.write_bytes(b"not a graph")
    _edit_config(folder, lambda c: c.update(format="onnx"))
    with pytest.raises(CheckpointError, match="onnx cannot load") as error:
        rosetta.load(folder)
    assert str(folder) in str(error.value) and "\n" not in str(error.value)
    graphs[1].unlink()
    write_manifest(folder)
    with pytest.raises(CheckpointError, match=f"{graphs[1]} is missing"):
        rosetta.load(folder)


def test_hugging_face_folder_with_pickle_weights_or_a_damaged_file(tmp_path):
    """A Hugging Face BERT folder (config.json with "model_type") goes another way in (``read_hf``), and
    breaks the same way out: pickle weights refused with the conversion, a cut file named, from API and CLI."""
    from safetensors.torch import save_file

    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / CONFIG_FILE).write_text(json.dumps({"model_type": "bert", "vocab_size": 30, "hidden_size": 8,
                                                  "num_attention_heads": 2, "intermediate_size": 16,
                                                  "num_hidden_layers": 1}), encoding="utf-8")
    (folder / "pytorch_model.bin").write_bytes(b"a pickle, never opened")
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin is a pickle.*weights_only=True"):
        load_any(folder)
    (folder / "pytorch_model.bin").unlink()
    save_file({"embeddings.word_embeddings.weight": torch.zeros(30, 8)}, folder / MODEL_FILE)
    (folder / MODEL_FILE).write_bytes((folder / MODEL_FILE).read_bytes()[:60])
    with pytest.raises(CheckpointError, match="model.safetensors cannot be read .*truncated or damaged") as error:
        load_any(folder)
    assert str(folder) in str(error.value) and "\n" not in str(error.value)
    result = runner.invoke(app, ["embed", "--model", str(folder), "a sentence"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: {folder}")
