"""Checkpoint files read as data: no code from a checkpoint ever runs, and no module is imported for it.

A checkpoint is a pickle, and a pickle may call any function while it loads. What reaches DistilTrack:

- Lightning ``.ckpt`` files and plain state dicts hold tensors and plain data only. They are read by
  torch's own weights-only unpickler (``torch.load(weights_only=True)``); a ``.ckpt`` that needs
  more is refused (Lightning itself restores ``--ckpt_path`` that way).
- Official trainer files (``.pth.tar``) also pickle settings objects of their own code
  (``lib.train.admin.settings.Settings``, ``EasyDict``, meters): classes that are not importable
  here and must not be imported. After the weights-only read fails, :class:`SafeUnpickler` reads
  them with an allow-list; each unknown class becomes an inert :class:`InertObject` stand-in
  holding the pickled state as plain attributes and items.
- Anything else (truncated, corrupt, empty, a folder, a TorchScript archive) is not a checkpoint.

Every refusal is a :class:`BadFileError` (one line naming the file, what it would have called, and
the fix), so each entry point (``--ckpt_path``, teacher, init, ``track``, ``pipeline``) prints it
as one line.
"""

from __future__ import annotations

import _compat_pickle
import datetime
import pickle
import warnings
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import torch
from torch import _weights_only_unpickler

from trackers.errors import BadFileError, MissingFileError

RESAVE_HINT = "re-save the weights with torch.save(model.state_dict(), path) from a trusted copy"
TENSORS_ONLY_SUFFIXES = (".ckpt",)  # Lightning checkpoints: tensors and plain data only
LIGHTNING_SPECIAL_CKPT_PATHS = ("best", "last", "hpc", "registry")  # `--ckpt_path` values that are no file
CLASS_PATH_KEYS = ("class_path", "_class_path", "_instantiator")  # names jsonargparse / Lightning import
IMPORTABLE_CLASS_PREFIXES = ("trackers.", "callbacks.", "datamodules.", "torch.", "lightning.")

# Modules whose globals are code, never data: a reference to one of them is refused on sight
# (torch blocks sys/os/posix/nt the same way), before anything could call it.
DENIED_MODULES = frozenset(
    {
        "builtins", "os", "posix", "nt", "sys", "subprocess", "shutil", "importlib", "runpy", "code",
        "codeop", "pty", "socket", "ctypes", "marshal", "pickle", "_pickle", "copyreg", "functools",
        "operator", "types", "inspect", "io", "_io", "multiprocessing", "signal", "webbrowser", "pdb",
    }
)


class RefusedCall(Exception):
    """Raised inside the unpickler: the pickle would call ``target``; turned into a BadFileError."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


# ----------------------------------------------------------------------------- inert stand-ins
class _InertClass(type):
    """The type of every stand-in class: rebuilt the way pickle rebuilds a plain object (``__new__``,
    then its state), never called: calling one is what REDUCE / INST-with-arguments do to run code."""

    inert_name: str

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise RefusedCall(cls.inert_name)


class InertObject(metaclass=_InertClass):
    """What an instance of a class that is not imported here becomes: its pickled state as data.

    ``__dict__`` state becomes attributes (``settings.env``), dict items (an ``EasyDict``) are
    ``inert_items``, list items ``inert_list``, ``NEWOBJ`` arguments ``inert_args`` and a state
    that is no dict ``inert_state``. None of the original class's code runs.
    """

    __slots__ = ("inert_args", "inert_items", "inert_list", "inert_state", "__dict__")
    inert_name = "InertObject"

    def __new__(cls, *args: Any, **kwargs: Any) -> InertObject:
        obj = object.__new__(cls)
        obj.inert_args = (args, kwargs) if kwargs else args
        obj.inert_items = {}
        obj.inert_list = []
        obj.inert_state = None
        return obj

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and all(s is None or isinstance(s, dict) for s in state):
            state = {**(state[0] or {}), **(state[1] or {})}  # (__dict__, slots) as pickle writes them
        if not isinstance(state, dict):
            self.inert_state = state
            return
        for key, value in state.items():
            if isinstance(key, str) and not hasattr(type(self), key):  # never shadow the stand-in's own names
                self.__dict__[key] = value

    def __setitem__(self, key: Any, value: Any) -> None:
        self.inert_items[key] = value

    def __getitem__(self, key: Any) -> Any:
        return self.inert_items[key]

    def append(self, item: Any) -> None:
        self.inert_list.append(item)

    def extend(self, items: Any) -> None:
        self.inert_list.extend(items)

    def __repr__(self) -> str:
        return f"<inert {type(self).inert_name}>"


def _stand_in_class(module: str, name: str) -> type[InertObject]:
    full = f"{module}.{name}"
    return _InertClass(name, (InertObject,), {"__module__": module, "__qualname__": name, "inert_name": full})


def _reconstruct_inert(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` (protocol 0/1 objects), only for stand-ins of plain classes."""
    if not isinstance(cls, _InertClass) or base not in (object, dict, list):
        raise RefusedCall(f"copyreg._reconstructor({getattr(cls, 'inert_name', cls)!r})")
    obj = cls.__new__(cls)
    if base is dict:
        obj.inert_items.update(state or {})
    elif base is list:
        obj.inert_list.extend(state or [])
    return obj


