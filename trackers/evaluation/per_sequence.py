"""Two trackers on the same benchmark, sequence by sequence: where does the student lose to its teacher?

Each sequence is scored alone by ``analysis.evaluate_results`` (pytracking's success AUC, the
per-sequence scoring of `lightning analyze`); the differences ``other - reference`` are sorted,
largest loss first. When the benchmark ships per-sequence attribute files (LaSOT's toolkit
``annos/att/<seq>.txt``, UAV123's ``anno/UAV123/att/<seq>.txt``: one line of 0/1 flags) the mean
AUC of both trackers over the sequences of each attribute is reported too, as the toolkits' attribute
plots do (the mean of per-sequence AUCs is pytracking's dataset AUC, so the numbers agree).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trackers.errors import BadFileError
from trackers.evaluation.analysis import SequenceAnnotation, evaluate_results
from trackers.evaluation.metrics_pytracking import InvalidResultsError

SCORE_KEY = "AUC"
# The attribute flags, in file order, of the benchmarks that ship them (names as in their toolkits).
ATTRIBUTE_NAMES: dict[str, tuple[tuple[str, str], ...]] = {
    "lasot": (
        ("IV", "Illumination Variation"), ("POC", "Partial Occlusion"), ("DEF", "Deformation"),
        ("MB", "Motion Blur"), ("CM", "Camera Motion"), ("ROT", "Rotation"), ("BC", "Background Clutter"),
        ("VC", "Viewpoint Change"), ("SV", "Scale Variation"), ("FOC", "Full Occlusion"), ("FM", "Fast Motion"),
        ("OV", "Out-of-View"), ("LR", "Low Resolution"), ("ARC", "Aspect Ratio Change"),
    ),
    "uav123": (
        ("SV", "Scale Variation"), ("ARC", "Aspect Ratio Change"), ("LR", "Low Resolution"), ("FM", "Fast Motion"),
        ("FOC", "Full Occlusion"), ("POC", "Partial Occlusion"), ("OV", "Out-of-View"),
        ("BC", "Background Clutter"), ("IV", "Illumination Variation"), ("VC", "Viewpoint Change"),
        ("CM", "Camera Motion"), ("SOB", "Similar Object"),
    ),
}
ATTRIBUTE_NAMES["lasot_extension"] = ATTRIBUTE_NAMES["lasot"]
# Where each benchmark's attribute files live, relative to its dataset root (first existing folder wins).
ATTRIBUTE_DIRS: dict[str, tuple[str, ...]] = {
    "lasot": ("annos/att", "att"),
    "lasot_extension": ("annos/att", "att"),
    "uav123": ("anno/UAV123/att",),
}


def read_attribute_file(path: str | Path, codes: Sequence[str]) -> frozenset[str]:
    """The attribute codes flagged 1 in one sequence's attribute file.

    The file holds one 0/1 flag per attribute, in ``codes``' order, separated by commas or whitespace
    (the LaSOT and UAV123 toolkits' ``att/<seq>.txt``). A wrong count or a value other than 0/1 is a
    ``BadFileError`` naming the file.
    """
    path = Path(path)
    values = [v for v in re.split(r"[,\s]+", path.read_text().strip()) if v]
    if len(values) != len(codes) or any(v not in ("0", "1") for v in values):
        raise BadFileError(f"attribute file {path} holds {values[:len(codes) + 2]}; expected {len(codes)} "
                           f"comma-separated 0/1 flags ({','.join(codes)})")
    return frozenset(c for c, v in zip(codes, values) if v == "1")


def find_attribute_dir(dataset_root: str | Path, dataset: str) -> Path | None:
    """The benchmark's attribute folder under its root, or None (SynthTrack, GOT-10k: none exist)."""
    for rel in ATTRIBUTE_DIRS.get(dataset, ()):
        if (Path(dataset_root) / rel).is_dir():
            return Path(dataset_root) / rel
    return None


def read_attributes(attribute_dir: str | Path, sequences: Sequence[str], dataset: str) -> dict[str, frozenset[str]]:
    """``{sequence: flagged codes}`` for every sequence, from ``<attribute_dir>/<seq>.txt``."""
    if dataset not in ATTRIBUTE_NAMES:
        raise BadFileError(f"no attribute names known for {dataset!r}; attribute files are read for "
                           f"{sorted(ATTRIBUTE_NAMES)}")
    codes = [c for c, _ in ATTRIBUTE_NAMES[dataset]]
    attribute_dir = Path(attribute_dir)
    missing = [s for s in sequences if not (attribute_dir / f"{s}.txt").is_file()]
    if missing:
        raise BadFileError(f"{attribute_dir}: no attribute file for {len(missing)} compared sequence(s), e.g. "
                           f"{missing[0]}.txt; complete the folder or pass --attributes none")
    return {s: read_attribute_file(attribute_dir / f"{s}.txt", codes) for s in sequences}


@dataclass
class SequenceComparison:
    """Per-sequence and per-attribute AUC of ``reference`` and ``other``; ``diff`` is other - reference."""

    reference: str
    other: str
    sequences: list[dict[str, Any]]  # {"sequence", reference, other, "diff"}, sorted by diff (largest loss first)
    mean: dict[str, float]  # mean per-sequence AUC of each tracker
    attributes: list[dict[str, Any]] = field(default_factory=list)  # {"code", "attribute", "sequences", ...}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def per_sequence_auc(annotations: Sequence[SequenceAnnotation], results_dir: str | Path, name: str,
                     dataset: str = "lasot") -> dict[str, float]:
    """``{sequence: success AUC}`` of one results folder (pytracking rule ``dataset``); a rejected
    sequence is an error naming the tracker and the folder, as in `lightning analyze`."""
    report = evaluate_results(annotations, results_dir, "pytracking", name, dataset)
    if report.errors:
        seq, msg = next(iter(report.errors.items()))
        raise InvalidResultsError(f"tracker {name}: {len(report.errors)} sequence(s) rejected, e.g. {msg}; "
                                  f"fix its results in {results_dir}")
    return {seq: float(scores[SCORE_KEY]) for seq, scores in report.sequences.items()}


