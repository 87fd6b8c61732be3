"""MkDocs hook: the committed benchmark results and the model card become part of the site.

Figures live in ``benchmarks/results/`` (JSON, generated Markdown, plots) and ``models/``, not in
the docs' prose; this hook serves those files under ``results/`` and ``models/`` and writes the
``results.md`` page from them (each file's producing script, its date in git and the machine it
records), so the site shows the current figures and cannot drift from what was committed.
"""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
MODEL_CARDS = ("yoga-classifier.md",)


def _committed(path: Path) -> str:
    """The date the file was last committed (a result's date), else 'not committed'."""
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%cs", "--", str(path)], cwd=ROOT, capture_output=True,
                             text=True, check=False).stdout.strip()  # fmt: skip
    except OSError:
        out = ""
    return out or "not committed"


def _machine(data: Any) -> str:
    """The machine a result records, in the few shapes the scripts write."""
    if not isinstance(data, dict):
        return "not recorded"
    system = data.get("system") if isinstance(data.get("system"), dict) else {}
    cpu = system.get("cpu") or data.get("cpu") or data.get("machine")
    cores = system.get("cores_usable") or data.get("cores")
    if "x86" in data and "arm64" in data:
        return "x86_64 host and arm64 under qemu (Cortex-A76)"
    return f"{cpu}, {cores} cores" if cpu and cores else str(cpu or "not recorded")


def _producers() -> dict[str, tuple[str, str]]:
    """results file name -> (script, the first line of its docstring), read from benchmarks/*.py."""
    found: dict[str, tuple[str, str]] = {}
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        text = script.read_text()
        doc = (ast.get_docstring(ast.parse(text)) or "").strip().split("\n\n")[0].replace("\n", " ")
        for result in RESULTS.iterdir():
            if f'"{result.stem}' in text or f"{result.name}" in text:
                found.setdefault(result.stem, (f"benchmarks/{script.name}", doc))
    return found


def results_page() -> str:
    producers = _producers()
    lines = ["# Current figures", "",
             "Every benchmark writes its figures to `benchmarks/results/` and they are committed with the code that",
             "made them; the task pages quote these files. Dates are the files' last commit; the machine is what the",
             "file records. A script's own docstring says how to run it again.", "",
             "| result | produced by | what it measures | date | machine |", "|---|---|---|---|---|"]  # fmt: skip
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        script, doc = producers.get(path.stem, ("", "not found in any benchmarks/ script"))
        if isinstance(data, dict) and str(data.get("schema", "")).startswith("edgepose.bench"):
            # pose_latency.py names its report after the machine, so no script names that file
            script = script or "benchmarks/pose_latency.py"
            doc = f"one `edgepose bench` run: `{data['command'].split(' --json')[0]}`"
        links = f"[{path.name}](results/{path.name})"
        for sibling in (".md", ".png"):
            if path.with_suffix(sibling).exists():
                links += f" · [{sibling[1:]}](results/{path.stem}{sibling})"
        lines.append(f"| {links} | `{script}` | {doc} | {_committed(path)} | {_machine(data)} |")
    lines += ["", "## Plots", ""]
    for plot in sorted(RESULTS.glob("*.png")):
        lines += [f"![{plot.stem}](results/{plot.name})", "", f"`{plot.name}` ({_committed(plot)})", ""]
    return "\n".join(lines) + "\n"


def on_files(files: Files, config: Any) -> Files:
    for path in sorted(RESULTS.iterdir()):
        files.append(File.generated(config, f"results/{path.name}", abs_src_path=str(path)))
    for card in MODEL_CARDS:
        files.append(File.generated(config, f"models/{card}", abs_src_path=str(ROOT / "models" / card)))
    files.append(File.generated(config, "results.md", content=results_page()))
    return files
