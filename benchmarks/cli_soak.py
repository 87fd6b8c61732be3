"""Soak the CLI as users run it: `edgepose predict` on folders and videos of growing length, peak RSS
and open file descriptors against length.

    python benchmarks/cli_soak.py --cli /path/to/runtime-only/venv/bin/edgepose \\
        [--model models/dynamic/yolo11n-pose.onnx --imgsz 320] [--folders 1000,10000,30000,100000] \\
        [--videos 1000,30000]

A folder of N images is N symbolic links to the bundled photos (bus.jpg and zidane.jpg in turn), run
with `--json`; a video of N frames is made from the same photos (edgepose.video.sample_video,
640x360) and run with `--json` and `--save`. Each run is one process of the given CLI (install the
runtime alone into a venv: `pip install .`, no extras); its peak RSS (VmHWM) and open descriptors
are read from /proc every 0.2 s while it runs, so Linux only. Each output is checked: one record per
image or frame, a complete JSON array. Growth is each run's peak RSS against the shortest run of
its kind; the script exits 1 if any grew by more than 5 %. Writes benchmarks/results/cli_soak.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgepose.sources import sample_images
from edgepose.video import sample_video

ROOT = Path(__file__).resolve().parent.parent
MAX_GROWTH_PCT = 5.0


def run(cmd: list[str]) -> dict:
    """Run ``cmd`` to its end; its peak RSS (MB), most open descriptors and seconds."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
        peak_kb = fds = 0
        while proc.poll() is None:
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
                peak_kb = max(peak_kb, int(status.split("VmHWM:")[1].split()[0]))
                fds = max(fds, len(list(Path(f"/proc/{proc.pid}/fd").iterdir())))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass  # between exit and reaping
            time.sleep(0.2)
        err.seek(0)
        stderr = err.read().decode(errors="replace").strip()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {stderr[-500:]}")
    return {
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "max_open_fds": fds,
        "seconds": round(time.perf_counter() - start, 1),
    }


def check_json(path: Path, records: int) -> int:
    """The file is a complete JSON array of ``records`` one-line records (read line by line: 100k
    records are too large to parse whole here for no reason); returns its size in bytes."""
    with open(path) as handle:
        lines = handle.read().splitlines()
    assert lines[0] == "[" and lines[-1] == "]" and len(lines) == records + 2, (path, len(lines))
    for line in (lines[1], lines[-2]):
        json.loads(line.rstrip(","))
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cli", default=shutil.which("edgepose") or "edgepose")
    parser.add_argument("--model", default=str(ROOT / "models" / "dynamic" / "yolo11n-pose.onnx"))
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--folders", default="1000,10000,30000,100000")
    parser.add_argument("--videos", default="1000,30000")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cli_soak.json"))
    args = parser.parse_args()

    photos = sample_images()
    base = [args.cli, "predict", "-m", args.model, "--imgsz", str(args.imgsz)]
    rows = []
    for n in [int(v) for v in args.folders.split(",") if v]:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "images"
            folder.mkdir()
            for i in range(n):
                (folder / f"{i:06d}.jpg").symlink_to(photos[i % len(photos)])
            out = Path(tmp) / "out.json"
            row = {"kind": "folder --json", "length": n, **run([*base[:2], str(folder), *base[2:], "--json", str(out)])}
            row["json_bytes"] = check_json(out, n)
        rows.append(row)
        print(json.dumps(row), flush=True)
    for n in [int(v) for v in args.videos.split(",") if v]:
        with tempfile.TemporaryDirectory() as tmp:
            video = sample_video(Path(tmp) / "soak.mp4", frames_each=n // len(photos), size=(640, 360))
            out = Path(tmp) / "out"
            cmd = [*base[:2], str(video), *base[2:], "--json", str(out / "frames.json"), "--save", str(out)]
            row = {"kind": "video --json --save", "length": n, **run(cmd)}
            row["json_bytes"] = check_json(out / "frames.json", n)
            row["video_bytes"] = (out / "soak.mp4").stat().st_size
        rows.append(row)
        print(json.dumps(row), flush=True)
    worst = 0.0
    for kind in dict.fromkeys(r["kind"] for r in rows):
        runs = [r for r in rows if r["kind"] == kind]
        for r in runs:
            r["growth_pct"] = round(100 * (r["peak_rss_mb"] / runs[0]["peak_rss_mb"] - 1), 2)
            worst = max(worst, r["growth_pct"])
    report = {"cli": args.cli, "model": Path(args.model).name, "imgsz": args.imgsz, "python": sys.version.split()[0],
              "machine": platform.machine(), "max_growth_pct": MAX_GROWTH_PCT, "runs": rows}  # fmt: skip
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"worst growth {worst:+.2f} % (limit {MAX_GROWTH_PCT} %)")
    sys.exit(1 if worst > MAX_GROWTH_PCT else 0)


if __name__ == "__main__":
    main()
