"""``rosetta hub pull NAME --out DIR``: a model's directory from the Hugging Face Hub, safetensors and text only.

``huggingface_hub`` is optional (``pip install huggingface_hub``) and used only here. What is fetched is what
Rosetta reads — weights as safetensors (one file or the shards of an index), config.json,
generation_config.json, preprocessor_config.json and the tokenizer files (tokenizer.json, vocab.json,
merges.txt, vocab.txt, SentencePiece models) — from the repository's top folder (no onnx/, flax/ … copies).

A repository whose weights exist only as ``pytorch_model.bin`` (a pickle, which can run code when loaded) is
refused before anything is downloaded: Rosetta never unpickles weights. The message says where safetensors
often are (the conversion bot's ``refs/pr/N`` revision) and how to convert a trusted file
(``torch.load(weights_only=True)``, what ``rosetta.checkpoint.refuse_pickle`` prints).

Every failure — no huggingface_hub, no network, an unknown name or revision, a gated repository — is a
``PullError`` of one line saying what to do; without a network, copy the directory by other means and give
its path to ``--model``.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

ALLOW = ["*.safetensors", "*.json", "*.model", "*.spm", "vocab.txt", "merges.txt"]
PICKLES = ("pytorch_model.bin", "pytorch_model-*.bin", "*.pt", "*.pth", "*.ckpt")


class PullError(RuntimeError):
    """A pull that cannot happen, in one line saying why and what to do."""


def wanted(files: list[str]) -> list[str]:
    """The repository files Rosetta fetches (``ALLOW`` in the top folder)."""
    return [f for f in files if "/" not in f and any(fnmatch.fnmatch(f, p) for p in ALLOW)]


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise PullError("rosetta hub pull needs huggingface_hub: pip install huggingface_hub (or copy a model "
                        "directory here by other means and give its path to --model)") from None
    return huggingface_hub


def _explain(name: str, revision: str | None, error: Exception) -> PullError:
    kind = type(error).__name__
    first = (str(error).strip().splitlines() or [""])[0][:200]
    at = f"{name}" + (f" at revision {revision!r}" if revision else "")
    if kind in ("RepositoryNotFoundError", "RevisionNotFoundError", "GatedRepoError"):
        return PullError(f"{at}: {kind} ({first}); check the name and revision on huggingface.co, and for a gated "
                         "model log in (hf auth login) after accepting its terms")
    return PullError(f"cannot reach the Hugging Face Hub for {at} ({kind}: {first}); without a network, copy the "
                     "model's directory here by other means and give its path to --model")


def pull(name: str, out: str | Path, revision: str | None = None) -> list[Path]:
    """Download ``name``'s safetensors weights, configs and tokenizer files into ``out``; the files written."""
    hub = _hub()
    try:
        files = hub.HfApi().list_repo_files(name, revision=revision)
    except Exception as e:  # no network, unknown repository or revision, gated …
        raise _explain(name, revision, e) from None
    chosen = wanted(files)
    if not any(f.endswith(".safetensors") for f in chosen):
        pickles = [f for f in files if "/" not in f and any(fnmatch.fnmatch(f, p) for p in PICKLES)]
        if pickles:
            raise PullError(f"{name} has its weights only as {pickles[0]}, a pickle (it can run code when loaded), and "
                            "Rosetta never unpickles weights: look for a safetensors conversion (the Hub's bot "
                            f"opens one as --revision refs/pr/N), or download {pickles[0]} yourself and, if you "
                            "trust it, convert it with the command rosetta prints when it refuses the folder")
        raise PullError(f"{name} has no weights Rosetta reads (*.safetensors) in its top folder")
    try:
        hub.snapshot_download(name, revision=revision, local_dir=str(out), allow_patterns=chosen)  # by name
    except Exception as e:
        raise _explain(name, revision, e) from None
    return [Path(out) / f for f in chosen]
