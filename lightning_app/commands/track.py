"""`lightning track`: run an experiment's tracker on a video file or an image folder.

    lightning track --config configs/ostrack_256.yaml --checkpoint OSTrack_ep0300.pth.tar \\
        --input video.mp4 --box 120,80,40,60 --output boxes.txt --video boxes.mp4

The network is the experiment's (composed ``--config`` files, as for `lightning fit`); the weights
come from a Lightning ``.ckpt`` (its ``network.`` keys) or an official ``.pth.tar`` (converted by the
network's family). Tracking goes through the OPE loop of `lightning test`, so boxes and timings
mean the same here as in a benchmark run. ``--output`` is a raw result file (one TAB-separated
``x y w h`` line per frame, frame 0 = the given box) plus ``<name>_time.txt``, readable by
`lightning analyze`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from lightning_app.config_loading import build_model_from_configs
from trackers.errors import BadFileError, MissingFileError, SetupError
from trackers.evaluation.result_files import write_raw_results
from trackers.evaluation.speed import resolve_device
from trackers.inference.frame_sources import ImageFolderFrames, VideoFrames, open_frames
from trackers.inference.ope import FrameSource, run_sequence
from trackers.inference.runtime import BACKENDS, DEFAULT_BACKEND, DEFAULT_PRECISION, PRECISIONS, apply_runtime
from trackers.models.checkpoints import load_weights
from trackers.nn import box_ops
from trackers.methods.supervised import CE_KEEP_RATE_KEY
from trackers.safe_unpickling import check_checkpoint_file, load_checkpoint_data

BOX_COLOUR_BGR = (0, 255, 0)


def parse_box(text: str) -> np.ndarray:
    """``x,y,w,h`` in pixels of the first frame; w and h must be positive."""
    try:
        values = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or not all(np.isfinite(values)) or values[2] <= 0 or values[3] <= 0:
        raise SetupError(f"--box {text!r} is not x,y,w,h (four numbers, w and h > 0), e.g. --box 120,80,40,60")
    return np.array(values, dtype=np.float64)


def check_box_in_frame(box: np.ndarray, frame: np.ndarray, source: Path) -> None:
    """The target must overlap the first frame, or the template crop would be all padding."""
    height, width = frame.shape[:2]
    overlap = box_ops.paired_intersection_wh_xywh_np(box[None], np.array([[0.0, 0.0, width, height]]))[0]
    if (overlap <= 0).any():
        raise SetupError(
            f"--box {','.join(f'{v:g}' for v in box)} lies outside the first frame of {source} "
            f"({width}x{height}); give x,y,w,h in pixels of that frame"
        )


def load_network_weights(network: nn.Module, path: str | Path) -> None:
    """A Lightning ``.ckpt`` (``network.`` keys) or an official ``.pth.tar`` into ``network``, strictly;
    the converters follow the network's class (``trackers.models.checkpoints.load_weights``)."""
    load_weights(network, path)


def check_weights_file(path: str | Path, flag: str = "--checkpoint") -> None:
    """Refuse a missing or unsafe weights file in one line, before anything is built or decoded
    (the tools that build a tracker from configs: track, export, benchmark tracker)."""
    if not Path(path).is_file():
        raise MissingFileError(f"{flag} {path} does not exist; pass a Lightning .ckpt or an official .pth.tar")
    check_checkpoint_file(path)


def load_module_weights(module: nn.Module, path: str | Path) -> None:
    """The trained tracker of ``path`` into ``module``: its network's weights and, from a Lightning
    ``.ckpt``, the candidate-elimination keep rate training ended with (what ``lightning test
    --ckpt_path`` restores), so every tool tracks with the model `lightning test` scores."""
    network = getattr(module, "network", None)
    if network is None:
        raise SetupError(f"{type(module).__name__} has no network to load {path} into")
    load_network_weights(network, path)
    if hasattr(module, "ce_keep_rate"):
        data = load_checkpoint_data(path)
        if isinstance(data, dict) and CE_KEEP_RATE_KEY in data:
            module.ce_keep_rate = data[CE_KEEP_RATE_KEY]


