"""edgepose bench: short real runs on the bundled photos; the report's schema, skipped devices, the
outputs, and one-line errors. No timing assertions: only that each number exists and is coherent."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from edgepose.bench import BenchSettings, model_names, parse_targets, run_bench, schedule, take_turns
from edgepose.device_info import clock_state, throttling, usable_cores
from edgepose.errors import InputError

from .conftest import assert_one_line_error
from .conftest import edgepose_cli as edgepose

ROOT = Path(__file__).resolve().parent.parent
CLASSIFIER = ROOT / "models" / "yoga-classifier.onnx"
PERCENTILES = ("p50", "p90", "p95", "p99", "max")


def assert_stats(stats: dict) -> None:
    values = [stats[k] for k in PERCENTILES]
    assert values == sorted(values) and values[0] > 0, stats
    assert stats["fps"] == pytest.approx(1000 / stats["mean"], rel=1e-2)


def test_cli_run_report_outputs_and_skipped_device(yolo11_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = edgepose("bench", "--model", yolo11_onnx, "--classifier", CLASSIFIER, "--devices", "cpu,cuda",
                    "--runs", "3", "--warmup", "1", "--json", out / "r.json", "--markdown", out / "r.md",
                    "--plot", out / "r.png")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "r.json").read_text())
    assert report["schema"] == "edgepose.bench/2"
    assert {"created", "command", "settings", "system", "clock", "targets", "models", "ultralytics", "ratios"} <= set(
        report
    )
    assert report["settings"]["model"] == [str(yolo11_onnx)] and report["models"] == []  # one model: nothing compared
    assert report["command"].startswith("edgepose bench --model ") and "--runs 3" in report["command"]
    assert {"cpu", "cores_logical", "libraries", "memory_mb", "allocator"} <= set(report["system"])
    if sys.platform == "linux" and platform.libc_ver()[0] == "glibc":  # the CLI keeps freed buffers (edgepose.memory)
        assert report["system"]["allocator"].startswith("glibc, freed blocks kept")
    assert report["system"]["libraries"]["onnxruntime"][0].isdigit()
    assert set(report["clock"]) == {"before", "after"}

    cpu, cuda = report["targets"]
    assert (cuda["target"], cuda["status"]) == ("onnxruntime:cuda", "skipped")
    assert "CUDAExecutionProvider not available" in cuda["reason"]
    assert cpu["status"] == "ok" and cpu["providers"] == ["CPUExecutionProvider"] and cpu["runs"] == 3
    assert cpu["model"] == cuda["model"] == str(yolo11_onnx)
    assert set(cpu["stages"]) == {"read", "preprocess", "inference", "postprocess", "classifier", "end_to_end"}
    for stats in [*cpu["stages"].values(), cpu["forward"]]:
        assert_stats(stats)
    e2e = cpu["stages"]["end_to_end"]
    assert e2e["p50"] > cpu["stages"]["inference"]["p50"] and e2e["n"] == 3
    assert 0 < cpu["frame_over_forward_p50"] < cpu["end_to_end_over_forward_p50"] + 0.5
    per_image = [(i["end_to_end_p50_ms"], i["forward_p50_ms"]) for i in cpu["images"]]
    assert cpu["end_to_end_over_forward_p50"] == pytest.approx(
        sum(e for e, _ in per_image) / sum(f for _, f in per_image), rel=1e-3
    )
    assert cpu["session_s"] > 0 and cpu["first_result_ms"] >= cpu["first_inference_ms"] > 0
    assert [(i["image"], i["persons"], i["input_shape"]) for i in cpu["images"]] == [
        ("bus.jpg", 4, [640, 640]), ("zidane.jpg", 2, [640, 640])]  # fmt: skip
    cold = cpu["cold_start"]
    assert cold["status"] == "ok" and cold["heavy_modules"] == []  # the runtime alone, as on a Pi
    assert cold["first_result_s"] > cold["load_s"] > 0 and cold["peak_rss_mb"] > 50
    assert len(cold["spawns"]) == 3 and cold["spawns"][1] == cold["first_result_s"]  # the median of 3 processes

    markdown = (out / "r.md").read_text()
    assert (
        "| onnxruntime:cpu | 640x640 |" in markdown and "onnxruntime:cuda | skipped: CUDAExecutionProvider" in markdown
    )
    assert "| end to end |" in markdown and "| bare forward |" in markdown
    plot = cv2.imread(str(out / "r.png"))
    assert plot is not None and plot.shape[1] > 300 and (plot < 200).any()  # a real picture with something drawn
    assert "onnxruntime:cuda: skipped" in proc.stdout and "bare forward" in proc.stdout


def test_both_backends_streams_and_ultralytics(yolo11_dynamic_onnx: Path, yolo11_onnx: Path) -> None:
    """onnxruntime (with and without spinning threads) and OpenVINO on a dynamic graph (rect
    letterbox), 2 frames in flight, an absent OpenVINO GPU skipped, and Ultralytics' own ONNX
    predict in the same report with the ratio."""
    settings = BenchSettings(model=str(yolo11_dynamic_onnx), backend="onnxruntime,openvino", devices="cpu,CPU,GPU",
                             runs=2, warmup=0, streams=2, cold_start=False, spin=True,
                             compare_ultralytics=(str(yolo11_onnx),))  # fmt: skip
    assert {"--spin", "--no-cold-start"} <= set(settings.command().split())
    report = run_bench(settings)
    ort, spin, ov, gpu = report["targets"]
    assert [t["target"] for t in report["targets"]] == [
        "onnxruntime:cpu", "onnxruntime:cpu spin", "openvino:CPU", "openvino:GPU"]  # fmt: skip
    assert (ort["spin"], spin["spin"]) == (False, True) and "spin" not in ov
    assert gpu["status"] == "skipped" and "not available" in gpu["reason"]
    for t in (ort, spin, ov):
        assert t["status"] == "ok" and t["rect"] and t["cold_start"] is None
        assert [i["input_shape"] for i in t["images"]] == [[640, 480], [384, 640]]
        assert [i["persons"] for i in t["images"]] == [4, 2]
        tp = t["throughput"]
        assert tp["streams"] == 2 and tp["frames"] == 2 and tp["fps"] > 0 and tp["latency"]["n"] == 2
    assert ov["precision"] == "f32" and ov["threads_used"] >= 1
    (ultra,) = report["ultralytics"]
    assert ultra["status"] == "ok", ultra
    assert ultra["imgsz"] == 640 and ultra["persons"] == {"bus.jpg": 4, "zidane.jpg": 2}
    assert {"preprocess", "inference", "postprocess", "other", "end_to_end"} <= set(ultra["stages"])
    ratios = {r["edgepose"]: r["end_to_end_p50"] for r in report["ratios"]}
    assert set(ratios) == {"onnxruntime:cpu", "onnxruntime:cpu spin", "openvino:CPU"}
    ours, theirs = ([i["end_to_end_p50_ms"] for i in side["images"]] for side in (ov, ultra))
    assert ratios["openvino:CPU"] == pytest.approx(sum(ours) / sum(theirs), rel=1e-3)


def test_video_stream_fps_in_the_report(yolo11_onnx: Path, sample_video: Path, tmp_path: Path) -> None:
    """--video: every frame of a real video through both loops, the ratio computed from them, and
    the sentence in the terminal and Markdown reports."""
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    proc = edgepose("bench", "--model", yolo11_onnx, "--runs", "2", "--warmup", "0", "--no-cold-start",
                    "--video", sample_video, "--video-rounds", "2", "--json", out, "--markdown", md)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (target,) = json.loads(out.read_text())["targets"]
    stream = target["stream"]
    capture = cv2.VideoCapture(str(sample_video))
    assert stream["frames"] == int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) and stream["size"] == [640, 360]
    assert len(stream["sequential_fps"]) == len(stream["overlap_fps"]) == 2 and min(stream["overlap_fps"]) > 0
    ratios = sorted(o / s for s, o in zip(stream["sequential_fps"], stream["overlap_fps"]))
    assert stream["speedup"] == pytest.approx(sum(ratios) / 2, abs=2e-3)  # median of two rounds
    assert stream["overlap_engine"] == {"device": "cpu", "threads": max(1, usable_cores() // 2)}
    assert "one frame at a time" in proc.stdout and "one frame at a time" in md.read_text()
    # CPU accounting: a process cannot keep more than its cores busy, and each round's ratio is at
    # most that round's ceiling, so the medians keep that order (a little slack for tick rounding)
    assert stream["cores"] >= 1 and stream["sequential_cpu_ms_per_frame"] > 0
    assert 0 < stream["sequential_cpu_busy"] <= 1.05 and 0 < stream["overlap_cpu_busy"] <= 1.05
    assert stream["speedup"] <= stream["speedup_ceiling"] * 1.05
    assert "no schedule of that work passes" in proc.stdout


def test_unreadable_video_is_refused_before_timing(yolo11_onnx: Path, tmp_path: Path) -> None:
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    out = tmp_path / "r.json"
    proc = edgepose("bench", "--model", yolo11_onnx, "--runs", "2", "--no-cold-start", "--video", bad, "--json", out)
    assert_one_line_error(proc, 3, "cannot open video")
    assert not out.exists()


def test_several_models_are_timed_in_one_run(yolo11_onnx: Path, yolo11_int8_onnx: Path, tmp_path: Path) -> None:
    """FP32 and INT8 ONNX in the same rounds: a row each, labelled by model, and the INT8 speed-up."""
    out = tmp_path / "out"
    proc = edgepose("bench", "-m", yolo11_onnx, "-m", yolo11_int8_onnx, "--runs", "2", "--warmup", "0",
                    "--no-cold-start", "--json", out / "r.json", "--markdown", out / "r.md", "--plot", out / "r.png")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "r.json").read_text())
    fp32, int8 = report["targets"]
    assert [(t["target"], t["model"], t["status"]) for t in (fp32, int8)] == [
        ("yolo11n-pose.onnx onnxruntime:cpu", str(yolo11_onnx), "ok"),
        ("yolo11n-pose_int8.onnx onnxruntime:cpu", str(yolo11_int8_onnx), "ok")]  # fmt: skip
    assert fp32["runs"] == int8["runs"] == 2 and [i["persons"] for i in fp32["images"]] == [4, 2]
    (speedup,) = report["models"]
    assert (speedup["model"], speedup["reference"], speedup["target"]) == (
        str(yolo11_int8_onnx), str(yolo11_onnx), "onnxruntime:cpu")  # fmt: skip
    assert speedup["end_to_end_p50_speedup"] > 0 and speedup["forward_p50_speedup"] > 0
    assert speedup["end_to_end_p50_speedup"] == pytest.approx(
        sum(i["end_to_end_p50_ms"] for i in fp32["images"]) / sum(i["end_to_end_p50_ms"] for i in int8["images"]),
        rel=1e-3,
    )
    assert report["command"].startswith(f"edgepose bench --model {yolo11_onnx} --model {yolo11_int8_onnx} ")
    markdown = (out / "r.md").read_text()
    assert f"| {yolo11_onnx} | onnxruntime:cpu | 640x640 |" in markdown and "## Speed-up against" in markdown
    assert f"| {yolo11_int8_onnx} | {yolo11_onnx} | onnxruntime:cpu |" in markdown
    assert "yolo11n-pose_int8.onnx against yolo11n-pose.onnx on onnxruntime:cpu: end to end x" in proc.stdout
    assert cv2.imread(str(out / "r.png")) is not None


def test_ir_that_the_backend_cannot_read_is_a_skipped_row(yolo11_onnx: Path, yolo11_ir: Path, tmp_path: Path) -> None:
    proc = edgepose("bench", "-m", yolo11_onnx, "-m", yolo11_ir, "--backend", "onnxruntime", "--runs", "2",
                    "--warmup", "0", "--no-cold-start", "--json", tmp_path / "r.json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    onnx, ir = report["targets"]
    assert (onnx["target"], onnx["status"]) == ("yolo11n-pose.onnx onnxruntime:cpu", "ok")
    assert (ir["target"], ir["model"], ir["status"]) == (f"{yolo11_ir.name} onnxruntime:cpu", str(yolo11_ir), "skipped")
    assert "onnxruntime cannot read OpenVINO IR" in ir["reason"] and report["models"] == []


def test_a_missing_or_repeated_model_is_refused_up_front(yolo11_onnx: Path, tmp_path: Path) -> None:
    out = ["--json", tmp_path / "out" / "r.json", "--markdown", tmp_path / "out" / "r.md"]
    missing = tmp_path / "gone_int8.onnx"
    assert_one_line_error(edgepose("bench", "-m", yolo11_onnx, "-m", missing, *out), 4, f"model not found: {missing}")
    assert_one_line_error(edgepose("bench", "-m", yolo11_onnx, "-m", yolo11_onnx, *out), 3, "is given twice")
    assert not (tmp_path / "out").exists()


def test_settings_take_one_model_or_several() -> None:
    assert BenchSettings(model="a.onnx").model == ("a.onnx",)
    assert BenchSettings(model=("a.onnx", "b_int8.onnx"), runs=5).command() == (
        "edgepose bench --model a.onnx --model b_int8.onnx --runs 5")  # fmt: skip
    assert model_names(["x/pose.onnx", "y/pose.onnx", "y/ir_model"]) == {
        "x/pose.onnx": "x/pose.onnx", "y/pose.onnx": "y/pose.onnx", "y/ir_model": "ir_model"}  # fmt: skip


def test_device_names_map_to_backends() -> None:
    both = "onnxruntime,openvino"
    assert [t.label for t in parse_targets("m.onnx", both, "cpu,CPU,openvino:gpu,cuda")] == [
        "onnxruntime:cpu", "openvino:CPU", "openvino:GPU", "onnxruntime:cuda"]  # fmt: skip
    assert [t.label for t in parse_targets("m.onnx", "openvino", "cpu")] == ["openvino:CPU"]
    assert [t.label for t in parse_targets("m.onnx", both, None, ["f32", "bf16"])] == [
        "onnxruntime:cpu", "openvino:CPU", "openvino:CPU bf16"]  # fmt: skip
    assert [t.label for t in parse_targets("m.onnx")] == ["onnxruntime:cpu"]
    # no backend named: an ONNX graph's upper-case names are OpenVINO's (CPU was folded into cpu, then dropped)
    assert [t.label for t in parse_targets("m.onnx", "auto", "cpu,CPU")] == ["onnxruntime:cpu", "openvino:CPU"]
    assert [t.label for t in parse_targets("m.onnx", both, "cpu,CPU", spin=True)] == [
        "onnxruntime:cpu", "onnxruntime:cpu spin", "openvino:CPU"]  # fmt: skip
    with pytest.raises(InputError, match="unknown onnxruntime device 'gpu'"):
        parse_targets("m.onnx", "onnxruntime", "gpu")


def test_each_turn_starts_with_an_untimed_run() -> None:
    """Targets take turns a few runs at a time; each turn is settled first (one untimed run), so
    threads the previous target left spinning never land in the next target's timings."""
    log: list[str] = []

    class Turns:  # the two calls take_turns makes on a bench
        status = "ok"

        def __init__(self, name: str, runs: int) -> None:
            self.name, self.runs = name, runs

        def settle(self) -> None:
            log.append(self.name + " untimed")

        def step(self) -> None:
            log.append(self.name)

    a, b = Turns("a", 4), Turns("b", 2)
    take_turns(schedule([a, b], rounds=2))
    assert log == ["a untimed", "a", "a", "b untimed", "b", "a untimed", "a", "a", "b untimed", "b"]


