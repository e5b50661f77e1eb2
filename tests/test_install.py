"""The install layout: the plugin folders end up as ``benchmark.<folder>``, never at the top level.

The repository keeps ``models/``, ``tasks/``, ``metrics/`` and ``datasets/`` at its root and
pyproject.toml maps them into the ``benchmark`` package. These tests build a wheel (from a copy of
the source tree, so no ``build/`` or ``*.egg-info`` is left in the checkout), install it into a
temporary ``--target`` directory and import from there with the repository off ``sys.path``; a
top-level ``datasets`` would shadow Hugging Face's package, so its absence is checked too. They
also check the editable install the test suite itself runs under.

Nothing is downloaded: pip runs with ``--no-index``, ``--no-deps`` and ``--no-build-isolation``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DIST = "crystal_gen_benchmark"
PLUGIN_FOLDERS = ("datasets", "metrics", "models", "tasks")
PACKAGE_DATA = {  # source folder -> folder inside the wheel
    "metrics/data": "benchmark/metrics/data",
    "benchmark/reported": "benchmark/reported",
}
# what pip --target may put at the top of the target directory: the package, its metadata, and
# the console script
ALLOWED_TOP_LEVEL = {"benchmark", "bin"}


def _quiet_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", BENCHMARK_OFFLINE="1")
    env.update(extra)
    return env


def _run(cmd: list[str], cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=_quiet_env(**env), capture_output=True, text=True, timeout=timeout)
    return proc


def _source_files() -> list[Path]:
    """Files of the checkout as git sees them (tracked or new, minus .gitignore'd ones)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [Path(p) for p in out.decode().split("\0") if p]


_IGNORED = {".git", ".venv", "venv", "build", "dist", "__pycache__", ".pytest_cache", ".benchmarks", "runs", ".hypothesis", ".mypy_cache", ".ruff_cache"}


def _copy_source(dest: Path) -> Path:
    files = _source_files()
    if files:
        for rel in files:
            src = ROOT / rel
            if not src.is_file():  # deleted in the working tree
                continue
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    else:  # not a git checkout: copy everything but caches, builds and virtual environments

        def ignore(folder: str, names: list[str]) -> set[str]:
            return {n for n in names if n in _IGNORED or n.endswith(".egg-info") or (Path(folder, n) / "pyvenv.cfg").exists()}

        shutil.copytree(ROOT, dest, ignore=ignore, dirs_exist_ok=True)
    assert (dest / "pyproject.toml").is_file()
    return dest


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory) -> Path:
    return _copy_source(tmp_path_factory.mktemp("source") / "crystal-gen-benchmark")


@pytest.fixture(scope="module")
def wheel(source_copy, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(out), str(source_copy)],
        cwd=out,
    )
    assert proc.returncode == 0, f"pip wheel failed:\n{proc.stdout}\n{proc.stderr}"
    wheels = list(out.glob(f"{DIST}-*.whl"))
    assert len(wheels) == 1, sorted(p.name for p in out.iterdir())
    return wheels[0]


@pytest.fixture(scope="module")
def wheel_names(wheel) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


@pytest.fixture(scope="module")
def site(wheel, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    proc = _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)], cwd=target)
    assert proc.returncode == 0, f"pip install of the wheel failed:\n{proc.stdout}\n{proc.stderr}"
    return target


