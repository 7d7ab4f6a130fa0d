"""Checkpoints are data: a pickle that would run code is refused at every entry point, in one line.

Each crafted file creates a marker file when unpickled the ordinary way (the first test shows it
does); every entry point must refuse it, name the file, and leave the marker uncreated. Official
files that pickle settings objects of their own code still load, as inert stand-ins.
"""

from __future__ import annotations

import builtins
import functools
import json
import os
import subprocess
import sys
import types
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from trackers.errors import BadFileError, MissingFileError
from trackers.models.checkpoints import load_weights, read_checkpoint
from trackers.safe_unpickling import InertObject, check_ckpt_path, load_checkpoint_data
from trackers.nn.pretrained import read_mae_state_dict

ROOT = Path(__file__).resolve().parents[1]
LIGHTNING = [sys.executable, "-m", "lightning_app.cli"]
OSTRACK_CONFIGS = ("configs/ostrack_256.yaml", "configs/presets/cpu_smoke.yaml")
OSTRACK_SMOKE = [arg for config in OSTRACK_CONFIGS for arg in ("--config", str(ROOT / config))]
CLI_TIMEOUT_S = 300


class _Calls:
    """Pickles as ``func(*args)``: what a malicious checkpoint hides in its pickle."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def payloads(marker: Path) -> dict[str, tuple[object, str]]:
    """Ways to create ``marker`` while unpickling, with the global each one would call."""
    return {
        "os.system": (_Calls(os.system, f"touch '{marker}'"), "os.system"),
        "subprocess": (_Calls(subprocess.call, ["touch", str(marker)]), "subprocess.call"),
        "exec": (_Calls(builtins.exec, f"open({str(marker)!r}, 'w').close()"), "builtins.exec"),
        "open": (_Calls(builtins.open, str(marker), "w"), "open"),
        "path.touch": (_Calls(Path.touch, marker), "getattr"),
        "partial": (_Calls(functools.partial(os.system, f"touch '{marker}'")), "functools.partial"),
    }


def _state() -> OrderedDict:
    return nn.Linear(2, 2).state_dict()


def write_checkpoint(path: Path, shape: str, evil: object) -> Path:
    """``evil`` inside each container a checkpoint comes in."""
    if shape in ("official", "official-legacy"):
        content = {"net": _state(), "settings": evil}
    elif shape == "lightning":
        content = {"state_dict": {f"network.{k}": v for k, v in _state().items()}, "hyper_parameters": {"x": evil}}
    else:
        content = {**_state(), "bias_extra": evil}
    torch.save(content, path, _use_new_zipfile_serialization=shape != "official-legacy")  # legacy: torch < 1.6
    return path


SHAPES = {"official": "evil.pth.tar", "official-legacy": "evil.pth.tar", "lightning": "evil.ckpt", "plain": "evil.pth"}
PAYLOADS = ("os.system", "subprocess", "exec", "open", "path.touch", "partial")


def assert_one_line_refusal(message: str, path: Path) -> None:
    assert "\n" not in message.strip() and str(path) in message, message


@pytest.mark.parametrize("payload", PAYLOADS)
def test_crafted_checkpoints_do_run_code_when_unpickled_plainly(tmp_path: Path, payload: str) -> None:
    """The threat is real: each payload creates its marker under a plain ``torch.load``."""
    marker = tmp_path / "MARKER"
    path = write_checkpoint(tmp_path / "evil.pth.tar", "official", payloads(marker)[payload][0])
    try:
        torch.load(path, weights_only=False)
    except Exception:  # noqa: BLE001 - what the payload returns may not unpickle further; it has run by then
        pass
    assert marker.exists()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("payload", PAYLOADS)
def test_read_checkpoint_refuses_code_in_every_container(tmp_path: Path, shape: str, payload: str) -> None:
    marker = tmp_path / "MARKER"
    evil, called = payloads(marker)[payload]
    path = write_checkpoint(tmp_path / SHAPES[shape], shape, evil)
    with pytest.raises(BadFileError) as err:
        read_checkpoint(path)
    assert_one_line_refusal(str(err.value), path)
    assert "would call" in str(err.value) and called in str(err.value) and "re-save" in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("func", [torch.save, np.savetxt], ids=["torch.save", "numpy.savetxt"])
def test_callables_of_allowed_libraries_are_refused_too(tmp_path: Path, shape: str, func) -> None:
    """The allow-list, not the denied modules, is what stops code: a writer from torch or numpy (modules a
    checkpoint legitimately names) becomes an inert stand-in, and the pickle's call to it is refused."""
    marker = tmp_path / "MARKER"
    evil = _Calls(func, [1.0], str(marker)) if func is torch.save else _Calls(func, str(marker), [1.0])
    path = write_checkpoint(tmp_path / SHAPES[shape], shape, evil)
    with pytest.raises(BadFileError) as err:
        read_checkpoint(path)
    assert_one_line_refusal(str(err.value), path)
    assert func.__name__ in str(err.value) and "re-save" in str(err.value)
    assert not marker.exists()


