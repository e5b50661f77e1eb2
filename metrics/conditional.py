"""Conditional generation: how often generated crystals have the properties they were asked for.

The protocol of the Con-CDVAE paper (Ye et al., "Con-CDVAE: A method for the conditional generation
of crystal structures"), Section 2.3 and Section 3: a model generates crystals for a set of target
properties (200 per condition set after its own filter, Section 2.2.2), and independent checkers
decide whether each crystal meets the targets:

* band gap and formation energy: pretrained CGCNN models (Section 2.3, Table 1), as regressors
  (Figures 2-4: the predicted values are plotted against the targets) or as classifiers of the
  paper's classes (Table 2: ``BG_type`` zero / non-zero band gap; ``FM_type`` formation energy
  above ("high") / below ("low") -0.9 eV/atom);
* crystal system: pymatgen ``SpacegroupAnalyzer(structure, symprec=0.2, angle_tolerance=5)
  .get_crystal_system()`` (Section 2.3, Appendix B, Table B1).

Targets (names are the data's column names; the aliases ``crystal_system`` and
``formation_energy`` are accepted):

=============================  ==========  ==================================  ============================
property                       kind        default checker                     success
=============================  ==========  ==================================  ============================
``band_gap``                   continuous  ``cgcnn-mpall20-bg`` (eV)           ``|pred - target| <= tol``
``formation_energy_per_atom``  continuous  ``cgcnn-mpall20-fm`` (eV/atom)      ``|pred - target| <= tol``
``BG_type``                    class       ``cgcnn-mpall20-Cbg`` (P(non-zero))  ``(P >= 0.5) == target``
``FM_type``                    class       ``cgcnn-mpall20-Cfm`` (P(low))       ``(P >= 0.5) == target``
``CS_type``                    class       symmetry analysis (see above)       system == target
any other oracle property      continuous  the oracle named for it             ``|pred - target| <= tol``
=============================  ==========  ==================================  ============================

For models trained on Con-CDVAE's MP-40 or OQMD-20 data the CGCNN models trained on the same data
are the defaults (``cgcnn-mpall40-*``, ``cgcnn-oqmd-*``); any oracle can be named per property.

Class labels and codes (the codes are the values of the data's columns, which is what a model is
given in ``conditions``):

* ``BG_type``: 0 = ``zero``, 1 = ``non-zero`` (Section 3.2: "zero bandgap as 'zero' and the rest as
  'non-zero'"; the CGCNN classifier returns P(class 1));
* ``FM_type``: 0 = ``high`` (formation energy above -0.9 eV/atom), 1 = ``low``;
* ``CS_type``: 0 = ``triclinic``, 1 = ``trigonal``, 2 = ``monoclinic``, 3 = ``orthorhombic``,
  4 = ``tetragonal``, 5 = ``hexagonal``, 6 = ``cubic``. Not stated in the paper; read off Con-CDVAE's
  data (the 69 ``mp_20_sample`` rows, from its ``data/mptest``, and its ``general_full.csv`` input
  file): every row's ``CS_type`` is the crystal system of its ``spacegroup.number`` under this
  numbering (69 of 69: space groups 1-2 -> 0, 143-167 -> 1, 3-15 -> 2, 16-74 -> 3, 75-142 -> 4,
  168-194 -> 5, 195-230 -> 6). ``SpacegroupAnalyzer`` at the paper's loose tolerance (0.2 Å) agrees
  on 64 of the 69 relaxed MP crystals; the other 5 come out more symmetric than MP's label.

Tolerances of continuous targets. The paper gives none: Figures 2-4 show distributions of the
predicted values, not a success rate. This module's defaults are 0.5 eV (band gap) and
0.5 eV/atom (formation energy), harness choices that (i) exceed the checker's own error (Table 1:
CGCNN test MAE 0.36 eV and 0.095 eV/atom on MP20), so oracle noise alone does not fail a crystal on
target, and (ii) stay well below half the spacing of the paper's targets (0 / 3 / 6 eV, Figure 2;
0 / -2 / -4 eV/atom, Figure 3), so the windows of neighbouring targets never overlap. A tolerance
can be set per property; the mean absolute deviation and the median prediction are reported too,
and every prediction is in the per-structure table, so other thresholds can be applied afterwards.

Failures. A crystal that cannot be read or built, that an oracle cannot featurise (no prediction),
or whose symmetry cannot be analysed fails every target it has no answer for, with the reason in
the per-structure table's ``condition_reason`` column; the denominator is always every sample.

Keys (one condition set per run; ``<cond>`` is the set as ``name=value`` pairs sorted by name and
joined by commas, class values as labels, numbers as ``%g``: ``BG_type=zero,FM_type=high``,
``CS_type=cubic``, ``band_gap=3,formation_energy_per_atom=-2``):

* ``success[<cond>]``: fraction of the samples meeting every target (Tables 2 and B1);
* ``success[<cond>].<name>``: per target, when the set has more than one;
* ``mad[<cond>].<name>``, ``median[<cond>].<name>``: continuous targets, over the crystals with a
  prediction: mean |prediction - target| and the median prediction (Figures 2-3);
* ``predicted[<cond>]``: fraction of the samples with an answer for every target.

Figures (written next to the record): a histogram of the predictions per continuous target with the
target and its tolerance marked (Figures 2-3), a formation energy / band gap scatter when both are
targets (Figure 4), and a bar chart of the predicted classes per class target.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from benchmark.metrics.base import EvalContext, MetricKey, MetricValue, fraction

#: Section 2.3: ``SpacegroupAnalyzer`` tolerances used for the crystal system (Å, degrees)
SYMPREC = 0.2
ANGLE_TOLERANCE = 5.0
#: a classifier's probability of class 1 at or above this gives class 1
CLASS_THRESHOLD = 0.5
#: the checker name of ``CS_type``: symmetry analysis, not an oracle from the registry
SYMMETRY = "symmetry"
#: ``CS_type`` codes 0..6 (see the module docstring for how the numbering was established)
CRYSTAL_SYSTEMS = ("triclinic", "trigonal", "monoclinic", "orthorhombic", "tetragonal", "hexagonal", "cubic")
#: default tolerances of continuous targets (harness choices, see the module docstring)
DEFAULT_TOLERANCES: dict[str, float] = {"band_gap": 0.5, "formation_energy_per_atom": 0.5}
#: which of the Con-CDVAE CGCNN sets checks a dataset (default: the MP-20 models)
ORACLE_SETS: dict[str, str] = {"mp_40": "mpall40", "oqmd_20": "oqmd"}
DEFAULT_ORACLE_SET = "mpall20"


class ConditionError(ValueError):
    """A condition, tolerance or checker that cannot be used (the message lists the valid ones)."""


@dataclass(frozen=True)
class PropertySpec:
    """A property the task knows: its kind, unit, class labels (by code) and CGCNN target suffix."""

    name: str
    kind: Literal["continuous", "class"]
    unit: str | None
    labels: tuple[str, ...] = ()
    cgcnn: str | None = None  # suffix of the default oracle cgcnn-<set>-<suffix>; None: symmetry analysis
    short: str = ""


PROPERTIES: dict[str, PropertySpec] = {
    "band_gap": PropertySpec("band_gap", "continuous", "eV", cgcnn="bg", short="BG"),
    "formation_energy_per_atom": PropertySpec("formation_energy_per_atom", "continuous", "eV/atom", cgcnn="fm", short="FE"),
    "BG_type": PropertySpec("BG_type", "class", None, ("zero", "non-zero"), cgcnn="Cbg", short="BG"),
    "FM_type": PropertySpec("FM_type", "class", None, ("high", "low"), cgcnn="Cfm", short="FE"),
    "CS_type": PropertySpec("CS_type", "class", None, CRYSTAL_SYSTEMS, cgcnn=None, short="CS"),
}
ALIASES = {"crystal_system": "CS_type", "formation_energy": "formation_energy_per_atom"}
#: other spellings of class labels accepted on input
LABEL_ALIASES = {"nonzero": "non-zero", "non_zero": "non-zero", "non zero": "non-zero"}


@dataclass(frozen=True)
class Target:
    """One target of a condition set, resolved.

    Attributes:
        name: canonical property name (the data's column name, or the oracle's property).
        kind: ``continuous`` or ``class``.
        value: the target number, or the class label.
        code: the class code (the data column's value), None for continuous targets.
        tolerance: success window of a continuous target (same unit), None for classes.
        oracle: the checker: an oracle name, or :data:`SYMMETRY`.
        unit: unit of the target / prediction (continuous), else None.
        labels: class labels by code (class targets).
    """

    name: str
    kind: str
    value: float | str
    code: int | None
    tolerance: float | None
    oracle: str
    unit: str | None = None
    labels: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """``name=value`` as it appears in metric keys."""
        return f"{self.name}={format_value(self.value)}"

    @property
    def model_value(self) -> float | int:
        """What the model is given: the class code, or the number."""
        return int(self.code) if self.code is not None else float(self.value)


# ---------------------------------------------------------------------------------- parsing
def format_value(value: float | str) -> str:
    """A condition value as written in keys: labels as they are, numbers as ``%g`` (-0 as 0)."""
    if isinstance(value, str):
        return value
    return f"{float(value) + 0.0:g}"


def canonical_name(name: str, extra: Sequence[str] = ()) -> str:
    """The canonical property name of ``name`` (aliases resolved); ``extra`` names are accepted as
    they are (properties with an oracle named for them). Raises :class:`ConditionError`."""
    key = str(name).strip()
    if key in PROPERTIES or key in extra:
        return key
    if key in ALIASES:
        return ALIASES[key]
    lowered = {k.lower(): k for k in list(PROPERTIES) + list(ALIASES)}
    if key.lower() in lowered:  # bg_type, Band_Gap...
        return canonical_name(lowered[key.lower()])
    raise ConditionError(
        f"unknown property {name!r}; valid: {', '.join(PROPERTIES)} (aliases: "
        + ", ".join(f"{a} = {c}" for a, c in ALIASES.items())
        + "), or any property with an oracle named for it (task.oracles / --condition-oracle NAME=ORACLE)"
    )


def parse_assignments(items: Sequence[str], flag: str = "--condition") -> dict[str, str]:
    """``["band_gap=3", "FM_type=low"]`` -> ``{"band_gap": "3", "FM_type": "low"}`` (names as given)."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConditionError(f"{flag} {item!r}: expected NAME=VALUE, e.g. {flag} band_gap=3.0 or {flag} BG_type=zero")
        if name.strip() in out:
            raise ConditionError(f"{flag} {name.strip()} given twice")
        out[name.strip()] = value.strip()
    return out


def class_label(spec: PropertySpec, value: Any) -> tuple[str, int]:
    """(label, code) of a class value given as a label (case-insensitive) or an integer code."""
    valid = ", ".join(f"{label} ({code})" for code, label in enumerate(spec.labels))
    if isinstance(value, bool):
        raise ConditionError(f"{spec.name}: {value!r} is not a class; valid: {valid}")
    if isinstance(value, (int, np.integer)) or (isinstance(value, float) and float(value).is_integer()):
        code = int(value)
    else:
        text = str(value).strip().lower()
        text = LABEL_ALIASES.get(text, text)
        if text in spec.labels:
            return text, spec.labels.index(text)
        try:
            code = int(text)
        except ValueError:
            raise ConditionError(f"{spec.name}: unknown class {value!r}; valid: {valid}") from None
    if not 0 <= code < len(spec.labels):
        raise ConditionError(f"{spec.name}: unknown class {value!r}; valid: {valid}")
    return spec.labels[code], code


def _number(name: str, value: Any, unit: str | None) -> float:
    if isinstance(value, bool):
        raise ConditionError(f"{name}: expected a number{f' ({unit})' if unit else ''}, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConditionError(f"{name}: expected a number{f' ({unit})' if unit else ''}, got {value!r}") from None
    if not math.isfinite(number):
        raise ConditionError(f"{name}: {value!r} is not a finite number")
    return number


def normalize_conditions(conditions: Mapping[str, Any], oracles: Mapping[str, str] | None = None) -> dict[str, float | str]:
    """Canonical names and values: class values as labels, numbers as floats, sorted by name.

    Stored in the run's task config, so ``BG_type=0`` and ``BG_type=zero`` are the same run.
    Properties the task does not know are accepted when ``oracles`` names a checker for them.
    """
    extra = [k for k in (oracles or {}) if k not in PROPERTIES and k not in ALIASES]
    out: dict[str, float | str] = {}
    for raw_name, raw_value in conditions.items():
        name = canonical_name(raw_name, extra)
        if name in out:
            raise ConditionError(f"condition {name} given twice ({raw_name!r} is another name for it)")
        spec = PROPERTIES.get(name)
        if spec is not None and spec.kind == "class":
            out[name] = class_label(spec, raw_value)[0]
        else:
            out[name] = _number(name, raw_value, spec.unit if spec else None)
    return dict(sorted(out.items()))


def default_oracle(name: str, dataset: str | None = None) -> str:
    """The default checker of a known property for a dataset (see the module docstring)."""
    spec = PROPERTIES[name]
    if spec.cgcnn is None:
        return SYMMETRY
    return f"cgcnn-{ORACLE_SETS.get(dataset or '', DEFAULT_ORACLE_SET)}-{spec.cgcnn}"


def build_targets(
    conditions: Mapping[str, Any],
    tolerances: Mapping[str, Any] | None = None,
    oracles: Mapping[str, str] | None = None,
    dataset: str | None = None,
) -> list[Target]:
    """The resolved targets of a condition set, sorted by name.

    Args:
        conditions: property -> target (number, class label or code); at least one.
        tolerances: property -> success window of a continuous target (default
            :data:`DEFAULT_TOLERANCES`; required for properties the task does not know).
        oracles: property -> checker name (an oracle, or ``symmetry`` for ``CS_type``).
        dataset: picks the default CGCNN set (:data:`ORACLE_SETS`).
    """
    if not conditions:
        raise ConditionError("no conditions: give at least one, e.g. --condition band_gap=3.0 or --condition BG_type=zero "
                             f"(properties: {', '.join(PROPERTIES)})")
    oracles = dict(oracles or {})
    extra = [k for k in oracles if k not in PROPERTIES and k not in ALIASES]
    checkers = {canonical_name(k, extra): str(v) for k, v in oracles.items()}
    values = normalize_conditions(conditions, oracles)
    tols: dict[str, float] = {}
    for raw_name, raw_tol in (tolerances or {}).items():
        name = canonical_name(raw_name, list(values) + extra)
        tol = _number(f"tolerance of {name}", raw_tol, None)
        if tol <= 0:
            raise ConditionError(f"tolerance of {name}: must be positive, got {raw_tol!r}")
        spec = PROPERTIES.get(name)
        if spec is not None and spec.kind == "class":
            raise ConditionError(f"tolerance of {name}: {name} is a class target (success is an exact match); tolerances apply to "
                                 f"continuous targets ({', '.join(k for k, s in PROPERTIES.items() if s.kind == 'continuous')} or oracle properties)")
        tols[name] = tol
    targets = []
    for name, value in values.items():
        spec = PROPERTIES.get(name)
        checker = checkers.get(name) or (default_oracle(name, dataset) if spec else None)
        if checker is None:  # pragma: no cover - normalize_conditions only admits names with an oracle
            raise ConditionError(f"{name}: no checker; name an oracle for it")
        if checker == SYMMETRY and name != "CS_type":
            raise ConditionError(f"{name}: the {SYMMETRY!r} checker gives the crystal system; it can only check CS_type")
        if name == "CS_type" and checker != SYMMETRY:
            raise ConditionError(f"CS_type is checked by symmetry analysis ({SYMMETRY!r}), not by {checker!r}")
        if spec is not None and spec.kind == "class":
            label, code = class_label(spec, value)
            targets.append(Target(name, "class", label, code, None, checker, None, spec.labels))
            continue
        tol = tols.get(name, DEFAULT_TOLERANCES.get(name))
        if tol is None:
            raise ConditionError(f"{name}: a continuous target needs a tolerance (task.tolerances / --tolerance {name}=VALUE); "
                                 f"defaults exist only for {', '.join(DEFAULT_TOLERANCES)}")
        targets.append(Target(name, "continuous", float(value), None, float(tol), checker, spec.unit if spec else None))
    return targets


def condition_text(targets: Sequence[Target]) -> str:
    """The condition set as written in keys: ``BG_type=zero,FM_type=high``."""
    return ",".join(t.text for t in sorted(targets, key=lambda t: t.name))


def success_key(targets: Sequence[Target]) -> str:
    return f"success[{condition_text(targets)}]"


def parse_key(key: str) -> tuple[str, dict[str, str], str | None] | None:
    """``"mad[band_gap=3].band_gap"`` -> ``("mad", {"band_gap": "3"}, "band_gap")``; None for a key
    that is not one of this module's."""
    head, sep, rest = key.partition("[")
    if not sep or head not in ("success", "mad", "median", "predicted") or "]" not in rest:
        return None
    inner, _, tail = rest.rpartition("]")
    if tail and not tail.startswith("."):
        return None
    pairs: dict[str, str] = {}
    for part in inner.split(","):
        name, eq, value = part.partition("=")
        if not eq:
            return None
        pairs[name] = value
    return head, pairs, tail[1:] or None


def key_info(key: str) -> MetricKey | None:
    """The declaration of one of this metric's keys, labelled from its condition set as Con-CDVAE's
    tables are: ``success[BG_type=zero,FM_type=high]`` -> "BG:zero; FE:high (%)",
    ``mad[band_gap=3].band_gap`` -> "MAD BG (BG:3 eV)"; None for a key that is not one of them."""
    parsed = parse_key(key)
    if parsed is None:
        return None
    kind, pairs, target = parsed

    def short(name: str) -> str:
        return PROPERTIES[name].short if name in PROPERTIES else name

    def unit(name: str) -> str:
        spec = PROPERTIES.get(name)
        return f" {spec.unit}" if spec is not None and spec.unit else ""

    cond = "; ".join(f"{short(k)}:{v}{unit(k)}" for k, v in pairs.items())
    what = short(target or "")
    if kind == "success":
        return fraction(f"{cond} (%)" if target is None else f"{what} of {cond} (%)")
    if kind == "predicted":
        return fraction(f"checked, {cond} (%)")
    target_unit = unit(target or "").strip() or None  # None: the oracle's unit, stored with the value
    if kind == "mad":
        return MetricKey(f"MAD {what} ({cond})", False, target_unit)
    return MetricKey(f"median {what} ({cond})", None, target_unit)


def model_conditions(targets: Sequence[Target]) -> dict[str, float | int]:
    """What ``Model.conditional_sample`` is given: property -> number, or class code (int)."""
    return {t.name: t.model_value for t in targets}


# ---------------------------------------------------------------------------------- checkers
def crystal_system(crystal: Any, symprec: float = SYMPREC, angle_tolerance: float = ANGLE_TOLERANCE) -> str:
    """Crystal system of a :class:`~benchmark.crystal.Crystal` (or pymatgen Structure) by
    ``SpacegroupAnalyzer(structure, symprec, angle_tolerance).get_crystal_system()`` (Section 2.3).
    Raises whatever pymatgen / spglib raise for a crystal they cannot analyse."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    structure = crystal.to_structure() if hasattr(crystal, "to_structure") else crystal
    return str(SpacegroupAnalyzer(structure, symprec=symprec, angle_tolerance=angle_tolerance).get_crystal_system())


def load_oracles(targets: Sequence[Target], oracle_dir: str | None = None) -> dict[str, Any]:
    """The oracle objects the targets need, by name (the symmetry checker needs none).

    Raises :class:`ConditionError` for an unknown oracle, missing weights, or an oracle whose output
    does not fit its target (a classifier's probability for a continuous target or the reverse).
    """
    from benchmark.metrics.oracles.base import PREDICT, NotAnOracle, check_oracle
    from benchmark.registry import RegistryError, get_plugins

    reg = get_plugins()["oracles"]
    out: dict[str, Any] = {}
    for t in targets:
        if t.oracle == SYMMETRY or t.oracle in out:
            continue
        try:
            factory = reg.entry(t.oracle).factory
            oracle = check_oracle(factory(oracle_dir=oracle_dir) if oracle_dir else factory(), t.oracle, PREDICT)
        except (RegistryError, NotAnOracle) as exc:
            raise ConditionError(f"checker of {t.name}: {exc}") from exc
        except FileNotFoundError as exc:  # OracleWeightsNotFound is one
            raise ConditionError(f"checker of {t.name}: oracle {t.oracle} not available: {exc}") from exc
        out[t.oracle] = oracle
    for t in targets:
        if t.oracle == SYMMETRY:
            continue
        probability = getattr(out[t.oracle], "unit", None) == "probability"
        if t.kind == "class" and not probability:
            raise ConditionError(f"{t.name} is a class target; its oracle must return a class probability, but {t.oracle} returns "
                                 f"{getattr(out[t.oracle], 'property', '?')} ({getattr(out[t.oracle], 'unit', '?')})")
        if t.kind == "continuous" and probability:
            raise ConditionError(f"{t.name} is a continuous target, but {t.oracle} returns a class probability")
    return out


def describe_checker(name: str) -> str:
    return f"pymatgen SpacegroupAnalyzer(symprec={SYMPREC:g}, angle_tolerance={ANGLE_TOLERANCE:g})" if name == SYMMETRY else name


@dataclass
class Checked:
    """Per-sample answers for one target.

    ``raw``: the checker's output (prediction, class-1 probability, or crystal system name);
    ``label``: the predicted class label (class targets); ``success``: the sample meets the target;
    ``reason``: why there is no answer (None when there is one).
    """

    target: Target
    raw: list[Any]
    label: list[str | None]
    success: np.ndarray
    reason: list[str | None]

    @property
    def answered(self) -> np.ndarray:
        return np.array([r is None for r in self.reason], dtype=bool)


def judge(target: Target, raw: Sequence[Any], reasons: Sequence[str | None]) -> Checked:
    """Success of each sample for one target, from the checker's outputs (pure, for tests).

    ``raw[i]`` is a number (continuous: the prediction; class: P(class 1)), a crystal system name
    (``CS_type``), or None with ``reasons[i]`` saying why.
    """
    n = len(raw)
    success = np.zeros(n, dtype=bool)
    labels: list[str | None] = [None] * n
    why = list(reasons)
    for i, value in enumerate(raw):
        if value is None or why[i] is not None:
            why[i] = why[i] or f"{target.oracle}: no answer"
            continue
        if target.kind == "continuous":
            if not math.isfinite(float(value)):
                why[i] = f"{target.oracle}: non-finite prediction"
                continue
            success[i] = abs(float(value) - float(target.value)) <= float(target.tolerance or 0.0)
        elif target.oracle == SYMMETRY:
            labels[i] = str(value)
            success[i] = labels[i] == target.value
        else:
            p = float(value)
            if not math.isfinite(p):
                why[i] = f"{target.oracle}: non-finite probability"
                continue
            labels[i] = target.labels[1] if p >= CLASS_THRESHOLD else target.labels[0]
            success[i] = labels[i] == target.value
    return Checked(target, list(raw), labels, success, why)


def check(target: Target, crystals: Sequence[Any], usable: Sequence[bool], oracles: Mapping[str, Any], progress: bool = False) -> Checked:
    """Run the target's checker over the usable crystals (the others keep their reasons)."""
    n = len(crystals)
    raw: list[Any] = [None] * n
    reasons: list[str | None] = [None if ok else "not scored" for ok in usable]
    keys = [i for i in range(n) if usable[i]]
    if target.oracle == SYMMETRY:
        for i in keys:
            try:
                raw[i] = crystal_system(crystals[i])
            except Exception as exc:  # spglib / pymatgen failing on an unphysical sample: a failure, not a crash
                reasons[i] = f"symmetry analysis failed: {type(exc).__name__}: {str(exc)[:120]}"
    else:
        oracle = oracles[target.oracle]
        preds = list(oracle.predict([crystals[i] for i in keys], progress=progress)) if keys else []
        if len(preds) != len(keys):
            raise ValueError(f"oracle {target.oracle} returned {len(preds)} predictions for {len(keys)} crystals")
        for i, p in zip(keys, preds):
            if p is None or not math.isfinite(float(p)):
                reasons[i] = _no_prediction_reason(oracle, crystals[i], target.oracle)
            else:
                raw[i] = float(p)
    return judge(target, raw, reasons)


def _no_prediction_reason(oracle: Any, crystal: Any, name: str) -> str:
    """Why an oracle gave no prediction: what it says about the crystal (CGCNN: its featuriser's error)."""
    problem = oracle.problem(crystal)
    return f"{name}: {problem}" if problem else f"{name}: no prediction"


# ---------------------------------------------------------------------------------- summary
def summarise(targets: Sequence[Target], checked: Sequence[Checked]) -> dict[str, MetricValue]:
    """The aggregate keys (see the module docstring) from per-target results (pure, for tests)."""
    cond = condition_text(targets)
    n = len(checked[0].success) if checked else 0
    joint = np.logical_and.reduce([c.success for c in checked]) if checked else np.zeros(0, dtype=bool)
    answered = np.logical_and.reduce([c.answered for c in checked]) if checked else np.zeros(0, dtype=bool)
    checkers = ", ".join(dict.fromkeys(describe_checker(t.oracle) for t in targets))
    out = {
        f"success[{cond}]": MetricValue(float(joint.mean()) if n else None, n, oracle=checkers),
        f"predicted[{cond}]": MetricValue(float(answered.mean()) if n else None, n, oracle=checkers),
    }
    for c in checked:
        t = c.target
        if len(targets) > 1:
            out[f"success[{cond}].{t.name}"] = MetricValue(float(c.success.mean()) if n else None, n, oracle=describe_checker(t.oracle))
        if t.kind == "continuous":
            values = np.array([float(c.raw[i]) for i in range(n) if c.answered[i]], dtype=np.float64)
            mad = float(np.mean(np.abs(values - float(t.value)))) if len(values) else None
            median = float(np.median(values)) if len(values) else None
            out[f"mad[{cond}].{t.name}"] = MetricValue(mad, len(values), unit=t.unit, oracle=t.oracle)
            out[f"median[{cond}].{t.name}"] = MetricValue(median, len(values), unit=t.unit, oracle=t.oracle)
    return out


def conditional_success(ctx: EvalContext) -> dict[str, MetricValue]:
    """The conditional_generation metric (see module doc): per-structure answers, keys and figures.

    Reads ``ctx.options``: ``condition_targets`` (list of :class:`Target`; else built from
    ``conditions``, ``tolerances`` and ``condition_oracles``), ``condition_oracle_objects`` (oracle
    name -> object, else loaded from the registry with ``oracle_dir``) and ``progress``.
    """
    from benchmark.crystal import Crystal

    opts = ctx.options
    targets = opts.get("condition_targets")
    if not targets:
        targets = build_targets(opts.get("conditions") or {}, opts.get("tolerances"), opts.get("condition_oracles"), ctx.dataset)
    oracles = opts.get("condition_oracle_objects")
    if oracles is None:
        oracles = load_oracles(targets, opts.get("oracle_dir"))
    # a property the task does not know takes its unit from its oracle
    targets = [replace(t, unit=getattr(oracles.get(t.oracle), "unit", None)) if t.unit is None and t.kind == "continuous" else t for t in targets]
    crystals = list(ctx.sample_crystals)
    results = ctx.samples
    usable = [isinstance(c, Crystal) and (results[i].constructed if i < len(results) else True) for i, c in enumerate(crystals)]
    base_reason = [None if ok else (results[i].reason if i < len(results) and results[i].reason else "not a crystal") for i, ok in enumerate(usable)]
    checked = [check(t, crystals, usable, oracles, progress=bool(opts.get("progress", False))) for t in targets]

    # per-structure table: the checker's output, the predicted class, success, and why not answered
    for c in checked:
        name = c.target.name
        ctx.column(f"pred_{name}", c.raw)
        if c.target.kind == "class":
            ctx.column(f"class_{name}", c.label)
        ctx.column(f"success_{name}", [bool(s) for s in c.success])
    joint = np.logical_and.reduce([c.success for c in checked])
    ctx.column("success", [bool(s) for s in joint])
    reasons: list[str | None] = []
    for i in range(len(crystals)):
        if base_reason[i] is not None:
            reasons.append(f"not scored: {base_reason[i]}")
            continue
        why = [f"{c.target.name}: {c.reason[i]}" for c in checked if c.reason[i] is not None]
        reasons.append("; ".join(why) if why else None)
    ctx.column("condition_reason", reasons)

    values = summarise(targets, checked)
    cond = condition_text(targets)
    failed = sum(r is not None for r in reasons)
    if failed:
        ctx.notes.append(f"conditional generation: {failed} of {len(crystals)} samples could not be checked for every target "
                         "(unreadable, not buildable, or no answer from a checker); counted as failures, reasons in the per-structure table")
    for t in targets:
        if t.kind == "continuous":
            ctx.notes.append(f"{t.name}: checked by {t.oracle}; success within ±{t.tolerance:g} {t.unit or ''} of {format_value(t.value)}".rstrip())
        else:
            ctx.notes.append(f"{t.name}: checked by {describe_checker(t.oracle)}; target class {t.value} (code {t.code})")
    ctx.options["condition_targets"] = list(targets)
    ctx.cache["conditional_checked"] = checked

    writers = ctx.cache.setdefault("artifact_writers", {})
    title = f"{ctx.dataset}: {cond}"
    for c in checked:
        if c.target.kind == "continuous":
            writers[f"conditional_{c.target.name}_hist.png"] = lambda path, c=c: histogram_png(c, path, title)
        else:
            writers[f"conditional_{c.target.name}_classes.png"] = lambda path, c=c: class_bar_png(c, path, title)
    by_name = {c.target.name: c for c in checked}
    if "band_gap" in by_name and "formation_energy_per_atom" in by_name:
        writers["conditional_fe_bg_scatter.png"] = lambda path: scatter_png(by_name["formation_energy_per_atom"], by_name["band_gap"], path, title)
    return values


# ---------------------------------------------------------------------------------- figures
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path, counts: bool = True) -> Path:
    """Write ``fig`` as a PNG (y axis ticks as integers when it counts crystals) and close it."""
    import matplotlib.ticker

    plt = _pyplot()
    if counts:
        fig.axes[0].yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def histogram_png(c: Checked, path: Path, title: str) -> Path:
    """Predicted values of one continuous target (Figures 2-3 style): histogram, the target as a
    dashed line and its tolerance window shaded; success rate and unanswered count in the legend."""
    plt = _pyplot()
    t = c.target
    values = np.array([float(c.raw[i]) for i in range(len(c.raw)) if c.answered[i]], dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6.0, 4.0), dpi=120)
    target, tol = float(t.value), float(t.tolerance or 0.0)
    if len(values):
        lo, hi = min(values.min(), target - tol), max(values.max(), target + tol)
        bins = np.linspace(lo, hi, 31) if hi > lo else 10
        ax.hist(values, bins=bins, color="#4472c4", edgecolor="white")
    ax.axvspan(target - tol, target + tol, color="#c00000", alpha=0.12, label=f"target ± {tol:g}")
    ax.axvline(target, color="#c00000", ls="--", lw=1.2,
               label=f"target {format_value(target)} {t.unit or ''}: {c.success.mean() * 100 if len(c.success) else 0:.1f}% within".replace("  ", " "))
    missing = int((~c.answered).sum())
    if missing:
        ax.plot([], [], " ", label=f"{missing} of {len(c.raw)} without a prediction (failures)")
    ax.legend(frameon=False, fontsize=8)
    ax.set_xlabel(f"predicted {t.name} ({t.unit or '-'}; {t.oracle})")
    ax.set_ylabel("crystals")
    ax.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=8)
    return _save(fig, path)


