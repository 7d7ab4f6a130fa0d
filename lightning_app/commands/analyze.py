"""`lightning analyze`: score raw-result folders (this suite's or any published tracker's) against a
benchmark's ground truth; print a table and write success / precision plots. No model, no GPU."""

from __future__ import annotations

import argparse
from pathlib import Path

from trackers.errors import SetupError


def _named_dirs(items: list[str]) -> dict[str, Path]:
    named: dict[str, Path] = {}
    for item in items:
        name, sep, folder = item.partition("=")
        path = Path(folder if sep else name)
        named[name if sep else path.name] = path
    for name, path in named.items():
        if not path.is_dir():
            raise SetupError(f"results folder {path} (tracker {name}) does not exist; pass --results NAME=DIR")
    return named


def _sequences(arg: str | None) -> list[str] | None:
    if arg is None:
        return None
    path = Path(arg)
    if path.is_file():
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return [s for s in arg.split(",") if s]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lightning analyze", description=__doc__)
    parser.add_argument("--dataset-root", type=Path, required=True, help="benchmark root (LaSOT or GOT-10k layout)")
    parser.add_argument("--results", nargs="+", required=True, help="raw-result folders, as NAME=DIR or DIR")
    parser.add_argument("--dataset", default="lasot", choices=["lasot", "got10k"], help="ground-truth layout/rules")
    parser.add_argument("--convention", default="pytracking", choices=["pytracking", "got10k", "trackingnet"])
    parser.add_argument("--split", help="a split file (one sequence per line) or comma-separated names")
    parser.add_argument("--image-sizes", type=Path, help="image_sizes.json when the images are not present")
    parser.add_argument("--out", type=Path, help="write plots and the table here")
    args = parser.parse_args(argv)
    if not args.dataset_root.is_dir():
        raise SetupError(f"dataset root {args.dataset_root} does not exist; pass --dataset-root")

    from trackers.evaluation.analysis import analyze

    analyze(args.dataset_root, _named_dirs(args.results), dataset=args.dataset, convention=args.convention,
            out_dir=args.out, sequences=_sequences(args.split), image_sizes=args.image_sizes)
    if args.out:
        print(f"plots and table written to {args.out}")
    return 0