@pytest.fixture
def outside(tmp_path) -> Path:
    """An empty working directory away from the checkout."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    return cwd


def _python(code: str, cwd: Path, **env: str) -> dict:
    proc = _run([sys.executable, "-c", code], cwd=cwd, timeout=300, **env)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _is_under(path: str | Path, folder: Path) -> bool:
    try:
        Path(path).resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# the wheel itself


def test_wheel_has_only_the_benchmark_namespace(wheel_names):
    dist_info = [n for n in wheel_names if n.split("/")[0].endswith(".dist-info")]
    assert dist_info, "no dist-info in the wheel"
    assert len({n.split("/")[0] for n in dist_info}) == 1
    stray = [n for n in wheel_names if not n.startswith("benchmark/") and n not in dist_info]
    assert not stray, f"files outside benchmark/ in the wheel: {stray}"
    for folder in PLUGIN_FOLDERS:
        assert f"benchmark/{folder}/__init__.py" in wheel_names
        assert f"benchmark/{folder}/plugin.py" in wheel_names
    for core in ("__init__.py", "__main__.py", "cli.py", "registry.py", "hookspecs.py", "py.typed"):
        assert f"benchmark/{core}" in wheel_names
    assert not any(n.startswith("benchmark/tests/") or "/__pycache__/" in n for n in wheel_names)


def test_wheel_metadata(wheel, wheel_names):
    with zipfile.ZipFile(wheel) as zf:
        (top_level,) = [n for n in wheel_names if n.endswith(".dist-info/top_level.txt")] or [None]
        if top_level is not None:
            assert zf.read(top_level).decode().split() == ["benchmark"]
        (eps,) = [n for n in wheel_names if n.endswith(".dist-info/entry_points.txt")]
        assert "crystal-benchmark = benchmark.cli:main" in zf.read(eps).decode()
        (meta,) = [n for n in wheel_names if n.endswith(".dist-info/METADATA")]
        metadata = zf.read(meta).decode()
    assert "Name: crystal-gen-benchmark" in metadata
    assert "Requires-Dist: pluggy" in metadata


def test_wheel_ships_every_python_file_of_the_plugin_folders(source_copy, wheel_names):
    # recursive: a subpackage missing from pyproject's package list would be dropped from the wheel
    for folder in PLUGIN_FOLDERS:
        for py in sorted((source_copy / folder).rglob("*.py")):
            rel = py.relative_to(source_copy / folder).as_posix()
            assert f"benchmark/{folder}/{rel}" in wheel_names, f"{folder}/{rel} is not in the wheel"
    # the core package and its subpackages (benchmark/nn/, ...)
    for py in sorted((source_copy / "benchmark").rglob("*.py")):
        rel = py.relative_to(source_copy / "benchmark").as_posix()
        assert f"benchmark/{rel}" in wheel_names, f"benchmark/{rel} is not in the wheel"


def test_wheel_ships_package_data(source_copy, wheel_names, site):
    expected = [
        f"{inside}/{f.name}"
        for src, inside in PACKAGE_DATA.items()
        if (source_copy / src).is_dir()
        for f in sorted((source_copy / src).glob("*.json"))
    ]
    if not expected:
        pytest.skip("no package data (metrics/data/*.json, benchmark/reported/*.json) in the source tree yet")
    missing = [n for n in expected if n not in wheel_names]
    assert not missing, f"package data missing from the wheel: {missing}"
    for name in expected:
        assert (site / name).is_file()


# --------------------------------------------------------------------------------------------
# the wheel, installed


def test_installed_layout_has_no_top_level_plugin_folders(site):
    top = {p.name for p in site.iterdir() if not p.name.endswith(".dist-info")}
    for folder in PLUGIN_FOLDERS:
        assert not (site / folder).exists(), f"top-level {folder}/ installed"
        assert (site / "benchmark" / folder / "__init__.py").is_file()
    assert top <= ALLOWED_TOP_LEVEL, f"unexpected top-level entries: {sorted(top - ALLOWED_TOP_LEVEL)}"


_IMPORT_CHECK = """
import importlib, importlib.util, json, sys
import benchmark, benchmark.datasets, benchmark.metrics, benchmark.models, benchmark.tasks
import benchmark.datasets.base, benchmark.registry, benchmark.cli
out = {
    "sys_path": sys.path,
    "benchmark_path": list(benchmark.__path__),
    "files": {name: sys.modules[name].__file__ for name in (
        "benchmark", "benchmark.datasets", "benchmark.metrics", "benchmark.models", "benchmark.tasks",
        "benchmark.datasets.base", "benchmark.registry", "benchmark.cli")},
    "top_level": {},
}
for name in ("datasets", "metrics", "models", "tasks"):
    spec = importlib.util.find_spec(name)
    out["top_level"][name] = None if spec is None else (spec.origin or list(spec.submodule_search_locations or []))
print(json.dumps(out))
"""


def test_installed_imports_resolve_under_target(site, outside):
    out = _python(_IMPORT_CHECK, outside, PYTHONPATH=str(site))
    on_path = [Path(p or outside).resolve() for p in out["sys_path"]]
    assert ROOT not in on_path, out["sys_path"]
    for name, file in out["files"].items():
        rel = name.replace(".", "/")
        candidates = {site / f"{rel}.py", site / rel / "__init__.py"}
        assert Path(file).resolve() in {c.resolve() for c in candidates}, f"{name} imported from {file}"
    # the source-checkout path hack in benchmark/__init__.py must not fire in an install
    assert [Path(p).resolve() for p in out["benchmark_path"]] == [(site / "benchmark").resolve()]
    # nothing this project installs is importable as a top-level datasets/metrics/models/tasks
    for name, where in out["top_level"].items():
        if where is None:
            continue
        locations = where if isinstance(where, list) else [where]
        for loc in locations:
            assert not _is_under(loc, site), f"top-level {name} from the install: {loc}"
            assert not _is_under(loc, ROOT), f"top-level {name} from the checkout: {loc}"


_IMPORT_ALL = """
import importlib, json, pkgutil, sys, warnings
warnings.simplefilter("ignore")
import benchmark
results = {}
names = ["benchmark"] + [m.name for m in pkgutil.walk_packages(benchmark.__path__, "benchmark.")]
for name in names:
    try:
        importlib.import_module(name)
        results[name] = None
    except BaseException as exc:
        results[name] = [type(exc).__name__, getattr(exc, "name", None), str(exc)]
