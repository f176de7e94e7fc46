"""Figures of what the model computes: attention maps, the positional encoding, training curves.

Every function builds a matplotlib ``Figure`` on an Agg canvas of its own — no display, no pyplot, nothing
global changed, so importing this module does not switch a notebook's backend — and ``save_figure`` writes it
as PNG and SVG. Sizes are fixed by the data (inches per token, per layer and head), never by
``bbox_inches="tight"``, so a PNG's pixel size is known in advance: the figure's inches × ``DPI``.

Attention maps come from ``Translator.attention(text)``: per kind ("encoder", "decoder", "cross") a list over
layers of (H, Tq, Tk) weights. Which tokens label the axes (``axis_tokens``):

    encoder   rows: source tokens            columns: source tokens
    decoder   rows: the target token produced at that step   columns: decoder inputs (<s> and the tokens so far)
    cross     rows: the target token produced at that step   columns: source tokens

Row t of a decoder or cross map belongs to the step whose input is target token t and whose output is token
t+1 — "while producing 生 it looked at student" — so rows are labelled with the token produced (the last
row produces </s>).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rosetta.view.fonts import use_cjk_font

KINDS = ("cross", "encoder", "decoder")
DPI = 100
FORMATS = ("png", "svg")
CMAP = "viridis"
CELL = 0.28  # inches per token in an attention map
TITLES = {"encoder": "encoder self-attention", "decoder": "decoder self-attention (masked)",
          "cross": "cross-attention (decoder → encoder)"}


# ------------------------------------------------------------------------------------------------ helpers
def axis_tokens(result: dict[str, Any], kind: str) -> tuple[list[str], list[str]]:
    """(row labels, column labels) of a ``kind`` map of ``Translator.attention`` output (see module docs)."""
    source, target = result["source_tokens"], result["target_tokens"]
    produced = target[1:] + ["</s>"]
    return {"encoder": (source, source), "decoder": (produced, target), "cross": (produced, source)}[kind]


def save_figure(fig: Figure, base: str | Path, formats: tuple[str, ...] = FORMATS, dpi: int = DPI) -> list[Path]:
    """Write ``base.png`` / ``base.svg`` (a ``base`` with a known suffix is written in that format only)."""
    base = Path(base)
    if base.suffix.lstrip(".") in ("png", "svg", "pdf"):
        formats, base = (base.suffix.lstrip("."),), base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = base.with_suffix(f".{fmt}")
        fig.savefig(path, dpi=dpi, format=fmt)
        paths.append(path)
    return paths


def grid_inches(n_rows: int, n_cols: int, n_layers: int, n_heads: int) -> tuple[float, float]:
    """(width, height) of an attention grid: ``n_layers`` × ``n_heads`` maps of n_rows × n_cols tokens."""
    cell_w, cell_h = max(1.6, CELL * n_cols), max(1.6, CELL * n_rows)
    return 0.9 + cell_w * n_heads, 0.9 + cell_h * n_layers


def map_inches(n_rows: int, n_cols: int) -> tuple[float, float]:
    """(width, height) of a single attention map with its colour bar."""
    return 1.6 + max(3.0, 0.36 * n_cols), 1.4 + max(2.5, 0.36 * n_rows)


def new_figure(width: float, height: float) -> Figure:
    """An empty figure of (width, height) inches with an Agg canvas, CJK-capable fonts first."""
    use_cjk_font()
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def heatmap(ax, weights: np.ndarray, rows: list[str], cols: list[str], title: str = ""):
    """One attention map weights (Tq, Tk) on ``ax``: a row per query token, a column per key token. The colour
    scale is fixed to [0, 1], so that maps (and heads) can be compared by eye."""
    image = ax.imshow(weights, cmap=CMAP, vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.tick_params(length=0)
    if title:
        ax.set_title(title, fontsize=9)
    return image


# ------------------------------------------------------------------------------------------------ attention
def attention_grid(result: dict[str, Any], kind: str, layers: list[int] | None = None,
                   heads: list[int] | None = None) -> Figure:
    """A grid of maps, one row per layer and one column per head (default: all of them). A pruned model's
    layers may have fewer heads than others: their missing cells stay empty."""
    maps = result[kind]
    layers = list(range(len(maps))) if layers is None else layers
    heads = list(range(max(len(m) for m in maps))) if heads is None else heads
    rows, cols = axis_tokens(result, kind)
    fig = new_figure(*grid_inches(len(rows), len(cols), len(layers), len(heads)))
    axes = fig.subplots(len(layers), len(heads), squeeze=False)
    for i, layer in enumerate(layers):
        for j, head in enumerate(heads):
            # Token labels on the left column and bottom row only: the grid shares its axes.
            ax = axes[i, j]
            if head >= len(maps[layer]):
                ax.axis("off")
                continue
            heatmap(ax, np.asarray(maps[layer][head]), rows, cols, f"layer {layer} · head {head}")
            if j:
                ax.set_yticklabels([])
            if i < len(layers) - 1:
                ax.set_xticklabels([])
    fig.suptitle(f"{TITLES[kind]}: {result['translation']}" if kind != "encoder" else TITLES[kind], fontsize=11)
    return fig


def attention_map(result: dict[str, Any], kind: str, layer: int, head: int | None) -> Figure:
    """One map: a head of a layer, or (head None) the average over the layer's heads."""
    maps = np.asarray(result[kind][layer])  # (H, Tq, Tk)
    weights = maps.mean(axis=0) if head is None else maps[head]
    rows, cols = axis_tokens(result, kind)
    fig = new_figure(*map_inches(len(rows), len(cols)))
    ax = fig.subplots()
    which = "mean of all heads" if head is None else f"head {head}"
    image = heatmap(ax, weights, rows, cols, f"{TITLES[kind]}, layer {layer}, {which}")
    ax.set_xlabel({"cross": "source", "encoder": "source", "decoder": "target so far"}[kind])
    ax.set_ylabel("source" if kind == "encoder" else "producing")
    fig.colorbar(image, ax=ax, shrink=0.8, label="weight")
    return fig


