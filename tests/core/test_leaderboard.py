"""Leaderboard: table building, best-value highlighting, the four renderers, reported numbers."""

from __future__ import annotations

import html
import io
import json
import math
import re
from importlib import resources

import pandas as pd
import pytest

from benchmark.leaderboard import (
    build_table,
    declarations,
    format_value,
    latex_escape,
    load_reported,
    metric_key,
    render,
)
from benchmark.registry import get_plugins


def metric(value, hib=None):
    return {"value": value, "n": 100, "higher_is_better": hib, "unit": None, "uncertainty": None}


def rec(run_id, model, metrics, *, task="generation", dataset="perov_5", status="ok", profile="cdvae",
        started_at="2026-01-01T00:00:00Z"):
    return {
        "schema_version": 1,
        "run_id": run_id,
        "kind": "evaluate",
        "task": task,
        "status": status,
        "dataset": {"name": dataset},
        "model": {"name": model},
        "profile": profile,
        "metrics": {k: metric(v) for k, v in metrics.items()},
        "started_at": started_at,
        "notes": [],
    }


def md_row(text: str, label: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == label:
            return cells
    raise AssertionError(f"no row {label!r} in\n{text}")


def md_header(text: str) -> list[str]:
    return [c.strip() for c in text.splitlines()[0].strip().strip("|").split("|")]


RECORDS = [
    rec("run-a", "alpha", {"struct_valid": 0.90, "wdist_density": 0.50}, started_at="2026-01-01T00:00:00Z"),
    rec("run-b", "beta", {"struct_valid": 0.95, "wdist_density": 0.70}, started_at="2026-01-02T00:00:00Z"),
    rec("run-c", "gamma", {}, status="not_supported", started_at="2026-01-03T00:00:00Z"),
    rec("run-d", "delta", {"struct_valid": 0.99}, status="failed", started_at="2026-01-04T00:00:00Z"),
]


def test_best_value_bold_higher_and_lower_is_better():
    table = build_table(RECORDS, "generation", "perov_5", include_reported=False)
    assert table.columns == ["struct_valid", "wdist_density"]
    text = render(table, "markdown")
    header = md_header(text)
    sv, wd = header.index("Struc. valid (%)"), header.index(metric_key("wdist_density").label)
    alpha, beta = md_row(text, "alpha"), md_row(text, "beta")
    # struct_valid: higher is better -> beta (95.00) bold, alpha not
    assert beta[sv] == "**95.00**" and alpha[sv] == "90.00"
    # wdist_density: lower is better -> alpha (0.5000) bold, beta not
    assert alpha[wd] == "**0.5000**" and beta[wd] == "0.7000"
    assert "run-a" in alpha[-1] and "this project" in alpha[-1]


def test_not_supported_row_dashes_and_failed_excluded():
    table = build_table(RECORDS, "generation", "perov_5", include_reported=False)
    text = render(table, "markdown")
    gamma = md_row(text, "gamma")
    assert gamma[1:1 + len(table.columns)] == ["-"] * len(table.columns)
    assert "not supported" in gamma[-1]
    assert "delta" not in text  # failed runs are not on the leaderboard
    assert [r.label for r in table.rows] == ["alpha", "beta", "gamma"]


def test_empty_columns_dropped_and_profile_in_caption():
    records = [rec("r1", "alpha", {"struct_valid": 0.9, "novelty": None}, profile="cdvae"),
               rec("r2", "beta", {"struct_valid": 0.8}, profile="strict")]
    table = build_table(records, "generation", "perov_5", include_reported=False)
    assert table.columns == ["struct_valid"]
    assert "cdvae" in table.caption and "strict" in table.caption


def test_reported_cdvae_perov5_generation_numbers():
    table = build_table([], "generation", "perov_5")
    text = render(table, "markdown")
    header = md_header(text)
    row = md_row(text, "CDVAE")
    expected = {
        "Struc. valid (%)": "100.0",
        "Comp. valid (%)": "98.59",
        "COV-R (%)": "99.45",
        "COV-P (%)": "98.46",
        metric_key("wdist_density").label: "0.1258",
        metric_key("wdist_prop").label: "0.0264",
        metric_key("wdist_num_elems").label: "0.0628",
    }
    for label, value in expected.items():
        assert row[header.index(label)].strip("*") == value, label
    assert "reported" in row[-1] and "Table 2" in row[-1]
    # stored as fractions, in the project's units
    cdvae = [r for r in load_reported("generation", "perov_5") if r["model"] == "CDVAE"]
    assert len(cdvae) == 1
    assert cdvae[0]["metrics"]["comp_valid"] == pytest.approx(0.9859)
    assert cdvae[0]["metrics"]["wdist_prop"] == pytest.approx(0.0264)


def test_reported_best_includes_reported_rows():
    # our model beats nobody on comp_valid: P-G-SchNet's 99.13 stays the best
    records = [rec("r1", "ours", {"comp_valid": 0.97, "cov_recall": 0.9999})]
    table = build_table(records, "generation", "perov_5")
    text = render(table, "markdown")
    header = md_header(text)
    cv, cr = header.index("Comp. valid (%)"), header.index("COV-R (%)")
    assert md_row(text, "P-G-SchNet")[cv] == "**99.13**"
    assert md_row(text, "ours")[cv] == "97.00"
    assert md_row(text, "ours")[cr] == "**99.99**"
    assert md_row(text, "CDVAE")[cr] == "99.45"
    # reference (ground truth) rows are shown but never ranked
    gt = md_row(text, "ground truth (test split)")
    assert gt[cv] == "98.60"


def test_multi_dataset_grouping():
    records = [rec("r1", "ours", {"match_rate": 0.5, "rms_dist": 0.03}, task="reconstruction", dataset="mp_20"),
               rec("r2", "ours", {"match_rate": 0.6, "rms_dist": 0.02}, task="reconstruction", dataset="perov_5")]
    table = build_table(records, "reconstruction", include_reported=False)
    assert table.group_by_dataset
    assert [r.dataset for r in table.rows] == ["perov_5", "mp_20"]
    text = render(table, "markdown")
    assert md_header(text)[:2] == ["Model", "Dataset"]
    # best is per dataset: both rows are the best of their own dataset
    assert all(r.best == {"match_rate", "rms_dist"} for r in table.rows)
    single = build_table(records, "reconstruction", "mp_20", include_reported=False)
    assert not single.group_by_dataset and "Dataset" not in md_header(render(single, "markdown"))


def test_latex_escapes_and_bold():
    records = [rec("run_1", "my_model", {"struct_valid": 0.9}), rec("run_2", "other%", {"struct_valid": 0.8})]
    text = render(build_table(records, "generation", "perov_5", include_reported=False), "latex")
    assert r"\begin{tabular}" in text and r"\toprule" in text and r"\bottomrule" in text
    assert r"my\_model" in text and r"other\%" in text and r"run\_1" in text
    assert r"Struc. valid (\%)" in text
    assert r"\textbf{90.00}" in text and r"\textbf{80.00}" not in text
    assert not re.search(r"(?<!\\)_", text.replace(r"\_", ""))
    assert latex_escape("a&b#c$d") == r"a\&b\#c\$d"
    full = render(build_table([], "generation", None), "latex")
    assert "ρ" not in full and r"$\rho$" in full
    assert not re.search(r"(?<!\\)%", full)


def test_csv_roundtrip_full_precision():
    records = [rec("r1", "ours", {"struct_valid": 0.123456789012, "wdist_density": 1 / 3})]
    table = build_table(records, "generation", "perov_5")
    df = pd.read_csv(io.StringIO(render(table, "csv")))
    assert {"model", "dataset", "source", "struct_valid", "wdist_density"} <= set(df.columns)
    ours = df[df["model"] == "ours"].iloc[0]
    assert ours["struct_valid"] == 0.123456789012 and ours["wdist_density"] == 1 / 3
    assert ours["source"] == "r1"
    cdvae = df[df["model"] == "CDVAE"].iloc[0]
    assert cdvae["comp_valid"] == 0.9859 and cdvae["wdist_prop"] == 0.0264
    assert "**" not in render(table, "csv")
    for row, (_, line) in zip(table.rows, df.iterrows()):
        for col in table.columns:
            v = row.values.get(col)
            assert (v is None and math.isnan(line[col])) or v == line[col]


def test_html_table():
    records = [rec("r1", "a<b>", {"struct_valid": 0.9})]
    text = render(build_table(records, "generation", "perov_5"), "html")
    assert text.lstrip().startswith("<table") and "</table>" in text
    assert "<caption>" in text and "<strong>100.0</strong>" in text
    assert "a&lt;b&gt;" in text and "a<b>" not in text


def test_unknown_format():
    with pytest.raises(ValueError):
        render(build_table([], "generation", "perov_5"), "pdf")


def test_sampling_speed_upper_bound_and_derived_column():
    records = [rec("r1", "ours", {"seconds_per_crystal": 0.5}, task="sampling_speed")]
    table = build_table(records, "sampling_speed", "perov_5")
    text = render(table, "markdown")
    header = md_header(text)
    col = header.index(metric_key("seconds_for_10000").label)
    assert md_row(text, "FTCP")[col] == "**< 60.00**"
    assert md_row(text, "CDVAE")[col] == "11160"  # 3.1 h
    assert md_row(text, "ours")[col] == "5000"


def test_format_value():
    assert format_value("struct_valid", 1.0) == "100.0"
    assert format_value("comp_valid", 0.9859) == "98.59"
    assert format_value("wdist_prop", 156.0) == "156.0"
    assert format_value("wdist_num_elems", 0.03684) == "0.0368"
    assert format_value("wdist_density", 10.27) == "10.27"
    assert format_value("rms_dist", 0.056) == "0.0560"
    assert format_value("SR5", 0.0) == "0.00"
    assert format_value("anything", None) == "-"


# ---- the reported data files -------------------------------------------------------------------

def _files():
    folder = resources.files("benchmark") / "reported"
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in folder.iterdir() if p.name.endswith(".json")}


