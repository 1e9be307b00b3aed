"""Training-loss figure for the experiment report."""
from __future__ import annotations

from pathlib import Path


def plot_losses(curves: dict[str, dict[str, list[tuple[int, float]]] | None], out_png: Path) -> Path:
    """One panel per training stage: train loss vs iteration, validation loss as markers.

    `curves` maps a stage name (cpt, sft) to {"loss": [(iteration, value)], "val_loss": [...]}, or to
    None when the stage left no log; its panel then says so instead of staying blank.
    """
    # Figure + the Agg canvas directly: no pyplot, so no global backend state and no display needed
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5 * max(1, len(curves)), 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(1, len(curves)), squeeze=False)[0]
    for ax, (stage, curve) in zip(axes, curves.items()):
        ax.set_title(f"{stage.upper()} loss")
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss")
        if not curve or not (curve["loss"] or curve["val_loss"]):
            ax.text(0.5, 0.5, "stage off (no training log)", ha="center", va="center", transform=ax.transAxes)
            continue
        if curve["loss"]:
            ax.plot(*zip(*curve["loss"]), label="train", linewidth=1.2)
        if curve["val_loss"]:
            ax.plot(*zip(*curve["val_loss"]), "o", label="validation", markersize=5)
        ax.grid(True, alpha=0.3)
        ax.legend()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    return out_png
