"""A real third-party plugin, installed as a package, is found through its entry point.

``tests/fixtures/thirdparty_plugin`` is built and installed with pip into a temporary ``--target``
directory (no network, no build isolation, nothing written to the project's environment or to the
source tree), then the command line runs with that directory on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "thirdparty_plugin"
PLUGIN_NAME = "thirdparty_example"
DATASET_DESCRIPTION = "Third-party toy dataset: two made-up crystals (plugin test fixture)"
METRIC_DESCRIPTION = "Third-party toy metric: counts the samples it is given (plugin test fixture)"
PLUGIN_ENV = ("BENCHMARK_DISABLE_PLUGIN_AUTOLOAD", "BENCHMARK_BLOCK_PLUGINS")


def _pip_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """The fixture package installed into a fresh directory; returns that directory."""
    work = tmp_path_factory.mktemp("thirdparty")
    source = work / "src"
    # build from a copy: an in-tree setuptools build would leave build/ and *.egg-info in tests/
    shutil.copytree(FIXTURE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet", "--target", str(target), str(source)],
        cwd=work,
        env=_pip_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, f"pip install of the fixture plugin failed:\n{proc.stdout}\n{proc.stderr}"
    assert (target / "thirdparty_benchmark_plugin.py").is_file()
    dist_infos = list(target.glob("benchmark_thirdparty_example-*.dist-info"))
    assert len(dist_infos) == 1, sorted(p.name for p in target.iterdir())
    entry_points = (dist_infos[0] / "entry_points.txt").read_text()
    assert "[crystal_gen_benchmark]" in entry_points and PLUGIN_NAME in entry_points
    return target


def _run(args: list[str], site: Path, cwd: Path, **env_overrides: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in PLUGIN_ENV}
    env["PYTHONPATH"] = str(site)
    env["BENCHMARK_OFFLINE"] = "1"
    env.update(env_overrides)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _listed(stdout: str, name: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.split()[:1] == [name]]


def test_installed_plugin_is_listed(plugin_site, tmp_path):
    proc = _run(["-m", "benchmark", "list"], plugin_site, tmp_path)
    assert proc.returncode == 0, proc.stderr
    (dataset_line,) = _listed(proc.stdout, "thirdparty_toy")
    assert dataset_line.rstrip().endswith(DATASET_DESCRIPTION)
    (metric_line,) = _listed(proc.stdout, "thirdparty_metric")
    assert metric_line.rstrip().endswith(METRIC_DESCRIPTION)
    # each under its own heading, next to the built-ins
    sections: dict[str, list[str]] = {}
    current = None
    for line in proc.stdout.splitlines():
        if line.endswith(":") and not line.startswith(" "):
            current = line[:-1]
            sections[current] = []
        elif current is not None:
            sections[current].append(line.split()[0])
    assert "thirdparty_toy" in sections["datasets"] and "perov_5" in sections["datasets"]
    assert "thirdparty_metric" in sections["metrics"]
    assert "thirdparty_toy" not in sections["metrics"]


def test_installed_plugin_list_one_kind(plugin_site, tmp_path):
    proc = _run(["-m", "benchmark", "list", "datasets"], plugin_site, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert _listed(proc.stdout, "thirdparty_toy")
    assert not _listed(proc.stdout, "thirdparty_metric")


@pytest.mark.parametrize(
    "how",
    [
        {"env": {"BENCHMARK_DISABLE_PLUGIN_AUTOLOAD": "1"}, "args": []},
        {"env": {"BENCHMARK_BLOCK_PLUGINS": PLUGIN_NAME}, "args": []},
        {"env": {}, "args": ["--block-plugin", PLUGIN_NAME]},
    ],
    ids=["disable-autoload", "block-env", "block-option"],
)
def test_plugin_can_be_switched_off(plugin_site, tmp_path, how):
    proc = _run(["-m", "benchmark", "list", *how["args"]], plugin_site, tmp_path, **how["env"])
    assert proc.returncode == 0, proc.stderr
    assert "thirdparty_toy" not in proc.stdout
    assert "thirdparty_metric" not in proc.stdout
    assert DATASET_DESCRIPTION not in proc.stdout
    assert _listed(proc.stdout, "perov_5"), "built-in datasets must stay"


def test_installed_plugin_in_process_registry(plugin_site, tmp_path):
    """Source attribution, lazy factories, and that listing does not build anything."""
    script = """
