"""On-disk cache of reader annotation indexes: parse thousands of annotation files once per dataset.

A cache file is keyed by the reader's identity (type, resolved root, split, split file, reader
version, options) and lives under ``$DISTILTRACK_CACHE`` (default ``~/.cache/distiltrack``),
never inside a dataset root, which may be read-only. It is rebuilt when stale: an annotation or
list file modified after the cache was built, a file added or removed, or a new reader version
(a different key). ``DISTILTRACK_CACHE=off`` disables it. Files are plain ``np.savez`` arrays,
written atomically, so concurrent DDP ranks never read a half-written cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from datamodules.readers.annotation_index import AnnotationIndex

if TYPE_CHECKING:
    from datamodules.readers.base import SequenceReader

CACHE_ENV = "DISTILTRACK_CACHE"
CACHE_DISABLED = ("off", "none", "0")
_FIELDS = ("names", "offsets", "boxes", "valid", "visible", "present", "class_ids", "class_names", "errors", "notes")
_EXTRA_PREFIX = "extra__"


def cache_dir() -> Path | None:
    """Folder of the annotation cache files, or None when caching is disabled."""
    value = os.environ.get(CACHE_ENV, "")
    if value.lower() in CACHE_DISABLED:
        return None
    base = Path(value).expanduser() if value else Path.home() / ".cache" / "distiltrack"
    return base / "annotations"


def cache_path(reader: SequenceReader) -> Path | None:
    folder = cache_dir()
    if folder is None:
        return None
    digest = hashlib.sha1(_identity_text(reader).encode()).hexdigest()[:20]
    return folder / f"{reader.type_name}-{digest}.npz"


def load_or_build_index(reader: SequenceReader) -> AnnotationIndex:
    """The reader's index from its cache file when fresh; otherwise parsed now and cached."""
    path = cache_path(reader)
    sources = reader.source_files()
    if path is None or not sources:  # nothing on disk to parse (in-memory readers): nothing to cache
        return reader.build_index()
    count, newest = source_fingerprint(sources)
    index = _load(path, _identity_text(reader), count, newest)
    if index is not None:
        return index
    started = time.time_ns()
    index = reader.build_index()
    _save(path, index, _identity_text(reader), count, started)
    return index


def source_fingerprint(files: list[Path]) -> tuple[int, int]:
    """(number of existing files, newest modification time in ns) of the index's source files."""
    count, newest = 0, 0
    for file in files:
        try:
            mtime = os.stat(file).st_mtime_ns
        except OSError:
            continue
        count += 1
        newest = max(newest, mtime)
    return count, newest


def _identity_text(reader: SequenceReader) -> str:
    return json.dumps(reader.cache_identity(), sort_keys=True, default=str)


def _load(path: Path, identity: str, count: int, newest: int) -> AnnotationIndex | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if (str(data["identity"]) != identity or int(data["source_count"]) != count
                    or newest > int(data["built_at_ns"])):
                return None
            fields = {name: data[name] for name in _FIELDS}
            extra = {k[len(_EXTRA_PREFIX):]: data[k] for k in data.files if k.startswith(_EXTRA_PREFIX)}
    except (OSError, ValueError, KeyError, EOFError):  # unreadable or from an older layout: rebuild
        return None
    return AnnotationIndex(**fields, extra=extra)


def _save(path: Path, index: AnnotationIndex, identity: str, count: int, built_at_ns: int) -> None:
    arrays = {name: getattr(index, name) for name in _FIELDS}
    arrays.update({_EXTRA_PREFIX + k: v for k, v in index.extra.items()})
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, identity=np.array(identity), source_count=np.array(count),
                 built_at_ns=np.array(built_at_ns, dtype=np.int64), **arrays)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        warnings.warn(f"cannot write the annotation cache '{path}' ({exc.strerror or exc}): annotations will be "
                      f"parsed again next run; set {CACHE_ENV} to a writable folder", stacklevel=3)
