"""Side-by-side gray pictures (input, restored, ground truth, ...): the one drawer of the
demo's and the figures' comparison panels (matplotlib, Agg)."""
from __future__ import annotations

import io

import numpy as np


def gray_panels(panels: list[tuple[str, np.ndarray]], suptitle: str | None = None,
                width: float = 3.0, height: float = 3.5, fontsize: float = 10) -> bytes:
    """A PNG of ``panels`` (title, image in [0, 1], clipped) in one row, nearest-neighbour."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), height), dpi=100)
    for ax, (title, img) in zip(np.atleast_1d(axes), panels):
        ax.imshow(np.clip(np.asarray(img, dtype=np.float64), 0, 1), cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title(title, fontsize=fontsize)
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