def attention_summary(result: dict[str, Any]) -> Figure:
    """The map people look at first: last-layer cross-attention, averaged over heads."""
    return attention_map(result, "cross", len(result["cross"]) - 1, None)


def _check_index(name: str, value: int | None, size: int) -> None:
    if value is not None and not 0 <= value < size:
        raise ValueError(f"--{name} {value} is out of range: the model has {size} {name}s (0 … {size - 1})")


def write_attention_plots(result: dict[str, Any], out_dir: str | Path, layer: int | None = None,
                          head: int | None = None, kind: str | None = None,
                          formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Write attention figures for one ``Translator.attention`` result; return the files.

    No selection: ``{kind}.png`` (every layer × head) for the three kinds and ``summary.png``. ``kind``,
    ``layer`` and ``head`` narrow that down; with both ``layer`` and ``head`` one map per kind is drawn
    (``{kind}_layer{L}_head{H}.png``).
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    out_dir = Path(out_dir)
    paths: list[Path] = []
    for k in [kind] if kind else KINDS:
        n_layers, n_heads = len(result[k]), len(result[k][0])
        _check_index("layer", layer, n_layers)
        _check_index("head", head, n_heads)
        if layer is not None and head is not None:
            paths += save_figure(attention_map(result, k, layer, head), out_dir / f"{k}_layer{layer}_head{head}",
                                 formats)
            continue
        name = k + (f"_layer{layer}" if layer is not None else "") + (f"_head{head}" if head is not None else "")
        fig = attention_grid(result, k, None if layer is None else [layer], None if head is None else [head])
        paths += save_figure(fig, out_dir / name, formats)
    if kind is None and layer is None and head is None:
        paths += save_figure(attention_summary(result), out_dir / "summary", formats)
    return paths


# ------------------------------------------------------------------------------------------------ positional
POSITIONAL_SIZE = (12.0, 5.0)  # inches


def positional_figure(d_model: int = 128, length: int = 100, dims: tuple[int, ...] | None = None) -> Figure:
    """Left: the sinusoidal table PE (length, d_model) as a heatmap. Right: a few of its columns as curves,
    fast to slow: column i has wavelength 2π · 10000^(2⌊i/2⌋/d_model). (Columns 0–3 turn faster than one
    point per position can show, so the default curves start at 4.)"""
    from rosetta.nn.positional import sinusoidal_encoding

    table = sinusoidal_encoding(length, d_model).numpy()  # (T, D)
    dims = dims or tuple(sorted({min(d, d_model - 1) for d in (4, 5, d_model // 8, d_model // 4, d_model // 2)}))
    fig = new_figure(*POSITIONAL_SIZE)
    left, right = fig.subplots(1, 2, width_ratios=[1.1, 1])
    image = left.imshow(table, cmap="RdBu", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    left.set_xlabel("dimension i")
    left.set_ylabel("position")
    left.set_title(f"sinusoidal positional encoding, d_model = {d_model}", fontsize=10)
    fig.colorbar(image, ax=left, shrink=0.8)
    for d in dims:
        wave = "sin" if d % 2 == 0 else "cos"
        right.plot(table[:, d], label=f"dim {d} ({wave})", linewidth=1.2)
    right.set_xlabel("position")
    right.set_ylabel("value")
    right.set_title("PE(pos, 2i) = sin(pos / 10000^(2i/d)),  PE(pos, 2i+1) = cos(…)", fontsize=10)
    right.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=len(dims))
    return fig


# ------------------------------------------------------------------------------------------------ training
TRAINING_SIZE = (13.0, 4.0)  # inches


def read_metrics(run_dir: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Records of ``RUN_DIR/metrics.jsonl`` by kind ("train", "valid"), sorted by step. A resumed run logs
    some steps twice; the later record wins."""
    path = Path(run_dir)
    path = path if path.is_file() else path / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: give a training run directory (rosetta train --out DIR)")
    by_kind: dict[str, dict[int, dict[str, Any]]] = {"train": {}, "valid": {}}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {number}: not JSON ({e})") from e
        if record.get("kind") in by_kind and "step" in record:
            by_kind[record["kind"]][record["step"]] = record
    return {kind: [records[s] for s in sorted(records)] for kind, records in by_kind.items()}


def training_figure(run_dir: str | Path) -> Figure:
    """Three panels: training and validation loss, validation BLEU (accuracy for a classifier), learning rate —
    all against the step."""
    metrics = read_metrics(run_dir)
    train, valid = metrics["train"], metrics["valid"]
    if not train and not valid:
        raise ValueError(f"{run_dir}: metrics.jsonl has no train or valid records yet")
    fig = new_figure(*TRAINING_SIZE)
    loss_ax, bleu_ax, lr_ax = fig.subplots(1, 3, sharex=True)

    def series(records, key):
        points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        return [p[0] for p in points], [p[1] for p in points]

    # the validation metric: BLEU for translation, accuracy (in %) for classifiers (text or images)
    metric = "bleu" if any(r.get("bleu") is not None for r in valid) else "accuracy"
    metric_name = "BLEU" if metric == "bleu" else "accuracy (%)"
    scale = 1.0 if metric == "bleu" else 100.0
    for ax, records, key, label, style in [
        (loss_ax, train, "loss", "train loss (label-smoothed)", "-"),
        (loss_ax, train, "nll", "train NLL", "--"),
        (loss_ax, valid, "valid_loss", "valid loss", "o-"),
        (bleu_ax, valid, metric, f"valid {metric_name}", "o-"),
        (lr_ax, train, "lr", "learning rate", "-"),
    ]:
        steps, values = series(records, key)
        if steps:
            values = [v * scale for v in values] if key == metric else values
            ax.plot(steps, values, style, label=label, markersize=3, linewidth=1.2)
    for ax, title in [(loss_ax, "loss per target token"), (bleu_ax, f"validation {metric_name}"),
                      (lr_ax, "learning rate")]:
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, color="gray")
    if bleu_ax.lines:
        # from zero, so that a change of 0.03 BLEU does not look like a cliff
        bleu_ax.set_ylim(0, 1.15 * max(bleu_ax.lines[0].get_ydata()) + 0.5)
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    fig.suptitle(str(Path(run_dir).resolve().name), fontsize=11)
    return fig


def comparison_figure(run_dirs: list[str | Path], labels: list[str] | None = None) -> Figure:
    """Runs side by side (arms of an experiment), one line per run in each panel: training NLL, validation loss,
    validation BLEU (accuracy for classifiers) — against the step. ``labels``: default, each run folder's name."""
    labels = labels or [Path(r).resolve().name for r in run_dirs]
    fig = new_figure(*TRAINING_SIZE)
    nll_ax, valid_ax, metric_ax = fig.subplots(1, 3, sharex=True)
    metric_name = "BLEU"
    for run_dir, label in zip(run_dirs, labels):
        metrics = read_metrics(run_dir)
        train, valid = metrics["train"], metrics["valid"]
        if not train and not valid:
            raise ValueError(f"{run_dir}: metrics.jsonl has no train or valid records yet")
        metric = "bleu" if any(r.get("bleu") is not None for r in valid) else "accuracy"
        metric_name = "BLEU" if metric == "bleu" else "accuracy (%)"
        scale = 1.0 if metric == "bleu" else 100.0
        (line,) = nll_ax.plot([r["step"] for r in train if r.get("nll") is not None],
                              [r["nll"] for r in train if r.get("nll") is not None], "-", label=label, linewidth=1.0)
        for ax, key, k in ((valid_ax, "valid_loss", 1.0), (metric_ax, metric, scale)):
            points = [(r["step"], r[key] * k) for r in valid if r.get(key) is not None]
            ax.plot([p[0] for p in points], [p[1] for p in points], "o-", color=line.get_color(), label=label,
                    markersize=4, linewidth=1.2)
    for ax, title in ((nll_ax, "training NLL per target token"), (valid_ax, "validation loss"),
                      (metric_ax, f"validation {metric_name}")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def relative_bias_curves(bias: Any, max_distance: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """A ``RelativePositionBias``'s learned bias as curves: (distances (2M+1,), bias (H, 2M+1)) for key − query
    offsets −M … M (one curve per head; a causal table gives one value for every offset > 0, its bucket 0)."""
    import torch

    distances = torch.arange(-max_distance, max_distance + 1)
    with torch.no_grad():
        # a query at position M over keys 0 … 2M sees every offset −M … M once
        values = bias(1, 2 * max_distance + 1, offset=max_distance)[0, :, 0, :]  # (H, 2M+1)
    return distances.numpy(), values.float().cpu().numpy()


def relative_bias_figure(stacks: dict[str, Any], max_distance: int = 40) -> Figure:
    """One panel per stack ("encoder", "decoder"): the bias each head adds to a logit, against key − query."""
    fig = new_figure(5.5 * len(stacks), 3.6)
    for i, (name, bias) in enumerate(stacks.items()):
        ax = fig.add_subplot(1, len(stacks), i + 1)
        distances, values = relative_bias_curves(bias, max_distance)
        for head, row in enumerate(values):
            ax.plot(distances, row, label=f"head {head}", linewidth=1.2)
        ax.axvline(0, color="grey", linewidth=0.6)
        ax.set_xlabel("key position − query position")
        ax.set_ylabel("bias added to the logit")
        ax.set_title(f"{name}: relative position bias ({bias.num_buckets} buckets)")
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