def attribute_breakdown(scores: Mapping[str, Mapping[str, float]], attributes: Mapping[str, frozenset[str]],
                        dataset: str) -> list[dict[str, Any]]:
    """Mean AUC of each tracker over the sequences flagged with each attribute (attributes no compared
    sequence has are left out), in the toolkit's attribute order."""
    rows = []
    for code, long_name in ATTRIBUTE_NAMES[dataset]:
        flagged = [s for s, codes in attributes.items() if code in codes]
        if not flagged:
            continue
        means = {name: sum(per_seq[s] for s in flagged) / len(flagged) for name, per_seq in scores.items()}
        rows.append({"code": code, "attribute": long_name, "sequences": len(flagged), **means})
    return rows


def compare_sequences(annotations: Sequence[SequenceAnnotation], reference_dir: str | Path, other_dir: str | Path,
                      names: tuple[str, str] = ("teacher", "student"), dataset: str = "lasot",
                      attributes: Mapping[str, frozenset[str]] | None = None,
                      attribute_dataset: str = "lasot") -> SequenceComparison:
    """Score both folders per sequence and compare; ``dataset`` is pytracking's rule, ``attribute_dataset``
    the benchmark whose attribute names ``attributes`` ({sequence: codes}) use."""
    ref, other = names
    if ref == other:
        raise ValueError(f"the two compared trackers share the name {ref!r}; name them teacher=DIR student=DIR")
    scores = {ref: per_sequence_auc(annotations, reference_dir, ref, dataset),
              other: per_sequence_auc(annotations, other_dir, other, dataset)}
    rows = [{"sequence": a.name, ref: scores[ref][a.name], other: scores[other][a.name],
             "diff": scores[other][a.name] - scores[ref][a.name]} for a in annotations]
    rows.sort(key=lambda r: (r["diff"], r["sequence"]))
    mean = {n: sum(s.values()) / len(s) for n, s in scores.items()}
    comparison = SequenceComparison(ref, other, rows, mean)
    if attributes is not None:
        comparison.attributes = attribute_breakdown(scores, attributes, attribute_dataset)
        for row in comparison.attributes:
            row["diff"] = row[other] - row[ref]
    return comparison


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    cells = [list(header), *map(list, rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def format_comparison(comparison: SequenceComparison) -> str:
    """The sorted per-sequence table, the means, and the attribute table when there is one."""
    ref, other = comparison.reference, comparison.other
    text = _table(["Sequence", ref, other, "diff"], [
        [r["sequence"], f"{r[ref]:.2f}", f"{r[other]:.2f}", f"{r['diff']:+.2f}"] for r in comparison.sequences])
    text += (f"\nmean AUC over {len(comparison.sequences)} sequences: {ref} {comparison.mean[ref]:.2f}, "
             f"{other} {comparison.mean[other]:.2f} ({comparison.mean[other] - comparison.mean[ref]:+.2f})")
    if comparison.attributes:
        text += "\n\n" + _table(["Attribute", "Sequences", ref, other, "diff"], [
            [f"{a['code']} ({a['attribute']})", str(a["sequences"]), f"{a[ref]:.2f}", f"{a[other]:.2f}",
             f"{a['diff']:+.2f}"] for a in comparison.attributes])
    return text


def write_comparison(comparison: SequenceComparison, out_dir: str | Path, title: str = "") -> dict[str, Path]:
    """``compare.json``, ``compare.txt``, ``compare_sequences.png`` and, with attributes,
    ``compare_attributes.png`` (sorted bars of other - reference) in ``out_dir``."""
    from trackers.evaluation.plots import plot_differences

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ref, other = comparison.reference, comparison.other
    ylabel = f"AUC {other} - {ref}"
    paths = {"json": out_dir / "compare.json", "table": out_dir / "compare.txt"}
    paths["json"].write_text(json.dumps(comparison.as_dict(), indent=2) + "\n")
    paths["table"].write_text(format_comparison(comparison) + "\n")
    rows = comparison.sequences
    paths["sequences_plot"] = plot_differences([r["sequence"] for r in rows], [r["diff"] for r in rows],
                                               out_dir / "compare_sequences.png", ylabel, title)
    if comparison.attributes:
        attrs = sorted(comparison.attributes, key=lambda a: a["diff"])
        paths["attributes_plot"] = plot_differences([a["code"] for a in attrs], [a["diff"] for a in attrs],
                                                    out_dir / "compare_attributes.png", ylabel,
                                                    f"{title} per attribute" if title else "per attribute")
    return paths