def scatter_png(fe: Checked, bg: Checked, path: Path, title: str) -> Path:
    """Formation energy (x) against band gap (y) of each crystal with both predictions (Figure 4
    style), the target as a star and the joint tolerance box outlined."""
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    both = [i for i in range(len(fe.raw)) if fe.answered[i] and bg.answered[i]]
    x = np.array([float(fe.raw[i]) for i in both], dtype=np.float64)
    y = np.array([float(bg.raw[i]) for i in both], dtype=np.float64)
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=120)
    ok = np.array([bool(fe.success[i] and bg.success[i]) for i in both], dtype=bool)
    if len(both):
        ax.scatter(x[~ok], y[~ok], s=10, color="#7f7f7f", alpha=0.7, label="FE or BG off target")
        ax.scatter(x[ok], y[ok], s=10, color="#4472c4", alpha=0.9, label="FE and BG on target")
    tx, ty = float(fe.target.value), float(bg.target.value)
    wx, wy = float(fe.target.tolerance or 0.0), float(bg.target.tolerance or 0.0)
    ax.add_patch(Rectangle((tx - wx, ty - wy), 2 * wx, 2 * wy, fill=False, ec="#c00000", ls="--", lw=1))
    ax.plot([tx], [ty], marker="*", ms=14, color="#c00000", ls="none", label=f"target ({format_value(tx)}, {format_value(ty)})")
    ax.legend(frameon=False, fontsize=8)
    ax.set_xlabel(f"predicted formation energy (eV/atom; {fe.target.oracle})")
    ax.set_ylabel(f"predicted band gap (eV; {bg.target.oracle})")
    ax.set_title("\n".join(textwrap.wrap(f"{title} (n = {len(both)} of {len(fe.raw)} predicted)", 70)), fontsize=8)
    return _save(fig, path, counts=False)


def class_bar_png(c: Checked, path: Path, title: str) -> Path:
    """Counts of the predicted classes of one class target (the target's bar highlighted), plus the
    crystals without an answer."""
    plt = _pyplot()
    t = c.target
    names = list(t.labels) + ["no answer"]
    counts = [sum(1 for lab in c.label if lab == name) for name in t.labels] + [int((~c.answered).sum())]
    colours = ["#c00000" if name == t.value else "#4472c4" for name in t.labels] + ["#7f7f7f"]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(names)), 4.0), dpi=120)
    ax.bar(range(len(names)), counts, color=colours)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center", fontsize=8)
    ax.set_ylabel("crystals")
    ax.set_xlabel(f"predicted {t.name} ({describe_checker(t.oracle)})", fontsize=8)
    rate = c.success.mean() * 100 if len(c.success) else 0.0
    width = int(12 * fig.get_figwidth())  # characters of an 8 pt title that fit the figure
    ax.set_title("\n".join(textwrap.wrap(f"{title}: target {t.value}, {rate:.1f}% on target", width)), fontsize=8)
    return _save(fig, path)
