"""The pipeline's house style for pictures: one theme, one way to save a figure with its record, and
the names printed for architectures and datasets (figures, the perceptron's figures, the
sensitivity heat maps and Table 1 all share them).

Why here: the labels were in ``table.py`` and the style in ``figures.py``, so each drawing module
imported the other's whole module for a few names. matplotlib and seaborn are imported inside the
functions that draw or save: ``table.py`` imports only the labels and its jobs should not pay the
seconds a plotting stack takes to import.
"""
from __future__ import annotations

import math
from pathlib import Path

from . import io, provenance

ARCH_ORDER = {"cnn": 0, "resnet": 1, "vit": 2}
DATASET_ORDER = {"mnist": 0, "cifar10": 1, "cifar100": 2, "digits": 3, "teacher": 4}
ARCH_LABEL = {"cnn": "CNN", "resnet": "ResNet", "vit": "ViT"}
DATASET_LABEL = {"mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "digits": "digits",
                 "teacher": "teacher"}
DPI = 150
# One look for every figure of the pipeline (deep nets, perceptron, sensitivity): seaborn's theme.
# The curves are drawn with matplotlib from the aggregate's mean and standard error, not with
# seaborn's estimators, which would recompute them from the seeds (a second way to the same
# numbers); seaborn draws the sensitivity heat maps.
THEME = {"context": "paper", "style": "ticks", "font_scale": 1.0}


def set_theme() -> None:
    import seaborn as sns

    sns.set_theme(**THEME)


def pyplot():
    """matplotlib.pyplot on the Agg backend (jobs have no display), with the theme set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    set_theme()
    return plt


def _plain(v, _pos=None) -> str:
    return f"{v:g}"


def tidy_log_axes(fig) -> None:
    """Plain numbers (0.1, 2, 5000) on log axes; minor labels (2, 5 ×10^k) only on short axes.
    Secondary axes (``ax.secondary_xaxis`` on a log axis: scale "functionlog") get the same."""
    import numpy as np
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for ax in [a for parent in fig.axes for a in (parent, *parent.child_axes)]:
        for axis, scale, lim in ((ax.xaxis, ax.get_xscale(), ax.get_xlim()),
                                 (ax.yaxis, ax.get_yscale(), ax.get_ylim())):
            if scale not in ("log", "functionlog") or not all(np.isfinite(lim)) or min(lim) <= 0:
                continue
            axis.set_major_formatter(FuncFormatter(_plain))
            decades = abs(math.log10(lim[1] / lim[0]))
            if decades < 2:
                axis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
                axis.set_minor_formatter(FuncFormatter(_plain))
            else:
                axis.set_minor_formatter(NullFormatter())


def drawn_strings(fig) -> list[str]:
    """Every non-empty string drawn on ``fig``: titles, axis labels, legend entries, annotations."""
    from matplotlib.text import Text

    texts = [t.get_text() for t in fig.findobj(Text) if t.get_visible()]
    return [t for t in texts if t.strip()]


def save_figure(fig, out, plot: str, experiment, inputs, stage: str, tidy: bool = True, **content) -> None:
    """Write the image (atomically), then its record ``<image>.json``: the image's sha256, every
    string drawn on it, what it shows (``content``) and the inputs it was drawn from."""
    import matplotlib.pyplot as plt

    out = Path(out)
    if tidy:
        tidy_log_axes(fig)
    with io.atomic_path(out, out.suffix or ".png") as tmp:
        fig.savefig(tmp, dpi=DPI, bbox_inches="tight", format=(out.suffix.lstrip(".") or "png"))
    printed = {out.name: drawn_strings(fig)}
    plt.close(fig)
    io.write_json({**provenance.record("figure", experiment, outputs=[out], printed=printed),
                   "figure": str(out), "plot": plot, **content,
                   "provenance": provenance.provenance(inputs=inputs, stage=stage)},
                  str(out) + ".json")