# ----------------------------------------------------------------------------- the allow-list
def _data_globals() -> dict[str, Any]:
    """Plain containers, scalars, pure paths, dates and numpy arrays/scalars: constructors of data."""
    np_reconstruct = np.zeros(1).__reduce__()[0]
    np_scalar = np.float64(0).__reduce__()[0]
    allowed: dict[str, Any] = {
        f"builtins.{t.__name__}": t
        for t in (bytes, bytearray, set, frozenset, complex, slice, range, object, dict, list)
    }
    allowed["copyreg._reconstructor"] = _reconstruct_inert
    for name in ("PosixPath", "PurePosixPath", "Path"):
        allowed[f"pathlib.{name}"] = PurePosixPath  # a path as text: no file-system call
    for name in ("WindowsPath", "PureWindowsPath"):
        allowed[f"pathlib.{name}"] = PureWindowsPath
    for t in (datetime.datetime, datetime.date, datetime.time, datetime.timedelta, datetime.timezone):
        allowed[f"datetime.{t.__name__}"] = t
    for core in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[f"{core}._reconstruct"] = np_reconstruct
        allowed[f"{core}.scalar"] = np_scalar
    allowed["numpy.ndarray"] = np.ndarray
    allowed["numpy.dtype"] = np.dtype
    return allowed


_DATA_GLOBALS = _data_globals()


def allowed_globals() -> dict[str, Any]:
    """Torch's weights-only allow-list (tensors, storages, dtypes, rebuild functions, OrderedDict and
    whatever was added with ``torch.serialization.add_safe_globals``) plus :func:`_data_globals`."""
    return {
        **_weights_only_unpickler._get_allowed_globals(),
        **_weights_only_unpickler._get_user_allowed_globals(),
        **_DATA_GLOBALS,
    }