@pytest.mark.parametrize(
    "args, code, fragment",
    [
        (["--runs", "0"], 2, "'--runs': 0 is not in the range"),
        (["--runs", "2", "--seconds", "1"], 3, "give --runs or --seconds, not both"),
        (["--devices", "cpu,warp"], 3, "unknown onnxruntime device 'warp'"),
        (["--streams", "1"], 3, "streams must be 0 (off) or at least 2"),
        (["--backend", "tflite"], 3, "unknown backend 'tflite'"),
        (["--model", "missing.onnx"], 4, "model not found: missing.onnx"),
        (["--compare-ultralytics", "nothere.pt"], 3, "no such file: nothere.pt"),
        (["--video", "nothere.mp4"], 3, "--video: no such file: nothere.mp4"),
        (["--backend", "openvino", "--spin"], 3, "--spin times onnxruntime on cpu, and this run has no such target"),
        (["--precision", "bf16"], 3, "--precision times OpenVINO on the CPU at each precision, and this run has no"),
    ],
)
def test_bad_values_are_one_line_errors(yolo11_onnx: Path, args: list[str], code: int, fragment: str) -> None:
    proc = edgepose("bench", "--model", yolo11_onnx, *args)  # refused before anything is loaded or timed
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.startswith("error:") and proc.stderr.count("\n") == 1 and fragment in proc.stderr, proc.stderr