print(json.dumps(results))
"""


def test_installed_modules_import_without_the_checkout(site, outside):
    """Every module of the installed package imports without the repository: a stray
    ``from metrics.base import ...`` (top-level) or data read from outside the package fails here.
    Missing optional third-party dependencies are tolerated."""
    results = _python(_IMPORT_ALL, outside, PYTHONPATH=str(site))
    assert "benchmark.datasets.plugin" in results and "benchmark.metrics" in results
    layout = set(PLUGIN_FOLDERS) | {"benchmark"}
    bad = {}
    for module, err in results.items():
        if err is None:
            continue
        kind, missing, message = err
        if kind == "ModuleNotFoundError" and missing and missing.split(".")[0] not in layout:
            continue  # an optional dependency that is not installed
        if kind in {"ModuleNotFoundError", "ImportError", "FileNotFoundError"}:
            bad[module] = f"{kind}: {message}"
    assert not bad, f"modules that do not import from the installed wheel: {bad}"


def test_installed_cli_lists_datasets(site, outside):
    proc = _run([sys.executable, "-m", "benchmark", "list", "datasets"], outside, PYTHONPATH=str(site))
    assert proc.returncode == 0, proc.stderr
    assert any(line.split()[:1] == ["perov_5"] for line in proc.stdout.splitlines())


def test_installed_console_script(site, outside):
    script = site / "bin" / "crystal-benchmark"
    if not script.is_file():
        pytest.skip("pip did not install console scripts into the --target directory")
    proc = _run([sys.executable, str(script), "list", "datasets"], outside, PYTHONPATH=str(site))
    assert proc.returncode == 0, proc.stderr
    assert "mp_20" in proc.stdout


# --------------------------------------------------------------------------------------------
# sdist -> wheel (what a PyPI user's pip does)


def test_wheel_from_sdist_has_the_same_files(source_copy, wheel_names, tmp_path):
    pytest.importorskip("build")
    out = tmp_path / "dist"
    proc = _run(
        [sys.executable, "-m", "build", "--no-isolation", "--skip-dependency-check", "--outdir", str(out), str(source_copy)],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, f"python -m build failed:\n{proc.stdout}\n{proc.stderr}"
    (from_sdist,) = out.glob(f"{DIST}-*.whl")
    with zipfile.ZipFile(from_sdist) as zf:
        sdist_names = set(zf.namelist())

    def payload(names) -> set[str]:
        return {n for n in names if n.startswith("benchmark/")}

    assert payload(sdist_names) == payload(wheel_names), {
        "only in the direct wheel": sorted(payload(wheel_names) - payload(sdist_names)),
        "only in the wheel from the sdist": sorted(payload(sdist_names) - payload(wheel_names)),
    }


# --------------------------------------------------------------------------------------------
# the editable install the suite runs under


def _editable_install() -> bool:
    """Whether an editable install of this very checkout is in the environment.

    Every distribution of the name is looked at: with the checkout on ``sys.path`` (``python -m
    pytest`` from the root) the setuptools ``*.egg-info`` there is found first, and it has no
    ``direct_url.json``.
    """
    from importlib.metadata import distributions

    for dist in distributions(name="crystal-gen-benchmark"):
        text = dist.read_text("direct_url.json")
        if not text:
            continue
        info = json.loads(text)
        url = info.get("url", "")
        if info.get("dir_info", {}).get("editable") and url.startswith("file://") and Path(url[len("file://") :]).resolve() == ROOT:
            return True
    return False


@pytest.mark.skipif(not _editable_install(), reason="the project is not installed editable from this checkout")
def test_editable_install_maps_plugin_folders(outside):
    out = _python(_IMPORT_CHECK, outside)
    files = {k: Path(v).resolve() for k, v in out["files"].items()}
    assert files["benchmark.datasets.base"] == (ROOT / "datasets" / "base.py").resolve()
    for folder in PLUGIN_FOLDERS:
        assert files[f"benchmark.{folder}"] == (ROOT / folder / "__init__.py").resolve()
    assert files["benchmark"] == (ROOT / "benchmark" / "__init__.py").resolve()
    for name, where in out["top_level"].items():
        if where is None:
            continue
        for loc in where if isinstance(where, list) else [where]:
            assert not _is_under(loc, ROOT), f"top-level {name} importable from the checkout: {loc}"