def test_reported_files_wellformed():
    files = _files()
    assert {"cdvae.json", "dp_cdvae.json"} <= set(files)
    tasks = {e.name: e.load() for e in get_plugins()["tasks"]}
    keys, dynamic = declarations()
    for name, data in files.items():
        assert data["rows"], name
        for row in data["rows"]:
            # Con-CDVAE also reports models trained on its MP40 and OQMD20 data
            # CrysTens' Tables 1-2 are of models trained on Pearson's Crystal Data ("pcd")
            datasets = ({"perov_5", "carbon_24", "mp_20"} | ({"mp_40", "oqmd_20"} if name == "con_cdvae.json" else set())
                        | ({"pcd"} if name == "crystens.json" else set()))
            assert row["task"] in tasks and row["dataset"] in datasets, (name, row["model"], row["dataset"])
            # every key is a column of its task's table, declared by a metric or by the task
            assert set(row["metrics"]) <= set(tasks[row["task"]].table_columns(row["metrics"])), (name, row)
            assert all(k in keys or any(m.describe_key(k) for m in dynamic) for k in row["metrics"]), (name, row)
            assert row["source"]
            for key, v in row["metrics"].items():
                assert v is None or isinstance(v, (int, float))
                if v is not None and metric_key(key).display == "percent":
                    assert 0.0 <= v <= 1.0, (name, row["model"], key, v)


