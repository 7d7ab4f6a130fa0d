"""The layers only point down, checked on the source (every import statement, parsed with ``ast``).

Floors (DESIGN.md, CONTRIBUTING): ``lightning_app`` (3) -> ``callbacks``, ``datamodules`` (2) ->
``trackers`` (1). A module may import its own room and any room on a lower floor. The two rooms of
floor 2 do not import each other either: a callback sees the data only through the contracts of
``trackers`` (batches, ``trackers.types``) and the data modules know nothing of training callbacks,
so either can be replaced alone. Every import counts, wherever it is written: module level,
inside a function (a lazy import is still a dependency), under ``if TYPE_CHECKING:``.

Also: importing the online trackers must leave OpenCV's threading alone and load no data code
(``datamodules/__init__.py`` switches OpenCV's pool off for the DataLoader workers; `lightning
track` and `benchmark model` must not inherit that).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path


PROJECT = Path(__file__).resolve().parents[1]
FLOORS = {"lightning_app": 3, "callbacks": 2, "datamodules": 2, "trackers": 1}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """Absolute names an ``import`` / ``from ... import`` statement loads (relative ones resolved)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level == 0:
        return [node.module or ""]
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return [".".join([*base, *([node.module] if node.module else [])])]


def layer_violations(root: Path, floors: dict[str, int] = FLOORS) -> list[str]:
    """``file:line`` messages for every import from a higher floor or a sibling room under ``root``."""
    problems = []
    for room in floors:
        for path in sorted((root / room).rglob("*.py")):
            module = _module_name(path, root)
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                for target in _imported_modules(node, module, path.name == "__init__.py"):
                    other = target.split(".")[0]
                    if other not in floors or other == room:
                        continue
                    if floors[other] >= floors[room]:
                        kind = "upward" if floors[other] > floors[room] else "sideways"
                        problems.append(f"{path.relative_to(root)}:{node.lineno}: {kind} import of {target} "
                                        f"({room} is on floor {floors[room]}, {other} on {floors[other]})")
    return problems


def test_no_module_imports_a_higher_or_sibling_layer() -> None:
    empty = [room for room in FLOORS if not list((PROJECT / room).rglob("*.py"))]
    assert not empty, f"no module under {empty}: the rule would hold vacuously"
    problems = layer_violations(PROJECT)
    assert not problems, "imports against the layers:\n" + "\n".join(problems)


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_the_checker_catches_every_form_of_upward_import(tmp_path: Path) -> None:
    _write(tmp_path, {
        "lightning_app/__init__.py": "",
        "lightning_app/cmd.py": "from trackers.geometry import crops\nimport datamodules.x\n",
        "datamodules/__init__.py": "",
        "datamodules/x.py": "from trackers import geometry\nfrom . import y\n",
        "datamodules/y.py": "def f():\n    from callbacks import z\n",
        "callbacks/__init__.py": "",
        "callbacks/z.py": "import numpy\n",
        "trackers/__init__.py": "",
        "trackers/geometry/__init__.py": "",
        "trackers/geometry/crops.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from datamodules.x import A\n"
            "def g():\n    import lightning_app.cmd\n"
            "from ..errors import E\n"
        ),
        "trackers/errors.py": "",
    })
    problems = layer_violations(tmp_path)
    assert [p.split(": ")[0] for p in problems] == [
        "datamodules/y.py:2",  # sideways, inside a function
        "trackers/geometry/crops.py:3",  # under TYPE_CHECKING
        "trackers/geometry/crops.py:5",  # inside a function
    ], problems
    assert "sideways import of callbacks" in problems[0] and "upward import of lightning_app.cmd" in problems[2]
    _write(tmp_path, {"trackers/geometry/crops.py": "from ...datamodules import x\n"})  # relative, out of the room
    assert [p.split(": ")[0] for p in layer_violations(tmp_path)] == ["datamodules/y.py:2",
                                                                       "trackers/geometry/crops.py:1"]


def test_importing_the_online_trackers_keeps_opencv_threads_and_loads_no_data_code() -> None:
    code = ("import cv2; n = cv2.getNumThreads(); import trackers.inference.online, "
            "trackers.inference.mixformerv2_tracker, trackers.inference.center_head_tracker, "
            "trackers.inference.frame_sources, trackers.inference.ope; import sys; "
            "assert cv2.getNumThreads() == n, (n, cv2.getNumThreads()); "
            "loaded = [m for m in sys.modules if m.split('.')[0] in ('datamodules', 'callbacks', 'lightning_app')]; "
            "assert not loaded, loaded")
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(PROJECT)})
    assert done.returncode == 0, done.stderr[-2000:]
