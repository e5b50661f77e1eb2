"""Contract tests for model plugins: what every :class:`~benchmark.models.base.Model` must satisfy.

Plugin authors subclass :class:`ModelContract` in a pytest file and get the whole battery::

    from benchmark.testing import ModelContract

    class TestMyModel(ModelContract):
        model_class = MyModel   # required
        preset = "smoke"        # config preset the model is fitted with (default)
        n_train = 16            # how many crystals to fit on

or call :func:`check_model` outside pytest, which runs the same checks and returns the failures
as strings (an empty list means the model passes).

The checks: ``name`` is a non-empty identifier; ``Config`` is a frozen dataclass subclassing
``ModelConfig`` whose ``smoke`` and ``paper`` presets resolve; the declared ``capabilities`` match
the overridden capability methods (both ways); ``fit`` on a few crystals returns a dict; ``sample``
returns a :class:`~benchmark.models.base.SampleBatch` of exactly ``n`` well-formed crystals, the
same for the same seed and different for another; ``save``/``load`` round-trips (the loaded model
samples the same crystals for a seed); and every file ``save`` writes is readable without pickled
code (:func:`benchmark.safeload.load_weights`, i.e. ``torch.load(weights_only=True)``;
``np.load(allow_pickle=False)``; or JSON).

The crystals used are built here (ideal cubic perovskites and rock salts), so the checks need no
dataset download. pytest is imported only inside the test methods, so importing this module works
without pytest.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import traceback
import zipfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from benchmark import safeload
from benchmark.crystal import Crystal
from benchmark.models.base import CAPABILITIES, CONDITIONAL_SAMPLE, RECONSTRUCT, SAMPLE, Model, ModelConfig, SampleBatch

N_VAL = 4
N_SAMPLES = 4
MAX_Z = 118

# (A, B, anion, a in Å) cubic perovskites ABX3, Pm-3m, 5 atoms
_PEROVSKITES = [
    (38, 22, 8, 3.905),  # SrTiO3
    (56, 22, 8, 4.01),  # BaTiO3 (cubic)
    (20, 22, 8, 3.84),  # CaTiO3 (ideal cubic)
    (38, 40, 8, 4.10),  # SrZrO3
    (57, 13, 8, 3.79),  # LaAlO3
    (19, 41, 8, 4.00),  # KNbO3
    (55, 82, 53, 6.27),  # CsPbI3
]
# (cation, anion, a in Å) rock salts, Fm-3m conventional cell, 8 atoms
_ROCK_SALTS = [
    (11, 17, 5.64),  # NaCl
    (19, 17, 6.29),  # KCl
    (12, 8, 4.21),  # MgO
    (3, 9, 4.03),  # LiF
    (20, 8, 4.81),  # CaO
    (37, 35, 6.89),  # RbBr
]
_FCC = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
_FCC_SHIFTED = [[0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5], [0.5, 0.5, 0.5]]


def check_published(config: ModelConfig, table: dict[str, tuple[Any, str]], unused: Sequence[str] = ()) -> None:
    """Assert that a resolved ``paper`` config is its table of published values: every tabled field
    has the tabled value, every value has a source, and every Config field is tabled (``unused``:
    fields a paper run never reads, which may be left out). ``table`` is ``{field: (value, source)}``,
    the ``PUBLISHED`` tables beside the models' Configs."""
    wrong = {k: (getattr(config, k), v) for k, (v, _) in table.items() if getattr(config, k) != v}
    assert not wrong, f"paper differs from its published table (field: (config, published)): {wrong}"
    unsourced = [k for k, (_, src) in table.items() if not src]
    assert not unsourced, f"published values without a source: {unsourced}"
    uncovered = {f.name for f in dataclasses.fields(config)} - set(table) - set(unused)
    assert not uncovered, f"Config fields the published table does not cover: {sorted(uncovered)}"


