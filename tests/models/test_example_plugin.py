"""The example model plugin (examples/example_plugin), installed as a package, is found through its
entry point, passes the model contract, and learns (its training loss falls).

The package is built from a copy (so the source tree stays clean) and installed with pip into a
temporary ``--target`` directory without network or build isolation; it is then used through
``PYTHONPATH`` in subprocesses, so the installed copy is what runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "example_plugin"
PLUGIN_ENV = ("BENCHMARK_DISABLE_PLUGIN_AUTOLOAD", "BENCHMARK_BLOCK_PLUGINS")


@pytest.fixture(scope="module")
def example_site(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("example_plugin")
    source = work / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet", "--target", str(target), str(source)],
        cwd=work, env=env, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, f"pip install of the example plugin failed:\n{proc.stdout}\n{proc.stderr}"
    assert (target / "benchmark_example_model" / "model.py").is_file()
    (dist_info,) = target.glob("benchmark_example_model-*.dist-info")
    entry_points = (dist_info / "entry_points.txt").read_text()
    assert "[crystal_gen_benchmark]" in entry_points and "example_model = benchmark_example_model" in entry_points
    return target


def _run(args: list[str], site: Path, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in PLUGIN_ENV}
    env["PYTHONPATH"] = str(site)
    env["BENCHMARK_OFFLINE"] = "1"
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_installed_example_is_listed(example_site, tmp_path):
    proc = _run(["-m", "benchmark", "list", "models"], example_site, tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [l for l in proc.stdout.splitlines() if l.split()[:1] == ["example_gaussian"]]
    assert len(lines) == 1, proc.stdout
    assert "example plugin" in lines[0]


CHECK_SCRIPT = r'''
import json, sys
from benchmark.registry import Plugins
from benchmark.testing import check_model, contract_crystals
from benchmark.config import resolve

plugins = Plugins()
entry = plugins["models"].entry("example_gaussian")
cls = entry.load()
failures = check_model(cls, sys.argv[1] + "/contract")
model = cls(resolve(cls.Config, "smoke"))
train = contract_crystals(240)
summary = model.fit(train, contract_crystals(24, offset=240), sys.argv[1] + "/fit", seed=0)
print("RESULT " + json.dumps({
    "source": entry.source,
    "module": sys.modules[cls.__module__].__file__,
    "failures": failures,
    "summary": summary,
}))
'''


def test_installed_example_passes_contract_and_learns(example_site, tmp_path):
    proc = _run(["-c", CHECK_SCRIPT, str(tmp_path)], example_site, tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (line,) = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    out = json.loads(line[len("RESULT "):])
    assert out["source"] == "example_model"
    assert Path(out["module"]).resolve().is_relative_to(example_site.resolve())
    assert out["failures"] == []
    summary = out["summary"]
    assert summary["epochs"] == 20  # smoke preset
    assert summary["last_epoch_train_loss"] < summary["first_epoch_train_loss"]
    assert summary["val_loss"] is not None
    assert (tmp_path / "fit" / "checkpoints" / "last.ckpt").is_file()


def test_example_fit_resumes(tmp_path):
    """In-process, from the examples folder: a second fit with more epochs resumes the first."""
    sys.path.insert(0, str(EXAMPLE))
    try:
        from benchmark_example_model.model import ExampleGaussianModel
    finally:
        sys.path.remove(str(EXAMPLE))
    from benchmark.testing import contract_crystals

    cls = ExampleGaussianModel
    train = contract_crystals(32)
    first = cls(cls.Config(max_epochs=3)).fit(train, [], tmp_path, seed=0)
    second_model = cls(cls.Config(max_epochs=6))
    second = second_model.fit(train, [], tmp_path, seed=0)
    assert first["resumed_from"] is None and second["resumed_from"] is not None
    assert (first["epochs"], second["epochs"]) == (3, 6)
    assert second["last_epoch_train_loss"] < first["last_epoch_train_loss"]
    assert len(second_model.sample(3, seed=0).crystals) == 3


def test_installed_example_runs_through_the_same_commands(example_site, tmp_path):
    """The third-party model goes through `run` and `leaderboard` like a built-in one."""
    runs = tmp_path / "runs"
    env_args = ["--runs-dir", str(runs), "--no-progress"]
    gen = _run(["-m", "benchmark", "run", "--model", "example_gaussian", "--task", "generation", "--dataset", "toy", "--preset", "smoke",
                "--set", "task.n_samples=40", "--json", str(tmp_path / "m.json"), *env_args], example_site, tmp_path, timeout=300)
    assert gen.returncode == 0, gen.stderr[-3000:]
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert 0.0 <= metrics["valid"] <= 1.0 and "cov_recall" in metrics
    rec = _run(["-m", "benchmark", "run", "--model", "example_gaussian", "--task", "reconstruction", "--dataset", "toy", *env_args], example_site, tmp_path)
    assert rec.returncode == 0 and "not_supported" in rec.stdout
    board = _run(["-m", "benchmark", "leaderboard", "--task", "generation", "--dataset", "toy", "--runs-dir", str(runs)], example_site, tmp_path)
    assert board.returncode == 0 and "example_gaussian" in board.stdout
