"""A short soak of the whole pipeline (benchmarks/soak.py, the script the long 10,000-frame run uses):
RSS must stay flat after the warm-up, and no file descriptor or thread may leak, with corrupt
uploads mixed in. EDGEPOSE_SOAK_FRAMES sets the length (default 100: a CI-sized run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

FRAMES = int(os.environ.get("EDGEPOSE_SOAK_FRAMES", "100"))


@pytest.mark.soak
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="the soak reads /proc (Linux only)")
def test_soak_memory_and_handles_stay_flat(yolo11_dynamic_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--frames", str(FRAMES),
                           "--warmup", "30", "--model", str(yolo11_dynamic_onnx), "--imgsz", "320",
                           "--out", str(out)], capture_output=True, text=True)  # fmt: skip
    report = json.loads(out.read_text())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["frames"] == FRAMES and report["persons_found"] > FRAMES
    assert report["corrupt_uploads_skipped"] == (30 + FRAMES) // 50  # every 50th upload is corrupt
    assert report["rss_growth_pct"] < 5.0, report
    assert report["fds_end"] <= report["fds_after_warmup"] and report["threads_end"] <= report["threads_after_warmup"]
