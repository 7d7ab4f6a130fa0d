"""`lightning track` on a user's video or image folder: boxes per frame, the drawn video, one-line errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lightning_app import cli
from lightning_app.commands.track import load_module_weights, load_network_weights
from lightning_app.config_loading import build_model_from_configs
from trackers.evaluation.result_files import read_raw_results
from trackers.inference.frame_sources import ImageFolderFrames, VideoFrames, open_frames
from trackers.models.compresstracker import to_official_state_dict

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [str(ROOT / "configs/ostrack_256.yaml"), str(ROOT / "configs/presets/cpu_smoke.yaml")]
CONFIG_ARGS = [arg for path in CONFIGS for arg in ("--config", path)]
SIZE = (160, 120)  # (W, H)
SQUARE = 24
FPS = 25
BOX = "20,40,24,24"  # the square in frame 0


def synthetic_frames(count: int) -> list[np.ndarray]:
    """A textured square (3x3 colour blocks, coarse enough for mp4v's chroma) moving over a flat background (BGR)."""
    blocks = np.random.default_rng(0).integers(0, 255, (3, 3, 3), dtype=np.uint8)
    texture = np.kron(blocks, np.ones((SQUARE // 3, SQUARE // 3, 1), np.uint8))
    frames = []
    for i in range(count):
        frame = np.full((SIZE[1], SIZE[0], 3), 70, np.uint8)
        x, y = 20 + 3 * i, 40 + i
        frame[y : y + SQUARE, x : x + SQUARE] = texture
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    for frame in synthetic_frames(20):
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("frames")
    for i, frame in enumerate(synthetic_frames(12), start=1):  # 1.png .. 12.png: a plain sort would misorder
        cv2.imwrite(str(path / f"{i}.png"), frame)
    (path / "notes.txt").write_text("not a frame")
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained tiny network saved the way a Lightning run saves it."""
    torch.manual_seed(0)
    network = build_model_from_configs(CONFIGS).network
    path = tmp_path_factory.mktemp("ckpt") / "run.ckpt"
    torch.save({"state_dict": {"network." + k: v for k, v in network.state_dict().items()}}, path)
    return path


def test_video_gives_one_box_per_frame_and_a_drawn_video(video: Path, checkpoint: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    out, drawn = tmp_path / "out" / "boxes.txt", tmp_path / "out" / "drawn.mp4"
    code = cli.main(["track", *CONFIG_ARGS, "--checkpoint", str(checkpoint), "--input", str(video), "--box", BOX,
                     "--output", str(out), "--video", str(drawn)])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    assert "FPS" in captured.out
    boxes = read_raw_results(out)
    assert boxes.shape == (20, 4)
    np.testing.assert_allclose(boxes[0], [20, 40, 24, 24])
    assert np.isfinite(boxes).all() and (boxes[:, 2:] > 0).all()
    assert len((tmp_path / "out" / "boxes_time.txt").read_text().split()) == 20

    capture = cv2.VideoCapture(str(drawn))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS)
    count, first = 0, None
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        first = frame if first is None else first
        count += 1
    assert count == 20 and first.shape[:2] == (SIZE[1], SIZE[0])
    edge = first[40, 20 : 20 + SQUARE].astype(int)  # top edge of the first box, drawn green
    assert (edge[:, 1] > 200).mean() > 0.8 and (edge[:, 2] < 80).mean() > 0.8


def test_image_folder_in_natural_order_with_max_frames(folder: Path, checkpoint: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "folder.txt"
    code = cli.main(["track", *CONFIG_ARGS, "--checkpoint", str(checkpoint), "--input", str(folder), "--box", BOX,
                     "--output", str(out), "--max-frames", "5"])
    assert code == 0, capsys.readouterr().err[-3000:]
    assert read_raw_results(out).shape == (5, 4)


def test_folder_frames_sort_numbers_by_value(folder: Path) -> None:
    frames = ImageFolderFrames(folder)
    assert [p.name for p in frames.files] == [f"{i}.png" for i in range(1, 13)]
    expected = cv2.cvtColor(synthetic_frames(12)[9], cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(frames.load_frame(9), expected)  # 10.png, lossless


def test_video_frames_are_rgb_and_revisitable(video: Path) -> None:
    frames = open_frames(video, max_frames=8)
    assert isinstance(frames, VideoFrames) and len(frames) == 8 and frames.fps == pytest.approx(FPS)
    later = frames.load_frame(5).copy()
    first = frames.load_frame(0)  # going back seeks
    texture_bgr = synthetic_frames(1)[0][40:64, 20:44].astype(int)
    error_rgb = np.abs(first[40:64, 20:44] - texture_bgr[..., ::-1]).mean()
    error_bgr = np.abs(first[40:64, 20:44] - texture_bgr).mean()
    assert error_rgb < 15 and error_rgb < error_bgr / 2  # mp4v is lossy, but the channel order is clear
    np.testing.assert_array_equal(frames.load_frame(5), later)
    frames.close()


def test_checkpoint_weights_reach_the_network(checkpoint: Path, tmp_path: Path) -> None:
    """Lightning .ckpt, official OSTrack .pth.tar and official CompressTracker names (distill_blocks) all load."""
    saved = torch.load(checkpoint, weights_only=True)["state_dict"]
    suite = {k[len("network."):]: v for k, v in saved.items()}
    official = {"ostrack.pth.tar": suite, "compresstracker.pth.tar": to_official_state_dict(suite)}
    assert any(".distill_blocks." in k for k in official["compresstracker.pth.tar"])
    for name, state in official.items():
        torch.save({"net": state}, tmp_path / name)
    for path in (checkpoint, *(tmp_path / name for name in official)):
        torch.manual_seed(1)
        network = build_model_from_configs(CONFIGS).network
        load_network_weights(network, path)
        for key, value in network.state_dict().items():
            torch.testing.assert_close(value, suite[key])


def test_tools_restore_the_keep_rate_training_ended_with(checkpoint: Path, tmp_path: Path) -> None:
    """track / export / benchmark tracker run the model `lightning test --ckpt_path` scores: CE keep rate included."""
    data = torch.load(checkpoint, weights_only=True)
    data["ce_keep_rate"] = 0.85
    torch.save(data, tmp_path / "warmup.ckpt")
    official = tmp_path / "official.pth.tar"
    torch.save({"net": {k[len("network."):]: v for k, v in data["state_dict"].items()}}, official)
    for path, expected in ((tmp_path / "warmup.ckpt", 0.85), (official, None)):
        module = build_model_from_configs(CONFIGS)
        module.ce_keep_rate = None
        load_module_weights(module, path)
        assert module.ce_keep_rate == expected, path.name
        assert module.build_tracker().ce_keep_rate == expected


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing_input", "does not exist"),
        ("malformed_box", "is not x,y,w,h"),
        ("box_outside", "outside the first frame"),
        ("missing_checkpoint", "--checkpoint"),
        ("empty_folder", "no images"),
    ],
)
def test_bad_input_is_one_error_line(case: str, needle: str, video: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    inputs, box, extra = str(video), BOX, []
    if case == "missing_input":
        inputs = str(tmp_path / "missing.mp4")
    elif case == "malformed_box":
        box = "20,40,24"
    elif case == "box_outside":
        box = "400,40,24,24"
    elif case == "missing_checkpoint":
        extra = ["--checkpoint", str(tmp_path / "missing.ckpt")]
    elif case == "empty_folder":
        inputs = str(tmp_path)
    code = cli.main(["track", *CONFIG_ARGS, "--input", inputs, "--box", box, *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], err


def test_mixformerv2_weights_load_without_a_class_name_dispatch(tmp_path: Path) -> None:
    """A stage-2 MixFormerV2 file (no score head) into an online network: the family converter fills the head."""
    from trackers.models.mixformerv2 import MixFormerV2

    tiny = dict(embed_dim=32, depth=2, num_heads=2, template_size=32, search_size=64, num_bins=16)
    torch.manual_seed(0)
    stage2 = MixFormerV2(**tiny, score_head=False)
    torch.save({"net": stage2.state_dict()}, tmp_path / "stage2.pth.tar")
    online = MixFormerV2(**tiny, score_head=True)
    load_network_weights(online, tmp_path / "stage2.pth.tar")
    for key, value in stage2.state_dict().items():
        torch.testing.assert_close(online.state_dict()[key], value, rtol=0, atol=0)
