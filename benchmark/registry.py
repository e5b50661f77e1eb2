"""Registries of named plugins: datasets, metrics, tasks, models, oracles, sample formats.

Every entry, built-in or third-party, comes in through the same pluggy hooks
(:mod:`benchmark.hookspecs`). A registry refuses a second entry with the same name (naming both
sources) and answers an unknown name with the valid names and the nearest one.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, Generic, Iterator, TypeVar

import pluggy

from benchmark import hookspecs
from benchmark.hookspecs import hookimpl  # noqa: F401  (re-exported for plugin authors)

T = TypeVar("T")

KINDS = ("datasets", "metrics", "tasks", "models", "oracles", "formats")
#: the hook that fills each kind's registry (``benchmark_<kind>`` unless named here)
HOOKS: dict[str, str] = {kind: f"benchmark_{kind}" for kind in KINDS} | {"formats": "benchmark_sample_formats"}
ENTRY_POINT_GROUP = hookspecs.PROJECT
BUILTIN_PLUGINS = (
    "benchmark.datasets.plugin",
    "benchmark.metrics.plugin",
    "benchmark.tasks.plugin",
    "benchmark.models.plugin",
    "benchmark.metrics.oracles.plugin",
    "benchmark.samples.plugin",
)


class RegistryError(LookupError):
    """An unknown or duplicated plugin name."""


@dataclass(frozen=True)
class Entry:
    """A registered name: ``factory()`` builds the object (imports happen there, not at listing)."""

    name: str
    description: str
    factory: Callable[[], Any]
    source: str = field(default="", compare=False)

    def load(self) -> Any:
        return self.factory()


class Registry(Generic[T]):
    """Name -> entry for one kind of plugin."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def add(self, entry: Entry) -> None:
        if entry.name in self._entries:
            first = self._entries[entry.name]
            raise RegistryError(
                f"{self.kind[:-1]} {entry.name!r} is registered twice: by {first.source or '?'} and by {entry.source or '?'}"
            )
        self._entries[entry.name] = entry

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries())

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise RegistryError(self.unknown_message(name)) from None

    def get(self, name: str) -> T:
        return self.entry(name).load()

    def unknown_message(self, name: str) -> str:
        names = self.names()
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind[:-1]} {name!r}.{hint} Valid names: {', '.join(names) or '(none)'}"


class Plugins:
    """The plugin manager and the registries it fills."""

    def __init__(self, autoload: bool | None = None, blocked: tuple[str, ...] = ()) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        env_blocked = tuple(x.strip() for x in os.environ.get("BENCHMARK_BLOCK_PLUGINS", "").split(",") if x.strip())
        for name in blocked + env_blocked:
            self.pm.set_blocked(name)
        import importlib

        for modname in BUILTIN_PLUGINS:
            if self.pm.is_blocked(modname):
                continue
            self.pm.register(importlib.import_module(modname), name=modname)
        if autoload is None:
            from benchmark.settings import env_flag

            autoload = not env_flag("BENCHMARK_DISABLE_PLUGIN_AUTOLOAD")
        if autoload:
            self._load_entry_points()
        # A misspelt hook name in a plugin is an error, not silence.
        self.pm.check_pending()
        self.registries: dict[str, Registry[Any]] = {kind: Registry(kind) for kind in KINDS}
        self._collect()

    def _load_entry_points(self) -> None:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if self.pm.is_blocked(ep.name) or self.pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken third-party plugin must say so, not vanish
                raise RegistryError(f"plugin {ep.name!r} ({ep.value}) failed to import: {exc}") from exc
            if self.pm.is_registered(plugin):
                other = self.pm.get_name(plugin)
                raise RegistryError(f"plugin module {ep.value} is registered twice: as {other!r} and as {ep.name!r}")
            self.pm.register(plugin, name=ep.name)

    def _collect(self) -> None:
        for kind in KINDS:
            hook = getattr(self.pm.hook, HOOKS[kind])
            for impl in hook.get_hookimpls():
                entries = impl.function() or []
                for entry in entries:
                    if not isinstance(entry, Entry):
                        raise RegistryError(f"plugin {impl.plugin_name!r} returned {type(entry).__name__} from {HOOKS[kind]}; expected Entry")
                    if not entry.source:
                        entry = Entry(entry.name, entry.description, entry.factory, impl.plugin_name)
                    self.registries[kind].add(entry)

    def __getitem__(self, kind: str) -> Registry[Any]:
        if kind not in self.registries:
            raise RegistryError(f"unknown plugin kind {kind!r}; valid kinds: {', '.join(KINDS)}")
        return self.registries[kind]

    @property
    def plugin_names(self) -> list[str]:
        return sorted(name for name, plugin in self.pm.list_name_plugin() if plugin is not None)


_default: Plugins | None = None


def get_plugins(refresh: bool = False, blocked: tuple[str, ...] = ()) -> Plugins:
    """The process-wide plugin manager (built once; ``refresh`` rebuilds it)."""
    global _default
    if _default is None or refresh or blocked:
        _default = Plugins(blocked=blocked)
    return _default