def test_reported_spot_checks():
    def one(task, dataset, model, **kw):
        rows = [r for r in load_reported(task, dataset, **kw) if r["model"] == model]
        assert len(rows) == 1, (task, dataset, model, rows)
        return rows[0]

    assert one("reconstruction", "mp_20", "CDVAE")["metrics"] == pytest.approx({"match_rate": 0.4543, "rms_dist": 0.0356})
    assert one("reconstruction", "carbon_24", "Cond-DFC-VAE")["metrics"] == {"match_rate": None, "rms_dist": None}
    assert one("property_optimization", "mp_20", "CDVAE")["metrics"] == pytest.approx({"SR5": 0.78, "SR10": 0.86, "SR15": 0.90})
    g = one("generation", "mp_20", "G-SchNet")["metrics"]
    assert g["cov_precision"] == pytest.approx(0.9957) and g["amcd_precision"] == pytest.approx(3.601)
    assert one("generation", "carbon_24", "CDVAE")["metrics"]["comp_valid"] is None
    gt = one("generation", "mp_20", "ground truth (test split)")
    assert gt["metrics"] == pytest.approx({"struct_valid": 1.0, "comp_valid": 0.9113}) and gt["reference"]
    ftcp = one("sampling_speed", "mp_20", "FTCP")
    assert ftcp["metrics"]["seconds_for_10000"] == 60 and ftcp["upper_bound"] is True
    assert ftcp["device"] == "RTX 2080 Ti"
    assert one("sampling_speed", "carbon_24", "CDVAE")["metrics"]["seconds_for_10000"] == pytest.approx(5.3 * 3600)
    dp = one("generation", "mp_20", "DP-CDVAE+Na+GINE")["metrics"]
    assert dp["wdist_density"] == pytest.approx(0.1790) and dp["cov_recall"] == pytest.approx(0.9551)
    gs = one("ground_state", "carbon_24", "DP-CDVAE")["metrics"]
    assert gs == pytest.approx({"gs_match_rate": 0.64, "gs_mean_rms": 0.0141, "gs_rms_dvolume_per_atom": 0.0158,
                                "gs_rms_denergy_per_atom": 0.4007})
    # quoted copies (DP-CDVAE repeating CDVAE's rows) are hidden by default
    assert len([r for r in load_reported("generation", "perov_5") if r["model"] == "CDVAE"]) == 1
    assert len([r for r in load_reported("generation", "perov_5", include_quoted=True) if r["model"] == "CDVAE"]) == 2
    assert one("reconstruction", "perov_5", "DP-CDVAE (Eq. 6)", include_supplementary=True)["metrics"]["match_rate"] == pytest.approx(0.6872)


