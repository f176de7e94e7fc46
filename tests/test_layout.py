"""The layout by part holds: imports point one way, and the public names users call still work.

Every ``import rosetta.…`` / ``from rosetta… import`` in src/rosetta — at the top of a module or inside a
function — is read from the source (ast), so a lazy import cannot hide a dependency.
"""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "rosetta"

# part → the parts it may import (itself always allowed). Leaf modules: io, special_tokens, hardware.
ALLOWED = {
    "special_tokens": set(),
    "io": set(),
    "hardware": set(),
    "nn": {"special_tokens"},
    "models": {"nn", "special_tokens"},
    "data": {"io", "special_tokens"},
    "checkpoint": {"io"},
    # Hugging Face families: a model's maps (models, nn) with its tokenizers (data), pickles refused (checkpoint)
    "hub": {"checkpoint", "data", "models", "nn", "special_tokens", "io"},
    "train": {"checkpoint", "data", "decode", "hub", "models", "nn", "special_tokens", "io", "hardware"},
    "decode": {"checkpoint", "data", "hub", "models", "nn", "special_tokens", "io", "hardware"},
    "tasks": {"checkpoint", "data", "decode", "hub", "models", "nn", "special_tokens", "train", "io"},
    "compress": {"checkpoint", "data", "decode", "hub", "models", "nn", "special_tokens", "tasks", "train", "io"},
    "view": {"checkpoint", "data", "decode", "hub", "models", "nn", "special_tokens", "io"},
    "server": {"checkpoint", "data", "decode", "hub", "models", "nn", "special_tokens", "view", "io"},
    "cli": {"checkpoint", "compress", "data", "decode", "hub", "models", "nn", "special_tokens", "tasks", "train",
            "view", "server", "io"},
}


def part_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.name != "__init__.py" else "__init__"


def imported_parts(path: Path) -> set[tuple[str, int]]:
    """(part, line) of every rosetta module this file imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + ([f"{node.module}.{a.name}" for a in node.names] if node.module == "rosetta"
                                     else [])
        for name in names:
            parts = name.split(".")
            if parts[0] == "rosetta" and len(parts) > 1:
                found.add((parts[1], node.lineno))
    return found


def modules():
    return sorted(p for p in SRC.rglob("*.py") if part_of(p) != "__init__")


def test_every_part_is_known():
    assert {part_of(p) for p in modules()} <= set(ALLOWED), "a new part needs its rule in ALLOWED"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_one_way(path):
    part = part_of(path)
    bad = sorted((p, line) for p, line in imported_parts(path) if p != part and p not in ALLOWED[part])
    assert not bad, f"{path.relative_to(SRC)} ({part}) imports {bad}; allowed: {sorted(ALLOWED[part])}"


def test_the_rules_themselves_have_no_cycle():
    seen, done = set(), set()

    def visit(part, trail):
        assert part not in seen or part in done, f"cycle: {' → '.join(trail + [part])}"
        if part in done:
            return
        seen.add(part)
        for dep in ALLOWED[part]:
            visit(dep, trail + [part])
        done.add(part)

    for part in ALLOWED:
        visit(part, [])


def test_the_checker_sees_a_lazy_import(tmp_path):
    """Sensitivity: an import inside a function body is found (so the rules above can fail)."""
    module = tmp_path / "x.py"
    module.write_text("def f():\n    from rosetta.train import Trainer\n    import rosetta.cli\n")
    assert {p for p, _ in imported_parts(module)} == {"train", "cli"}


@pytest.mark.parametrize("dotted", [
    "rosetta.load", "rosetta.Translator", "rosetta.Transformer", "rosetta.ModelConfig", "rosetta.LanguageModel",
    "rosetta.EncoderModel", "rosetta.gpt_config", "rosetta.bert_config", "rosetta.load_pretrained",
    "rosetta.MultiHeadAttention", "rosetta.scaled_dot_product_attention",
    "rosetta.attention.scaled_dot_product_attention", "rosetta.attention.MultiHeadAttention",
    "rosetta.positional.sinusoidal_encoding", "rosetta.decode.greedy_search", "rosetta.decode.beam_search",
    "rosetta.decode.beam_search_nbest", "rosetta.decode.sample_next", "rosetta.decode.generate",
])
def test_public_names_still_work(dotted):
    import rosetta

    obj = rosetta
    for name in dotted.split(".")[1:]:
        obj = getattr(obj, name)
    assert callable(obj)


def test_public_names_are_the_implementations():
    import rosetta
    from rosetta.decode.beam import beam_search
    from rosetta.nn.attention import scaled_dot_product_attention
    from rosetta.nn.positional import sinusoidal_encoding

    assert rosetta.attention.scaled_dot_product_attention is scaled_dot_product_attention
    assert rosetta.positional.sinusoidal_encoding is sinusoidal_encoding
    assert rosetta.decode.beam_search is beam_search


def test_attention_and_positional_import_as_modules_by_their_short_names():
    """``from rosetta.attention import …`` worked before the nn/ move; it must name the same objects (run in a
    fresh interpreter: this process may have imported rosetta already, which would hide an import-order bug)."""
    code = ("from rosetta.attention import MultiHeadAttention; import rosetta.positional as p; "
            "import rosetta.nn.attention as a, rosetta.nn.positional as q; "
            "assert MultiHeadAttention is a.MultiHeadAttention and p is q; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_python_m_rosetta_cli_is_importable():
    assert importlib.util.find_spec("rosetta.cli.__main__") is not None


def test_every_registered_task_class_imports_and_unknown_tasks_are_listed():
    """The one list of trainable tasks: each entry names a class in its module, and ``rosetta train`` with another
    name says which ones exist."""
    from rosetta.tasks import TASK_CLASSES, build_task, task_class
    from rosetta.train.recipe import Recipe

    for kind, target in TASK_CLASSES.items():
        cls = task_class(kind)
        assert isinstance(cls, type) and f"{cls.__module__}:{cls.__name__}" == target
    recipe = Recipe()
    recipe.data.task = "translaton"
    with pytest.raises(ValueError, match="unknown task 'translaton'; rosetta train handles: translation, text-to-text"):
        build_task(recipe)


def test_model_family_has_one_default():
    from rosetta.checkpoint import DEFAULT_FAMILY, TASKS, model_family, model_task

    assert model_family({}) == DEFAULT_FAMILY == "translation" and model_family({"family": "vit"}) == "vit"
    assert model_task({}) == TASKS[DEFAULT_FAMILY][0]
    src = Path(__file__).parents[1] / "src" / "rosetta"
    assert not [p for p in src.rglob("*.py") if '"family", "translation"' in p.read_text(encoding="utf-8")]
