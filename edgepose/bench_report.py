"""A bench report (``edgepose.bench.run_bench``) as a terminal table, Markdown, or a PNG plot.

The plot needs matplotlib (``pip install 'edgepose[bench]'``); the rest is plain text.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from .backends import precision_note
from .bench_targets import model_names
from .errors import MissingExtraError
from .outputs import write_bytes_atomic

ROWS = [  # (key in the report, label)
    ("read", "read + decode"),
    ("preprocess", "preprocess"),
    ("inference", "inference"),
    ("postprocess", "postprocess"),
    ("classifier", "classifier"),
    ("end_to_end", "end to end"),
]
ULTRALYTICS_ROWS = [("preprocess", "preprocess"), ("inference", "inference"), ("postprocess", "postprocess"),
                    ("other", "other (loader, results)"), ("end_to_end", "end to end")]  # fmt: skip
COLUMNS = ("p50", "p90", "p95", "p99", "max", "fps")


def _num(value: Any, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else str(value if value is not None else "-")


def clock_line(state: dict[str, Any]) -> str:
    """Clock, temperature, throttling and load in one line."""
    cpu = state["cpu_mhz"]
    if cpu.get("source") == "not exposed":
        clock = "clock not exposed"
    else:
        lo, hi = min(cpu["current"]), max(cpu["current"])
        clock = f"{lo}{'' if lo == hi else f'-{hi}'} MHz ({cpu['source']}"
        clock += f", max {cpu['max']}, {cpu['governor']})" if cpu.get("max") != "not exposed" else ")"
    temps = state["temperature_c"]
    temp = ", ".join(f"{k} {v} C" for k, v in temps.items()) if isinstance(temps, dict) else temps
    throttle = state["throttling"]
    throttle = f"{throttle['raw']} {', '.join(throttle['flags']) or 'none'}" if isinstance(throttle, dict) else throttle
    return f"{clock}; temperature {temp}; throttling {throttle}; load {state['load_average_1m']}"


def _cold(target: dict[str, Any]) -> str:
    cold = target.get("cold_start")
    if not cold:
        return "not measured"
    if cold["status"] != "ok":
        return f"failed: {cold['reason']}"
    spawns = ", ".join(f"{s:.3f}" for s in cold.get("spawns", []))
    return (f"{cold['first_result_s']:.3f} s (median of {spawns}; interpreter {cold['interpreter_s']:.3f}, "
            f"import {cold['import_s']:.3f}, load {cold['load_s']:.3f}, first predict {cold['first_predict_s']:.3f}), "
            f"peak RSS {cold['peak_rss_mb']:.0f} MB")  # fmt: skip


def _precision(target: dict[str, Any]) -> str:
    return precision_note(target.get("precision"), target.get("precision_requested"))


def _shapes(target: dict[str, Any]) -> str:
    """The network input sizes (h x w) the images got: one for a static graph, one per aspect for a dynamic one."""
    return ", ".join(dict.fromkeys("x".join(map(str, i["input_shape"])) for i in target["images"] if i["input_shape"]))


def _stage_rows(stats: dict[str, Any], rows: list[tuple[str, str]]) -> list[tuple[str, dict[str, Any]]]:
    return [(label, stats[key]) for key, label in rows if key in stats]


def _models(report: dict[str, Any]) -> list[str]:
    """The models measured, in the order given (a schema/1 report held one, as a string)."""
    model = report["settings"]["model"]
    return list(model) if isinstance(model, (list, tuple)) else [model]


def _engine(report: dict[str, Any], target: dict[str, Any]) -> str:
    """A target's label without its model's name (the name leads the label when several models ran)."""
    models = _models(report)
    if len(models) == 1:
        return target["target"]
    return target["target"][len(model_names(models)[target["model"]]) + 1 :]


def _uncompared(report: dict[str, Any]) -> list[str]:
    """Models after the first that ran but met no earlier model on the same backend and device."""
    compared = {m["model"] for m in report.get("models", [])}
    ran = dict.fromkeys(t["model"] for t in report["targets"] if t["status"] == "ok")
    return [m for m in _models(report)[1:] if m in ran and m not in compared]


def _speedup_lines(report: dict[str, Any]) -> list[str]:
    """The models' speed-ups for a terminal; empty with one model."""
    if len(_models(report)) < 2:
        return []
    if not report.get("models"):
        return [f"speed-up: {NO_SPEEDUP}"]
    names = model_names(_models(report))
    lines = [f"speed-up against {names[_models(report)[0]]} (or the first model given on the same engine): "
             "reference p50 / model p50, each image's p50 summed; > 1 is faster"]  # fmt: skip
    for m in report["models"]:
        lines.append(f"  {names[m['model']]} against {names[m['reference']]} on {m['target']}: end to end "
                     f"x{_num(m['end_to_end_p50_speedup'], 3)}, bare forward x{_num(m['forward_p50_speedup'], 3)}")  # fmt: skip
    lines += [f"  {names[m]}: not compared (no earlier model ran on its backend and device)"
              for m in _uncompared(report)]  # fmt: skip
    return lines