def test_runs_with_changed_settings_are_told_apart_in_the_label():
    """Two runs of one model, one with its sampler changed from the preset (the runner's
    ``model.changed``), are two rows whose labels say what changed; a value the task's own label
    already shows (Con-CDVAE's strategy) is not repeated."""
    from benchmark.models.crystens_diffusion.plugin import CrysTensDiffusionModel
    from benchmark.config import resolve
    from benchmark.tasks.runner import changed_from_preset

    plain = resolve(CrysTensDiffusionModel.Config, "smoke")
    ddim100 = resolve(CrysTensDiffusionModel.Config, "smoke", None, None, {"sampler": "ddpm", "sampling_steps": None})
    assert changed_from_preset(CrysTensDiffusionModel, "smoke", "perov_5", plain) == {}
    changed = changed_from_preset(CrysTensDiffusionModel, "smoke", "perov_5", ddim100)
    assert changed == {"sampler": "ddpm", "sampling_steps": None}

    a = rec("run-a", "crystens_diffusion", {"struct_valid": 0.9})
    b = rec("run-b", "crystens_diffusion", {"struct_valid": 0.8})
    b["model"]["changed"] = changed
    labels = [row.label for row in build_table([a, b], "generation", dataset="perov_5").rows if row.run_id]
    assert labels == ["crystens_diffusion", "crystens_diffusion [sampler=ddpm, sampling_steps=none]"]

    c = rec("run-c", "con_cdvae", {}, task="conditional_generation")
    c["model"].update(config={"strategy": "full"}, changed={"strategy": "full", "n_steps": 10})
    label = build_table([c], "conditional_generation", dataset="perov_5").rows[0].label
    assert label == "con_cdvae (full) [n_steps=10]"


# ---- protocol groups ---------------------------------------------------------------------------

PROTOCOL = {"energy_model": "CHGNet 0.3.0", "energy_model_sha256": "ab" * 32, "relaxation": {"fmax": 0.05, "steps": 500},
            "hull": "reference:perov_5", "thresholds": [0.0, 0.1], "pymatgen": "2024.8.9"}
OTHER = {**PROTOCOL, "energy_model": "MACE-MP-0 medium", "relaxation": {"fmax": 0.1, "steps": 500}}


def with_protocol(record: dict, fields: dict) -> dict:
    from benchmark.tasks.base import protocol_fingerprint

    return {**record, "protocol": {"fingerprint": protocol_fingerprint(fields), "fields": fields}}


