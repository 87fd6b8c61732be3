"""Model integrity: export's sha256 sidecars, ``verify`` for ONNX and OpenVINO IR, and a runtime that
only ever parses ONNX / IR (nothing it loads can be unpickled)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

import edgepose
from edgepose.errors import ModelError
from edgepose.integrity import verify_model, write_checksum

from .conftest import ROOT


@pytest.fixture(scope="module")
def yolo11_ir(yolo11_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The exported graph as OpenVINO IR, with the sidecars export writes for both of its files."""
    import openvino as ov

    xml = tmp_path_factory.mktemp("ir") / "pose.xml"
    ov.save_model(ov.convert_model(str(yolo11_onnx)), str(xml), compress_to_fp16=False)
    write_checksum(xml)
    write_checksum(xml.with_suffix(".bin"))
    return xml


def test_sidecar_is_sha256sum_format(yolo11_onnx: Path) -> None:
    if not shutil.which("sha256sum"):
        pytest.skip("sha256sum (coreutils) not on this machine")
    sidecar = yolo11_onnx.name + ".sha256"
    proc = subprocess.run(["sha256sum", "-c", sidecar], cwd=yolo11_onnx.parent, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout == f"{yolo11_onnx.name}: OK\n"


def test_ir_verifies_both_files(yolo11_ir: Path, tmp_path: Path, samples: list[Path]) -> None:
    verify_model(yolo11_ir)
    assert len(edgepose.load(yolo11_ir, verify=True)(samples[0])) == 4
    copy = tmp_path / "ir"
    shutil.copytree(yolo11_ir.parent, copy)
    weights = bytearray((copy / "pose.bin").read_bytes())
    weights[len(weights) // 2] ^= 0x01
    (copy / "pose.bin").write_bytes(bytes(weights))
    with pytest.raises(ModelError, match=r"pose\.bin: sha256 mismatch .*modified since export\?"):
        edgepose.load(copy, verify=True)  # the IR's folder
    (copy / "pose.bin.sha256").unlink()
    with pytest.raises(ModelError, match=r"no checksum sidecar pose\.bin\.sha256"):
        verify_model(copy / "pose.xml")


def test_malformed_sidecar_is_refused(yolo11_onnx: Path, tmp_path: Path) -> None:
    model = tmp_path / "pose.onnx"
    model.write_bytes(yolo11_onnx.read_bytes())
    (tmp_path / "pose.onnx.sha256").write_text("not a checksum\n")
    with pytest.raises(ModelError, match="is not a sha256sum line"):
        verify_model(model)


@pytest.mark.parametrize("name", ["weights.pt", "model.pkl", "arrays.npz", "model.pb", "model"])
def test_only_onnx_and_ir_are_loaded(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"\x80\x04K\x01.")  # a pickle of the int 1: must never be unpickled
    with pytest.raises(ModelError, match="edgepose loads only .onnx graphs or OpenVINO IR"):
        edgepose.load(tmp_path / name)


def test_runtime_source_never_unpickles() -> None:
    """No deserialiser that can run code appears in the runtime package (export/ is not the runtime)."""
    unsafe = re.compile(r"\bpickle\b|allow_pickle|\bnp\.load\(|\btorch\.load\b|\bjoblib\b|\bmarshal\b|\bshelve\b"
                        r"|\bdill\b|(?<![\w.])eval\(|\bexec\(")  # fmt: skip
    hits = [f"{path.name}:{n}: {line.strip()}" for path in sorted((ROOT / "edgepose").rglob("*.py"))
            for n, line in enumerate(path.read_text().splitlines(), 1) if unsafe.search(line)]  # fmt: skip
    assert not hits, hits
