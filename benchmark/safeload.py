"""Reading checkpoints and pickles without running code: the project's one safe-loading policy.

A pickle is a program: unpickling an untrusted one can call any importable function
(``os.system`` included). Every ``.pt`` / ``.ckpt`` / ``.pth.tar`` file the project reads goes
through this module, which never lets a file choose what runs:

(a) :func:`load_weights`: ``torch.load(weights_only=True)``, torch's own restricted unpickler,
    with a short allow-list of globals added (:func:`weights_only_globals`: numpy scalars, arrays
    and dtypes, which checkpoints written by other projects often hold, e.g. Con-CDVAE's CGCNN
    ``best_mae_error``). This reads every checkpoint the project writes itself and any file made of
    tensors and plain containers.

(b) :func:`load_foreign`: for pickles written by other projects that (a) cannot read because they
    name those projects' classes (CDVAE's ``eval_*.pt`` with torch_geometric batches and an
    ``argparse.Namespace``; the CDVAE property models' Lightning checkpoints with OmegaConf
    hyper-parameters and callback states, and their pickled ``StandardScalerTorch``), ``torch.load``
    with :class:`RestrictedUnpickler`. It rebuilds tensors, storages, numpy arrays and scalars and
    plain containers, turns the few known foreign classes (:data:`RECORD_MODULES`,
    :data:`RECORD_GLOBALS`) into inert :class:`PickledRecord` objects that only store what the
    pickle hands them, and refuses every other global (``pickle.UnpicklingError``), before
    anything is called.

:func:`load` tries (a) and falls back to (b). Failures raise :class:`SafeLoadError` (a
``ValueError`` whose message is one line naming the file); a missing or unreadable file raises
the ``OSError`` ``open`` raised.
"""

from __future__ import annotations

import _compat_pickle
import builtins
import collections
import contextlib
import functools
import io
import os
import pickle
import re
import types
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "RECORD_GLOBALS",
    "RECORD_MODULES",
    "PickledRecord",
    "RestrictedUnpickler",
    "SafeLoadError",
    "load",
    "load_foreign",
    "load_weights",
    "weights_only_globals",
]

PathLike = str | os.PathLike[str]

#: Modules whose classes become inert records in :func:`load_foreign` (the module or a submodule).
RECORD_MODULES: tuple[str, ...] = (
    "torch_geometric",  # CDVAE's eval_*.pt: Batch / Data objects and their storages
    "omegaconf",  # Lightning checkpoints of the CDVAE property models: hyper-parameters (DictConfig, nodes)
    "pytorch_lightning.callbacks",  # ... and the state of their callbacks (EarlyStopping, ModelCheckpoint)
    "lightning.pytorch.callbacks",  # the same classes under Lightning >= 2's package name
)

#: Single (module, name) globals that become inert records in :func:`load_foreign`.
RECORD_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("argparse", "Namespace"),  # CDVAE's eval_setting
        ("typing", "Any"),  # OmegaConf node metadata (ref_type / key_type)
        ("cdvae.common.data_utils", "StandardScalerTorch"),  # the property models' prop_scaler.pt
        ("cdvae.common.data_utils", "StandardScaler"),
    }
)