def mixed_records() -> list[dict]:
    # interleaved in time: the groups are formed by fingerprint, not by order
    return [with_protocol(rec("run-a", "alpha", {"struct_valid": 0.90}, started_at="2026-01-01T00:00:00Z"), PROTOCOL),
            with_protocol(rec("run-c", "gamma", {"struct_valid": 0.99}, started_at="2026-01-02T00:00:00Z"), OTHER),
            with_protocol(rec("run-b", "beta", {"struct_valid": 0.80}, started_at="2026-01-03T00:00:00Z"), PROTOCOL)]


def test_protocol_fingerprint_and_task_protocol_of():
    import hashlib

    from benchmark.tasks.base import protocol_fingerprint

    canonical = json.dumps(PROTOCOL, sort_keys=True, separators=(",", ":"))
    assert protocol_fingerprint(PROTOCOL) == hashlib.sha256(canonical.encode()).hexdigest()
    assert protocol_fingerprint(dict(reversed(list(PROTOCOL.items())))) == protocol_fingerprint(PROTOCOL)
    assert protocol_fingerprint(OTHER) != protocol_fingerprint(PROTOCOL)
    task = {e.name: e.load() for e in get_plugins()["tasks"]}["generation"]
    record = with_protocol(rec("r", "m", {}), PROTOCOL)
    assert task.protocol_of(record) == record["protocol"]
    assert task.protocol_of(rec("r", "m", {})) is None
    assert task.protocol_of({**record, "protocol": {"fingerprint": "x"}}) is None  # no fields
    assert task.protocol_of({**record, "protocol": {"fingerprint": 1, "fields": {}}}) is None


def test_different_protocols_are_grouped_and_differences_listed():
    table = build_table(mixed_records(), "generation", "perov_5", include_reported=False)
    assert table.grouped and [r.label for r in table.rows] == ["alpha", "beta", "gamma"]
    assert [table.protocol_label(r.protocol) for r in table.rows] == ["A", "A", "B"]
    # ranked within a group: alpha is A's best although gamma is higher
    assert [r.best for r in table.rows] == [{"struct_valid"}, set(), {"struct_valid"}]
    assert "per protocol group" in table.caption

    text = render(table, "markdown")
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("| *protocol ")]
    assert len(starts) == 2 and "protocol A" in lines[starts[0]] and "protocol B" in lines[starts[1]]
    assert md_row(text, "alpha")[1] == "**90.00**" and md_row(text, "gamma")[1] == "**99.00**"
    assert starts[0] < lines.index(next(x for x in lines if x.startswith("| alpha"))) < starts[1]
    assert starts[1] < lines.index(next(x for x in lines if x.startswith("| gamma")))
    assert "- energy_model: A = CHGNet 0.3.0, B = MACE-MP-0 medium" in lines
    assert "- relaxation.fmax: A = 0.05, B = 0.1" in lines
    for equal in ("relaxation.steps", "pymatgen", "thresholds", "hull", "energy_model_sha256"):
        assert equal not in text, equal

    latex = render(table, "latex")
    assert latex.count(r"\multicolumn{3}{l}{\textit{protocol ") == 2 and latex.count(r"\midrule") == 2
    assert r"energy\_model: A = CHGNet 0.3.0, B = MACE-MP-0 medium" in latex
    assert latex.index(r"\end{tabular}") < latex.index("relaxation.fmax")
    html_text = render(table, "html")
    assert html_text.count('<tr class="protocol-group"><th colspan="3"') == 2 and "<li>relaxation.fmax: A = 0.05, B = 0.1</li>" in html_text
    df = pd.read_csv(io.StringIO(render(table, "csv")))
    assert df["protocol"].nunique() == 2 and len(df) == 3


def test_reported_rows_without_protocol_are_their_own_group():
    table = build_table(mixed_records()[:1], "generation", "perov_5")
    assert table.grouped and table.mixed == [("perov_5", [None, table.rows[-1].protocol])]
    text = render(table, "markdown")
    assert md_row(text, "*no protocol recorded*")[1:] == [""] * (len(md_header(text)) - 1)
    assert any(line.startswith("| *protocol A (") for line in text.splitlines())
    assert md_row(text, "CDVAE")[1] == "**100.0**"
    assert md_row(text, "alpha")[1] == "**90.00**"  # beside CDVAE's 100.0, but in a group of its own


