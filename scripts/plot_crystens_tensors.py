"""Generated CrysTens tensors of a run next to real encoded tensors of its dataset.

    .venv/bin/python scripts/plot_crystens_tensors.py RUN_DIR [--dataset perov_5_dev] [--split train]
        [--n 4] [--out docs/crystens_gan_tensors.png]

RUN_DIR is a run directory holding ``artifacts.npz`` with the ``crystens_tensor`` array (a
generation run of ``crystens_gan`` / ``crystens_wgan``; ``record.json`` beside it names the model).
The top rows show the first ``--n`` generated tensors, the bottom rows the first ``--n`` crystals
of the dataset split encoded with the paper layout (``benchmark.representations.crystens.PAPER``),
each as its four channels (0: distances, 1-3: coordinate differences; the header strip, rows and
columns 0..10, is the same in all four), all on one colour scale [0, 1]. The dataset is read from
``BENCHMARK_DATA_DIR`` (or ``--data-dir``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--dataset", default="perov_5_dev")
    parser.add_argument("--split", default="train")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("docs/crystens_gan_tensors.png"))
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmark.registry import get_plugins
    from benchmark.representations.crystens import PAPER, encode_many

    with np.load(args.run_dir / "artifacts.npz") as npz:
        generated = np.asarray(npz["crystens_tensor"][: args.n], dtype=np.float32)
    record = args.run_dir / "record.json"
    model = json.loads(record.read_text()).get("model", {}) if record.is_file() else {}
    model_name = model.get("name", "generated") if isinstance(model, dict) else str(model)
    preset = model.get("preset", "?") if isinstance(model, dict) else "?"
    crystals = get_plugins()["datasets"].get(args.dataset).load(args.split, args.data_dir, progress=False)
    real, _ = encode_many(list(crystals[: args.n]), PAPER, progress=False)

    rows = [(f"{model_name} #{i}", t) for i, t in enumerate(generated)] + [(f"{args.dataset} {args.split} #{i}", t) for i, t in enumerate(real)]
    fig, axes = plt.subplots(len(rows), 4, figsize=(8, 2.1 * len(rows)), squeeze=False)
    for r, (label, tensor) in enumerate(rows):
        for ch in range(4):
            ax = axes[r, ch]
            im = ax.imshow(tensor[:, :, ch], vmin=0, vmax=1, cmap="viridis", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"channel {ch}", fontsize=9)
            if ch == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(f"{model_name} (preset {preset}, run {args.run_dir.name}): generated tensors (top)\n"
                 f"and {args.dataset} {args.split} crystals encoded with the paper layout (bottom)", fontsize=8)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.5, label="normalised entry")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out} ({len(generated)} generated, {len(real)} real)")


if __name__ == "__main__":
    main()
