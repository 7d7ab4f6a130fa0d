"""Crop geometry (trackers.geometry), GT mapping, validity, normalisation and the augmentation box rules."""

from __future__ import annotations

from dataclasses import replace

import math

import cv2
import numpy as np
import pytest
import torch

from datamodules.augmentation import CropAugmentation, JointAugmentation
from datamodules.pair_dataset import RawPair
from datamodules.pair_processor import (
    CropSettings,
    PairProcessor,
    crop_is_valid,
    decode_reduction,
    jitter_box,
    plan_crop,
)
from trackers.errors import InvalidSample
from trackers.frames import EncodedFrame
from trackers.geometry.crops import crop_pixels, crop_square, crop_window, hflip_frame_box_xywh
from trackers.geometry.normalize import normalize_image


def _naive_pad_crop(image: np.ndarray, box: list[float], factor: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Literal spec §3.3: pads computed from the window, copyMakeBorder, full 2-D mask resized."""
    x, y, w, h = box
    crop_sz = math.ceil(math.sqrt(w * h) * factor)
    x1, y1 = round(x + w / 2 - crop_sz / 2), round(y + h / 2 - crop_sz / 2)
    x2, y2 = x1 + crop_sz, y1 + crop_sz
    H, W = image.shape[:2]
    left, t, r, b = max(0, -x1), max(0, -y1), max(0, x2 - W + 1), max(0, y2 - H + 1)
    crop = cv2.copyMakeBorder(image[y1 + t:y2 - b, x1 + left:x2 - r], t, b, left, r, cv2.BORDER_CONSTANT)
    mask = np.ones((crop_sz, crop_sz), np.float32)
    mask[t:crop_sz - b, left:crop_sz - r] = 0
    return cv2.resize(crop, (size, size)), cv2.resize(mask, (size, size)) != 0


@pytest.fixture
def frame() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)


@pytest.mark.parametrize("box", [[40, 30, 20, 16], [2, 3, 30, 25], [100, 70, 18, 19], [-20, 50, 30, 30],
                                 [10.3, 20.7, 7.9, 33.1], [0, 0, 120, 90]])
@pytest.mark.parametrize("size", [32, 64])
def test_crop_matches_the_literal_algorithm(frame: np.ndarray, box: list[float], size: int) -> None:
    crop = crop_square(frame, box, 2.5, size)
    ref_image, ref_mask = _naive_pad_crop(frame, box, 2.5, size)
    assert crop.image.shape == (size, size, 3) and crop.image.dtype == np.uint8
    assert crop.pad_mask.dtype == bool
    np.testing.assert_array_equal(crop.image, ref_image)
    np.testing.assert_array_equal(crop.pad_mask, ref_mask)
    assert crop.crop_size == math.ceil(math.sqrt(box[2] * box[3]) * 2.5)
    assert crop.resize_factor == pytest.approx(size / crop.crop_size)


def test_gt_maps_to_crop_centre_without_jitter(frame: np.ndarray) -> None:
    box = np.array([40.0, 30.0, 20.0, 10.0])
    out = plan_crop(box, CropSettings(size=64, factor=2.0), 120, 90, np.random.default_rng(0), mask_stride=16)
    side = math.ceil(math.sqrt(200) * 2.0)
    np.testing.assert_allclose(out.box, [63 / 2 / 64, 63 / 2 / 64, 20 * 64 / side / 64, 10 * 64 / side / 64])


def test_padding_mask_where_crop_leaves_image() -> None:
    image = np.full((100, 100, 3), 200, np.uint8)
    crop = crop_square(image, [0, 0, 20, 20], 2.0, 40)  # window [-10, 30): top-left quarter is padding
    assert crop.pad_mask[:5, :].all() and crop.pad_mask[:, :5].all()
    assert not crop.pad_mask[15:, 15:].any()
    assert (crop.image[crop.pad_mask] == 0).all() and (crop.image[~crop.pad_mask] == 200).all()


def test_plus_one_quirk_drops_last_column() -> None:
    image = np.full((50, 100, 3), 255, np.uint8)
    touching = crop_square(image, [70, 15, 20, 20], 2.0, 40)  # window [60, 100) ends at the border
    inside = crop_square(image, [69, 15, 20, 20], 2.0, 40)  # window [59, 99) does not
    assert touching.pad_mask[:, -1].all() and (touching.image[:, -1] == 0).all()
    assert not touching.pad_mask[:, :-1].any()
    assert not inside.pad_mask.any()


def test_crop_origin_rounds_half_to_even() -> None:
    image = np.tile(np.arange(100, dtype=np.uint8)[None, :, None], (100, 1, 3))
    # centre 12.5, crop 20 -> x1 = round(2.5) = 2 (half to even), not 3
    crop = crop_square(image, [7.5, 40, 10, 10], 2.0, 20)
    assert crop.crop_size == 20 and crop.image[10, 0, 0] == 2


def test_degenerate_and_outside_crops_are_invalid(frame: np.ndarray) -> None:
    with pytest.raises(InvalidSample):
        crop_square(frame, [10, 10, 0, 5], 2.0, 32)
    outside = crop_square(frame, [500, 500, 10, 10], 2.0, 32)
    assert outside.pad_mask.all() and not crop_is_valid(outside.pad_mask, 16)
    with pytest.raises(InvalidSample):
        plan_crop(np.array([500.0, 500, 10, 10]), CropSettings(32, 2.0), 120, 90, np.random.default_rng(0), 16)


def test_validity_checks_the_feature_grid() -> None:
    mask = np.ones((32, 32), bool)
    mask[5, 5] = False  # off the nearest-sampled grid (rows/cols 0 and 16)
    assert not crop_is_valid(mask, 16)
    mask[16, 16] = False
    assert crop_is_valid(mask, 16)


def test_jitter_bounds_and_identity() -> None:
    box = np.array([50.0, 40.0, 20.0, 10.0])
    np.testing.assert_array_equal(jitter_box(box, 0.0, 0.0, np.random.default_rng(0)), box)
    rng = np.random.default_rng(1)
    jittered = np.stack([jitter_box(box, 3.0, 0.25, rng) for _ in range(500)])
    size = jittered[:, 2:]
    offset = jittered[:, :2] + size / 2 - (box[:2] + box[2:] / 2)
    assert (np.abs(offset) <= np.sqrt(size.prod(1, keepdims=True)) * 3.0 / 2 + 1e-9).all()
    assert np.std(np.log(size / box[2:]), axis=0) == pytest.approx([0.25, 0.25], rel=0.2)


@pytest.mark.parametrize("brightness", [1.0, 1.17, 0.83])
def test_normalize_image_equals_float_pipeline(brightness: float) -> None:
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    x = torch.from_numpy(image).permute(2, 0, 1).float() / 255 * brightness
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    ref = (x.clamp(0, 1) - mean[:, None, None]) / std[:, None, None]
    out = normalize_image(image, brightness=brightness)
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32 and out.is_contiguous()
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)


def test_frame_flip_rule_and_joint_roll() -> None:
    np.testing.assert_array_equal(hflip_frame_box_xywh(np.array([10.0, 5, 20, 8]), 100), [69.0, 5, 20, 8])
    frame = np.zeros((40, 100, 3), np.uint8)
    frame[5:13, 10:30] = 255  # pixels 10..29 (x + w = 30)
    other = frame.copy()
    frames, boxes = JointAugmentation(grayscale_prob=0, hflip_prob=1.0)(
        [frame, other], np.array([[10.0, 5, 20, 8], [10.0, 5, 20, 8]]), np.random.default_rng(0))
    np.testing.assert_array_equal(boxes, [[69.0, 5, 20, 8]] * 2)
    assert (frames[0][5:13, 70:90] == 255).all() and (frames[1][5:13, 70:90] == 255).all()
    for seed in range(20):  # one roll per sample: frames flip together or not at all
        out, _ = JointAugmentation(0.5, 0.5)([frame, other], np.zeros((2, 4)), np.random.default_rng(seed))
        assert np.array_equal(out[0], out[1])


def test_grayscale_replicates_channels() -> None:
    frame = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    gray_only = JointAugmentation(grayscale_prob=1.0, hflip_prob=0.0)
    (gray,), _ = gray_only([frame], np.zeros((1, 4)), np.random.default_rng(0))
    assert gray.shape == frame.shape and gray.dtype == np.uint8
    np.testing.assert_array_equal(gray[..., 0], cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()


def test_grayscale_equals_the_albumentations_transform_it_replaced() -> None:
    """The dependency was dropped for this one call; where it is installed, the pixels must be the same."""
    albumentations = pytest.importorskip("albumentations")
    to_gray = albumentations.ToGray(num_output_channels=3, method="weighted_average", p=1.0)
    for shape in [(8, 8, 3), (127, 33, 3), (240, 320, 3)]:
        image = np.random.default_rng(shape[0]).integers(0, 256, shape, dtype=np.uint8)
        np.testing.assert_array_equal(JointAugmentation.grayscale(image), to_gray.apply(image))


def test_crop_flip_mirrors_image_mask_and_box() -> None:
    crop = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    mask = np.zeros((8, 8), bool)
    mask[:, :2] = True
    box = np.array([0.3, 0.4, 0.2, 0.1])
    flip_only = CropAugmentation(brightness=0.0, hflip_prob=1.0)
    image, out_mask, out_box, pending = flip_only(crop, mask, box, np.random.default_rng(0))
    np.testing.assert_allclose(out_box, [0.7, 0.4, 0.2, 0.1], rtol=1e-6)
    assert out_box.dtype == np.float32 and pending is None
    assert out_mask[:, -2:].all() and not out_mask[:, :-2].any()
    torch.testing.assert_close(torch.from_numpy(image), normalize_image(crop[:, ::-1].copy()))
    raw, _, raw_box, pending = replace(flip_only, normalize=False)(crop, mask, box, np.random.default_rng(0))
    assert raw.dtype == np.uint8 and np.array_equal(raw, crop[:, ::-1]) and pending == 1.0
    np.testing.assert_array_equal(raw_box, out_box)


def test_pair_processor_sample_layout(frame: np.ndarray) -> None:
    processor = PairProcessor(CropSettings(32, 2.0), CropSettings(64, 4.0, 3.0, 0.25),
                              JointAugmentation(), CropAugmentation())
    box = np.array([[40.0, 30, 20, 16]])
    pair = RawPair([frame, frame], np.repeat(box, 2, 0), [frame], box, "synthtrack", "ball-1")
    sample = processor(pair, np.random.default_rng(0))
    assert sample["template"].shape == (2, 3, 32, 32) and sample["template_box"].shape == (2, 4)
    assert sample["template_mask"].shape == (2, 32, 32) and sample["template_mask"].dtype == torch.bool
    assert sample["search"].shape == (3, 64, 64) and sample["search_box"].shape == (4,)
    assert sample["search_mask"].shape == (64, 64) and bool(sample["search_visible"])
    assert sample["dataset"] == "synthtrack"
    # templates are unjittered: their GT sits at the crop centre, possibly mirrored (cx -> 1 - cx)
    c = 31 / 2 / 32
    assert torch.allclose(torch.minimum(sample["template_box"][:, 0], 1 - sample["template_box"][:, 0]),
                          torch.tensor(min(c, 1 - c)))


# ------------------------------------------------------------------------------------------------
# Planned crops from encoded frames: reduced decoding, flips applied to crops, the reference pipeline.
# ------------------------------------------------------------------------------------------------


def _textured_jpeg(path, width: int = 331, height: int = 247):  # noqa: ANN001, ANN202 - Path -> EncodedFrame
    """A smooth but structured JPEG (odd size, so reduced decodes round up)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([128 + 100 * np.sin(xx / 9.0) * np.cos(yy / 13.0), 255 * xx / width, 255 * yy / height], -1)
    cv2.imwrite(str(path), np.clip(image, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return EncodedFrame(path)


def test_header_size_and_reduced_decode_shapes(tmp_path) -> None:  # noqa: ANN001
    frame = _textured_jpeg(tmp_path / "f.jpg")
    assert frame.size == (331, 247) and frame.max_reduction == 8
    for k in (1, 2, 4, 8):
        assert frame.decode(k).shape == (math.ceil(247 / k), math.ceil(331 / k), 3)
    cv2.imwrite(str(tmp_path / "f.png"), np.zeros((5, 7, 3), np.uint8))
    png = EncodedFrame(tmp_path / "f.png")
    assert png.size == (7, 5) and png.max_reduction == 1  # not a JPEG: full decode only


@pytest.mark.parametrize("box", [[140.0, 100.0, 60.0, 50.0], [-20.0, 180.0, 70.0, 60.0], [290.0, 10.0, 50.0, 48.0]])
def test_reduced_decoding_gives_nearly_the_full_resolution_crop(tmp_path, box: list[float]) -> None:  # noqa: ANN001
    frame = _textured_jpeg(tmp_path / "f.jpg")
    full = frame.decode(1)
    window = crop_window(box, 4.0, *frame.size)
    reference = crop_pixels(full, window, 48)
    for k in (2, 4):
        assert decode_reduction(window.size, 48) >= k  # these crops are downscaled at least 4x
        reduced = crop_pixels(frame.decode(k), window, 48, reduction=k)
        diff = np.abs(reduced.astype(np.float32) - reference.astype(np.float32))
        assert diff.mean() < 2.0, (k, diff.mean())  # out of 255: same content, same place
    assert decode_reduction(100, 64) == 1 and decode_reduction(130, 64) == 2 and decode_reduction(9999, 64, 4) == 4


def test_planned_pipeline_equals_the_full_frame_reference(tmp_path) -> None:  # noqa: ANN001
    """Flip/jitter/crop on crops == flip/jitter/crop on full frames, pixel for pixel, at full-resolution decode."""
    from collections import Counter

    from datamodules.reference_pipeline import ReferencePairProcessor

    frames = [_textured_jpeg(tmp_path / f"{i}.jpg", 331 - 20 * i, 247) for i in range(3)]
    joint, crop_aug = JointAugmentation(grayscale_prob=0.0, hflip_prob=0.5), CropAugmentation()
    template, search = CropSettings(32, 2.0), CropSettings(64, 4.0, 3.0, 0.25)
    fast = PairProcessor(template, search, joint, crop_aug, max_decode_reduction=1)
    slow = ReferencePairProcessor(template, search, joint, crop_aug, 16, Counter())
    boxes = np.array([[60.0, 70.0, 40.0, 30.0], [5.0, 150.0, 45.0, 50.0], [250.0, 20.0, 39.0, 41.0]])
    compared = 0
    for seed in range(12):
        pair = RawPair(frames[:2], boxes[:2], frames[2:], boxes[2:], "x", "y")
        try:
            a = fast(pair, np.random.default_rng(seed))
        except InvalidSample:
            with pytest.raises(InvalidSample):
                slow(pair, np.random.default_rng(seed))
            continue
        b = slow(pair, np.random.default_rng(seed))
        for key in ("template", "search", "template_box", "search_box", "template_mask", "search_mask"):
            torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0, msg=f"{key} differs (seed {seed})")
        compared += 1
    assert compared >= 8