def test_plot_without_matplotlib_names_the_extra(yolo11_onnx: Path, tmp_path: Path) -> None:
    code = ("import sys\nsys.modules['matplotlib'] = None\nfrom edgepose.cli import main\n"
            f"main(['bench', '--model', {str(yolo11_onnx)!r}, '--plot', {str(tmp_path / 'p.png')!r}])")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "edgepose[bench]" in proc.stderr
    assert not (tmp_path / "p.png").exists()


def test_bench_modules_are_torch_free() -> None:
    code = "import edgepose.bench, edgepose.bench_report, edgepose.device_info, sys; print(' '.join(sys.modules))"
    loaded = set(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    )
    assert not loaded & {"torch", "ultralytics", "matplotlib"}


def test_clock_state_never_fails_and_reads_a_pi_throttle_word(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = clock_state()
    assert set(state) == {"cpu_mhz", "temperature_c", "throttling", "load_average_1m"}
    tool = tmp_path / "vcgencmd"  # a stand-in for the Pi's firmware tool, run as the real one would be
    tool.write_text("#!/bin/sh\necho throttled=0x50005\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert throttling() == {"raw": "0x50005", "flags": ["under-voltage now", "throttled now",
                                                        "under-voltage has occurred", "throttling has occurred"]}  # fmt: skip