def contract_crystals(n: int, offset: int = 0) -> list[Crystal]:
    """``n`` deterministic crystals: the 13 ideal cubic perovskites and rock salts above, cycled,
    each repeat with its lattice parameter stretched by 1% (so no two are identical)."""
    base: list[tuple[list[int], list[list[float]], float, str]] = []
    for a_site, b_site, anion, a in _PEROVSKITES:
        coords = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
        base.append(([a_site, b_site, anion, anion, anion], coords, a, f"perovskite-{a_site}-{b_site}-{anion}"))
    for cation, anion, a in _ROCK_SALTS:
        base.append(([cation] * 4 + [anion] * 4, _FCC + _FCC_SHIFTED, a, f"rocksalt-{cation}-{anion}"))
    out = []
    for i in range(offset, offset + n):
        z, coords, a, label = base[i % len(base)]
        scale = 1.0 + 0.01 * (i // len(base))
        out.append(Crystal(z, coords, [a * scale] * 3, [90.0, 90.0, 90.0], label=f"{label}-{i}"))
    return out


# ---------------------------------------------------------------------- individual checks
def check_name(model_class: type) -> None:
    assert isinstance(model_class, type) and issubclass(model_class, Model), f"{model_class!r} is not a subclass of benchmark.models.base.Model"
    name = getattr(model_class, "name", "")
    assert isinstance(name, str) and name and name.isidentifier(), f"name must be a non-empty identifier, got {name!r}"


def check_config(model_class: type) -> None:
    from benchmark.config import resolve

    cfg = model_class.Config
    assert isinstance(cfg, type) and dataclasses.is_dataclass(cfg), f"Config must be a dataclass, got {cfg!r}"
    assert issubclass(cfg, ModelConfig), f"Config {cfg.__name__} must subclass benchmark.models.base.ModelConfig"
    assert cfg.__dataclass_params__.frozen, f"Config {cfg.__name__} must be a frozen dataclass (@dataclass(frozen=True))"
    for preset in ("smoke", "paper"):
        assert preset in cfg.presets, f"Config {cfg.__name__} has no {preset!r} preset (presets: {sorted(cfg.presets)})"
        config = resolve(cfg, preset)
        assert isinstance(config, cfg), f"preset {preset!r} resolved to {type(config).__name__}"
        model_class(config)  # the model accepts its own resolved config


def check_capabilities(model_class: type) -> None:
    problems = []
    declared = set(model_class.capabilities)
    for cap in CAPABILITIES:
        overridden = getattr(model_class, cap) is not getattr(Model, cap)
        if cap in declared and not overridden:
            problems.append(f"declares capability {cap!r} but does not override Model.{cap}")
        if overridden and cap not in declared:
            problems.append(f"overrides Model.{cap} but does not declare capability {cap!r}")
    assert not problems, "; ".join(problems)


def fit_model(model_class: type, run_dir: Path, *, preset: str = "smoke", n_train: int = 16, seed: int = 0,
              overrides: dict[str, Any] | None = None) -> tuple[Model, dict[str, Any]]:
    """A model built with ``preset`` (and config ``overrides``) and fitted on ``n_train`` contract
    crystals; (model, summary)."""
    from benchmark.config import resolve

    model = model_class(resolve(model_class.Config, preset, None, None, dict(overrides or {})))
    train = contract_crystals(n_train)
    val = contract_crystals(N_VAL, offset=n_train)
    summary = model.fit(train, val, Path(run_dir), seed=seed, device="cpu")
    assert isinstance(summary, dict), f"fit must return a dict (the run summary), got {type(summary).__name__}"
    return model, summary


def _check_crystal(c: Any, where: str) -> None:
    assert isinstance(c, Crystal), f"{where}: expected a Crystal, got {type(c).__name__}"
    n = c.num_atoms
    assert np.shape(c.frac_coords) == (n, 3), f"{where}: frac_coords shape {np.shape(c.frac_coords)} for {n} atoms"
    assert np.shape(c.lengths) == (3,) and np.shape(c.angles) == (3,), f"{where}: lengths/angles must have shape (3,)"
    assert np.all(np.isfinite(c.lengths)) and np.all(np.isfinite(c.angles)), f"{where}: non-finite lattice {c.lengths} {c.angles}"
    assert np.all(np.isfinite(c.frac_coords)), f"{where}: non-finite fractional coordinates"
    z = np.asarray(c.atomic_numbers)
    assert np.all((z >= 1) & (z <= MAX_Z)), f"{where}: atomic numbers outside 1..{MAX_Z}: {sorted(set(z.tolist()))}"


def same_crystals(a: Sequence[Crystal], b: Sequence[Crystal], atol: float = 1e-6) -> bool:
    """Whether two crystal lists are the same (element-wise, to ``atol``)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x.num_atoms != y.num_atoms or not np.array_equal(x.atomic_numbers, y.atomic_numbers):
            return False
        for u, v in ((x.frac_coords, y.frac_coords), (x.lengths, y.lengths), (x.angles, y.angles)):
            if not np.allclose(u, v, atol=atol, rtol=0, equal_nan=True):
                return False
    return True


def check_sample(model: Model, n: int = N_SAMPLES) -> None:
    batch = model.sample(n, seed=0, device="cpu")
    assert isinstance(batch, SampleBatch), f"sample must return a SampleBatch, got {type(batch).__name__}"
    assert len(batch.crystals) == n, f"sample({n}) returned {len(batch.crystals)} crystals"
    for i, c in enumerate(batch.crystals):
        _check_crystal(c, f"sample {i}")
    again = model.sample(n, seed=0, device="cpu")
    assert same_crystals(batch.crystals, again.crystals), "sample is not deterministic: the same seed gave different crystals"
    other = model.sample(n, seed=1, device="cpu")
    assert not same_crystals(batch.crystals, other.crystals), "sample ignores the seed: seeds 0 and 1 gave the same crystals"


def check_conditional_sample(model: Model, conditions: dict[str, Any], n: int = N_SAMPLES) -> None:
    """``conditional_sample`` returns n valid crystals, deterministic in the seed."""
    batch = model.conditional_sample(n, conditions, seed=0, device="cpu")
    assert isinstance(batch, SampleBatch), f"conditional_sample must return a SampleBatch, got {type(batch).__name__}"
    assert len(batch.crystals) == n, f"conditional_sample({n}) returned {len(batch.crystals)} crystals"
    for i, c in enumerate(batch.crystals):
        _check_crystal(c, f"conditional sample {i}")
    again = model.conditional_sample(n, conditions, seed=0, device="cpu")
    assert same_crystals(batch.crystals, again.crystals), "conditional_sample is not deterministic in the seed"


def check_checkpoint_files(directory: Path) -> None:
    """Every file under ``directory`` is readable as data: torch ``weights_only``, ``.npz`` without
    pickle, or JSON."""
    files = [p for p in Path(directory).rglob("*") if p.is_file()]
    assert files, f"save wrote nothing under {directory}"
    for path in files:
        _check_data_file(path)


def _check_data_file(path: Path) -> None:
    if path.suffix == ".json":
        json.loads(path.read_text())
        return
    is_zip = zipfile.is_zipfile(path)
    if is_zip:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
        if names and all(n.endswith(".npy") for n in names):  # an .npz archive
            with np.load(path, allow_pickle=False) as data:
                for key in data.files:
                    data[key]  # noqa: B018 - reading each array is the check
            return
    if path.suffix == ".npy":
        np.load(path, allow_pickle=False)
        return
    try:
        safeload.load_weights(path)
    except safeload.SafeLoadError as exc:
        raise AssertionError(f"checkpoint file {path.name} cannot be read without pickled code ({exc.problem})") from None


def check_save_load(model: Model, directory: Path, n: int = N_SAMPLES) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.ckpt"
    model.save(path)
    check_checkpoint_files(directory)
    loaded = type(model).load(path)
    assert isinstance(loaded, type(model)), f"load returned {type(loaded).__name__}, expected {type(model).__name__}"
    if model.supports(SAMPLE):
        a = model.sample(n, seed=3, device="cpu").crystals
        b = loaded.sample(n, seed=3, device="cpu").crystals
        assert same_crystals(a, b), "the loaded model samples different crystals than the saved one for the same seed"


def check_reload_settings(model: Model, directory: Path, sampling_change: dict[str, Any], n: int = N_SAMPLES) -> None:
    """A trained model reloaded with other *sampling* settings runs with them; with another
    *trained* setting it is refused.

    ``sampling_change``: values of ``Config.sampling_fields`` that change what ``sample`` returns
    (e.g. fewer Langevin steps). Loading the checkpoint with them must give a model whose config
    holds them and whose samples differ from the stored config's; loading with a changed field
    that is not a sampling field must raise ``ValueError`` (the record would otherwise state a
    model that never ran)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.ckpt"
    model.save(path)
    cls = type(model)
    fields = {f.name: f for f in dataclasses.fields(model.config)}
    if sampling_change:
        unknown = set(sampling_change) - set(model.config.sampling_fields)
        assert not unknown, f"sampling_change names fields that are not sampling fields: {sorted(unknown)}"
        changed = dataclasses.replace(model.config, **sampling_change)
        reloaded = cls.load(path, changed)
        assert reloaded.config == changed, "load(path, config) must keep the config's sampling settings"
        if SAMPLE in model.capabilities:
            a = cls.load(path).sample(n, seed=5, device="cpu").crystals
            b = reloaded.sample(n, seed=5, device="cpu").crystals
            assert not same_crystals(a, b), f"the sampling settings {sampling_change} were given to load() but the samples did not change"
    # a trained (non-sampling) setting that differs must be refused
    for name, f in fields.items():
        value = getattr(model.config, name)
        if name in model.config.sampling_fields or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        other = dataclasses.replace(model.config, **{name: value + 1 if isinstance(value, int) else value * 2 + 1.0})
        try:
            cls.load(path, other)
        except ValueError as exc:
            assert name in str(exc), f"the refusal should name {name!r}: {exc}"
        else:
            raise AssertionError(f"load(path, config) accepted a config whose trained setting {name!r} differs from the checkpoint's")
        break


def check_reconstruct(model: Model, n: int = 3) -> None:
    """One output per input, in input order (an input the model cannot encode keeps its place),
    the same for the same seed."""
    good = contract_crystals(n)
    lonely = Crystal([1], [[0.0, 0.0, 0.0]], [30.0] * 3, [90.0] * 3, label="isolated H")  # no neighbours: often unencodable
    inputs = good[:1] + [lonely] + good[1:]
    out = model.reconstruct(inputs, seed=0, device="cpu")
    assert len(out) == len(inputs), f"reconstruct returned {len(out)} crystals for {len(inputs)} inputs"
    assert all(isinstance(c, Crystal) for c in out), "reconstruct must return Crystals (an unencodable input gets one too)"
    again = model.reconstruct(inputs, seed=0, device="cpu")
    assert same_crystals(out, again), "reconstruct is not deterministic in the seed"
    alone = model.reconstruct(good[:1], seed=0, device="cpu")
    assert len(alone) == 1


def check_fit_resumes(model_class: type, run_dir: Path, first: dict[str, Any] | None = None, *, preset: str = "smoke",
                      n_train: int = 16, overrides: dict[str, Any] | None = None) -> None:
    """``fit`` again in the directory of a finished ``fit`` (whose summary is ``first``; fitted
    here when None): the second call resumes (a model that checkpoints its training says so in
    ``resumed_from``) and trains no further than the first reached."""
    if first is None:
        _, first = fit_model(model_class, run_dir, preset=preset, n_train=n_train, overrides=overrides)
    _, second = fit_model(model_class, run_dir, preset=preset, n_train=n_train, overrides=overrides)
    if "resumed_from" in first:
        assert first["resumed_from"] is None, "the first fit in an empty directory resumed from something"
        assert second.get("resumed_from"), "the second fit in the same directory did not resume from its checkpoint"
        if "epochs" in first:
            assert second["epochs"] == first["epochs"], f"resuming trained further: {first['epochs']} -> {second['epochs']} epochs"


# ---------------------------------------------------------------------- outside pytest
CHECKS = ("name", "config", "capabilities", "fit", "sample", "save_load")


def check_model(
    model_class: type,
    tmp_dir: str | Path | None = None,
    *,
    preset: str = "smoke",
    n_train: int = 16,
    checks: Sequence[str] = CHECKS,
) -> list[str]:
    """Run the contract checks on ``model_class``; returns the failures (``"check: message"``).

    ``tmp_dir`` receives the training run and the saved checkpoint (a temporary directory when
    None). ``checks`` selects a subset of :data:`CHECKS`; ``sample`` and ``save_load`` need ``fit``.
    """
    unknown = set(checks) - set(CHECKS)
    if unknown:
        raise ValueError(f"unknown checks {sorted(unknown)}; valid: {', '.join(CHECKS)}")
    if tmp_dir is None:
        with tempfile.TemporaryDirectory(prefix="model-contract-") as d:
            return check_model(model_class, d, preset=preset, n_train=n_train, checks=checks)
    tmp_dir = Path(tmp_dir)
    failures: list[str] = []

    def run(name: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")
        except Exception as exc:  # a crash is a failure too, with where it happened
            tb = traceback.extract_tb(exc.__traceback__)[-1]
            failures.append(f"{name}: {type(exc).__name__}: {exc} ({Path(tb.filename).name}:{tb.lineno})")
        return None

    if "name" in checks:
        run("name", lambda: check_name(model_class))
    if "config" in checks:
        run("config", lambda: check_config(model_class))
    if "capabilities" in checks:
        run("capabilities", lambda: check_capabilities(model_class))
    needs_fit = [c for c in ("fit", "sample", "save_load") if c in checks]
    if not needs_fit:
        return failures
    fitted = run("fit", lambda: fit_model(model_class, tmp_dir / "run", preset=preset, n_train=n_train))
    if fitted is None:
        failures.extend(f"{c}: not run, fit failed" for c in needs_fit if c != "fit")
        return failures
    model, _summary = fitted
    if "sample" in checks and SAMPLE in model_class.capabilities:
        run("sample", lambda: check_sample(model))
    if "save_load" in checks:
        run("save_load", lambda: check_save_load(model, tmp_dir / "saved"))
    return failures


# ---------------------------------------------------------------------- pytest
_FITTED: dict[tuple[type, str, int, str], tuple[Model, dict[str, Any], Path]] = {}


class ModelContract:
    """Subclass as ``Test<Something>`` and set ``model_class``; see the module doc.

    The model is fitted once per subclass (on ``n_train`` contract crystals with ``preset``) and
    shared by the tests that need a trained model.
    """

    model_class: type | None = None
    preset: str = "smoke"
    n_train: int = 16
    #: config values on top of the preset (e.g. a condition the contract crystals carry)
    overrides: dict[str, Any] = {}
    #: targets for ``conditional_sample`` (models with that capability)
    conditions: dict[str, Any] = {}
    #: sampling settings (``Config.sampling_fields``) that change what ``sample`` returns, for the
    #: reload check (empty: only the refusal of a changed trained setting is checked)
    sampling_change: dict[str, Any] = {}

    # ------------------------------------------------------------------ helpers
    def _model_class(self) -> type:
        if self.model_class is None:
            raise AssertionError(f"{type(self).__name__}: set model_class = YourModel")
        return self.model_class

    def _fitted(self, tmp_path_factory: Any) -> tuple[Model, dict[str, Any]]:
        cls = self._model_class()
        key = (cls, self.preset, self.n_train, json.dumps(self.overrides, sort_keys=True, default=str))
        if key not in _FITTED:
            run_dir = tmp_path_factory.mktemp(f"contract-{cls.name or cls.__name__}")
            model, summary = fit_model(cls, run_dir, preset=self.preset, n_train=self.n_train, overrides=self.overrides)
            _FITTED[key] = (model, summary, run_dir)
        return _FITTED[key][:2]

    def _run_dir(self, tmp_path_factory: Any) -> Path:
        self._fitted(tmp_path_factory)
        cls = self._model_class()
        return _FITTED[(cls, self.preset, self.n_train, json.dumps(self.overrides, sort_keys=True, default=str))][2]

    def _require(self, capability: str) -> None:
        import pytest

        if capability not in self._model_class().capabilities:
            pytest.skip(f"{self._model_class().name} does not declare {capability!r}")

    # ------------------------------------------------------------------ tests
    def test_name(self) -> None:
        check_name(self._model_class())

    def test_config_presets(self) -> None:
        check_config(self._model_class())

    def test_capabilities_match_methods(self) -> None:
        check_capabilities(self._model_class())

    def test_fit_returns_dict(self, tmp_path_factory: Any) -> None:
        _model, summary = self._fitted(tmp_path_factory)
        assert isinstance(summary, dict)

    def test_sample_batch(self, tmp_path_factory: Any) -> None:
        self._require(SAMPLE)
        model, _ = self._fitted(tmp_path_factory)
        check_sample(model)

    def test_conditional_sample_batch(self, tmp_path_factory: Any) -> None:
        self._require(CONDITIONAL_SAMPLE)
        model, _ = self._fitted(tmp_path_factory)
        check_conditional_sample(model, self.conditions)

    def test_save_load_round_trip(self, tmp_path_factory: Any, tmp_path: Path) -> None:
        model, _ = self._fitted(tmp_path_factory)
        check_save_load(model, tmp_path / "saved")

    def test_reload_takes_sampling_settings_and_refuses_trained_ones(self, tmp_path_factory: Any, tmp_path: Path) -> None:
        model, _ = self._fitted(tmp_path_factory)
        check_reload_settings(model, tmp_path / "saved", self.sampling_change)

    def test_reconstruct_keeps_inputs_aligned(self, tmp_path_factory: Any) -> None:
        self._require(RECONSTRUCT)
        model, _ = self._fitted(tmp_path_factory)
        check_reconstruct(model)

    def test_fit_resumes_in_its_directory(self, tmp_path_factory: Any) -> None:
        _, first = self._fitted(tmp_path_factory)
        check_fit_resumes(self._model_class(), self._run_dir(tmp_path_factory), first, preset=self.preset, n_train=self.n_train,
                          overrides=self.overrides)

    def test_checkpoint_has_no_pickled_code(self, tmp_path_factory: Any, tmp_path: Path) -> None:
        model, _ = self._fitted(tmp_path_factory)
        model.save(tmp_path / "model.ckpt")
        check_checkpoint_files(tmp_path)


# ---------------------------------------------------------------------- oracles
def check_oracle_interface(oracle: Any) -> None:
    """An :class:`~benchmark.metrics.oracles.base.Oracle` with a name, known capabilities that
    match the methods it overrides (both ways), and a property and unit when it predicts."""
    from benchmark.metrics.oracles.base import CAPABILITIES, PREDICT, Oracle

    assert isinstance(oracle, Oracle), f"{oracle!r} is not a benchmark.metrics.oracles.base.Oracle"
    assert isinstance(oracle.name, str) and oracle.name, f"oracle name must be a non-empty string, got {oracle.name!r}"
    caps = set(oracle.capabilities)
    assert caps and caps <= set(CAPABILITIES), f"capabilities {sorted(caps)} must be a non-empty subset of {CAPABILITIES}"
    for cap in CAPABILITIES:
        overridden = getattr(type(oracle), cap) is not getattr(Oracle, cap)
        assert overridden == (cap in caps), f"{'declares' if cap in caps else 'overrides'} {cap!r} without {'overriding' if cap in caps else 'declaring'} it"
    if PREDICT in caps:
        assert oracle.property and oracle.unit, f"an oracle that predicts names its property and unit (got {oracle.property!r}, {oracle.unit!r})"
    assert isinstance(oracle.describe(), str) and oracle.describe()


def _bad_entries() -> list[Any]:
    """Inputs an oracle must answer with None / a failed relaxation, not an exception: an
    unreadable entry, a NaN lattice, overlapping atoms, an empty cell."""
    from types import SimpleNamespace

    good = contract_crystals(1)[0]
    nan_cell = Crystal(good.atomic_numbers, good.frac_coords, [np.nan, *good.lengths[1:].tolist()], good.angles, label="nan")
    overlap = Crystal([11, 17], [[0.0, 0.0, 0.0], [0.001, 0.0, 0.0]], [4.0] * 3, [90.0] * 3, label="overlap")
    empty = Crystal(np.zeros(0, dtype=int), np.zeros((0, 3)), [4.0] * 3, [90.0] * 3, label="empty")
    return [SimpleNamespace(source="x", reason="malformed CIF"), nan_cell, overlap, empty]


def check_predict(oracle: Any, n: int = N_SAMPLES) -> None:
    """One value per crystal, in input order (reversing the input reverses the output), each None
    or a finite number; bad entries among good ones give None, not an exception, and leave the
    good ones' values alone."""
    crystals = contract_crystals(n)
    values = oracle.predict(crystals, progress=False, n_jobs=1)
    assert len(values) == n, f"predict returned {len(values)} values for {n} crystals"
    assert all(v is None or (isinstance(v, (int, float)) and np.isfinite(v)) for v in values), f"values must be finite or None: {values}"
    assert any(v is not None for v in values), "predict scored none of the ideal perovskites and rock salts"
    backwards = oracle.predict(crystals[::-1], progress=False, n_jobs=1)
    assert np.allclose([np.nan if v is None else v for v in backwards[::-1]], [np.nan if v is None else v for v in values],
                       rtol=1e-5, atol=1e-6, equal_nan=True), "predict depends on the order of its input"
    bad = _bad_entries()
    mixed = oracle.predict(bad + crystals[:1], progress=False, n_jobs=1)
    assert len(mixed) == len(bad) + 1, f"predict returned {len(mixed)} values for {len(bad) + 1} entries"
    # unreadable, non-finite and empty entries cannot be scored; overlapping atoms may be (a property
    # model answers for any geometry; validity is the metrics' business)
    assert [mixed[k] for k in (0, 1, 3)] == [None] * 3, f"unreadable / NaN / empty entries must give None, got {mixed[:4]}"
    assert mixed[2] is None or np.isfinite(mixed[2]), f"overlapping atoms gave {mixed[2]}"
    assert mixed[-1] is not None and np.isclose(mixed[-1], values[0], rtol=1e-5, atol=1e-6), "a bad entry changed a good crystal's value"


def check_relax(oracle: Any) -> None:
    """One :class:`~benchmark.metrics.oracles.base.Relaxation` per crystal, in order; a crystal
    that cannot be relaxed gets ``relaxed=None`` and a reason, the others a relaxed crystal."""
    from benchmark.metrics.oracles.base import Relaxation, RelaxSettings

    crystals = contract_crystals(1) + _bad_entries()
    out = oracle.relax(crystals, RelaxSettings(steps=3, time_limit_s=120.0), progress=False, n_jobs=1)
    assert len(out) == len(crystals) and all(isinstance(r, Relaxation) for r in out), "relax must return one Relaxation per crystal"
    assert out[0].relaxed is not None and out[0].relaxed.num_atoms == crystals[0].num_atoms, f"a good crystal was not relaxed: {out[0].reason}"
    for r in out[1:]:
        assert r.relaxed is None and not r.converged and r.reason, f"a bad crystal must fail with a reason, got {r}"


class OracleContract:
    """Subclass as ``Test<Something>`` and set ``oracle_name`` (a registered oracle) or override
    :meth:`make_oracle`; the tests skip when the oracle's weights are not at hand."""

    oracle_name: str | None = None

    def make_oracle(self) -> Any:
        from benchmark.registry import get_plugins

        if self.oracle_name is None:
            raise AssertionError(f"{type(self).__name__}: set oracle_name or override make_oracle")
        return get_plugins()["oracles"].get(self.oracle_name)

    def _oracle(self) -> Any:
        import pytest

        cache = type(self).__dict__.get("_built")
        if cache is None:
            try:
                cache = self.make_oracle()
            except FileNotFoundError as exc:  # weights not at hand (OracleWeightsNotFound is one)
                pytest.skip(f"{self.oracle_name}: {str(exc).splitlines()[0]}")
            type(self)._built = cache  # type: ignore[attr-defined]
        return cache

    def _require(self, capability: str) -> Any:
        import pytest

        oracle = self._oracle()
        if not oracle.supports(capability):
            pytest.skip(f"{oracle.name} does not declare {capability!r}")
        return oracle

    def test_interface(self) -> None:
        check_oracle_interface(self._oracle())

    def test_predict_one_value_per_crystal(self) -> None:
        check_predict(self._require("predict"))

    def test_relax_one_result_per_crystal(self) -> None:
        check_relax(self._require("relax"))
