"""Figures: the bigram probability table as a heat map, and the training loss curve (PNG)."""

from __future__ import annotations

import functools
import io
import logging
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from namesmith.core.history import TrainHistory  # noqa: E402
from namesmith.core.io import atomic_write_bytes  # noqa: E402

log = logging.getLogger("namesmith")


@functools.cache
def _font_charmaps() -> list[tuple[str, frozenset[int]]]:
    """(font file, code points it has) of every font matplotlib knows, the default font first."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    default = font_manager.findfont(font_manager.FontProperties())
    paths = [default] + sorted({f.fname for f in font_manager.fontManager.ttflist} - {default})
    fonts = []
    for path in paths:
        try:
            fonts.append((path, frozenset(FT2Font(path).get_charmap())))
        except (OSError, RuntimeError):
            continue
    return fonts


def label_font(labels: list[str]) -> tuple[list[str], Any]:
    """Tick labels and a font that has all their glyphs; without one, labels become code points (said once)."""
    from matplotlib import font_manager

    wanted = {ord(c) for label in labels for c in label}
    for path, charmap in _font_charmaps():
        if wanted <= charmap:
            return labels, font_manager.FontProperties(fname=path)
    log.warning("no installed font has every character of this vocabulary; the heat map labels characters by "
                "code point (install a font such as Noto for the script to see the characters)")
    return [label if label.isascii() else f"U+{ord(label[0]):04X}" for label in labels], None


def _save(fig: plt.Figure, path: str | Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def plot_heatmap(next_char_probs: torch.Tensor, labels: list[str], path: str | Path,
                 pair_counts: torch.Tensor | None = None, title: str = "") -> Path:
    """Heat map of P(next | previous): rows are the previous character, columns the next.

    With `pair_counts`, every cell is annotated with its pair and training count, as in the
    makemore lecture's figure (and shaded by the count).
    """
    size = len(labels)
    labels, font = label_font(labels)
    annotate = pair_counts is not None
    inches = max(6.0, 0.6 * size) if annotate else max(5.0, 0.28 * size + 2)
    fig, ax = plt.subplots(figsize=(inches, inches))
    shown = pair_counts if annotate else next_char_probs
    image = ax.imshow(shown.cpu().numpy(), cmap="Blues")
    if annotate:
        for i in range(size):
            for j in range(size):
                ax.text(j, i, labels[i] + labels[j], ha="center", va="bottom", color="gray", fontsize=8,
                        fontproperties=font)
                ax.text(j, i, str(int(pair_counts[i, j])), ha="center", va="top", color="gray", fontsize=8)
        ax.axis("off")
    else:
        ax.set_xticks(range(size), labels, fontproperties=font)
        ax.set_yticks(range(size), labels, fontproperties=font)
        ax.set_xlabel("next character")
        ax.set_ylabel("previous character")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="P(next | previous)")
    ax.set_title(title or ("pair counts" if annotate else "P(next | previous)"))
    return _save(fig, path)


def plot_loss_curve(history: TrainHistory, path: str | Path, title: str = "") -> Path:
    """Training loss per step, with validation loss where it was evaluated."""
    fig, ax = plt.subplots(figsize=(7, 4))
    if history.train_loss:
        steps, losses = zip(*history.train_loss)
        ax.plot(steps, losses, label="train", linewidth=1)
    if history.val_loss:
        steps, _, losses = zip(*history.val_loss)
        ax.plot(steps, losses, label="validation", marker="o", markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per character)")
    ax.set_title(title or "training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_trend(series: dict[str, list[tuple[str, float]]], path: str | Path, ylabel: str, title: str = "",
               log_scale: bool = False, invert: bool = False) -> Path:
    """Lines by decade, one per series ({label: [(decade, value), ...]}): a name's births or rank over time.
    `invert` puts small values on top (rank 1 is the most given name)."""
    decades = sorted({decade for points in series.values() for decade, _ in points})
    labels, font = label_font(list(series))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(decades) + 2), 4))
    for label, points in zip(labels, series.values()):
        values = dict(points)
        x = [i for i, decade in enumerate(decades) if decade in values]
        ax.plot(x, [values[decades[i]] for i in x], marker="o", markersize=3, label=label)
    ax.set_xticks(range(len(decades)), decades, rotation=45)
    if log_scale:
        ax.set_yscale("log")
    if invert:
        ax.invert_yaxis()
    ax.set_xlabel("decade")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(prop=font)
    return _save(fig, path)