def test_a_cgroup_cpu_quota_caps_the_usable_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """``docker --cpus=1.5`` writes a quota, not an affinity mask: cgroup v2's cpu.max or v1's cfs
    files as the kernel shows them (their parsing, with the files' contents given)."""
    from edgepose import device_info

    affinity = len(os.sched_getaffinity(0))  # not usable_cores(): this host may have a quota of its own
    files = {"/sys/fs/cgroup/cpu.max": "150000 100000"}
    monkeypatch.setattr(device_info, "_read", files.get)
    assert device_info.cpu_quota() == 1.5 and usable_cores() == min(affinity, 2)
    files.update({"/sys/fs/cgroup/cpu.max": "max 100000"})
    assert device_info.cpu_quota() is None and usable_cores() == affinity
    files.update({"/sys/fs/cgroup/cpu.max": None, "/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "50000",
                  "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000"})  # fmt: skip
    assert device_info.cpu_quota() == 0.5 and usable_cores() == 1
    files.update({"/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1"})
    assert device_info.cpu_quota() is None


def test_openvino_auto_device_is_timed_and_says_what_it_does_not_expose(yolo11_onnx: Path) -> None:
    """AUTO has no INFERENCE_NUM_THREADS (a CPU property): reading it ended the whole run, its timings
    lost and no report written."""
    proc = edgepose("bench", "--model", yolo11_onnx, "--backend", "openvino", "--devices", "AUTO", "--runs", 2,
                    "--warmup", 0, "--no-cold-start", "--json", "-")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    target = json.loads(proc.stdout)["targets"][0]
    assert target["status"] == "ok" and target["threads_used"] == "not exposed by this device"
