"""What `lightning benchmark model|tracker` compare: entries of composed configs at a precision on a backend.

    configs/a.yaml,configs/presets/cpu_smoke.yaml@bf16     (comma = composed; @PRECISION[/BACKEND])
    --fp32-linear torch onednn                              (every fp32/torch entry once per fp32 Linear engine)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from lightning_app.commands.track import add_runtime_arguments
from trackers.errors import SetupError
from trackers.inference.runtime import (BACKENDS, DEFAULT_BACKEND, DEFAULT_PRECISION, FP32_LINEAR_ENGINES, PRECISIONS,
                                       runtime_suffix)


@dataclass
class Entry:
    """One compared tracker: composed configs at a precision on a backend."""

    configs: list[str]
    precision: str = DEFAULT_PRECISION
    backend: str = DEFAULT_BACKEND
    fp32_linear: str | None = None  # fp32/torch only: the Linear engine (None: the CPU's default)

    @property
    def label(self) -> str:
        engine = f" [{self.fp32_linear} linear]" if self.fp32_linear else ""
        return " + ".join(Path(c).stem for c in self.configs) + runtime_suffix(self.precision, self.backend) + engine


def parse_entry(text: str, precision: str, backend: str) -> Entry:
    """``a.yaml[,b.yaml][@PRECISION[/BACKEND]]`` -> Entry (the defaults where no ``@`` part is given)."""
    configs, _, runtime = text.partition("@")
    if runtime:
        precision, _, given_backend = runtime.partition("/")
        backend = given_backend or backend
    if precision not in PRECISIONS or backend not in BACKENDS:
        raise SetupError(f"--compare {text!r}: write CONFIGS[@PRECISION[/BACKEND]] with PRECISION one of "
                         f"{', '.join(PRECISIONS)} and BACKEND one of {', '.join(BACKENDS)} (e.g. x.yaml@bf16)")
    return Entry([c for c in configs.split(",") if c], precision, backend)


def entries_from_args(args: argparse.Namespace) -> list[Entry]:
    texts = ([",".join(args.config)] if args.config else []) + list(args.compare)
    entries = [parse_entry(t, args.precision, args.backend) for t in texts]
    if args.precisions:
        entries = [Entry(e.configs, p, e.backend) for e in entries for p in args.precisions]
    if args.fp32_linear:
        entries = [Entry(e.configs, e.precision, e.backend, engine) for e in entries
                   for engine in (args.fp32_linear if runtime_suffix(e.precision, e.backend) == "" else [None])]
    return entries


def add_entry_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """``--config`` / ``--compare`` ENTRY ... and the precision and backend of entries that name none."""
    parser.add_argument("--config", action="append", default=[], help="experiment YAML (repeat to compose)")
    parser.add_argument("--compare", nargs="+", default=[], metavar="ENTRY",
                        help=f"more {what}: CONFIGS[@PRECISION[/BACKEND]], comma = composed (x.yaml@bf16)")
    add_runtime_arguments(parser, "entries without @PRECISION[/BACKEND]")
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=[],
                        help="run every entry at each of these precisions (e.g. fp32 bf16 int8)")
    parser.add_argument("--fp32-linear", nargs="+", choices=FP32_LINEAR_ENGINES, default=[],
                        help="run every fp32/torch entry with each of these Linear engines (default: the CPU's, "
                             "oneDNN on AMD CPUs with AVX-512, else torch's BLAS)")