def python3_name(module: str, name: str) -> tuple[str, str]:
    """Protocol-2 pickles (``torch.save``'s default) write Python 2 names: ``commands.call`` is ``subprocess.call``."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def refused_global(full: str, allowed: dict[str, Any]) -> str | None:
    """What a global ``module.name`` would run if the pickle may not hold it (None: allowed or a stand-in).

    The one rule shared by the static scan of a file (before anything is unpickled) and by
    :meth:`SafeUnpickler.find_class`: allow-listed data constructors pass, globals of
    :data:`DENIED_MODULES` are refused, anything else becomes an inert stand-in.
    """
    if full in allowed:
        return None
    module, name = python3_name(*full.rsplit(".", 1))
    if f"{module}.{name}" in allowed:
        return None
    if module.split(".")[0] in DENIED_MODULES:
        return f"os.{name}" if module in ("posix", "nt") else f"{module}.{name}"  # os.system is posix.system
    return None


class SafeUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` never imports and never returns a callable outside the allow-list.

    ``find_class`` is the only way a pickle reaches a global (GLOBAL, STACK_GLOBAL, INST, OBJ and the
    EXT codes all go through it; ``torch.load`` first maps legacy ``*Storage`` names to its inert
    ``StorageType``). It answers with an allow-listed object, refuses modules of
    :data:`DENIED_MODULES`, and otherwise returns a stand-in class; no module is imported. Then, per
    opcode that calls or builds something:

    - REDUCE ``f(*args)``: ``f`` is allow-listed (torch's rebuild functions, containers: calls torch's
      weights-only mode makes too) or a stand-in class, whose metaclass refuses the call (a function
      such as ``subprocess.call`` or a class whose construction runs code).
    - NEWOBJ / NEWOBJ_EX ``cls.__new__(cls, *args)`` (how protocol 2+ rebuilds a plain object): an
      allow-listed class or a stand-in, whose ``__new__`` is inert.
    - INST / OBJ: without arguments ``cls.__new__(cls)`` (inert for stand-ins); with arguments a
      call, refused as for REDUCE.
    - BUILD: ``inst.__setstate__(state)`` of an allow-listed type (torch's Tensor / Parameter) or the
      stand-in's inert one, which never stores a name that would shadow its own methods; other
      instances get their ``__dict__`` updated, which runs nothing.
    - APPEND(S) / SETITEM(S) / ADDITEMS: built-in containers, torch's types, or the stand-in's inert
      ``append`` / ``extend`` / ``__setitem__``.
    - PERSID / BINPERSID: torch's own ``persistent_load`` (storages only), as in weights-only mode.

    Every callable the stream can ever hold is thus allow-listed or a stand-in class (attribute
    lookups such as ``extend`` or ``keys`` can only find objects the stream built). Torch's own
    weights-only unpickler (tried first) cannot serve here: it refuses SETITEMS on dict subclasses
    such as ``EasyDict`` and needs every class registered by name before the load.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._allowed = allowed_globals()
        self._stand_ins: dict[str, type[InertObject]] = {}

    def find_class(self, module: str, name: str) -> Any:
        module, name = python3_name(module, name)
        full = f"{module}.{name}"
        if full in self._allowed:
            return self._allowed[full]
        refused = refused_global(full, self._allowed)
        if refused is not None:
            raise RefusedCall(refused)
        if full not in self._stand_ins:
            self._stand_ins[full] = _stand_in_class(module, name)
        return self._stand_ins[full]


class _SafePickleModule:
    """What ``torch.load(pickle_module=...)`` uses for every pickle of a file (the legacy formats too)."""

    Unpickler = SafeUnpickler

    @staticmethod
    def load(file: Any, **kwargs: Any) -> Any:
        return SafeUnpickler(file, **kwargs).load()


# ----------------------------------------------------------------------------- reading files
def load_checkpoint_data(path: str | Path, tensors_only: bool | None = None, mmap: bool = False) -> Any:
    """The unpickled content of checkpoint ``path``, without running any code from it.

    ``tensors_only``: refuse everything torch's weights-only unpickler refuses (default: for the
    Lightning suffix ``.ckpt``); otherwise unknown classes load as :class:`InertObject`.
    ``mmap``: map tensor data instead of reading it (zip checkpoints), for a check of a large file.
    Raises :class:`MissingFileError` / :class:`BadFileError` (one line naming ``path``).
    """
    path = Path(path)
    if tensors_only is None:
        tensors_only = path.suffix in TENSORS_ONLY_SUFFIXES
    _require_file(path)
    use_mmap = mmap and zipfile.is_zipfile(path)
    try:
        with warnings.catch_warnings():  # a protocol-4 pickle is fine; the warning would break the one-line rule
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=use_mmap)
    except pickle.UnpicklingError:
        pass  # objects beyond tensors and plain data, or no pickle at all: looked at closer below
    except Exception as err:  # noqa: BLE001 - any failure to parse a file means the file is unusable
        raise _unreadable(path, err) from None
    if _is_torchscript(path):
        raise BadFileError(f"checkpoint {path} is a TorchScript archive (code); {RESAVE_HINT}")
    foreign = _foreign_globals(path)  # read from the opcodes; nothing is unpickled for it
    allowed = allowed_globals()
    refused = sorted({r for g in foreign if (r := refused_global(g, allowed)) is not None})
    if refused:
        raise _refusal(path, ", ".join(refused))
    if tensors_only:  # nothing more is unpickled: the weights-only read above already said no
        raise BadFileError(
            f"checkpoint {path} refused: a Lightning checkpoint holds tensors and plain data only, this one holds "
            f"{', '.join('.'.join(python3_name(*g.rsplit('.', 1))) for g in foreign[:3]) or 'objects torch does not allow'}; "
            f"{RESAVE_HINT}"
        )
    obj = _load_with_allow_list(path, use_mmap)
    classes = sorted({type(o).inert_name for o in _inert_objects(obj)})
    if classes:
        warnings.warn(
            f"{path}: holds non-tensor objects of {', '.join(classes[:3])}; read as inert stand-ins (none of "
            f"their code ran)",
            stacklevel=3,
        )
    return obj


def _load_with_allow_list(path: Path, use_mmap: bool) -> Any:
    """An official file with settings objects, unpickled by :class:`SafeUnpickler` only.

    ``torch.load`` serves as the archive reader (storages, legacy formats, ``map_location``); every
    pickle in the file goes through ``pickle_module``, i.e. :class:`SafeUnpickler`'s allow-list
    (torch's wrapper only maps legacy ``*Storage`` names to its inert ``StorageType`` before
    delegating to our ``find_class``). TorchScript archives, the one case where torch would hand the
    file to another loader, are refused before this is reached, and so is every file whose opcodes
    name a global of :data:`DENIED_MODULES`.
    """
    try:  # allow-list unpickler: every global goes through SafeUnpickler.find_class (weights_only=True refuses
        # a custom pickle_module, and its own unpickler cannot fill the EasyDict settings of official files)
        return torch.load(path, map_location="cpu", weights_only=False, mmap=use_mmap, pickle_module=_SafePickleModule)
    except RefusedCall as refused:  # a call the static scan could not see (legacy formats)
        raise _refusal(path, refused.target) from None
    except Exception as err:  # noqa: BLE001 - any failure to parse a file means the file is unusable
        raise _unreadable(path, err) from None


def _foreign_globals(path: Path) -> list[str]:
    """Globals a zip checkpoint's pickles name beyond torch's weights-only allow-list, read from the
    opcodes without unpickling (torch's ``get_unsafe_globals_in_checkpoint``); legacy files: none
    listed, the allow-list unpickler alone decides."""
    if not zipfile.is_zipfile(path):
        return []
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # noqa: BLE001 - an archive torch cannot scan is judged by the unpickler
        return []


def _refusal(path: Path, target: str) -> BadFileError:
    return BadFileError(
        f"checkpoint {path} refused: loading it would call {target} (code, not data; nothing was run); {RESAVE_HINT}"
    )


def check_checkpoint_file(path: str | Path) -> Any:
    """Refuse ``path`` (one-line error) unless it loads as data; tensor bytes are mapped, not read."""
    return load_checkpoint_data(path, mmap=True)


def check_ckpt_path(ckpt_path: str | Path | None, flag: str = "--ckpt_path") -> None:
    """Validate a Lightning ``ckpt_path`` before Lightning reads it (``torch.load``, hyper-parameters).

    Lightning's own names (``last``, ``best``, ...) that are not a file are left to Lightning; a
    remote URL is refused (Lightning would unpickle a download without the weights-only check).
    LightningCLI re-parses the checkpoint's ``hyper_parameters``, and jsonargparse imports every
    ``class_path`` named there: those must name classes of this project, torch or Lightning.
    """
    if ckpt_path is None:
        return
    text = str(ckpt_path)
    if "://" in text:
        raise BadFileError(f"{flag} {text}: download the checkpoint first; remote checkpoints are not read")
    if text.split(":")[0] in LIGHTNING_SPECIAL_CKPT_PATHS and not Path(text).exists():
        return
    try:
        content = load_checkpoint_data(text, tensors_only=True, mmap=True)
    except MissingFileError:
        raise MissingFileError(f"{flag} {text} does not exist; pass the path of a .ckpt file") from None
    hparams = content.get("hyper_parameters", {}) if isinstance(content, dict) else None
    if not isinstance(hparams, dict):
        raise BadFileError(f"{flag} {text} is no Lightning checkpoint (no dict of hyper_parameters); "
                           f"pass a .ckpt written by `lightning fit`")
    for target in _class_paths(hparams):
        if not target.startswith(IMPORTABLE_CLASS_PREFIXES):
            raise BadFileError(
                f"{flag} {text} refused: its hyper_parameters name {target!r}, which LightningCLI would import; "
                f"only {', '.join(IMPORTABLE_CLASS_PREFIXES)}* classes are accepted"
            )


def _class_paths(node: Any) -> list[str]:
    """Every ``class_path`` / ``_class_path`` / ``_instantiator`` string in a hyper-parameter tree."""
    if isinstance(node, dict):
        own = [v for k, v in node.items() if k in CLASS_PATH_KEYS and isinstance(v, str)]
        return own + [found for v in node.values() for found in _class_paths(v)]
    if isinstance(node, (list, tuple)):
        return [found for v in node for found in _class_paths(v)]
    return []


def _require_file(path: Path) -> None:
    if path.is_dir():
        raise BadFileError(f"checkpoint {path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise MissingFileError(
            f"checkpoint {path} does not exist; fix the checkpoint path in the config or command line"
        )


def _unreadable(path: Path, err: BaseException) -> BadFileError:
    if isinstance(err, OSError) and err.strerror:
        return BadFileError(f"cannot read checkpoint {path}: {err.strerror}")
    if path.stat().st_size == 0:
        return BadFileError(f"checkpoint {path} is empty; copy or download it again")
    message = " ".join(str(err).split()).split(". ")[0][:100]
    reason = message if len(message) > 12 else f"{type(err).__name__} {message}".strip()
    return BadFileError(f"checkpoint {path} is truncated or corrupt, not a torch checkpoint ({reason}); "
                        f"copy or download it again")


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives hold code; torch's full (non-weights-only) loading would hand them to ``torch.jit.load``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(Path(name).name == "constants.pkl" for name in archive.namelist())


def _inert_objects(obj: Any, depth: int = 0) -> list[InertObject]:
    """The stand-ins inside ``obj`` (containers walked a few levels deep), for the refusal message."""
    if isinstance(obj, InertObject):
        return [obj]
    if depth > 4:
        return []
    if isinstance(obj, dict):
        children: Any = obj.values()
    elif isinstance(obj, (list, tuple, set, frozenset)):
        children = obj
    else:
        return []
    return [found for child in children for found in _inert_objects(child, depth + 1)]
