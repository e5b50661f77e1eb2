"""Conditional generation (Con-CDVAE, Sections 2.3 and 3; Tables 2 and B1; Figures 2-4): crystals
asked for target properties, checked by independent property oracles and symmetry analysis."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Mapping, Sequence

from benchmark.crystal import Crystal
from benchmark.tasks.base import Produced, RunContext, Task, TaskConfig, TaskError, option

if TYPE_CHECKING:  # pragma: no cover
    from benchmark.metrics.base import EvalContext


def _assignments(flag: str) -> Any:
    def parse(values: list[str]) -> dict[str, str]:
        from benchmark.metrics.conditional import parse_assignments

        return parse_assignments(values, flag)

    return parse


@dataclass(frozen=True)
class ConditionalGenerationConfig(TaskConfig):
    """Conditional generation: ``n_samples`` crystals for one condition set, asked of the model in
    batches of ``batch_size`` (``Model.conditional_sample(n, conditions, seed=..., device=...)``)
    and checked by independent property oracles (:mod:`benchmark.metrics.conditional`).

    Attributes:
        n_samples: crystals per condition set (the paper: 200, the output of its 20,000:200 filter).
        batch_size: crystals per model call (each batch is seeded and resumable).
        conditions: property -> target, one condition set per run: numbers for ``band_gap`` (eV),
            ``formation_energy_per_atom`` (eV/atom) or any property an oracle named in ``oracles``
            predicts; class labels or codes for ``BG_type`` (zero = 0, non-zero = 1), ``FM_type``
            (high = 0, low = 1) and ``CS_type`` / ``crystal_system`` (triclinic 0, trigonal 1,
            monoclinic 2, orthorhombic 3, tetragonal 4, hexagonal 5, cubic 6). Stored with canonical
            names and labels; the model is given the numbers and the integer class codes of the
            data's columns.
        tolerances: property -> success window of a continuous target (defaults: 0.5 eV band gap,
            0.5 eV/atom formation energy; not from the paper, see the metric module).
        oracles: property -> checker: an oracle name (``list oracles``) or ``symmetry`` (``CS_type``).
            Defaults: the Con-CDVAE CGCNN models of the dataset (MP-20's: ``cgcnn-mpall20-fm``,
            ``-bg``, ``-Cfm``, ``-Cbg``) and pymatgen symmetry analysis (symprec 0.2, angle 5°).
    """

    n_samples: int = option(200, help="crystals for the condition set (the paper: 200)", scope="run")
    batch_size: int = option(200, help="crystals per model call (each batch is seeded and resumable)", scope="run")
    conditions: dict[str, Any] = option(
        help="a target property (repeatable; one condition set per run, replacing task.conditions): band_gap=3.0 (eV), "
             "formation_energy_per_atom=-2 (eV/atom), BG_type=zero|non-zero (or 0|1), FM_type=high|low (or 0|1; low = below -0.9 eV/atom), "
             "CS_type or crystal_system=triclinic|trigonal|monoclinic|orthorhombic|tetragonal|hexagonal|cubic (or 0..6), "
             "or any property whose oracle is given with --condition-oracle",
        flag="--condition", metavar="NAME=VALUE", parse=_assignments("--condition"), default_factory=dict)
    tolerances: dict[str, float] = option(
        help="success window of a continuous target (default 0.5 eV band gap, 0.5 eV/atom formation energy; repeatable)",
        flag="--tolerance", metavar="NAME=VALUE", parse=_assignments("--tolerance"), merge=True, default_factory=dict)
    oracles: dict[str, str] = option(
        help="checker of a property (default: the dataset's Con-CDVAE CGCNN, e.g. band_gap=cgcnn-mpall20-bg; CS_type=symmetry); repeatable",
        flag="--condition-oracle", metavar="NAME=ORACLE", parse=_assignments("--condition-oracle"), merge=True, default_factory=dict)
    presets: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {"n_samples": 20, "batch_size": 10}, "paper": {}}


#: Con-CDVAE Table 2 (joint band gap / formation energy classes), then Table B1 (crystal systems,
#: in the paper's column order); a run fills the column of its condition set
PAPER_COLUMNS = (
    "success[BG_type=zero,FM_type=high]",
    "success[BG_type=zero,FM_type=low]",
    "success[BG_type=non-zero,FM_type=high]",
    "success[BG_type=non-zero,FM_type=low]",
    "success[CS_type=triclinic]",
    "success[CS_type=monoclinic]",
    "success[CS_type=orthorhombic]",
    "success[CS_type=tetragonal]",
    "success[CS_type=trigonal]",
    "success[CS_type=hexagonal]",
    "success[CS_type=cubic]",
)


class ConditionalGenerationTask(Task):
    name = "conditional_generation"
    description = "sample crystals for target properties; success per target and jointly, checked by property oracles"
    protocol = ("200 crystals per condition set; band gap / formation energy (classes or values) by CGCNN, crystal "
                "system by SpacegroupAnalyzer(symprec=0.2, angle_tolerance=5) (Con-CDVAE Tables 2 and B1, Figures 2-4)")
    Config = ConditionalGenerationConfig
    capability = "conditional_sample"
    metrics = ("validity", "conditional_success")
    columns = PAPER_COLUMNS
    leaderboard_order = 60

    # ------------------------------------------------------------------ configuration
    def check_config(self, config: ConditionalGenerationConfig, dataset: str) -> ConditionalGenerationConfig:
        """The condition set validated and normalised (canonical names, class labels, floats), so
        that equal requests resolve to the same config (and work directory)."""
        from benchmark.metrics.conditional import ConditionError, build_targets, canonical_name, normalize_conditions

        config = super().check_config(config, dataset)
        try:
            conditions = normalize_conditions(config.conditions, config.oracles)
            build_targets(conditions, config.tolerances, config.oracles, dataset)  # tolerances and checkers fit the targets
            names = list(conditions) + [k for k in config.oracles if k not in conditions]
            tolerances = dict(sorted((canonical_name(k, names), float(v)) for k, v in config.tolerances.items()))
            oracles = dict(sorted((canonical_name(k, names), str(v)) for k, v in config.oracles.items()))
        except ConditionError as exc:
            raise TaskError(str(exc)) from exc
        return dataclasses.replace(config, conditions=conditions, tolerances=tolerances, oracles=oracles)

    # ------------------------------------------------------------------ scoring
    def evaluation_options(self, config: ConditionalGenerationConfig, dataset: Any, *, oracle_dir: str | None = None,
                           progress: bool = True) -> dict[str, Any]:
        """The resolved targets and the oracle objects that check them (loaded once, here, before
        any crystal is read: a bad condition or missing weights fail now, not after featurisation)."""
        from benchmark.metrics.conditional import ConditionError, build_targets, load_oracles

        try:
            targets = build_targets(config.conditions, config.tolerances, config.oracles, dataset.name)
            oracles = load_oracles(targets, oracle_dir)
        except ConditionError as exc:
            raise TaskError(str(exc)) from exc
        return {"condition_targets": targets, "condition_oracle_objects": oracles, "oracle_dir": oracle_dir}

    def record_extras(self, ctx: "EvalContext") -> dict[str, Any]:
        """The condition set as stored in the record: per property its target, tolerance and checker."""
        from benchmark.metrics.conditional import condition_text, describe_checker

        targets = ctx.options.get("condition_targets")
        if not targets:
            return {}
        return {"conditions": {
            "text": condition_text(targets),
            "targets": {t.name: {"value": t.value, "code": t.code, "tolerance": t.tolerance, "unit": t.unit, "checker": describe_checker(t.oracle)}
                        for t in targets},
        }}

    # ------------------------------------------------------------------ running a model
    def produce(self, model: Any, run: RunContext) -> Produced:
        from benchmark.metrics.conditional import build_targets, model_conditions

        cfg: ConditionalGenerationConfig = run.config
        wanted = model_conditions(build_targets(cfg.conditions, cfg.tolerances, cfg.oracles, run.dataset.name))

        def make(b: int, bn: int) -> tuple[list[Crystal], int | None, dict[str, Any]]:
            batch = model.conditional_sample(bn, dict(wanted), seed=run.seed_of(b), device=run.device)  # a fresh copy per batch
            return list(batch.crystals), batch.model_evaluations, dict(getattr(batch, "artifacts", None) or {})

        crystals, _, artifacts = run.batches(cfg.n_samples, cfg.batch_size, make, "conditional sampling")
        return Produced(crystals, artifacts=artifacts)

    # ------------------------------------------------------------------ leaderboard
    def row_label(self, record: Mapping[str, Any], label: str) -> str:
        """Con-CDVAE's strategies are rows of its tables: ``con_cdvae (full)``."""
        model = record.get("model")
        strategy = ((model or {}).get("config") or {}).get("strategy") if isinstance(model, Mapping) else None
        return f"{label} ({strategy})" if strategy else label

    def merge_key(self, record: Mapping[str, Any]) -> str | None:
        """One run fills one column (its condition set), so the runs of one model, strategy,
        config, checkpoint, dataset and profile are one row, as the paper's rows hold one model's
        results for every condition set."""
        model = record.get("model") if isinstance(record.get("model"), Mapping) else {}
        dataset = record.get("dataset")
        name = dataset.get("name") if isinstance(dataset, Mapping) else dataset
        return json.dumps([self.row_label(record, str(model.get("name"))), name, record.get("profile"), model.get("version"),
                           model.get("config"), model.get("checkpoint_sha256")], sort_keys=True, default=str)

    def table_columns(self, keys: Iterable[str]) -> list[str]:
        """The paper's columns, then the joint success of any other condition set a row holds."""
        extra = [k for k in dict.fromkeys(keys) if k.startswith("success[") and k.endswith("]") and k not in PAPER_COLUMNS]
        return list(PAPER_COLUMNS) + extra

    def table_notes(self, records: Sequence[Mapping[str, Any]], oracles: Sequence[str]) -> list[str]:
        return ["Success: fraction of the generated crystals meeting every target of the column's condition set "
                "(classes by CGCNN classifiers, P >= 0.5; crystal system by SpacegroupAnalyzer, symprec 0.2, angle 5°; "
                "values within a tolerance); reproduced rows merge the runs of one model, strategy and checkpoint."] + super().table_notes(records, oracles)
