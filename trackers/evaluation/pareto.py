"""The measured speed-accuracy front: each tracker's test score (``metrics.json``) joined with its speed record.

A point is a test run (the ``metrics.json`` that `lightning test` writes next to the raw results) and
one record of a speed JSON: `lightning benchmark tracker --json` (end-to-end FPS, precision and
backend; by default ``tracker_speed.json`` beside ``metrics.json``) or `lightning benchmark model
--json` (network-only FPS, no precision/backend: fp32 / torch). The front is the set of points no
other point beats on both axes, so a compressed tracker earns its place only by being faster at
equal accuracy or better at equal speed. Reading, joining and front marking only; the plot lives in
``trackers.evaluation.plots``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trackers.errors import BadFileError, MissingFileError, SetupError
from trackers.evaluation.result_files import METRICS_FILE
# `benchmark model` records carry no precision/backend keys: they measured the defaults
from trackers.inference.runtime import BACKENDS, DEFAULT_BACKEND, DEFAULT_PRECISION, PRECISIONS, runtime_suffix

TRACKER_SPEED_FILE = "tracker_speed.json"  # `lightning benchmark tracker --json`'s default, beside metrics.json
DEFAULT_SCORE = "pytracking.AUC"
SELECTORS = ("record", "precision", "backend")  # keys a point spec may use to pick one speed record
# What `lightning test --precision/--backend` appends to the results folder and tracker name (fp32/torch:
# nothing; trackers.inference.runtime.runtime_suffix): `benchmark tracker` writes the JSON of all of them
# beside the fp32/torch results, with each record named like its results folder.
RUNTIME_SUFFIX_PARTS = tuple(p for p in (*PRECISIONS, *BACKENDS) if p not in (DEFAULT_PRECISION, DEFAULT_BACKEND))


@dataclass(frozen=True)
class PointSpec:
    """One point as the user names it: ``NAME=RESULTS[,SPEED_JSON][,record=R][,precision=P][,backend=B]``."""

    name: str
    results: Path  # a results folder holding metrics.json, the file itself, or a run folder with exactly one below
    speed_json: Path | None = None  # None: tracker_speed.json beside metrics.json
    select: tuple[tuple[str, str], ...] = ()  # (selector, value) pairs narrowing the speed records


@dataclass
class ParetoPoint:
    name: str
    score: float
    fps: float
    precision: str
    backend: str
    timing: str  # "end-to-end" (benchmark tracker) or "network" (benchmark model)
    device: str
    on_front: bool
    metrics_file: str
    speed_file: str
    speed_record: str
    benchmark: str = "?"  # metrics.json's benchmark: one front compares runs on one benchmark

    @property
    def label(self) -> str:
        """The name, with the runtime added unless the name already ends with it (``ostrack_bf16``)."""
        suffix = runtime_suffix(self.precision, self.backend)
        return self.name if self.name.endswith(suffix) else f"{self.name} ({self.precision}, {self.backend})"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "label": self.label}


def parse_point_spec(text: str) -> PointSpec:
    """``NAME=RESULTS[,SPEED_JSON][,key=value ...]``; a bare ``RESULTS`` is named after its folder."""
    name, sep, rest = text.partition("=")
    if not sep or "," in name:
        name, rest = "", text
    results, *extras = rest.split(",")
    speed_json, select = None, []
    for extra in extras:
        key, eq, value = extra.partition("=")
        if eq and key in SELECTORS:
            select.append((key, value))
        elif not eq and speed_json is None:
            speed_json = Path(extra)
        else:
            raise SetupError(f"--pareto {text!r}: cannot read {extra!r}; use NAME=RESULTS[,SPEED_JSON]"
                             f"[,record=R][,precision=P][,backend=B]")
    if not results:
        raise SetupError(f"--pareto {text!r} names no results folder; use NAME=RESULTS[,SPEED_JSON]")
    path = Path(results)
    return PointSpec(name or (path.parent.name if path.name == METRICS_FILE else path.name), path, speed_json,
                     tuple(select))


def find_metrics_file(results: Path) -> Path:
    """The ``metrics.json`` of a point: the file, the one in the folder, or the only one below a run folder."""
    if results.is_file():
        return results
    if not results.is_dir():
        raise MissingFileError(f"{results} does not exist; pass the results folder of a `lightning test` run")
    if (results / METRICS_FILE).is_file():
        return results / METRICS_FILE
    found = sorted(results.rglob(METRICS_FILE))
    if len(found) == 1:
        return found[0]
    if not found:
        raise MissingFileError(f"no {METRICS_FILE} in or below {results}; run `lightning test` first or pass "
                               "the folder that holds its metrics.json")
    raise SetupError(f"{len(found)} {METRICS_FILE} files below {results} (e.g. {found[0]}); pass the results "
                     "folder of one of them")


def read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise MissingFileError(f"{what} {path} does not exist")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BadFileError(f"{what} {path} is not readable JSON ({err}); rewrite it") from None


def read_score(metrics_file: Path, score: str = DEFAULT_SCORE) -> float:
    """``score`` (``CONVENTION.KEY``, e.g. ``pytracking.AUC``) from a `lightning test` metrics.json."""
    record = read_json(metrics_file, "metrics file")
    convention, _, key = score.partition(".")
    value = record.get("metrics", {}).get(convention, {}).get(key) if isinstance(record, dict) else None
    if not isinstance(value, (int, float)):
        raise BadFileError(f"{metrics_file} has no metrics.{convention}.{key}; pass --score CONVENTION.KEY "
                           "of a score it holds")
    return float(value)


def speed_records(speed_file: Path) -> list[dict[str, Any]]:
    """The timing records of a speed JSON (a list, or one record); entries without ``name`` and ``fps``
    (e.g. `benchmark model`'s early-exit sections) are not points."""
    data = read_json(speed_file, "speed JSON")
    records = data if isinstance(data, list) else [data]
    return [r for r in records if isinstance(r, dict) and "name" in r and isinstance(r.get("fps"), (int, float))]


def select_record(records: Sequence[Mapping[str, Any]], select: Sequence[tuple[str, str]], speed_file: Path,
                  point: str) -> Mapping[str, Any]:
    """The one record matching every selector (``record``: the record's name, or its 1-based position in
    the file); a missing or ambiguous choice is an error that lists what the file holds."""
    def matches(index: int, rec: Mapping[str, Any]) -> bool:
        for key, value in select:
            if key == "record":
                if str(rec["name"]) != value and not (value.isdigit() and int(value) == index + 1):
                    return False
                continue
            default = {"precision": DEFAULT_PRECISION, "backend": DEFAULT_BACKEND}[key]
            if str(rec.get(key, default)) != value:
                return False
        return True

    found = [r for i, r in enumerate(records) if matches(i, r)]
    held = "; ".join(f"{i}: {r['name']} ({r.get('precision', DEFAULT_PRECISION)}, "
                     f"{r.get('backend', DEFAULT_BACKEND)})" for i, r in enumerate(records, 1)) or "none"
    wanted = ",".join(f"{k}={v}" for k, v in select) or "any"
    if not found:
        raise SetupError(f"point {point}: no speed record matching {wanted} in {speed_file} (it holds: {held})")
    if len(found) > 1:
        raise SetupError(f"point {point}: {len(found)} speed records match {wanted} in {speed_file} ({held}); "
                         "add ,record=NAME|N or ,precision=P / ,backend=B to the --pareto entry")
    return found[0]


def mark_front(scores: Sequence[float], fps: Sequence[float]) -> list[bool]:
    """True for each point that no other point dominates (higher-or-equal score and FPS, one strictly
    higher); equal points do not dominate each other, so both stay on the front."""
    points = list(zip(scores, fps, strict=True))
    return [not any(s2 >= s and f2 >= f and (s2 > s or f2 > f) for s2, f2 in points) for s, f in points]


def runtime_base_name(folder_name: str) -> str:
    """The fp32/torch results folder name of a run: ``ostrack_int8_onnxruntime`` -> ``ostrack``."""
    name = folder_name
    while (stem := name.rpartition("_"))[1] and stem[2] in RUNTIME_SUFFIX_PARTS:
        name = stem[0]
    return name


def default_speed_file(metrics_file: Path) -> Path:
    """``tracker_speed.json`` beside ``metrics.json``, else beside the fp32/torch sibling results folder
    (where `lightning benchmark tracker` writes the records of every precision and backend)."""
    beside = metrics_file.parent / TRACKER_SPEED_FILE
    sibling = metrics_file.parent.parent / runtime_base_name(metrics_file.parent.name) / TRACKER_SPEED_FILE
    return sibling if not beside.is_file() and sibling.is_file() else beside


def join_point(spec: PointSpec, score: str = DEFAULT_SCORE) -> ParetoPoint:
    """Read one point's score and speed record (front marking comes later, over all points).

    Without selectors, a speed JSON of several records gives the one named like the test run's tracker
    (``metrics.json``'s ``tracker``, e.g. ``ostrack_int8``), as `benchmark tracker` names them.
    """
    metrics_file = find_metrics_file(spec.results)
    speed_file = spec.speed_json or default_speed_file(metrics_file)
    if not speed_file.is_file():
        raise MissingFileError(f"point {spec.name}: no speed JSON {speed_file}; write it with `lightning benchmark "
                               "tracker --json` (or `benchmark model --json`) or pass NAME=RESULTS,SPEED_JSON")
    value = read_score(metrics_file, score)
    records = speed_records(speed_file)
    select = spec.select
    metrics = read_json(metrics_file, "metrics file")
    tracker = metrics.get("tracker")
    if not select and len(records) > 1 and [r["name"] for r in records].count(tracker) == 1:
        select = (("record", str(tracker)),)
    record = select_record(records, select, speed_file, spec.name)
    return ParetoPoint(
        name=spec.name, score=value, fps=float(record["fps"]),
        precision=str(record.get("precision", DEFAULT_PRECISION)), backend=str(record.get("backend", DEFAULT_BACKEND)),
        timing="end-to-end" if "end_to_end" in record else "network", device=str(record.get("device", "?")),
        on_front=False, metrics_file=str(metrics_file), speed_file=str(speed_file), speed_record=str(record["name"]),
        benchmark=str(metrics.get("benchmark", "?")),
    )


def pareto_points(specs: Sequence[PointSpec], score: str = DEFAULT_SCORE) -> list[ParetoPoint]:
    """Every point joined and marked, in the order given."""
    labels = [s.name for s in specs]
    if len(set(labels)) != len(labels):
        raise SetupError(f"two --pareto points share a name ({sorted(labels)}); name them NAME=RESULTS")
    points = [join_point(spec, score) for spec in specs]
    benchmarks = {p.benchmark for p in points}
    if len(benchmarks) > 1:
        by = ", ".join(f"{p.name}: {p.benchmark}" for p in points)
        raise SetupError(f"--pareto points were tested on different benchmarks ({by}); a front compares one benchmark")
    for point, on_front in zip(points, mark_front([p.score for p in points], [p.fps for p in points]), strict=True):
        point.on_front = on_front
    return points


def format_pareto_table(points: Sequence[ParetoPoint], score: str = DEFAULT_SCORE) -> str:
    """Fixed-width table, best score first; ``*`` marks the front."""
    header = ["Tracker", score.partition(".")[2] or score, "FPS", "Timing", "Precision", "Backend", "Device", "Front"]
    cells = [header] + [[p.name, f"{p.score:.2f}", f"{p.fps:.1f}", p.timing, p.precision, p.backend, p.device,
                         "*" if p.on_front else ""] for p in sorted(points, key=lambda p: (-p.score, -p.fps))]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def write_pareto(points: Sequence[ParetoPoint], out_dir: str | Path, score: str = DEFAULT_SCORE,
                 title: str = "") -> dict[str, Path]:
    """``pareto.png`` (score vs FPS, front marked), ``pareto.json`` and ``pareto.txt`` in ``out_dir``."""
    from trackers.evaluation.plots import plot_pareto

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"plot": out_dir / "pareto.png", "json": out_dir / "pareto.json", "table": out_dir / "pareto.txt"}
    plot_pareto(points, paths["plot"], score_label=score.partition(".")[2] or score, title=title)
    paths["json"].write_text(json.dumps({"score": score, "points": [p.as_dict() for p in points]}, indent=2) + "\n")
    paths["table"].write_text(format_pareto_table(points, score) + "\n")
    return paths
