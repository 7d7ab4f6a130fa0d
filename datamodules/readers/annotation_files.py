"""Parsing of the plain-text annotation files of the tracking datasets (spec tracking_ecosystem §1).

The one place where ``groundtruth.txt``, flag/label files and ``meta_info.ini`` are read, for the
training readers and for evaluation alike. The fast path converts the whole file with numpy at
once; only when that fails is the file scanned line by line, so that the error names the file and
the first bad line (a malformed line must never silently shift the frames after it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trackers.errors import BadFileError


class AnnotationError(BadFileError):
    """An annotation file is missing, empty or malformed; the message names the file (and line)."""


def read_annotation_text(path: Path) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise AnnotationError(f"cannot read annotation file '{path}': {exc.strerror or exc}") from None


def read_boxes(path: Path) -> np.ndarray:
    """(L, 4) float64 boxes of a ``x,y,w,h``-per-line file (comma or whitespace separated)."""
    return read_rows(path, columns=4, what="x,y,w,h")


def read_rows(path: Path, columns: int, what: str) -> np.ndarray:
    """(L, columns) float64 of a file holding ``columns`` numbers per line."""
    text = read_annotation_text(path)
    lines = text.strip().splitlines()
    if not lines:
        raise AnnotationError(f"annotation file '{path}' is empty: expected one '{what}' line per frame")
    values = _numbers(text)
    if values is not None and values.size == columns * len(lines) and (_fields_per_line(text) == columns).all():
        return values.reshape(len(lines), columns)
    raise _first_bad_line(path, lines, columns, what) or AnnotationError(
        f"annotation file '{path}' cannot be parsed as one '{what}' line per frame")


def read_flags(path: Path) -> np.ndarray:
    """(L,) int64 per-frame flags or labels: LaSOT's one comma-separated line or GOT-10k's one value per line."""
    text = read_annotation_text(path)
    lines = text.strip().splitlines()
    if not lines:
        raise AnnotationError(f"annotation file '{path}' is empty: expected one integer per frame")
    values = _numbers(text)
    if values is None or not np.isfinite(values).all() or (values != np.round(values)).any():
        raise _first_bad_line(path, lines, None, "integer flags") or AnnotationError(
            f"annotation file '{path}' holds a non-integer flag")
    return values.astype(np.int64)


def read_key_values(path: Path) -> dict[str, str]:
    """``key: value`` lines of an ini-like file such as GOT-10k's ``meta_info.ini`` (section headers skipped)."""
    out: dict[str, str] = {}
    for line in read_annotation_text(path).splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.lstrip().startswith("["):
            out[key.strip()] = value.strip()
    return out


def read_name_list(path: Path) -> list[str]:
    """Non-empty stripped lines of a list file (split lists, ``list.txt``)."""
    return [line.strip() for line in read_annotation_text(path).splitlines() if line.strip()]


def _numbers(text: str) -> np.ndarray | None:
    try:
        return np.array(text.replace(",", " ").split(), dtype=np.float64)
    except ValueError:
        return None


def _fields_per_line(text: str) -> np.ndarray:
    """Number of comma/whitespace separated fields on each line between the first and last non-blank one."""
    data = np.frombuffer(text.strip().encode(), np.uint8)
    newline = data == ord("\n")
    separator = newline | (data == ord(",")) | (data == ord(" ")) | (data == ord("\t")) | (data == ord("\r"))
    starts = ~separator & np.concatenate([[True], separator[:-1]])  # first byte of each field
    return np.bincount(np.cumsum(newline)[starts], minlength=int(newline.sum()) + 1)


def _first_bad_line(path: Path, lines: list[str], columns: int | None, what: str) -> AnnotationError | None:
    """The error for the first line that does not hold ``columns`` numbers (any count when None), or None."""
    for number, line in enumerate(lines, start=1):
        fields = line.replace(",", " ").split()
        try:
            parsed = [float(f) for f in fields]
        except ValueError:
            return AnnotationError(f"annotation file '{path}' line {number}: non-numeric entry in {line.strip()!r} "
                                   f"(expected {what}); fix or remove the line")
        if columns is not None and len(parsed) != columns:
            return AnnotationError(f"annotation file '{path}' line {number}: {len(parsed)} numbers in "
                                   f"{line.strip()!r}, expected {columns} ({what}); fix or remove the line")
        if columns is None and any(not np.isfinite(v) or v != round(v) for v in parsed):
            return AnnotationError(f"annotation file '{path}' line {number}: {line.strip()!r} is not {what}")
    return None
