"""Figures of where a Vision Transformer looks: [CLS] attention over the image, per layer and head, and rollout.

    picture (S, S) grey, what the model read ─ drawn in grey
    weights (g, g) over the patch grid        ─ upsampled (bilinear) to the picture's size, drawn over it in
                                                colour: transparent where the weight is low, opaque where high

Each map is scaled to its own maximum, so a head that spreads its weight thinly is as visible as one that
stares at a single patch (the titles give the maximum). The maps come from ``rosetta.view.rollout``:
``cls_attention_grids`` (L, H, g, g) and ``cls_rollout`` (g, g). Saving, sizes and the Agg canvas are
``rosetta.view.plots``'s: a PNG's pixel size is the figure's inches × ``plots.DPI``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from rosetta.view.plots import new_figure, save_figure

HEAT = "inferno"
PANEL = 1.7  # inches per map in the grid
OVERLAY_PIXELS = 128  # the heat map is upsampled to at least this many pixels a side before drawing


def heat_rgba(weights: np.ndarray, size: int) -> np.ndarray:
    """Weights (g, g) → an RGBA image (U, U, 4), U ≥ ``size``: bilinear upsampling of the weights scaled to their
    maximum, coloured by ``HEAT``, with alpha rising from 0.15 (no weight) to 0.85 (the maximum)."""
    w = torch.as_tensor(np.asarray(weights, dtype=np.float32))
    w = w / max(float(w.max()), 1e-12)
    u = size * max(1, -(-OVERLAY_PIXELS // size))  # a multiple of the picture's size: cells stay aligned
    up = F.interpolate(w[None, None], size=(u, u), mode="bilinear", align_corners=False)[0, 0].clamp(0, 1).numpy()
    rgba = colormaps[HEAT](up)
    rgba[..., 3] = 0.15 + 0.7 * up
    return rgba


def overlay(ax, picture: np.ndarray, weights: np.ndarray | None, title: str = "") -> None:
    """The picture (S, S) in grey on ``ax``, and the weights (g, g) as a coloured heat overlay (if given)."""
    s = picture.shape[0]
    extent = (0, s, s, 0)
    ax.imshow(picture, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest", extent=extent)
    if weights is not None:
        ax.imshow(heat_rgba(weights, s), interpolation="bilinear", extent=extent)
    ax.set_xlim(0, s)
    ax.set_ylim(s, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def _colorbar(fig: Figure, axes) -> None:
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), colormaps[HEAT]), ax=axes, shrink=0.6, pad=0.02)
    bar.set_label("weight ÷ the map's maximum", fontsize=8)
    bar.ax.tick_params(labelsize=7)


def layers_figure(picture: np.ndarray, grids: np.ndarray, layers: list[int] | None = None,
                  heads: list[int] | None = None, title: str = "") -> Figure:
    """[CLS] → patch attention over the picture: one row per layer, one column per head (default: all).
    ``grids`` is (L, H, g, g) as ``rosetta.view.rollout.cls_attention_grids`` gives it."""
    grids = np.asarray(grids)
    layers = list(range(grids.shape[0])) if layers is None else layers
    heads = list(range(grids.shape[1])) if heads is None else heads
    fig = new_figure(1.0 + PANEL * len(heads), 0.8 + (PANEL + 0.2) * len(layers))
    axes = fig.subplots(len(layers), len(heads), squeeze=False)
    for i, layer in enumerate(layers):
        for j, head in enumerate(heads):
            weights = grids[layer, head]
            overlay(axes[i, j], picture, weights, f"layer {layer} · head {head}  (max {weights.max():.2f})")
    _colorbar(fig, axes)
    fig.suptitle(title or "[CLS] attention to the patches, every layer × head", fontsize=10)
    return fig


def rollout_figure(picture: np.ndarray, rollout: np.ndarray, last_layer: np.ndarray | None = None,
                   title: str = "") -> Figure:
    """The picture alone, the attention rollout over it, and (if given) the last layer's [CLS] attention
    averaged over heads, side by side."""
    panels = [(None, "input (what the model reads)"), (rollout, "attention rollout (all layers)")]
    if last_layer is not None:
        panels.append((last_layer, "last layer, mean of heads"))
    fig = new_figure(0.8 + 2.6 * len(panels), 3.2)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (weights, name) in zip(axes, panels):
        overlay(ax, picture, None if weights is None else np.asarray(weights), name)
    _colorbar(fig, list(axes))
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def write_image_attention_plots(picture: np.ndarray, grids: np.ndarray, rollout: np.ndarray, out_dir: str | Path,
                                layer: int | None = None, head: int | None = None,
                                formats: tuple[str, ...] = ("png",), title: str = "") -> list[Path]:
    """Write ``layers`` (every layer × head, or the ``layer`` row / ``head`` column asked for; named
    ``layers_layer{L}_head{H}`` then) and ``rollout`` in each format; return the files."""
    grids = np.asarray(grids)
    n_layers, n_heads = grids.shape[:2]
    for name, value, size in (("layer", layer, n_layers), ("head", head, n_heads)):
        if value is not None and not 0 <= value < size:
            raise ValueError(f"--{name} {value} is out of range: the model has {size} {name}s (0 … {size - 1})")
    out_dir = Path(out_dir)
    name = "layers" + (f"_layer{layer}" if layer is not None else "") + (f"_head{head}" if head is not None else "")
    fig = layers_figure(picture, grids, None if layer is None else [layer], None if head is None else [head], title)
    paths = save_figure(fig, out_dir / name, formats)
    paths += save_figure(rollout_figure(picture, rollout, grids[-1].mean(axis=0), title), out_dir / "rollout",
                         formats)
    return paths

