"""Training and attention figures of the notebooks: per-epoch loss curves and attention maps over the image.

Pure helpers (:func:`epoch_means`, :func:`upsample_attention`) prepare the numbers; the ``plot_*`` functions draw on
matplotlib axes the caller owns (the notebook shows the figure inline and saves it).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np


def epoch_means(history: Sequence[Mapping[str, float]], key: str) -> tuple[list[int], list[float]]:
    """Per-epoch mean of ``key`` over a per-step history (records with an ``epoch`` field): (epochs, means).

    A per-step curve of a small data set saws (each epoch's last, smaller batch has another loss); the mean per
    epoch does not."""
    sums: dict[int, list[float]] = {}
    for h in history:
        if key in h:
            sums.setdefault(int(h.get("epoch", 0)), []).append(float(h[key]))
    epochs = sorted(sums)
    return epochs, [sum(sums[e]) / len(sums[e]) for e in epochs]


def plot_nmpa_losses(ax: Any, histories: Mapping[str, Sequence[Mapping[str, float]]]) -> None:
    """NMPA loss parts per epoch (mean over the epoch's steps), one line style per seed (``histories``: label ->
    per-step history), legend outside the axes on the right."""
    import matplotlib.pyplot as plt

    styles = ["-", "--", ":", "-."]
    keys = sorted({k for h in histories.values() for r in h for k in r if k != "epoch"},
                  key=lambda k: (k != "loss", k))
    for s, (label, hist) in enumerate(histories.items()):
        for i, k in enumerate(keys):
            ep, ys = epoch_means(hist, k)
            ax.plot([e + 1 for e in ep], ys, styles[s % len(styles)], marker="o", ms=3, color=plt.cm.tab10(i % 10),
                    lw=1.6 if k == "loss" else 1.0, label=f"{k} ({label})" if len(histories) > 1 else k)
    ax.set(xlabel="epoch", ylabel="loss (mean over the epoch)", title="NMPA losses per epoch")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def upsample_attention(att: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (h, w) attention grid resized to the image's (width, height) by nearest neighbour, as a float array."""
    from PIL import Image

    a = np.asarray(att, dtype=np.float32)
    im = Image.fromarray(a).resize(size, Image.NEAREST)
    return np.asarray(im, dtype=np.float32)


def plot_attention(ax: Any, image: Any, att: np.ndarray, title: str = "", alpha: float = 0.55,
                   cmap: str = "magma") -> Any:
    """The image with its attention grid over it (nearest-neighbour upsampled, ``alpha`` blended) and a colour bar
    of the attention weights beside the axes; returns the colour bar."""
    import matplotlib.pyplot as plt

    ax.imshow(image)
    im = ax.imshow(upsample_attention(att, image.size), cmap=cmap, alpha=alpha)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)
    cb = plt.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    cb.ax.tick_params(labelsize=6)
    return cb


def plot_mean_band(ax: Any, curves: Mapping[str, Sequence[Sequence[float]]], smooth: int = 1,
                   colours: Optional[Sequence[Any]] = None) -> None:
    """Per label, the mean over its runs (seeds) with a min-max band; runs of unequal length are cut to the
    shortest; ``smooth`` > 1 takes a trailing moving average of each run first. Legend outside on the right."""
    import matplotlib.pyplot as plt

    for i, (label, runs) in enumerate(curves.items()):
        runs = [list(r) for r in runs if len(r)]
        if not runs:
            continue
        n = min(len(r) for r in runs)
        arr = np.array([r[:n] for r in runs], dtype=np.float64)
        if smooth > 1:
            k = min(smooth, n)
            c = np.cumsum(np.pad(arr, ((0, 0), (1, 0))), axis=1)
            idx = np.arange(1, n + 1)
            lo = np.maximum(0, idx - k)
            arr = (c[:, idx] - c[:, lo]) / (idx - lo)
        colour = (colours[i] if colours is not None else plt.cm.tab20(i % 20))
        x = np.arange(n)
        ax.plot(x, arr.mean(0), color=colour, lw=1.2, label=f"{label} (n={len(runs)})" if len(runs) > 1 else label)
        if len(runs) > 1:
            ax.fill_between(x, arr.min(0), arr.max(0), color=colour, alpha=0.2, lw=0)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
