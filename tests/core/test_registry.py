"""The plugin system: built-in registrations, name clashes, unknown names, hook validation,
entry-point autoloading and blocking, and the ``list`` command line.

Third-party plugins are simulated here by replacing ``benchmark.registry.entry_points`` with a
function returning fake entry points; ``test_thirdparty_plugin.py`` installs a real one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pluggy
import pytest

from benchmark import registry
from benchmark.hookspecs import PROJECT, hookimpl
from benchmark.registry import KINDS, Entry, Plugins, Registry, RegistryError

BUILTIN_DATASETS = ("perov_5", "perov_5_dev", "carbon_24", "mp_20", "mp_20_sample", "supercon", "toy")


@pytest.fixture(autouse=True)
def _clean_plugin_env(monkeypatch):
    """The host environment must not decide whether entry points load or which are blocked."""
    monkeypatch.delenv("BENCHMARK_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("BENCHMARK_BLOCK_PLUGINS", raising=False)


class FakeEntryPoint:
    """Just enough of ``importlib.metadata.EntryPoint`` for ``Plugins._load_entry_points``."""

    def __init__(self, name: str, plugin: object, value: str | None = None) -> None:
        self.name = name
        self.value = value or f"fake_module_{name}"
        self.group = PROJECT
        self._plugin = plugin
        self.loaded = False

    def load(self) -> object:
        self.loaded = True
        if isinstance(self._plugin, BaseException):
            raise self._plugin
        return self._plugin


def install_fake_entry_points(monkeypatch, *eps: FakeEntryPoint) -> list[str]:
    """Make ``Plugins`` see ``eps`` as the installed entry points; returns the groups asked for."""
    asked: list[str] = []

    def fake_entry_points(*, group: str):
        asked.append(group)
        return list(eps) if group == PROJECT else []

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    return asked


class ToyPlugin:
    """A third-party plugin object: one dataset, one metric."""

    @hookimpl
    def benchmark_datasets(self):
        return [Entry("toy_dataset", "a toy dataset from a fake plugin", lambda: SimpleNamespace(name="toy_dataset"))]

    @hookimpl
    def benchmark_metrics(self):
        return [Entry("toy_metric", "a toy metric from a fake plugin", lambda: SimpleNamespace(name="toy_metric"))]


# --------------------------------------------------------------------------------------------
# built-in plugins


def test_builtin_datasets_listed():
    plugins = Plugins(autoload=False)
    names = plugins["datasets"].names()
    for name in BUILTIN_DATASETS:
        assert name in names
    assert names == sorted(names)
    for entry in plugins["datasets"]:
        assert entry.description.strip(), entry.name
        assert "\n" not in entry.description, f"{entry.name}: descriptions are one line"
        assert entry.source == "benchmark.datasets.plugin"


def test_builtin_plugins_registered_under_module_names():
    plugins = Plugins(autoload=False)
    for modname in registry.BUILTIN_PLUGINS:
        assert modname in plugins.plugin_names


def test_every_kind_has_a_registry():
    plugins = Plugins(autoload=False)
    for kind in KINDS:
        assert isinstance(plugins[kind], Registry)
        assert plugins[kind].kind == kind


def test_unknown_kind_is_a_registry_error():
    plugins = Plugins(autoload=False)
    with pytest.raises(RegistryError, match="valid kinds") as info:
        plugins["dataset"]
    for kind in KINDS:
        assert kind in str(info.value)


def test_dataset_factory_builds_the_named_dataset():
    dataset = Plugins(autoload=False)["datasets"].get("perov_5_dev")
    assert dataset.name == "perov_5_dev"


# --------------------------------------------------------------------------------------------
# Registry: duplicates and unknown names


def test_duplicate_name_names_both_sources():
    reg: Registry[object] = Registry("datasets")
    reg.add(Entry("perov_5", "first", object, source="first_plugin"))
    with pytest.raises(RegistryError) as info:
        reg.add(Entry("perov_5", "second", object, source="second_plugin"))
    message = str(info.value)
    assert "perov_5" in message
    assert "first_plugin" in message
    assert "second_plugin" in message
    # the first registration stays
    assert reg.entry("perov_5").description == "first"
    assert len(reg) == 1


def test_duplicate_across_plugins_names_both_plugins(monkeypatch):
    class Clash:
        @hookimpl
        def benchmark_datasets(self):
            return [Entry("perov_5", "an impostor", object)]

    install_fake_entry_points(monkeypatch, FakeEntryPoint("clashing_plugin", Clash()))
    with pytest.raises(RegistryError) as info:
        Plugins()
    message = str(info.value)
    assert "perov_5" in message
    assert "benchmark.datasets.plugin" in message
    assert "clashing_plugin" in message


def test_unknown_name_suggests_nearest_and_lists_valid_names():
    reg = Plugins(autoload=False)["datasets"]
    with pytest.raises(RegistryError) as info:
        reg.get("perov5")
    message = str(info.value)
    assert "'perov5'" in message
    assert "Did you mean 'perov_5'?" in message
    for name in BUILTIN_DATASETS:
        assert name in message
    assert isinstance(info.value, LookupError)


def test_unknown_name_without_close_match_still_lists_valid_names():
    reg = Plugins(autoload=False)["datasets"]
    with pytest.raises(RegistryError) as info:
        reg.entry("zzzzzzzz")
    message = str(info.value)
    assert "Did you mean" not in message
    assert "mp_20_sample" in message


def test_empty_registry_unknown_name():
    with pytest.raises(RegistryError, match=r"\(none\)"):
        Registry("oracles").get("anything")


def test_registry_contains_iter_len():
    reg: Registry[object] = Registry("metrics")
    reg.add(Entry("b", "second", lambda: 2))
    reg.add(Entry("a", "first", lambda: 1))
    assert "a" in reg and "c" not in reg
    assert [e.name for e in reg] == ["a", "b"]
    assert len(reg) == 2
    assert reg.get("b") == 2


# --------------------------------------------------------------------------------------------
# hook validation


def test_misspelt_hook_is_rejected(monkeypatch):
    class Misspelt:
        @hookimpl
        def benchmark_datasetz(self):
            return [Entry("never_seen", "misspelt hook", object)]

    install_fake_entry_points(monkeypatch, FakeEntryPoint("misspelt_plugin", Misspelt()))
    with pytest.raises(pluggy.PluginValidationError, match="benchmark_datasetz"):
        Plugins()


def test_misspelt_hook_is_rejected_by_check_pending_directly():
    plugins = Plugins(autoload=False)

    class Misspelt:
        @hookimpl
        def benchmark_datasetz(self):
            return []

    plugins.pm.register(Misspelt(), name="misspelt")
    with pytest.raises(pluggy.PluginValidationError):
        plugins.pm.check_pending()


def test_hook_with_wrong_argument_is_rejected(monkeypatch):
    class WrongArgs:
        @hookimpl
        def benchmark_datasets(self, config):
            return []

    install_fake_entry_points(monkeypatch, FakeEntryPoint("wrong_args", WrongArgs()))
    with pytest.raises(pluggy.PluginValidationError):
        Plugins()


def test_hook_returning_non_entry_is_rejected(monkeypatch):
    class NotEntries:
        @hookimpl
        def benchmark_metrics(self):
            return [("name", "description")]

    install_fake_entry_points(monkeypatch, FakeEntryPoint("not_entries", NotEntries()))
    with pytest.raises(RegistryError, match="not_entries.*expected Entry"):
        Plugins()


def test_broken_plugin_import_is_reported(monkeypatch):
    install_fake_entry_points(monkeypatch, FakeEntryPoint("broken", ImportError("no module named nowhere"), value="nowhere.plugin"))
    with pytest.raises(RegistryError) as info:
        Plugins()
    message = str(info.value)
    assert "broken" in message and "nowhere.plugin" in message and "no module named nowhere" in message


# --------------------------------------------------------------------------------------------
# entry-point autoloading and blocking


def test_entry_point_plugin_is_loaded(monkeypatch):
    ep = FakeEntryPoint("toy_plugin", ToyPlugin())
    asked = install_fake_entry_points(monkeypatch, ep)
    plugins = Plugins()
    assert asked == [PROJECT]
    assert ep.loaded
    assert "toy_plugin" in plugins.plugin_names
    entry = plugins["datasets"].entry("toy_dataset")
    assert entry.source == "toy_plugin"
    assert entry.description == "a toy dataset from a fake plugin"
    assert plugins["datasets"].get("toy_dataset").name == "toy_dataset"
    assert plugins["metrics"].get("toy_metric").name == "toy_metric"
    # built-ins are still there
    assert "perov_5" in plugins["datasets"]


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_disable_autoload_env_stops_entry_points(monkeypatch, value):
    ep = FakeEntryPoint("toy_plugin", ToyPlugin())
    asked = install_fake_entry_points(monkeypatch, ep)
    monkeypatch.setenv("BENCHMARK_DISABLE_PLUGIN_AUTOLOAD", value)
    plugins = Plugins()
    assert asked == []
    assert not ep.loaded
    assert "toy_plugin" not in plugins.plugin_names
    assert "toy_dataset" not in plugins["datasets"]
    assert "toy_metric" not in plugins["metrics"]
    # the built-ins always load
    for name in BUILTIN_DATASETS:
        assert name in plugins["datasets"]


@pytest.mark.parametrize("value", ["", "0"])
def test_autoload_env_off_values_keep_autoload(monkeypatch, value):
    install_fake_entry_points(monkeypatch, FakeEntryPoint("toy_plugin", ToyPlugin()))
    monkeypatch.setenv("BENCHMARK_DISABLE_PLUGIN_AUTOLOAD", value)
    assert "toy_dataset" in Plugins()["datasets"]


def test_explicit_autoload_false_stops_entry_points(monkeypatch):
    ep = FakeEntryPoint("toy_plugin", ToyPlugin())
    install_fake_entry_points(monkeypatch, ep)
    plugins = Plugins(autoload=False)
    assert not ep.loaded
    assert "toy_dataset" not in plugins["datasets"]


def test_block_entry_point_plugin_by_name(monkeypatch):
    toy = FakeEntryPoint("toy_plugin", ToyPlugin())
    misspelt_class = type("Misspelt", (), {"benchmark_datasetz": hookimpl(lambda self: [])})
    bad = FakeEntryPoint("bad_plugin", misspelt_class())
    install_fake_entry_points(monkeypatch, toy, bad)
    # blocking the bad plugin means it is never imported, so it cannot break the run
    plugins = Plugins(blocked=("bad_plugin",))
    assert not bad.loaded
    assert toy.loaded
    assert plugins.pm.get_plugin("bad_plugin") is None
    assert plugins.pm.is_blocked("bad_plugin")
    assert "toy_dataset" in plugins["datasets"]


def test_block_plugins_env(monkeypatch):
    toy = FakeEntryPoint("toy_plugin", ToyPlugin())
    install_fake_entry_points(monkeypatch, toy)
    monkeypatch.setenv("BENCHMARK_BLOCK_PLUGINS", " other , toy_plugin ")
    plugins = Plugins()
    assert not toy.loaded
    assert "toy_dataset" not in plugins["datasets"]
    assert "perov_5" in plugins["datasets"]


def test_block_builtin_plugin_by_module_name():
    plugins = Plugins(autoload=False, blocked=("benchmark.datasets.plugin",))
    assert plugins.pm.get_plugin("benchmark.datasets.plugin") is None
    assert len(plugins["datasets"]) == 0
    with pytest.raises(RegistryError, match=r"\(none\)"):
        plugins["datasets"].get("perov_5")


def test_plugin_names_omit_blocked_plugins():
    plugins = Plugins(autoload=False, blocked=("benchmark.datasets.plugin",))
    assert "benchmark.datasets.plugin" not in plugins.plugin_names


def test_get_plugins_refresh_sees_new_entry_points(monkeypatch):
    monkeypatch.setattr(registry, "_default", None)
    install_fake_entry_points(monkeypatch)
    first = registry.get_plugins()
    assert registry.get_plugins() is first
    install_fake_entry_points(monkeypatch, FakeEntryPoint("toy_plugin", ToyPlugin()))
    assert "toy_dataset" not in registry.get_plugins()["datasets"]
    assert "toy_dataset" in registry.get_plugins(refresh=True)["datasets"]


# --------------------------------------------------------------------------------------------
# the command line


def _run_cli(args: list[str], cwd, **env_overrides: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"BENCHMARK_DISABLE_PLUGIN_AUTOLOAD", "BENCHMARK_BLOCK_PLUGINS"}}
    env["BENCHMARK_OFFLINE"] = "1"
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "-m", "benchmark", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_list_datasets(tmp_path):
    proc = _run_cli(["list", "datasets"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "datasets:"
    descriptions = {e.name: e.description for e in Plugins(autoload=False)["datasets"]}
    for name in BUILTIN_DATASETS:
        matching = [line for line in lines if line.split()[:1] == [name]]
        assert len(matching) == 1, f"{name} not listed once:\n{proc.stdout}"
        assert descriptions[name] in matching[0]
        assert matching[0].rstrip().endswith(descriptions[name])
    # only the datasets section
    assert not any(line.rstrip(":") in KINDS for line in lines[1:])


def test_cli_list_all_kinds(tmp_path):
    proc = _run_cli(["list"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    headers = [line[:-1] for line in proc.stdout.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert headers == list(KINDS)


def test_cli_list_block_builtin(tmp_path):
    proc = _run_cli(["list", "datasets", "--block-plugin", "benchmark.datasets.plugin"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "(none registered)" in proc.stdout
    assert "perov_5" not in proc.stdout


def test_cli_list_unknown_kind_fails(tmp_path):
    proc = _run_cli(["list", "nonsense"], tmp_path)
    assert proc.returncode != 0
    assert "nonsense" in proc.stderr
    assert "datasets" in proc.stderr  # argparse lists the valid choices
    assert proc.stdout == ""


def test_cli_no_command_fails(tmp_path):
    proc = _run_cli([], tmp_path)
    assert proc.returncode != 0