NO_SPEEDUP = "none measured (no two models ran on the same backend and device)"


def _text_table(rows: list[tuple[str, dict[str, Any]]], indent: str = "  ") -> list[str]:
    lines = [indent + f"{'stage (ms)':<24}" + "".join(f"{c.upper() if c == 'fps' else c:>9}" for c in COLUMNS)]
    for label, s in rows:
        lines.append(indent + f"{label:<24}" + "".join(f"{_num(s[c]):>9}" for c in COLUMNS))
    return lines


def _stream_text(stream: dict[str, Any]) -> str:
    """One sentence for ``--video``: overlapped stream FPS against one frame at a time."""
    if stream.get("status") == "failed":
        return f"stream on {stream['video']}: failed: {stream['reason']}"
    engine = ", ".join(f"{k} {v}" for k, v in stream["overlap_engine"].items())
    return (f"stream on {stream['video']} ({stream['frames']} frames {stream['size'][0]}x{stream['size'][1]}, "
            f"{stream['rounds']} rounds): overlapped {stream['overlap_fps_median']:.2f} FPS ({engine}) against "
            f"{stream['sequential_fps_median']:.2f} one frame at a time: x{stream['speedup']:.2f} "
            f"(median of the rounds' ratios; per round {', '.join(f'{v:.2f}' for v in stream['speedup_per_round'])}); "
            f"CPU per frame {stream['sequential_cpu_ms_per_frame']:.1f} ms one at a time "
            f"({stream['sequential_cpu_busy']:.0%} of {stream['cores']} cores busy), "
            f"{stream['overlap_cpu_ms_per_frame']:.1f} ms overlapped ({stream['overlap_cpu_busy']:.0%} busy): "
            f"no schedule of that work passes x{stream['speedup_ceiling']:.2f} here")  # fmt: skip


def format_table(report: dict[str, Any]) -> str:
    """The report for a terminal."""
    st, sy = report["settings"], report["system"]
    lines = [
        f"edgepose bench: {', '.join(_models(report))}, {len(st['images'])} image(s), warm-up {st['warmup']}; "
        f"{sy['cpu']}, {sy['cores_usable']} core(s), onnxruntime {sy['libraries']['onnxruntime']}",
        f"before: {clock_line(report['clock']['before'])}",
        f"after:  {clock_line(report['clock']['after'])}",
    ]
    for t in report["targets"]:
        if t["status"] != "ok":
            lines.append(f"{t['target']}: {t['status']}: {t['reason']}")
            continue
        shape = _shapes(t)
        lines += [
            f"{t['target']}: {', '.join(t['providers'])}{_precision(t)}; input h x w {shape} ({'rect' if t['rect'] else 'square'} "
            f"letterbox); threads {t['threads_used']}; {t['runs']} runs",
            f"  session {t['session_s']:.3f} s; first result {t['first_result_ms']:.1f} ms "
            f"(inference {t['first_inference_ms']:.1f} ms)",
            f"  cold start to first result: {_cold(t)}",
            *_text_table([*_stage_rows(t["stages"], ROWS), ("bare forward", t["forward"])]),
            f"  end to end / bare forward (each image's p50, summed): {t['end_to_end_over_forward_p50']:.3f} "
            f"({t['overhead_p50_ms']:+.1f} ms per image); from the decoded frame: {t['frame_over_forward_p50']:.3f}",
        ]
        tp = t.get("throughput")
        if tp and tp["status"] != "ok":
            lines.append(f"  {tp['streams']} streams: failed: {tp['reason']}")
        elif tp:
            lines.append(f"  {tp['streams']} streams: {tp['fps']:.2f} FPS against {_num(tp['single_stream_fps'], 2)} "
                         f"single-stream (x{_num(tp['speedup'], 2)}); latency p50 {tp['latency']['p50']:.1f} ms, "
                         f"p99 {tp['latency']['p99']:.1f} ms; {tp['mode']}")  # fmt: skip
        if t.get("stream"):
            lines.append(f"  {_stream_text(t['stream'])}")
    for u in report["ultralytics"]:
        if u["status"] != "ok":
            lines.append(f"ultralytics {u['weights']}: failed: {u['reason']}")
            continue
        lines += [
            f"ultralytics {u['weights']} (imgsz {u['imgsz']}, ultralytics {u['versions']['ultralytics']}, "
            f"torch {u['versions']['torch']}); load + first result {u['load_and_first_result_s']:.3f} s; "
            f"{u['runs']} runs",
            *_text_table(_stage_rows(u["stages"], ULTRALYTICS_ROWS)),
        ]
    for r in report["ratios"]:
        lines.append(f"{r['edgepose']} / ultralytics {Path(r['ultralytics']).name}, end to end p50: "
                     f"{_num(r['end_to_end_p50'], 3)}")  # fmt: skip
    lines += _speedup_lines(report)
    return "\n".join(lines)


