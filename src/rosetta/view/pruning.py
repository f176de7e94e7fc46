"""The pruning curve: test BLEU against the share of attention heads removed, least important first vs a random
order (Michel et al., 2019, Fig. 3–4). Input: ``rosetta.compress.pruning.pruning_curve``'s points."""

from __future__ import annotations

from typing import Any

from rosetta.view.plots import new_figure

STYLES = {"importance": dict(marker="o", label="least important first"),
          "random": dict(marker="s", linestyle="--", label="random order")}


def pruning_figure(points: list[dict[str, Any]], title: str = "") -> Any:
    """BLEU (y) against the percentage of heads removed (x), one line per order; an order run with several
    seeds (random) is drawn as its mean with a min–max band."""
    fig = new_figure(6.0, 4.0)
    ax = fig.subplots()
    for order in sorted({p["order"] for p in points}):
        mine = sorted((p for p in points if p["order"] == order), key=lambda p: p["heads_removed"])
        total = mine[0]["heads_removed"] + mine[0]["heads_left"]
        x = [100 * p["heads_removed"] / total for p in mine]
        style = dict(STYLES.get(order, dict(marker="^", label=order)))
        runs = len(mine[0].get("bleu_per_seed") or [0])
        if runs > 1:  # several random orders: their mean, and the band from the worst to the best
            style["label"] += f" (mean of {runs}, band: min–max)"
            lows, highs = zip(*((min(p["bleu_per_seed"]), max(p["bleu_per_seed"])) for p in mine))
            ax.fill_between(x, lows, highs, alpha=0.2)
        ax.plot(x, [p["bleu"] for p in mine], **style)
    ax.set_xlabel("attention heads removed (%)")
    ax.set_ylabel("test BLEU")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=10)
    return fig
