"""A picture of generated CrysTens tensors beside real ones (the README's crystens_diffusion figure).

Reads the ``crystens_tensor`` artifact of a generation run (``artifacts.npz`` in its run directory,
(n, 64, 64, 4) normalised tensors in [0, 1]) and encodes the first crystals of a dataset split with
the same paper layout, then draws channel 0 (distance layer with the repeated header strips) and
channel 1 (x-difference layer) of ``--n`` generated and ``--n`` real tensors, one tensor per column,
on the same colour scale. Under each generated tensor: whether it decodes and its mean lattice length.

    python scripts/crystens_tensor_figure.py RUN_DIR [--dataset perov_5_dev] [--split train] [--n 4]
                                             [--out docs/crystens_diffusion_tensors.png]

The dataset CSV is read from ``$BENCHMARK_DATA_DIR/<dataset>/<split>.csv`` (or ``--data-dir``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a generation run directory holding artifacts.npz")
    parser.add_argument("--dataset", default="perov_5_dev")
    parser.add_argument("--split", default="train")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: $BENCHMARK_DATA_DIR")
    parser.add_argument("--n", type=int, default=4, help="tensors of each kind")
    parser.add_argument("--out", type=Path, default=Path("docs/crystens_diffusion_tensors.png"))
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmark.datasets.base import load_csv
    from benchmark.representations import crystens

    with np.load(args.run_dir / "artifacts.npz") as data:
        if "crystens_tensor" not in data:
            raise SystemExit(f"{args.run_dir}/artifacts.npz has no crystens_tensor artifact (it has {sorted(data)})")
        generated = np.asarray(data["crystens_tensor"][: args.n], dtype=np.float32)
    data_dir = args.data_dir or Path(os.environ.get("BENCHMARK_DATA_DIR", "data"))
    csv = data_dir / args.dataset / f"{args.split}.csv"
    real_crystals = load_csv(csv, progress=False)[: args.n]
    real = np.stack([crystens.encode(c) for c in real_crystals])

    def caption(t: np.ndarray) -> str:
        d = crystens.decode(t)
        if d.crystal is None:
            return f"no crystal: {d.reason[:28]}"
        return f"{d.crystal.num_atoms} atoms, mean a,b,c {d.crystal.lengths.mean():.2f} Å"

    cols = len(generated) + len(real)
    fig, axes = plt.subplots(2, cols, figsize=(2.1 * cols, 4.8), squeeze=False)
    for j, (t, kind) in enumerate([(t, "generated") for t in generated] + [(t, "real") for t in real]):
        for i, (channel, name) in enumerate(((0, "distance layer"), (1, "x-difference layer"))):
            ax = axes[i, j]
            ax.imshow(t[:, :, channel], vmin=0.0, vmax=1.0, cmap="viridis", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"{kind} {j if kind == 'generated' else j - len(generated)}", fontsize=9)
            if j == 0:
                ax.set_ylabel(name, fontsize=9)
        axes[1, j].set_xlabel(caption(t), fontsize=6.5)
    fig.suptitle(f"CrysTens tensors (normalised, 0 to 1): crystens_diffusion samples of {args.run_dir.name} "
                 f"and {args.dataset} {args.split} crystals", fontsize=9)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