def test_mae_and_init_loaders_refuse_code(tmp_path: Path) -> None:
    """`pretrained:` (MAE) and the init / teacher loader (`load_weights`) read through the same reader."""
    marker = tmp_path / "MARKER"
    mae = tmp_path / "mae.pth"
    torch.save({"model": _state(), "args": payloads(marker)["os.system"][0]}, mae)
    with pytest.raises(BadFileError) as err:
        read_mae_state_dict(mae)
    assert_one_line_refusal(str(err.value), mae)
    teacher = write_checkpoint(tmp_path / "teacher.pth.tar", "official", payloads(marker)["exec"][0])
    with pytest.raises(BadFileError):
        load_weights(nn.Linear(2, 2), teacher)
    assert not marker.exists()


def _official_module_source(marker: Path) -> str:
    """An importable stand-in for an official repository: importing it or restoring its state creates the marker."""
    return (
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r} + '.imported').touch()\n"
        "class Settings:\n"
        "    def __setstate__(self, state):\n"
        f"        pathlib.Path({str(marker)!r} + '.setstate').touch()\n"
        "        self.__dict__.update(state)\n"
        "class EasyDict(dict):\n"
        "    pass\n"
    )


def test_official_file_with_settings_objects_loads_as_inert_data(tmp_path: Path, monkeypatch) -> None:
    """Settings classes of the official code load as stand-ins: state kept, their code never imported or run."""
    marker = tmp_path / "MARKER"
    package = tmp_path / "pkg"
    (package / "lib" / "config").mkdir(parents=True)
    (package / "lib" / "__init__.py").write_text("")
    (package / "lib" / "config" / "__init__.py").write_text("")
    (package / "lib" / "config" / "settings.py").write_text(_official_module_source(marker))
    monkeypatch.syspath_prepend(str(package))
    import lib.config.settings as official  # noqa: PLC0415 - written above

    settings = official.Settings()
    settings.env, settings.lr = "workspace", 4e-4
    cfg = official.EasyDict(TRAIN={"EPOCH": 300})
    src = nn.Linear(2, 2)
    path = tmp_path / "OSTrack_ep0300.pth.tar"
    torch.save({"net": src.state_dict(), "settings": settings, "cfg": cfg, "epoch": 300}, path)
    traces = [Path(str(marker) + suffix) for suffix in (".imported", ".setstate")]

    def forget_official_module() -> None:
        for name in [m for m in sys.modules if m == "lib" or m.startswith("lib.")]:
            monkeypatch.delitem(sys.modules, name)
        for trace in traces:
            trace.unlink(missing_ok=True)

    forget_official_module()
    torch.load(path, weights_only=False)  # the plain reader imports the module and runs its __setstate__
    assert all(trace.exists() for trace in traces)
    forget_official_module()

    with pytest.warns(UserWarning, match="inert stand-ins"):
        content = load_checkpoint_data(path)
    assert isinstance(content["settings"], InertObject)
    assert (content["settings"].env, content["settings"].lr) == ("workspace", 4e-4)
    assert content["cfg"].inert_items == {"TRAIN": {"EPOCH": 300}} and content["epoch"] == 300
    dst = nn.Linear(2, 2)
    with pytest.warns(UserWarning):
        load_weights(dst, path)
    torch.testing.assert_close(dst.weight, src.weight)
    assert "lib.config.settings" not in sys.modules
    assert not any(trace.exists() for trace in traces)


