"""`lightning make-synthetic`: write SynthTrack, the embedded benchmark, in the LaSOT (or GOT-10k) layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from datamodules.synthtrack import LAYOUTS, write_synthtrack


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lightning make-synthetic", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="output root (LaSOT layout + train/test split files)")
    parser.add_argument("--num-train", type=int, default=60)
    parser.add_argument("--num-test", type=int, default=12)
    parser.add_argument("--length", type=int, default=100, help="frames per sequence")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout", choices=LAYOUTS, default="lasot",
                        help="lasot: reader type synthtrack; got10k: train/ and val/ folders for reader type got10k")
    args = parser.parse_args(argv)
    root = write_synthtrack(
        args.out, num_train=args.num_train, num_test=args.num_test, length=args.length,
        image_size=(args.width, args.height), seed=args.seed, layout=args.layout,
    )
    print(f"SynthTrack written to {root}")
    return 0