_BUILTINS = frozenset(
    {"set", "frozenset", "slice", "complex", "range", "bytearray", "bytes", "list", "dict", "tuple", "int", "float", "str", "bool"}
)
_TORCH_REBUILD_FUNCTIONS = frozenset(
    {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter", "_rebuild_parameter_with_state"}
)
_NUMPY_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")  # numpy 1 and numpy 2 names
_NUMPY_NUMERIC = ("numpy.core.numeric", "numpy._core.numeric")


class SafeLoadError(ValueError):
    """A file cannot be loaded under the safe-loading policy (or is not a torch file at all).

    Attributes:
        path: the file.
        problem: one line saying why (the refused global, torch's reason, ...).
    """

    def __init__(self, path: PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


# ============================================================================ the inert record
class PickledRecord:
    """Inert stand-in for an object of a known foreign class (:data:`RECORD_MODULES`,
    :data:`RECORD_GLOBALS`). It executes nothing and only stores what the pickle gives it.

    Each foreign class gets its own subclass (named after it, with ``_pickled_module`` and
    ``_pickled_name``). What the unpickler hands the object is kept: constructor arguments
    (:attr:`pickled_args`), the pickled state (a ``__dict__``, a ``(dict, slots)`` pair, or anything
    else under the key ``"__state__"``), items and elements added by the pickle
    (:attr:`pickled_items`, :attr:`pickled_elements`, for subclasses of dict and list).

    Reading: ``record.name``, ``record["name"]``, ``record.get("name", default)`` and ``"name" in
    record`` look in the state, then, for torch_geometric >= 2 objects, whose state is ``{"_store":
    <GlobalStorage state {"_mapping": {...}}>, ...}``, in ``_mapping`` and ``_store._mapping`` (so
    ``record.frac_coords`` works for a pickled ``Batch``), then in the items.
    """

    _pickled_module: str = "?"
    _pickled_name: str = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "PickledRecord":
        self = object.__new__(cls)
        object.__setattr__(self, "_state", {})
        object.__setattr__(self, "_args", args)
        object.__setattr__(self, "_items", {})
        object.__setattr__(self, "_elements", [])
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs:
            self._state.update({str(k): v for k, v in kwargs.items()})

    # -- what the unpickler calls
    def __setstate__(self, state: Any) -> None:
        slots = None
        if (
            isinstance(state, tuple)
            and len(state) == 2
            and (state[0] is None or isinstance(state[0], dict))
            and (state[1] is None or isinstance(state[1], dict))
        ):
            state, slots = state
        if isinstance(state, dict):
            self._state.update({str(k): v for k, v in state.items()})
        elif state is not None:
            self._state["__state__"] = state
        if slots:
            self._state.update({str(k): v for k, v in slots.items()})

    def __setattr__(self, name: str, value: Any) -> None:  # BUILD with a slot state lands here
        self._state[name] = value

    def __setitem__(self, key: Any, value: Any) -> None:  # SETITEM(S) on a pickled dict subclass
        self._items[key] = value

    def append(self, value: Any) -> None:  # APPEND(S) on a pickled list subclass
        self._elements.append(value)

    def extend(self, values: Iterable[Any]) -> None:
        self._elements.extend(values)

    def __call__(self, *args: Any, **kwargs: Any) -> "PickledRecord":
        # torch_geometric pickles a Batch as DynamicInheritanceGetter()(Batch, Data), and a
        # crafted pickle may call any record: calling one only gives a fresh record of its class.
        return type(self)(*args, **kwargs)

    # -- reading
    def _lookup(self, name: str) -> Any:
        state = object.__getattribute__(self, "_state")
        if name in state:
            return state[name]
        mapping = state.get("_mapping")
        if isinstance(mapping, dict) and name in mapping:
            return mapping[name]
        store = state.get("_store")
        if isinstance(store, PickledRecord):
            return store._lookup(name)
        if isinstance(store, dict):
            if name in store:
                return store[name]
            inner = store.get("_mapping")
            if isinstance(inner, dict) and name in inner:
                return inner[name]
        items = object.__getattribute__(self, "_items")
        if name in items:
            return items[name]
        raise KeyError(name)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        try:
            return self._lookup(name)
        except KeyError:
            raise AttributeError(f"{self._pickled_module}.{self._pickled_name} record has no attribute {name!r}") from None

    def __getitem__(self, name: str) -> Any:
        return self._lookup(name)

    def __contains__(self, name: object) -> bool:
        try:
            self._lookup(str(name))
        except KeyError:
            return False
        return True

    def get(self, name: str, default: Any = None) -> Any:
        """The value ``record[name]`` would give, or ``default``."""
        try:
            return self._lookup(name)
        except KeyError:
            return default

    def to_dict(self) -> dict[str, Any]:
        """The stored state (without the ``_store`` / ``_mapping`` fall-through)."""
        return dict(self._state)

    @property
    def pickled_args(self) -> tuple[Any, ...]:
        """The arguments the pickle constructed this object with."""
        return object.__getattribute__(self, "_args")

    @property
    def pickled_items(self) -> dict[Any, Any]:
        """Items the pickle set on it (a pickled dict subclass)."""
        return object.__getattribute__(self, "_items")

    @property
    def pickled_elements(self) -> list[Any]:
        """Elements the pickle appended to it (a pickled list subclass)."""
        return object.__getattribute__(self, "_elements")

    def __repr__(self) -> str:
        return f"<PickledRecord {self._pickled_module}.{self._pickled_name} keys={sorted(self._state)}>"


@functools.lru_cache(maxsize=None)
def _record_class(module: str, name: str) -> type[PickledRecord]:
    """The :class:`PickledRecord` subclass standing in for ``module.name`` (one per global)."""
    safe = re.sub(r"\W", "_", name) or "Record"
    return type(safe, (PickledRecord,), {"_pickled_module": module, "_pickled_name": name, "__module__": __name__})


def _is_record_global(module: str, name: str) -> bool:
    if (module, name) in RECORD_GLOBALS:
        return True
    return any(module == m or module.startswith(m + ".") for m in RECORD_MODULES)


# ============================================================================ (b) the restricted unpickler
def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes (latin-1 only)."""
    if not isinstance(obj, str) or str(encoding).lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return obj.encode("latin-1", errors="strict")


def _wrap_function(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A fresh wrapper, so that a BUILD opcode aimed at an allowed function can only touch the
    wrapper, never the library's function (its ``__defaults__``, say)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


def _safe_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` as protocol 0/1 pickles use it, for record classes only."""
    if isinstance(cls, type) and issubclass(cls, PickledRecord) and base is object:
        return cls()
    raise pickle.UnpicklingError(f"refusing copyreg._reconstructor for {cls!r}")


def _numpy_core() -> types.ModuleType:
    import numpy as np

    return np._core if hasattr(np, "_core") else np.core  # numpy 2 renamed numpy.core


def _resolve(module: str, name: str) -> Any:
    """The object an allowed global stands for; raises ``pickle.UnpicklingError`` for any other."""
    # Python 2 names, as pickle itself maps them for protocol < 3 (``__builtin__.long`` -> ``builtins.int``)
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]

    if _is_record_global(module, name):
        return _record_class(module, name)
    if module == "builtins" and name in _BUILTINS:
        return getattr(builtins, name)
    if module == "collections" and name in ("OrderedDict", "defaultdict"):
        return getattr(collections, name)
    if module in ("_codecs", "codecs") and name == "encode":
        return _latin1_encode
    if module == "copyreg" and name == "_reconstructor":
        return _safe_reconstructor

    import numpy as np
    import torch

    if module == "torch._utils" and name in _TORCH_REBUILD_FUNCTIONS and hasattr(torch._utils, name):
        return _wrap_function(getattr(torch._utils, name))
    if module == "torch.serialization" and name == "_get_layout":
        return _wrap_function(torch.serialization._get_layout)
    if module == "torch":
        if name in ("Size", "device"):
            return getattr(torch, name)
        obj = getattr(torch, name, None)
        if isinstance(obj, (torch.dtype, torch.layout, torch.memory_format)):
            return obj
        if name.endswith("Storage") and isinstance(obj, type):
            return obj
    if module == "torch.storage" and name in ("UntypedStorage", "TypedStorage"):
        return getattr(torch.storage, name)
    if module in _NUMPY_MULTIARRAY and name in ("_reconstruct", "scalar"):
        return _wrap_function(getattr(_numpy_core().multiarray, name))
    if module in _NUMPY_NUMERIC and name == "_frombuffer":
        return _wrap_function(getattr(_numpy_core().numeric, name))
    if module == "numpy" and name in ("dtype", "ndarray"):
        return getattr(np, name)
    if module == "numpy.dtypes" and name.endswith("DType"):
        obj = getattr(getattr(np, "dtypes", None), name, None)
        if isinstance(obj, type):
            return obj
    raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


class RestrictedUnpickler(pickle.Unpickler):
    """A :class:`pickle.Unpickler` that resolves only allowed globals (see the module docstring).

    Tensors, storages, numpy arrays, scalars and dtypes, and builtin containers are rebuilt; the
    known foreign classes become :class:`PickledRecord` subclasses; every other global raises
    ``pickle.UnpicklingError("refusing to load <module>.<name> from <source>")``.

    Args:
        file: the binary stream, as for :class:`pickle.Unpickler`.
        source: what to name in error messages (usually the file name).
    """

    def __init__(self, file: Any, *, source: str = "<pickle>", **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:  # noqa: D401 - pickle API
        try:
            return _resolve(module, name)
        except pickle.UnpicklingError as exc:
            raise pickle.UnpicklingError(f"{exc} from {self.source}") from None


def _pickle_module(source: str) -> types.ModuleType:
    """A ``pickle``-like module around :class:`RestrictedUnpickler`, for ``torch.load(pickle_module=...)``.

    torch subclasses its ``Unpickler`` (resolving storage classes itself, to inert storage types) and
    calls its ``find_class`` for every other global; legacy (pre-zip) files also go through ``load``.
    """

    class Unpickler(RestrictedUnpickler):
        def __init__(self, file: Any, **kwargs: Any) -> None:
            super().__init__(file, source=source, **kwargs)

    def load(file: Any, **kwargs: Any) -> Any:
        return Unpickler(file, **kwargs).load()

    def loads(data: bytes, **kwargs: Any) -> Any:
        return Unpickler(io.BytesIO(data), **kwargs).load()

    module = types.ModuleType("benchmark_restricted_pickle")
    module.Unpickler = Unpickler  # type: ignore[attr-defined]
    module.load = load  # type: ignore[attr-defined]
    module.loads = loads  # type: ignore[attr-defined]
    module.UnpicklingError = pickle.UnpicklingError  # type: ignore[attr-defined]
    module.__version__ = "1"  # type: ignore[attr-defined]
    return module


# ============================================================================ messages
def _one_line(text: Any, limit: int = 300) -> str:
    s = re.sub(r"\x1b\[[0-9;]*m", "", str(text))  # torch colours parts of its messages
    parts = [p.strip() for p in s.splitlines() if p.strip()]
    s = "; ".join(parts)
    return s if len(s) <= limit else s[: limit - 3].rstrip() + "..."


def _exc_text(exc: BaseException) -> str:
    """``"<ExceptionType>: <one-line reason>"``; for torch's weights_only refusals, just the reason.

    torch wraps the reason ("Unsupported global: GLOBAL x.y ...", "Trying to load unsupported
    GLOBAL posix.system ...") in paragraphs of advice about ``weights_only=False``, which is the
    one thing not to do here.
    """
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    found = re.search(r"(?i)unsupported (?:global:?\s+)?GLOBAL\s+([\w.]+)", text)
    if found:
        return f"{type(exc).__name__}: unsupported global {found.group(1)}"
    if text.startswith("Weights only load failed"):
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
        reasons = [p for p in paragraphs[1:] if not p.startswith("Check the documentation")]
        if reasons:
            text = re.sub(r"^WeightsUnpickler error:\s*", "", " ".join(reasons))
    msg = _one_line(text)
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


# ============================================================================ loading
def weights_only_globals() -> list[Any]:
    """The globals added to torch's weights_only allow-list in :func:`load_weights`.

    numpy scalars (``numpy.core.multiarray.scalar``, under its numpy 1 and numpy 2 names), arrays
    (``_reconstruct``, ``ndarray``) and dtypes (``numpy.dtype`` and the ``numpy.dtypes`` classes):
    each only builds a number or an array of numbers (an object array's elements are still
    unpickled by torch's restricted unpickler).
    """
    import numpy as np

    core = _numpy_core()
    out: list[Any] = [np.dtype, np.ndarray]
    for module in _NUMPY_MULTIARRAY:
        out.append((core.multiarray.scalar, f"{module}.scalar"))
        out.append((core.multiarray._reconstruct, f"{module}._reconstruct"))
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        out.extend(obj for name, obj in vars(dtypes).items() if name.endswith("DType") and isinstance(obj, type))
    return out


def load_weights(path: PathLike, *, extra_globals: Iterable[Any] = (), map_location: Any = "cpu") -> Any:
    """(a) ``torch.load(path, weights_only=True)`` with :func:`weights_only_globals` allowed.

    For checkpoints this project writes and any file of tensors and plain containers.

    Args:
        extra_globals: more globals to allow, as ``torch.serialization.safe_globals`` takes them
            (classes or ``(object, "module.name")`` pairs); only for classes that rebuild plain data.
        map_location: as for ``torch.load`` (default: CPU).

    Raises:
        SafeLoadError: the file names a global outside the allow-list, or is not a torch file.
        OSError: the file cannot be opened.
    """
    import torch

    allowed = [*weights_only_globals(), *extra_globals]
    # torch < 2.5 has no allow-list context: plain weights_only there (numpy values then take path (b))
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation notes about pickled numpy names say nothing actionable
            with safe_globals(allowed) if safe_globals is not None else contextlib.nullcontext():
                return torch.load(str(path), map_location=map_location, weights_only=True)
    except OSError:
        raise
    except Exception as exc:
        raise SafeLoadError(path, f"torch.load(weights_only=True) failed: {_exc_text(exc)}") from exc


def load_foreign(path: PathLike, *, map_location: Any = "cpu") -> Any:
    """(b) ``torch.load`` (zip or legacy format) through :class:`RestrictedUnpickler`.

    For pickles written by other projects that :func:`load_weights` cannot read; objects of the
    known foreign classes come back as :class:`PickledRecord` objects.

    Raises:
        SafeLoadError: the file names a global that is neither allowed nor a known foreign class
            (the message names it), or is not a torch file.
        OSError: the file cannot be opened.
    """
    import torch

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(str(path), map_location=map_location, pickle_module=_pickle_module(path.name), weights_only=False)
    except OSError:
        raise
    except Exception as exc:
        raise SafeLoadError(path, _exc_text(exc)) from exc


def load(path: PathLike, *, map_location: Any = "cpu") -> Any:
    """The policy for any torch file: :func:`load_weights`, else :func:`load_foreign`.

    Raises:
        SafeLoadError: neither can read the file (the message is (b)'s reason, which names a
            refused global).
        OSError: the file cannot be opened.
    """
    try:
        return load_weights(path, map_location=map_location)
    except SafeLoadError:
        return load_foreign(path, map_location=map_location)
