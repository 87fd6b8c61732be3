"""The benchmark machine's current figures (docs/benchmark.md links them): one ``edgepose bench`` run, saved per machine.

    python benchmarks/pose_latency.py [--machine NAME] [--runs 60] [--dry-run]

Makes the graphs it needs when they are missing (``edgepose export``: the static 640 graph that
Ultralytics' ONNX predict runs, and a dynamic one that edgepose feeds a rectangular letterbox),
then runs the one command printed on the first line: both backends, every CPU and GPU device
name (those this machine lacks are reported as skipped), onnxruntime on cpu with and without
spinning threads, 2 frames in flight, the stream FPS of a
video made from the bundled photos (overlapped against one frame at a time), and Ultralytics'
own predict on the static graph and on the .pt in the same run. Writes
``benchmarks/results/<machine>.json``, ``.md`` and ``.png``, and appends to the Markdown the
targets of issues #5 and #7 for this machine with pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
STATIC = ROOT / "models" / "yolo11n-pose.onnx"
DYNAMIC = ROOT / "models" / "dynamic" / "yolo11n-pose.onnx"
PT = ROOT / "models" / "yolo11n-pose.pt"  # a copy of the default weights, for Ultralytics' PyTorch predict

# The targets of issue #5 ("on this machine, in one run").
MAX_E2E_OVER_FORWARD = 1.05
MAX_VS_ULTRALYTICS = {"onnxruntime": 0.8, "openvino": 0.5}
MAX_COLD_START_S = 0.5
MAX_PEAK_RSS_MB = 250
MIN_STREAM_SPEEDUP = 1.3  # issue #7: overlapped stream FPS over one frame at a time


def machine_name() -> str:
    from edgepose.device_info import cpu_model

    return re.sub(r"[^a-z0-9]+", "-", f"{cpu_model()} {os.cpu_count()}cpu".lower()).strip("-")


def ensure_models() -> bool:
    """Export the static and the dynamic graph from the default weights if they are not there yet, and
    copy the weights beside them; False where the export extra is missing (on a Pi: copy the graphs)."""
    try:
        from edgepose.export.weights import default_weights
    except ImportError:
        return False
    for path, flag in ((STATIC, "--static"), (DYNAMIC, "--dynamic")):
        if not path.is_file():
            subprocess.run([sys.executable, "-m", "edgepose", "export", flag, "--out", str(path.parent)], check=True)
    if not PT.is_file():
        shutil.copyfile(default_weights(), PT)
    return True


def check_targets(report: dict) -> list[dict]:
    """The issue's targets against this run: one row per target and check."""
    rows = []
    ratios = {(r["edgepose"], Path(r["ultralytics"]).name): r["end_to_end_p50"] for r in report["ratios"]}
    for t in report["targets"]:
        if t["status"] != "ok":
            continue
        name = t["target"]
        rows.append({"target": name, "check": "end to end / bare forward at p50", "limit": MAX_E2E_OVER_FORWARD,
                     "value": t["end_to_end_over_forward_p50"]})  # fmt: skip
        rows.append({"target": name, "check": "(the same from the decoded frame, without the file's decode)",
                     "limit": MAX_E2E_OVER_FORWARD, "value": t["frame_over_forward_p50"]})  # fmt: skip
        ratio = ratios.get((name, STATIC.name))
        if ratio is not None and t["device"].lower() == "cpu":
            rows.append({"target": name, "check": "end to end p50 / Ultralytics ONNX predict",
                         "limit": MAX_VS_ULTRALYTICS[t["backend"]], "value": ratio})  # fmt: skip
        cold = t.get("cold_start") or {}
        if cold.get("status") == "ok" and t["backend"] == "onnxruntime":  # the runtime-only install
            rows.append({"target": name, "check": "cold start to first result (s)", "limit": MAX_COLD_START_S,
                         "value": cold["first_result_s"]})  # fmt: skip
            rows.append({"target": name, "check": "peak RSS, runtime-only process (MB)", "limit": MAX_PEAK_RSS_MB,
                         "value": cold["peak_rss_mb"]})  # fmt: skip
        stream = t.get("stream") or {}
        if stream.get("speedup") is not None:
            rows.append({"target": name, "check": "stream FPS overlapped / one frame at a time (issue #7)",
                         "limit": MIN_STREAM_SPEEDUP, "value": stream["speedup"], "at_least": True})  # fmt: skip
    for row in rows:
        row["pass"] = row["value"] >= row["limit"] if row.get("at_least") else row["value"] <= row["limit"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machine", default=None, help="Result file stem (default: CPU model and core count).")
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--dry-run", action="store_true", help="Print the command only.")
    args = parser.parse_args()
    stem = RESULTS / (args.machine or machine_name())
    export_extra = args.dry_run or ensure_models()
    reference = [str(STATIC.relative_to(ROOT)), str(PT.relative_to(ROOT))] if export_extra else []
    command = ["edgepose", "bench", "--model", str(DYNAMIC.relative_to(ROOT)), "--backend", "onnxruntime,openvino",
               "--devices", "cpu,cuda,tensorrt,CPU,GPU", "--precision", "f32,bf16", "--spin", "--runs", str(args.runs), "--streams", "2",
               "--video", "sample",
               *[item for w in reference for item in ("--compare-ultralytics", w)],
               "--json", f"{stem.relative_to(ROOT)}.json", "--markdown", f"{stem.relative_to(ROOT)}.md",
               "--plot", f"{stem.relative_to(ROOT)}.png"]  # fmt: skip
    print(" ".join(shlex.quote(c) for c in command), flush=True)
    if args.dry_run:
        return
    subprocess.run([sys.executable, "-m", "edgepose", *command[1:]], check=True, cwd=ROOT)

    from edgepose.outputs import write_bytes_atomic, write_json

    report = json.loads(Path(f"{stem}.json").read_text())
    report["issue_targets"] = check_targets(report)
    write_json(f"{stem}.json", report)
    lines = ["", "## Targets of issues #5 and #7 on this machine", "", "| target | check | limit | value | pass |",
             "|---|---|---|---|---|"]  # fmt: skip
    for row in report["issue_targets"]:
        limit = f"≥ {row['limit']}" if row.get("at_least") else f"≤ {row['limit']}"
        lines.append(f"| {row['target']} | {row['check']} | {limit} | {row['value']} | "
                     f"{'yes' if row['pass'] else '**no**'} |")  # fmt: skip
    markdown = Path(f"{stem}.md").read_text()
    write_bytes_atomic(f"{stem}.md", (markdown + "\n".join(lines) + "\n").encode())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
