"""`lightning analyze`: score raw-result folders (this suite's or any published tracker's) against a
benchmark's ground truth; print a table and write success / precision plots. No model, no GPU.

    lightning analyze --dataset-root DIR --results NAME=DIR ...             table + success/precision plots
    lightning analyze --pareto NAME=RESULTS[,SPEED_JSON][,precision=P] ...  measured speed-accuracy front
    lightning analyze --compare teacher=DIR student=DIR --dataset-root DIR  per-sequence (and attribute) AUC

The ground truth is read by the dataset readers that `lightning test` uses (``build_reader``), so a
benchmark is parsed, repaired and noted by one set of layout rules."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from datamodules.readers import build_reader
from trackers.errors import MissingFileError, SetupError
from trackers.evaluation.analysis import SequenceAnnotation, analyze
from trackers.evaluation.protocols import BENCHMARK_PROTOCOLS, benchmark_key

IMAGE_SIZES_FILE = "image_sizes.json"  # {seq: {"width": W, "height": H}} in the dataset root, used when present
ANALYZE_TYPES = ("lasot", "got10k", "lasot_extension", "synthtrack", "trackingnet", "uav123")


def pytracking_dataset(reader_type: str) -> str:
    """The pytracking dataset rule `lightning test` scores this reader type with (``lasot`` for SynthTrack)."""
    protocols = dict(BENCHMARK_PROTOCOLS.get(benchmark_key(reader_type), []))
    return protocols.get("pytracking", {}).get("dataset", reader_type)


def read_annotations(dataset_root: str | Path, dataset: str = "lasot", sequences: Sequence[str] | None = None,
                     image_sizes: str | Path | None = None) -> list[SequenceAnnotation]:
    """Every sequence of the benchmark at ``dataset_root`` (or only ``sequences``), in the reader's order.

    ``image_sizes`` (default ``<root>/image_sizes.json`` when present) wins over the sizes the reader
    finds (first frame header, GOT-10k's meta_info.ini).
    """
    root = Path(dataset_root)
    reader = build_reader(dataset, root, split=None, config_key="--dataset-root")
    reader.preload()  # warns once about unreadable and repaired sequences
    found = {reader.sequence_name(i): i for i in range(reader.num_sequences)}
    if not found:
        raise MissingFileError(f"no {dataset} sequence found under {root}: point --dataset-root at the benchmark folder")
    names = list(found) if sequences is None else list(sequences)
    missing = [n for n in names if n not in found]
    if missing:
        raise MissingFileError(f"{root}: no ground truth for sequences {missing[:5]}; check the names or the root")
    sizes = _read_image_sizes(Path(image_sizes) if image_sizes else root / IMAGE_SIZES_FILE)
    annotations = []
    for name in names:
        info = reader.sequence_info(found[name])
        size = sizes.get(name) or reader.frame_size(found[name])
        annotations.append(SequenceAnnotation(name, info.boxes, info.present, size))
    return annotations


def _read_image_sizes(path: Path) -> dict[str, tuple[int, int]]:
    if not path.exists():
        return {}
    return {k: (int(v["width"]), int(v["height"])) for k, v in json.loads(path.read_text()).items()}


def analyze_benchmark(dataset_root: str | Path, result_dirs: Mapping[str, str | Path] | Sequence[str | Path],
                      dataset: str = "lasot", sequences: Sequence[str] | None = None,
                      image_sizes: str | Path | None = None, **options: Any) -> list[dict[str, Any]]:
    """``trackers.evaluation.analysis.analyze`` on the ground truth the readers give for ``dataset_root``."""
    annotations = read_annotations(dataset_root, dataset, sequences, image_sizes)
    return analyze(annotations, result_dirs, dataset=pytracking_dataset(dataset), title=dataset, **options)


def _named_dirs(items: list[str], flag: str = "--results") -> dict[str, Path]:
    named: dict[str, Path] = {}
    for item in items:
        name, sep, folder = item.partition("=")
        path = Path(folder if sep else name)
        named[name if sep else path.name] = path
    for name, path in named.items():
        if not path.is_dir():
            raise SetupError(f"results folder {path} (tracker {name}) does not exist; pass {flag} NAME=DIR")
    return named


def _sequences(arg: str | None) -> list[str] | None:
    if arg is None:
        return None
    path = Path(arg)
    if path.is_file():
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return [s for s in arg.split(",") if s]


def _pareto(args: argparse.Namespace) -> int:
    from trackers.evaluation.pareto import format_pareto_table, parse_point_spec, pareto_points, write_pareto

    points = pareto_points([parse_point_spec(item) for item in args.pareto], args.score)
    print(format_pareto_table(points, args.score))
    if args.out:
        paths = write_pareto(points, args.out, args.score, title=args.title or "measured speed-accuracy front")
        print(f"plot, table and JSON written to {paths['plot'].parent}")
    return 0


def compared_sequences(dirs: Mapping[str, Path]) -> list[str]:
    """The sequences both folders have results for (sorted); the others are named, not scored."""
    from trackers.evaluation.result_files import finished_sequences

    found = {name: finished_sequences(path) for name, path in dirs.items()}
    common = set.intersection(*found.values())
    if not common:
        raise SetupError(f"the folders {[str(p) for p in dirs.values()]} share no result file; compare two runs "
                         "on the same benchmark")
    for name, seqs in found.items():
        if seqs - common:
            print(f"note: {len(seqs - common)} sequence(s) only in {name} ({sorted(seqs - common)[:3]}...) left out")
    return sorted(common)


def _compare(args: argparse.Namespace) -> int:
    from trackers.evaluation.per_sequence import (
        compare_sequences,
        find_attribute_dir,
        format_comparison,
        read_attributes,
        write_comparison,
    )

    if len(args.compare) != 2:
        raise SetupError(f"--compare takes two folders, e.g. teacher=DIR student=DIR (got {len(args.compare)})")
    dirs = _named_dirs(args.compare, flag="--compare")
    if len(dirs) != 2:
        raise SetupError("--compare: the two folders need different names; pass teacher=DIR student=DIR")
    sequences = _sequences(args.split) or compared_sequences(dirs)
    annotations = read_annotations(args.dataset_root, args.dataset, sequences, args.image_sizes)
    if args.attributes == "none":
        attribute_dir = None
    else:
        attribute_dir = Path(args.attributes) if args.attributes else find_attribute_dir(args.dataset_root, args.dataset)
    attributes = read_attributes(attribute_dir, sequences, args.dataset) if attribute_dir else None
    (ref, ref_dir), (other, other_dir) = dirs.items()
    comparison = compare_sequences(annotations, ref_dir, other_dir, (ref, other), pytracking_dataset(args.dataset),
                                   attributes, args.dataset)
    print(format_comparison(comparison))
    if attributes is None:
        print(f"no attribute files for {args.dataset} under {args.dataset_root}: per-attribute breakdown skipped")
    if args.out:
        title = args.title or f"{other} vs {ref} on {args.dataset} ({len(sequences)} sequences)"
        paths = write_comparison(comparison, args.out, title)
        print(f"plots, table and JSON written to {paths['json'].parent}")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lightning analyze", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--results", nargs="+", help="raw-result folders, as NAME=DIR or DIR")
    mode.add_argument("--pareto", nargs="+", metavar="NAME=RESULTS[,SPEED_JSON][,record=R][,precision=P][,backend=B]",
                      help="test runs (folder with metrics.json) joined with a speed JSON record (default: "
                           "tracker_speed.json beside metrics.json); record=NAME|N (1-based), precision=, backend= pick "
                           "one record of the file")
    mode.add_argument("--compare", nargs="+", metavar="NAME=DIR",
                      help="two raw-result folders on one benchmark, reference first: teacher=DIR student=DIR")
    parser.add_argument("--dataset-root", type=Path, help="benchmark root, as `lightning test`'s root")
    parser.add_argument("--dataset", default="lasot", choices=ANALYZE_TYPES, help="reader type (layout and rules)")
    parser.add_argument("--convention", default="pytracking", choices=["pytracking", "got10k", "trackingnet"])
    parser.add_argument("--split", help="a split file (one sequence per line) or comma-separated names")
    parser.add_argument("--image-sizes", type=Path, help=f"{IMAGE_SIZES_FILE} when the images are not present")
    parser.add_argument("--score", default="pytracking.AUC", help="--pareto: the metrics.json score, CONVENTION.KEY")
    parser.add_argument("--attributes", help="--compare: folder of <seq>.txt attribute files (default: the "
                                             "benchmark's own under the root when present), or none")
    parser.add_argument("--title", help="--pareto / --compare: plot title")
    parser.add_argument("--out", type=Path, help="write plots and the table here")
    args = parser.parse_args(argv)
    if args.pareto:
        return _pareto(args)
    if args.dataset_root is None:
        raise SetupError("pass --dataset-root (the benchmark folder the results were made on)")
    if not args.dataset_root.is_dir():
        raise SetupError(f"dataset root {args.dataset_root} does not exist; pass --dataset-root")
    if args.compare:
        return _compare(args)

    analyze_benchmark(args.dataset_root, _named_dirs(args.results), args.dataset, _sequences(args.split),
                      args.image_sizes, convention=args.convention, out_dir=args.out)
    if args.out:
        print(f"plots and table written to {args.out}")
    return 0
