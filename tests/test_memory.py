"""edgepose.memory: with freed buffers kept, decoding the same real photo again touches no new
pages; with glibc's defaults every decode page-faults its whole output anew (why the module exists).
Each case runs in a fresh process: the allocator is per process and its state is sticky."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from edgepose.memory import USER_TUNING

_PROBE = """
import json, resource, sys
import cv2, numpy as np
from edgepose.memory import allocator_state, reuse_freed_memory
from edgepose.sources import sample_images
tuned = reuse_freed_memory() if sys.argv[1] == "reuse" else None
data = np.fromfile(str(next(p for p in sample_images() if p.name == "zidane.jpg")), np.uint8)  # 1280x720
for _ in range(3):
    cv2.imdecode(data, cv2.IMREAD_COLOR)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    cv2.imdecode(data, cv2.IMREAD_COLOR)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20
print(json.dumps({"tuned": tuned, "state": allocator_state(), "faults": faults}))
"""

glibc = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="the allocator tuning is glibc's (Linux)"
)


def _probe(mode: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in USER_TUNING}
    proc = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, env={**clean, **env})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@glibc
def test_kept_buffers_stop_the_page_faults_of_each_decode() -> None:
    kept, default = _probe("reuse"), _probe("default")
    assert kept["tuned"] is True and kept["state"].startswith("glibc, freed blocks kept")
    assert default["state"] == "default"
    pages = 1280 * 720 * 3 / 4096  # the decoded image alone spans 675 pages
    assert kept["faults"] < 0.05 * pages, kept
    assert default["faults"] > 0.5 * pages, default  # glibc's defaults: a fresh mapping per decode


@glibc
def test_a_tuning_in_the_environment_is_left_alone() -> None:
    probe = _probe("reuse", MALLOC_TRIM_THRESHOLD_="131072")
    assert probe["tuned"] is False and probe["state"] == "tuned by the environment (MALLOC_TRIM_THRESHOLD_)"