def test_lightning_checkpoint_is_tensors_only(tmp_path: Path, monkeypatch) -> None:
    """A `.ckpt` holding objects of some class is refused even when they would load inertly."""
    module = types.ModuleType("some_trainer_lib")

    class Config:
        pass

    Config.__module__, Config.__qualname__ = module.__name__, "Config"
    module.Config = Config
    monkeypatch.setitem(sys.modules, module.__name__, module)
    path = write_checkpoint(tmp_path / "run.ckpt", "lightning", Config())
    monkeypatch.delitem(sys.modules, module.__name__)
    with pytest.raises(BadFileError, match="tensors and plain data only.*some_trainer_lib.Config") as err:
        read_checkpoint(path)
    assert_one_line_refusal(str(err.value), path)


def _corrupt_files(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {f"network.{k}": v for k, v in _state().items()}}, good)
    data = good.read_bytes()
    files = {
        "truncated": (tmp_path / "truncated.ckpt", data[: len(data) // 2]),
        "random": (tmp_path / "random.pth.tar", np.random.default_rng(0).bytes(4096)),
        "empty": (tmp_path / "empty.pth", b""),
        "text": (tmp_path / "notes.ckpt", b"not a checkpoint\n"),
    }
    for path, content in files.values():
        path.write_bytes(content)
    folder = tmp_path / "folder.ckpt"
    folder.mkdir()
    return {**{k: p for k, (p, _) in files.items()}, "folder": folder}


@pytest.mark.parametrize("case", ["truncated", "random", "empty", "text", "folder"])
def test_corrupt_files_are_one_line(tmp_path: Path, case: str) -> None:
    path = _corrupt_files(tmp_path)[case]
    with pytest.raises((BadFileError, MissingFileError)) as err:
        load_checkpoint_data(path)
    assert_one_line_refusal(str(err.value), path)
    with pytest.raises((BadFileError, MissingFileError)):
        read_checkpoint(path)
    with pytest.raises((BadFileError, MissingFileError)):
        check_ckpt_path(path)


def test_ckpt_path_checks_what_lightning_would_import(tmp_path: Path) -> None:
    """LightningCLI re-parses a checkpoint's hyper-parameters and imports the class paths named there."""
    path = tmp_path / "run.ckpt"
    torch.save({"state_dict": _state(), "hyper_parameters": {"_class_path": "trackers.methods.supervised.X"}}, path)
    check_ckpt_path(path)
    torch.save({"state_dict": _state(), "hyper_parameters": {"_class_path": "antigravity.Fly"}}, path)
    with pytest.raises(BadFileError, match="antigravity.Fly"):
        check_ckpt_path(path)
    with pytest.raises(BadFileError, match="download"):
        check_ckpt_path("https://example.org/run.ckpt")
    check_ckpt_path("last")  # Lightning's own names are left to Lightning
    check_ckpt_path(None)


# ------------------------------------------------------------------------------------------ the CLI
def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    return subprocess.run(LIGHTNING + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)


def assert_cli_refused(result: subprocess.CompletedProcess, path: Path, marker: Path, only_line: bool = True) -> None:
    """Exit status 2, the error as one line naming the file (the only stderr line before training starts)."""
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == lines[-1] and str(path) in errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    if only_line:
        assert len(lines) == 1, result.stderr[-3000:]
    assert not marker.exists()


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory) -> Path:
    from datamodules.synthtrack import write_synthtrack

    return write_synthtrack(tmp_path_factory.mktemp("synth"), num_train=1, num_test=1, length=24,
                            image_size=(96, 72), seed=0)


def data_args(synth: Path, out: Path) -> list[str]:
    return [
        "--data.init_args.datasets", json.dumps([{"type": "synthtrack", "root": str(synth), "split": "train"}]),
        "--data.init_args.val_datasets", "null",
        "--data.init_args.test", json.dumps({"type": "synthtrack", "root": str(synth), "split": "test"}),
        "--data.init_args.num_workers", "0", "--trainer.max_steps", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(out),
    ]


@pytest.mark.parametrize("subcommand", ["test", "fit"])
def test_cli_ckpt_path_is_refused_before_lightning_reads_it(tmp_path: Path, subcommand: str) -> None:
    marker = tmp_path / "MARKER"
    path = write_checkpoint(tmp_path / "evil.ckpt", "lightning", payloads(marker)["os.system"][0])
    result = run_cli([subcommand, *OSTRACK_SMOKE, "--ckpt_path", str(path)], cwd=tmp_path)
    assert_cli_refused(result, path, marker)
    assert "would call" in result.stderr


def test_cli_init_checkpoint_is_refused_when_fitting_starts(tmp_path: Path, tiny_synth: Path) -> None:
    marker = tmp_path / "MARKER"
    path = write_checkpoint(tmp_path / "OSTrack_ep0300.pth.tar", "official", payloads(marker)["os.system"][0])
    args = ["fit", *OSTRACK_SMOKE, *data_args(tiny_synth, tmp_path), "--model.init_args.init_checkpoint", str(path)]
    assert_cli_refused(run_cli(args, cwd=tmp_path), path, marker, only_line=False)


def test_cli_teacher_checkpoint_is_refused(tmp_path: Path, tiny_synth: Path) -> None:
    marker = tmp_path / "MARKER"
    path = write_checkpoint(tmp_path / "mixformer_vit_base_online.pth.tar", "official", payloads(marker)["exec"][0])
    configs = ["configs/mixformerv2_b_stage1.yaml", "configs/presets/cpu_smoke.yaml",
               "configs/presets/cpu_smoke_mixformerv2/bins.yaml", "configs/presets/cpu_smoke_mixformerv2/stage1.yaml"]
    args = ["fit", *[a for c in configs for a in ("--config", str(ROOT / c))], *data_args(tiny_synth, tmp_path),
            "--model.init_args.teacher_checkpoint", str(path)]
    assert_cli_refused(run_cli(args, cwd=tmp_path), path, marker, only_line=False)


def test_cli_track_checkpoint_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    path = write_checkpoint(tmp_path / "OSTrack_ep0300.pth.tar", "official", payloads(marker)["subprocess"][0])
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        cv2.imwrite(str(frames / f"{i:04d}.jpg"), np.full((72, 96, 3), 40 * i, dtype=np.uint8))
    args = ["track", *OSTRACK_SMOKE, "--checkpoint", str(path), "--input", str(frames), "--box", "10,10,20,20"]
    assert_cli_refused(run_cli(args, cwd=tmp_path), path, marker)


def test_cli_pipeline_use_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    path = write_checkpoint(tmp_path / "teacher.ckpt", "lightning", payloads(marker)["open"][0])
    chain = ROOT / "configs/pipelines/mixformerv2_mini_ablation.yaml"
    args = ["pipeline", str(chain), "--use", f"mixvit_mini={path}", "--until", "mixvit_mini", "--dry-run",
            "--root", str(tmp_path / "chain")]
    assert_cli_refused(run_cli(args, cwd=tmp_path), path, marker)