def write_box_video(path: Path, frames: FrameSource, boxes: np.ndarray, fps: float) -> None:
    """Each frame with its box drawn (mp4v); a second decoding pass, so tracking times stay clean."""
    first = frames.load_frame(0)
    height, width = first.shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise SetupError(f"cannot write video {path}; pass a writable --video path ending in .mp4")
    corners = box_ops.xywh_to_xyxy(torch.as_tensor(boxes)).round().long().tolist()
    try:
        for i in tqdm(range(len(frames)), desc="video", unit="frame"):
            frame = frames.load_frame(i)
            if frame.shape[:2] != (height, width):
                raise BadFileError(f"frame {i} is {frame.shape[1]}x{frame.shape[0]}, not {width}x{height} like "
                                   f"frame 0; a video needs one frame size (drop --video)")
            image = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
            x1, y1, x2, y2 = corners[i]
            cv2.rectangle(image, (x1, y1), (x2, y2), BOX_COLOUR_BGR, 2)
            writer.write(image)
    finally:
        writer.release()


def track_frames(args: argparse.Namespace, box: np.ndarray, frames: ImageFolderFrames | VideoFrames) -> None:
    """Build the tracker, run the OPE loop over ``frames``, write what was asked for, print FPS."""
    device = resolve_device(args.device)
    check_box_in_frame(box, frames.load_frame(0), args.input)
    module = build_model_from_configs(args.config)
    network = getattr(module, "network", None)
    if args.checkpoint:
        load_module_weights(module, args.checkpoint)
    elif network is not None:
        print("warning: no --checkpoint given, the network has untrained weights", file=sys.stderr)
    module.to(device).eval()
    tracker = apply_runtime(module.build_tracker(), args.precision, args.backend)

    start = time.perf_counter()
    with tqdm(total=len(frames), initial=1, desc="track", unit="frame") as bar:
        run = run_sequence(tracker, frames, box, on_frame=lambda i: bar.update(1))
    wall = time.perf_counter() - start

    if args.output is not None:
        write_raw_results(args.output.parent, args.output.stem, run.boxes, run.times)
        print(f"boxes: {args.output}")
    if args.video is not None:
        write_box_video(args.video, frames, run.boxes, frames.fps)
        print(f"video: {args.video}")
    track_time = run.times[1:].sum()
    tracker_fps = (len(frames) - 1) / track_time if track_time > 0 else float("nan")
    print(f"{len(frames)} frames on {device}: {tracker_fps:.1f} FPS tracker only (frames 1..N-1), "
          f"{len(frames) / wall:.1f} FPS with decoding")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lightning track", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", required=True, help="experiment YAML (repeat to compose)")
    parser.add_argument("--checkpoint", help="Lightning .ckpt or official .pth.tar (default: untrained weights)")
    parser.add_argument("--input", required=True, type=Path, help="video file or folder of images")
    parser.add_argument("--box", required=True, help="target in the first frame: x,y,w,h in pixels (--box=-4,... if x < 0)")
    parser.add_argument("--output", type=Path, help="raw result file for the boxes (.txt)")
    parser.add_argument("--video", type=Path, help="write the frames with boxes drawn here (.mp4)")
    parser.add_argument("--max-frames", type=int, help="track only the first N frames")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_runtime_arguments(parser)
    return parser


def add_runtime_arguments(parser: argparse.ArgumentParser, scope: str = "") -> None:
    """``--precision`` / ``--backend`` of a tool that builds a tracker (``trackers.inference.runtime``);
    ``scope`` narrows what they apply to in the help (``entries without @PRECISION``)."""
    parser.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION,
                        help=f"network precision{' of ' + scope if scope else ''}: bf16 autocast (CPU/GPU), int8 "
                             "dynamic quantisation of the Linear layers (CPU)")
    parser.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
                        help=f"run the network{' of ' + scope if scope else ''} in PyTorch or ONNX Runtime (CPU)")


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    box = parse_box(args.box)
    if args.max_frames is not None and args.max_frames < 1:
        raise SetupError(f"--max-frames must be at least 1, got {args.max_frames}")
    if args.output is not None and args.output.suffix != ".txt":
        raise SetupError(f"--output {args.output} must end in .txt (a raw result file)")
    if args.checkpoint:
        check_weights_file(args.checkpoint)
    frames = open_frames(args.input, args.max_frames)
    try:
        track_frames(args, box, frames)
    finally:
        frames.close()
    return 0