import json, sys
from types import SimpleNamespace
from benchmark.registry import Plugins
plugins = Plugins()
ds = plugins["datasets"].entry("thirdparty_toy")
mt = plugins["metrics"].entry("thirdparty_metric")
built = plugins["datasets"].get("thirdparty_toy")
metric = plugins["metrics"].get("thirdparty_metric")
print(json.dumps({
    "plugin_names": plugins.plugin_names,
    "sources": [ds.source, mt.source],
    "dataset": [built.name, built.rows],
    "metric": metric.compute(SimpleNamespace(samples=[1, 2, 3]))["n_samples"].value,
    "module": sys.modules["thirdparty_benchmark_plugin"].__file__,
}))
"""
    proc = _run(["-c", script], plugin_site, tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert PLUGIN_NAME in out["plugin_names"]
    assert out["sources"] == [PLUGIN_NAME, PLUGIN_NAME]
    assert out["dataset"] == ["thirdparty_toy", 2]
    assert out["metric"] == 3
    assert Path(out["module"]).resolve().parent == plugin_site.resolve()


def test_plugin_not_visible_without_its_install(tmp_path):
    """Sanity check that the plugin comes from the temporary install, not the environment."""
    env = {k: v for k, v in os.environ.items() if k not in PLUGIN_ENV and k != "PYTHONPATH"}
    env["BENCHMARK_OFFLINE"] = "1"
    proc = subprocess.run([sys.executable, "-m", "benchmark", "list"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "thirdparty_toy" not in proc.stdout


def test_installed_task_runs_through_run_evaluate_and_leaderboard(plugin_site, tmp_path):
    """A task from an installed package (tests/fixtures/thirdparty_plugin: one class and its
    registration) runs end to end through the harness's own commands, its config fields as
    command-line options, its metric's labels in the leaderboard."""
    runs = tmp_path / "runs"
    common = ["--runs-dir", str(runs), "--no-progress"]
    helped = _run(["-m", "benchmark", "run", "--task", "element_coverage", "--model", "replay", "--help"], plugin_site, tmp_path)
    assert helped.returncode == 0 and "--min-count" in helped.stdout and "element_coverage task options" in helped.stdout

    out = tmp_path / "m.json"
    ran = _run(["-m", "benchmark", "run", "--model", "replay", "--task", "element_coverage", "--dataset", "toy", "--n-samples", "12",
                "--batch-size", "6", "--json", str(out), *common], plugin_site, tmp_path)
    assert ran.returncode == 0, ran.stderr
    metrics = json.loads(out.read_text())
    assert metrics["valid"] == 1.0 and 0 < metrics["element_coverage"] <= 1.0  # replayed training crystals
    (record,) = [json.loads(p.read_text()) for p in runs.glob("*/record.json")]
    assert record["task"] == "element_coverage" and record["task_config"] == {"n_samples": 12, "batch_size": 6, "min_count": 1}
    assert record["metrics"]["element_coverage"]["higher_is_better"] is True and record["metrics"]["element_coverage"]["unit"] == "fraction"
    samples = runs / record["run_id"] / "samples.extxyz"

    scored = _run(["-m", "benchmark", "evaluate", "--task", "element_coverage", "--dataset", "toy", "--samples", str(samples),
                   "--min-count", "13", "--model-name", "strict", "--json", str(out), *common], plugin_site, tmp_path)
    assert scored.returncode == 0, scored.stderr
    assert json.loads(out.read_text())["element_coverage"] == 0.0  # no element is in 13 of 12 samples

    board = _run(["-m", "benchmark", "leaderboard", "--task", "element_coverage", "--runs-dir", str(runs)], plugin_site, tmp_path)
    assert board.returncode == 0, board.stderr
    assert "Elem. coverage (%)" in board.stdout and "Valid (%)" in board.stdout
    assert _listed(board.stdout.replace("|", " "), "replay") and _listed(board.stdout.replace("|", " "), "strict")
    plain = _run(["-m", "benchmark", "leaderboard", "--runs-dir", str(runs)], plugin_site, tmp_path)
    assert plain.returncode == 0 and "Element coverage" in plain.stdout  # a task with stored runs gets its table
