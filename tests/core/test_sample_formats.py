"""The sample-format registry: a plugin's format is read by read_samples and evaluate with no other change.

A small third-party format (a JSON list of crystals, ``*.crystals.json``) is registered through the
``benchmark_sample_formats`` hook by a plugin object that the plugin manager finds as an entry
point, exactly as an installed package's would be found.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from benchmark import registry
from benchmark.crystal import Crystal
from benchmark.hookspecs import PROJECT, hookimpl
from benchmark.registry import Entry, RegistryError, get_plugins
from benchmark.samples import (
    Match,
    Probe,
    ReadResult,
    SampleFileError,
    SampleFormat,
    Unreadable,
    available_formats,
    read_samples,
    sniff_format,
    write_extxyz,
    write_samples,
)

BUILTIN = {"cif", "cif_dir", "cif_zip", "extxyz", "csv", "cdvae_gen", "cdvae_recon", "cdvae_opt"}


# ----------------------------------------------------------------------------- the third-party format
def _read_json(path: Path, limit: int | None, batch_idx: int) -> ReadResult:
    try:
        rows = json.loads(path.read_text())
    except ValueError as exc:
        raise SampleFileError(path, f"not JSON ({exc})") from None
    entries = []
    for i, row in enumerate(rows[:limit] if limit is not None else rows):
        try:
            entries.append(Crystal(row["numbers"], row["frac"], row["lengths"], row["angles"], label=row.get("label")))
        except (KeyError, ValueError) as exc:
            entries.append(Unreadable(f"{path.name}:{i}", f"bad row: {exc!r}"))
    return ReadResult(entries, meta={"rows": len(rows)})


def _write_json(crystals: Sequence[Crystal], path: Path) -> Path:
    rows = [{"numbers": c.atomic_numbers.tolist(), "frac": c.frac_coords.tolist(), "lengths": c.lengths.tolist(),
             "angles": c.angles.tolist(), "label": c.label} for c in crystals]
    path.write_text(json.dumps(rows))
    return path


JSON_FORMAT = SampleFormat(
    name="json_crystals",
    description="a JSON list of crystals (test plugin)",
    read=_read_json,
    suffixes=(".crystals.json",),
    write=_write_json,
)


class JsonFormatPlugin:
    @hookimpl
    def benchmark_sample_formats(self) -> list[Entry]:
        return [Entry(JSON_FORMAT.name, JSON_FORMAT.description, lambda: JSON_FORMAT)]


class _EntryPoint:
    """Just enough of ``importlib.metadata.EntryPoint`` for the plugin manager."""

    def __init__(self, name: str, plugin: object) -> None:
        self.name, self.value, self.group, self._plugin = name, f"fake_module_{name}", PROJECT, plugin

    def load(self) -> object:
        return self._plugin


def install_plugins(monkeypatch: pytest.MonkeyPatch, **plugins: object) -> None:
    """Make the process-wide plugin manager see ``plugins`` as installed entry points."""
    eps = [_EntryPoint(name, plugin) for name, plugin in plugins.items()]
    monkeypatch.setattr(registry, "entry_points", lambda *, group: eps if group == PROJECT else [])
    monkeypatch.delenv("BENCHMARK_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("BENCHMARK_BLOCK_PLUGINS", raising=False)
    monkeypatch.setattr(registry, "_default", None)  # rebuilt on next use; the old one comes back after the test


def toy_crystals(n: int) -> list[Crystal]:
    return get_plugins()["datasets"].get("toy").load("test", limit=n, progress=False)


# ----------------------------------------------------------------------------- built-in registry
def test_builtin_formats_are_registered_like_plugins() -> None:
    reg = get_plugins()["formats"]
    assert BUILTIN <= set(reg.names())
    for entry in reg:
        if entry.name in BUILTIN:
            assert entry.source == "benchmark.samples.plugin"
            assert entry.description.strip() and "\n" not in entry.description
    assert set(available_formats()) >= BUILTIN


def test_list_formats_cli(capsys: pytest.CaptureFixture) -> None:
    from benchmark.cli import main

    assert main(["list", "formats"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "formats:"
    assert {line.split()[0] for line in out.splitlines()[1:]} >= BUILTIN


def test_write_samples_picks_the_writer_by_suffix(tmp_path: Path) -> None:
    crystals = toy_crystals(2)
    assert read_samples(write_samples(crystals, tmp_path / "a.extxyz")).fmt == "extxyz"
    assert read_samples(write_samples(crystals, tmp_path / "a.zip")).fmt == "cif_zip"
    assert read_samples(write_samples(crystals, tmp_path / "dir", fmt="cif_dir")).fmt == "cif_dir"
    with pytest.raises(ValueError, match="pass fmt="):
        write_samples(crystals, tmp_path / "noname")
    with pytest.raises(ValueError, match="can be read but not written"):
        write_samples(crystals, tmp_path / "a.csv", fmt="csv")


def test_unknown_format_name_suggests_the_nearest(tmp_path: Path) -> None:
    path = write_extxyz(toy_crystals(1), tmp_path / "a.xyz")
    with pytest.raises(ValueError, match="unknown sample format 'extxzy'. Did you mean 'extxyz'"):
        read_samples(path, fmt="extxzy")


def test_content_sniffing_tells_a_csv_of_cifs_from_a_cif(tmp_path: Path) -> None:
    import pandas as pd

    crystals = toy_crystals(2)
    cifs = sorted(write_samples(crystals, tmp_path / "d", fmt="cif_dir").iterdir())
    table = tmp_path / "table_without_suffix"
    pd.DataFrame({"material_id": ["a", "b"], "cif": [p.read_text() for p in cifs]}).to_csv(table, index=False)
    assert sniff_format(table) == "csv"  # its CIF cells hold data_ lines, but its first line is a header
    got = read_samples(table)
    assert [c.label for c in got.entries] == ["a", "b"]


# ----------------------------------------------------------------------------- a plugin's format
def test_plugin_format_is_read_written_and_sniffed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugins(monkeypatch, json_formats=JsonFormatPlugin())
    entry = get_plugins()["formats"].entry("json_crystals")
    assert entry.source == "json_formats"
    crystals = toy_crystals(3)
    path = write_samples(crystals, tmp_path / "model.crystals.json")  # the plugin's writer, chosen by suffix
    assert sniff_format(path) == "json_crystals"
    got = read_samples(path)
    assert got.fmt == "json_crystals" and got.meta == {"rows": 3}
    for g, w in zip(got.entries, crystals):
        np.testing.assert_array_equal(g.atomic_numbers, w.atomic_numbers)
        np.testing.assert_allclose(g.frac_coords, w.frac_coords)
        assert g.label == w.label
    assert len(read_samples(path, limit=1).entries) == 1
    renamed = tmp_path / "no_suffix"
    renamed.write_bytes(path.read_bytes())
    assert read_samples(renamed, fmt="json_crystals").fmt == "json_crystals"  # by name, without sniffing


def test_plugin_format_is_scored_by_evaluate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmark.tasks.evaluation import EvaluateOptions, evaluate

    install_plugins(monkeypatch, json_formats=JsonFormatPlugin())
    crystals = toy_crystals(4)
    mine = write_samples(crystals, tmp_path / "recon.crystals.json")
    same = write_extxyz(crystals, tmp_path / "recon.extxyz")
    opts = dict(task="reconstruction", dataset="toy", n_jobs=1, progress=False, store=False)
    via_plugin = evaluate(EvaluateOptions(samples=mine, **opts))
    via_builtin = evaluate(EvaluateOptions(samples=same, **opts))
    assert via_plugin.record["samples"]["format"] == "json_crystals" and via_plugin.record["samples"]["n"] == 4
    assert via_plugin.flat() == via_builtin.flat()
    assert via_plugin.flat()["match_rate"] == 1.0  # the toy test split's first crystals, read back exactly


def test_equal_claims_are_an_error_naming_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    greedy = SampleFormat(name="greedy_xyz", description="claims .xyz too", read=_read_json, suffixes=(".xyz",))
    specific = SampleFormat(name="special_xyz", description="claims .special.xyz", read=_read_json, suffixes=(".special.xyz",))

    class Plugin:
        @hookimpl
        def benchmark_sample_formats(self) -> list[Entry]:
            return [Entry(f.name, f.description, lambda f=f: f) for f in (greedy, specific)]

    install_plugins(monkeypatch, xyz_formats=Plugin())
    path = write_extxyz(toy_crystals(1), tmp_path / "a.xyz")
    with pytest.raises(SampleFileError, match="ambiguous format: 'extxyz' and 'greedy_xyz'"):
        read_samples(path)
    assert read_samples(path, fmt="extxyz").fmt == "extxyz"
    special = tmp_path / "a.special.xyz"
    special.write_text("[]")
    assert sniff_format(special) == "special_xyz"  # the longer suffix is the more specific claim


def test_a_plugin_cannot_take_a_builtin_name(monkeypatch: pytest.MonkeyPatch) -> None:
    class Plugin:
        @hookimpl
        def benchmark_sample_formats(self) -> list[Entry]:
            return [Entry("extxyz", "mine", lambda: JSON_FORMAT)]

    install_plugins(monkeypatch, thief=Plugin())
    with pytest.raises(RegistryError, match="registered twice: by benchmark.samples.plugin and by thief"):
        get_plugins()


def test_custom_sniff_sees_one_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Probe] = []

    def sniff(probe: Probe) -> Match:
        seen.append(probe)
        return Match.MAGIC if probe.head.startswith(b"CRYSTALS-V1\n") else Match.NONE

    magic = SampleFormat(name="magic_crystals", description="files that start with CRYSTALS-V1", read=_read_json, sniff=sniff)

    class Plugin:
        @hookimpl
        def benchmark_sample_formats(self) -> list[Entry]:
            return [Entry(magic.name, magic.description, lambda: magic)]

    install_plugins(monkeypatch, magic=Plugin())
    path = tmp_path / "whatever.xyz"  # the content wins over the suffix
    path.write_bytes(b"CRYSTALS-V1\n[]")
    assert sniff_format(path) == "magic_crystals"
    assert seen and seen[-1].path == path and seen[-1].name == "whatever.xyz"