def test_one_protocol_is_one_group_with_the_fingerprint_note():
    from benchmark.tasks.base import protocol_fingerprint

    plain = [rec("run-a", "alpha", {"struct_valid": 0.9}), rec("run-b", "beta", {"struct_valid": 0.8}, started_at="2026-01-02T00:00:00Z")]
    same = [with_protocol(r, PROTOCOL) for r in plain]
    before, after = (build_table(records, "generation", "perov_5", include_reported=False) for records in (plain, same))
    assert not after.grouped and after.protocol_lines == []
    assert after.caption == before.caption + f" Protocol fingerprint {protocol_fingerprint(PROTOCOL)[:12]}."
    for fmt, escape in (("markdown", str), ("latex", latex_escape), ("html", html.escape)):
        assert render(after, fmt) == render(before, fmt).replace(escape(before.caption), escape(after.caption)), fmt


def test_merge_key_never_merges_across_protocols():
    def con(run_id: str, key: str) -> dict:
        record = rec(run_id, "con_cdvae", {key: 0.5}, task="conditional_generation", dataset="mp_20")
        record["model"]["config"] = {"strategy": "full"}
        return record

    runs = [con("r1", "success[CS_type=cubic]"), con("r2", "success[CS_type=hexagonal]")]
    assert len(build_table(runs, "conditional_generation", "mp_20", include_reported=False).rows) == 1
    table = build_table([with_protocol(runs[0], PROTOCOL), with_protocol(runs[1], OTHER)], "conditional_generation", "mp_20",
                        include_reported=False)
    assert [r.source for r in table.rows] == ["r1", "r2"] and table.grouped
    table = build_table([with_protocol(r, PROTOCOL) for r in runs], "conditional_generation", "mp_20", include_reported=False)
    assert [r.source for r in table.rows] == ["r1, r2"] and not table.grouped


def test_records_without_or_with_malformed_protocol_render_as_before():
    table = build_table(RECORDS, "generation", "perov_5", include_reported=False)
    assert table.protocols == {} and not table.grouped
    broken = [{**r, "protocol": {"fields": PROTOCOL}} for r in RECORDS]
    again = build_table(broken, "generation", "perov_5", include_reported=False)
    for fmt in ("markdown", "latex", "csv", "html"):
        assert "rotocol" not in render(table, fmt)
        assert render(again, fmt) == render(table, fmt)


def test_cli_strict_refuses_mixed_protocols(tmp_path, capsys):
    from benchmark.cli import main
    from benchmark.store import ResultsStore

    mixed, single = ResultsStore(tmp_path / "mixed"), ResultsStore(tmp_path / "single")
    for record in mixed_records():
        mixed.save(record)
        if record["protocol"]["fields"] == PROTOCOL:
            single.save(record)
    args = ["leaderboard", "--task", "generation", "--dataset", "perov_5", "--no-reported", "--strict"]

    assert main(args + ["--runs-dir", str(tmp_path / "mixed")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: leaderboard --strict: the generation table on perov_5 mixes 2 scoring protocols")
    assert "run-a, run-b" in err and "run run-c" in err and "energy_model: A = CHGNet 0.3.0, B = MACE-MP-0 medium" in err
    assert "relaxation.fmax: A = 0.05, B = 0.1" in err and "pymatgen" not in err and len(err.strip().splitlines()) == 1

    assert main(args[:-1] + ["--runs-dir", str(tmp_path / "mixed")]) == 0  # without --strict: groups
    assert "| *protocol B (" in capsys.readouterr().out

    assert main(args + ["--runs-dir", str(tmp_path / "single")]) == 0
    out, err = capsys.readouterr()
    assert "| alpha " in out and "Protocol fingerprint" in out and err == ""

    # the papers' rows record no protocol: --strict says so and how to leave them out
    assert main(args[:5] + ["--strict", "--runs-dir", str(tmp_path / "single")]) == 2
    assert "no protocol recorded" in (err := capsys.readouterr().err) and "--no-reported" in err
