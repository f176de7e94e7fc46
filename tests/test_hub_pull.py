"""``rosetta hub pull`` offline: the Hub is replaced by a fake repository listing and a fake download that
applies huggingface_hub's own pattern filter (``filter_repo_objects``) to what it is asked for."""

import sys

import pytest
from typer.testing import CliRunner

from rosetta.cli import app

hub = pytest.importorskip("huggingface_hub")
from huggingface_hub.utils import filter_repo_objects  # noqa: E402

runner = CliRunner()
REPO = ["config.json", "generation_config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5",
        "source.spm", "target.spm", "vocab.json", "tokenizer_config.json", "README.md", "onnx/model.onnx",
        "onnx/config.json", "flax_model.msgpack"]


def fake_hub(monkeypatch, files, error=None):
    calls = []

    def list_repo_files(self, name, revision=None):
        if error is not None:
            raise error
        return list(files)

    def snapshot_download(name, revision=None, local_dir=None, allow_patterns=None, ignore_patterns=None, **kw):
        calls.append((name, revision))
        for f in filter_repo_objects(files, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns):
            path = __import__("pathlib").Path(local_dir) / f
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f)
        return local_dir

    monkeypatch.setattr(hub.HfApi, "list_repo_files", list_repo_files)
    monkeypatch.setattr(hub, "snapshot_download", snapshot_download)
    return calls


def run(*args):
    return runner.invoke(app, ["hub", "pull", *map(str, args)])


def test_pull_fetches_safetensors_configs_and_tokenizers_only(monkeypatch, tmp_path):
    calls = fake_hub(monkeypatch, REPO)
    result = run("Helsinki-NLP/opus-mt-en-de", "--revision", "v1", "--out", tmp_path / "m")
    assert result.exit_code == 0, result.output
    assert calls == [("Helsinki-NLP/opus-mt-en-de", "v1")]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json", "generation_config.json", "model.safetensors", "source.spm", "target.spm",
        "tokenizer_config.json", "vocab.json"]


def test_a_pickle_only_repository_is_refused_before_downloading(monkeypatch, tmp_path):
    calls = fake_hub(monkeypatch, ["config.json", "pytorch_model.bin", "vocab.txt"])
    result = run("someone/old-bert", "--out", tmp_path / "m")
    assert result.exit_code == 2 and calls == [] and not (tmp_path / "m").exists()
    line = result.output.strip()
    assert "\n" not in line and "pytorch_model.bin, a pickle" in line and "refs/pr/N" in line


@pytest.mark.parametrize("error, says", [(ConnectionError("Failed to resolve 'huggingface.co'"), "without a network"),
                                          (OSError("offline"), "give its path to --model")])
def test_no_network_is_one_line_saying_what_to_do(monkeypatch, tmp_path, error, says):
    fake_hub(monkeypatch, REPO, error=error)
    result = run("gpt2", "--out", tmp_path / "m")
    assert result.exit_code == 2 and says in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_an_unknown_repository_names_the_problem(monkeypatch, tmp_path):
    error = type("RepositoryNotFoundError", (Exception,), {})("404 Client Error: Repository Not Found")
    fake_hub(monkeypatch, REPO, error=error)
    result = run("nobody/nothing", "--out", tmp_path / "m")
    assert result.exit_code == 2 and "RepositoryNotFoundError" in result.output and "check the name" in result.output


def test_without_huggingface_hub_the_error_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails
    result = run("gpt2", "--out", tmp_path / "m")
    assert result.exit_code == 2 and "pip install huggingface_hub" in result.output
