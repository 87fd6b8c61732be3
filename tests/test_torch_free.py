"""The runtime and its CLI verbs must never import torch or ultralytics."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "ultralytics", "torchvision")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return set(out.stdout.split())


def test_import_and_cli_are_torch_free() -> None:
    loaded = _modules_after("import edgepose, edgepose.cli, edgepose.val, edgepose.draw, edgepose.outputs")
    assert not loaded & set(HEAVY)


def test_predict_and_val_paths_are_torch_free(yolo11_onnx: Path, samples: list[Path], tmp_path: Path) -> None:
    code = (
        "from edgepose.cli import main\n"
        "try:\n"
        f"    main(['predict', {str(samples[0])!r}, '--model', {str(yolo11_onnx)!r}, '--save', {str(tmp_path)!r},"
        f" '--json', {str(tmp_path / 'r.json')!r}])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "import edgepose\n"
        f"edgepose.load({str(yolo11_onnx)!r})({str(samples[1])!r})"
    )
    loaded = _modules_after(code)
    assert (tmp_path / "r.json").is_file()
    assert "onnxruntime" in loaded
    assert not loaded & set(HEAVY)


def test_export_without_extra_names_the_extra() -> None:
    code = "import sys\nsys.modules['torch'] = None\nfrom edgepose.cli import main\nmain(['export'])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error:")
    assert "edgepose[export]" in proc.stderr