def _md_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def to_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: system, summary across targets, percentiles per target, Ultralytics."""
    st, sy = report["settings"], report["system"]
    libs = ", ".join(f"{k} {v}" for k, v in sy["libraries"].items())
    models = _models(report)
    several = len(models) > 1
    lines = [
        f"# edgepose bench: {', '.join(Path(m).name for m in models)} on {sy['cpu']}",
        "",
        f"{report['created']}; {sy['cores_usable']} of {sy['cores_logical']} cores, {sy['memory_mb']} MB, "
        f"{sy['os']}, Python {sy['python']}; {libs}.",
        "",
        f"Settings: {len(st['images'])} image(s) ({', '.join(Path(p).name for p in st['images'])}), "
        f"warm-up {st['warmup']}, conf {st['conf']}, iou {st['iou']}, threads {st['threads'] or 'default'}, "
        f"classifier {st['classifier'] or 'none'}.",
        "",
        f"- clock before: {clock_line(report['clock']['before'])}",
        f"- clock after: {clock_line(report['clock']['after'])}",
        "",
        "## Summary (ms at p50 unless said)",
        "",
    ]
    header = ["target", "input h x w", "session s", "first result", "cold start s", "peak RSS MB", "read", "preprocess",
              "inference", "postprocess", "end to end", "e2e p99", "bare forward", "e2e / forward", "frame / forward",
              "FPS"]  # fmt: skip
    header = ["model", *header] if several else header
    rows = []
    for t in report["targets"]:
        first = [t["model"], _engine(report, t)] if several else [t["target"]]
        if t["status"] != "ok":
            rows.append([*first, f"{t['status']}: {t['reason']}", *[""] * (len(header) - len(first) - 1)])
            continue
        s, cold = t["stages"], t.get("cold_start") or {}
        rows.append([
            *first, _shapes(t), _num(t["session_s"], 3), _num(t["first_result_ms"]),
            _num(cold.get("first_result_s"), 3), _num(cold.get("peak_rss_mb"), 0),
            *[_num(s[k]["p50"], 2) if k in s else "-" for k in ("read", "preprocess", "inference", "postprocess")],
            _num(s["end_to_end"]["p50"]), _num(s["end_to_end"]["p99"]), _num(t["forward"]["p50"]),
            _num(t["end_to_end_over_forward_p50"], 3), _num(t["frame_over_forward_p50"], 3),
            _num(s["end_to_end"]["fps"], 2),
        ])  # fmt: skip
    lines += _md_table(header, rows)
    lines += ["", "Cold start and peak RSS: a fresh runtime-only Python process, from spawn to the first result "
              "(peak RSS after every image once). Bare forward: the engine alone on pre-made tensors of the same "
              "images, interleaved with the end-to-end runs. e2e / forward and the ratios to Ultralytics are "
              "taken from each image's p50, summed over the images (images of different sizes make the pooled "
              "p50 jump between two modes); frame / forward leaves out reading and decoding the file (a camera "
              "frame arrives decoded); the other columns pool all runs."]  # fmt: skip
    for t in (t for t in report["targets"] if t["status"] == "ok"):
        lines += ["", f"## {t['target']} ({', '.join(t['providers'])}{_precision(t)}, {t['runs']} runs, threads {t['threads_used']})",
                  "", f"Cold start: {_cold(t)}.", ""]  # fmt: skip
        table = [*_stage_rows(t["stages"], ROWS), ("bare forward", t["forward"])]
        lines += _md_table(["stage (ms)", *[c.upper() if c == "fps" else c for c in COLUMNS]],
                           [[label, *[_num(s[c], 2) for c in COLUMNS]] for label, s in table])  # fmt: skip
        tp = t.get("throughput")
        if tp and tp["status"] != "ok":
            lines.append(f"  {tp['streams']} streams: failed: {tp['reason']}")
        elif tp:
            lines += ["", f"{tp['streams']} streams ({tp['mode']}): **{tp['fps']:.2f} FPS** against "
                      f"{_num(tp['single_stream_fps'], 2)} single-stream (x{_num(tp['speedup'], 2)}); per-frame latency "
                      f"p50 {tp['latency']['p50']:.1f} ms, p99 {tp['latency']['p99']:.1f} ms."]  # fmt: skip
        if t.get("stream"):
            lines += ["", _stream_text(t["stream"]) + "."]
    for u in report["ultralytics"]:
        lines += ["", f"## Ultralytics predict: {u['weights']}", ""]
        if u["status"] != "ok":
            lines.append(f"failed: {u['reason']}")
            continue
        lines += [f"imgsz {u['imgsz']}, ultralytics {u['versions']['ultralytics']}, torch {u['versions']['torch']} "
                  f"({u['torch_threads']} threads), {u['runs']} runs; load + first result "
                  f"{u['load_and_first_result_s']:.3f} s.", ""]  # fmt: skip
        lines += _md_table(["stage (ms)", *[c.upper() if c == "fps" else c for c in COLUMNS]],
                           [[label, *[_num(s[c], 2) for c in COLUMNS]]
                            for label, s in _stage_rows(u["stages"], ULTRALYTICS_ROWS)])  # fmt: skip
    if report["ratios"]:
        lines += ["", "## edgepose against Ultralytics (end to end, each image's p50 summed; lower is faster)", ""]
        lines += _md_table(["edgepose", "Ultralytics", "ratio"],
                           [[r["edgepose"], Path(r["ultralytics"]).name, _num(r["end_to_end_p50"], 3)]
                            for r in report["ratios"]])  # fmt: skip
    if several:
        lines += ["", f"## Speed-up against {models[0]}", "",
                  "Each model against the first model given that ran on the same backend and device: reference p50 "
                  "over this model's p50, each image's p50 summed (> 1 is faster); all models timed in the same "
                  "interleaved rounds.", ""]  # fmt: skip
        if report.get("models"):
            lines += _md_table(["model", "against", "target", "end to end", "bare forward"],
                               [[m["model"], m["reference"], m["target"], _num(m["end_to_end_p50_speedup"], 3),
                                 _num(m["forward_p50_speedup"], 3)] for m in report["models"]])  # fmt: skip
        else:
            lines.append(NO_SPEEDUP[0].upper() + NO_SPEEDUP[1:] + ".")
        lines += [f"\n{m}: not compared (no earlier model ran on its backend and device)." for m in _uncompared(report)]
    return "\n".join(lines) + "\n"


def write_plot(report: dict[str, Any], path: str | os.PathLike) -> Path:
    """Per-stage p50 latency as stacked bars, one bar per target (and per Ultralytics run), with the
    bare forward pass marked; written atomically as a small PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingExtraError("bench", "matplotlib") from None
    bars = []  # (label, [(stage, p50 ms)], end-to-end p50, bare forward p50 or None)
    for t in report["targets"]:
        if t["status"] == "ok":
            stages = [(label, t["stages"][k]["p50"]) for k, label in ROWS[:-1] if k in t["stages"]]
            bars.append((t["target"], stages, t["stages"]["end_to_end"]["p50"], t["forward"]["p50"]))
    for u in report["ultralytics"]:
        if u["status"] == "ok":
            stages = [(label, u["stages"][k]["p50"]) for k, label in ULTRALYTICS_ROWS[:-1] if k in u["stages"]]
            bars.append((f"ultralytics {Path(u['weights']).name}", stages, u["stages"]["end_to_end"]["p50"], None))
    skipped = [t["target"] for t in report["targets"] if t["status"] != "ok"]
    colors = {"read + decode": "#8c8c8c", "preprocess": "#4c72b0", "inference": "#dd8452", "postprocess": "#55a868",
              "classifier": "#c44e52", "other (loader, results)": "#b3b3b3"}  # fmt: skip
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.45 * max(len(bars), 1)), dpi=90)
    seen = set()
    for y, (_, stages, e2e, forward) in enumerate(bars):
        left = 0.0
        for stage, ms in stages:
            ax.barh(y, ms, left=left, height=0.6, color=colors.get(stage, "#999999"),
                    label=None if stage in seen else stage)  # fmt: skip
            seen.add(stage)
            left += ms
        ax.text(max(left, forward or 0), y, f"  end to end {e2e:.1f} ms", va="center", fontsize=8)
        if forward:
            ax.plot([forward, forward], [y - 0.4, y + 0.4], color="black", lw=1.5,
                    label=None if "forward" in seen else "bare forward")  # fmt: skip
            seen.add("forward")
    ax.set_yticks(range(len(bars)), [b[0] for b in bars], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("p50 latency per image, stacked by stage (ms)", fontsize=8)
    ax.set_xlim(0, max((max(sum(ms for _, ms in b[1]), b[3] or 0) for b in bars), default=1) * 1.3)
    models = _models(report)
    what = Path(models[0]).name if len(models) == 1 else f"{len(models)} models"
    title = f"edgepose bench: {what} on {report['system']['cpu']}"
    fig.suptitle(title + (f" (skipped: {', '.join(skipped)})" if skipped else ""), fontsize=9)
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, frameon=False)
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return write_bytes_atomic(path, buffer.getvalue())
