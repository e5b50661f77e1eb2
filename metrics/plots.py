"""The one way the metrics draw a histogram artifact (ground-state ΔE, E above hull): a figure of
the same size and style, integer counts, a wrapped title, saved as PNG."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any


def histogram_axes() -> tuple[Any, Any]:
    """A new (figure, axes) for a histogram, on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6.0, 4.0), dpi=120)


def save_histogram(fig: Any, ax: Any, path: Path, title: str, xlabel: str) -> Path:
    """Label the axes (``xlabel``; counts of crystals on y, integer ticks), title (wrapped at 70
    characters), save to ``path`` and close the figure."""
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    ax.set_xlabel(xlabel)
    ax.set_ylabel("crystals")
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
