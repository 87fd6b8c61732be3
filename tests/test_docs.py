"""The documentation is checked like code: the site builds with ``mkdocs build --strict`` (no broken
link, anchor or reference), the generated CLI reference names every option of every verb, and
every Python example in the docs and the README runs against the real model.

Examples run in a scratch folder laid out as a user's checkout after the README's first command:
``models/yolo11n-pose.onnx`` and ``models/dynamic/yolo11n-pose.onnx`` (this session's exports),
the shipped ``models/yoga-classifier.onnx``, the ``edgepose`` package with its bundled photos, and
``walk.mp4``, a real video made from the bundled photos (where a kiosk would name its camera, ``0``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from .conftest import ROOT

DOCS = ROOT / "docs"
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
RESULT_LINK = re.compile(r"\]\((benchmarks/results/[^)]+\.json)\)")
# Before a docs table whose figures come from committed results: the files, and how many leading
# columns are labels rather than figures
FIGURES = re.compile(r"^<!-- figures: ((?:\S+\.json ?)+?)(?: after column (\d+))? -->\n\n?((?:\|.*\n)+)", re.M)
NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _examples() -> list[tuple[str, str]]:
    """(file:line, code) of every ```python block in the README, docs/ and the model cards."""
    found = []
    for path in [ROOT / "README.md", *sorted(DOCS.rglob("*.md")), *sorted((ROOT / "models").glob("*.md"))]:
        text = path.read_text()
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{path.relative_to(ROOT)}:{line}", match.group(1)))
    return found


EXAMPLES = _examples()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once with ``mkdocs build --strict`` as CI builds it."""
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def test_site_builds_strict_with_every_page(site: Path) -> None:
    """Every page in the nav was written, the results page lists every committed result."""
    for page in ("index.html", "reference/cli/index.html", "reference/api/index.html", "architecture/index.html",
                 "results/index.html", "models/yoga-classifier/index.html"):  # fmt: skip
        assert (site / page).is_file(), page
    results = (site / "results" / "index.html").read_text()
    for committed in (ROOT / "benchmarks" / "results").glob("*.json"):
        assert committed.name in results and (site / "results" / committed.name).is_file(), committed.name
    api = (site / "reference" / "api" / "index.html").read_text()
    assert "edgepose.load" in api and "Thread-safe" in api  # rendered from the docstrings, not written by hand


def test_cli_reference_names_every_option_of_every_verb(site: Path) -> None:
    from edgepose.cli import cli

    html = (site / "reference" / "cli" / "index.html").read_text()
    missing = []
    for name, command in cli.commands.items():
        if f"edgepose {name}" not in html:
            missing.append(name)
        for param in command.params:
            if isinstance(param, click.Option):
                missing += [f"{name} {opt}" for opt in param.opts + param.secondary_opts if opt not in html]
    assert len(cli.commands) >= 10
    assert not missing, f"not in the generated CLI reference: {missing}"


def test_docs_have_python_examples() -> None:
    """The collector finds the examples (a broken fence pattern would make the next test vacuous)."""
    files = {where.split(":")[0] for where, _ in EXAMPLES}
    assert {"README.md", "docs/index.md", "docs/reference/api.md", "docs/predict.md"} <= files


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, yolo11_onnx: Path, yolo11_dynamic_onnx: Path,
            sample_video: Path) -> Path:  # fmt: skip
    work = tmp_path_factory.mktemp("docs-examples")
    (work / "models" / "dynamic").mkdir(parents=True)
    (work / "models" / "yolo11n-pose.onnx").symlink_to(yolo11_onnx)
    (work / "models" / "dynamic" / "yolo11n-pose.onnx").symlink_to(yolo11_dynamic_onnx)
    (work / "models" / "yoga-classifier.onnx").symlink_to(ROOT / "models" / "yoga-classifier.onnx")
    (work / "edgepose").symlink_to(ROOT / "edgepose")  # as in a checkout: the package, holding assets/
    (work / "walk.mp4").symlink_to(sample_video)
    return work


@pytest.mark.parametrize("where,code", EXAMPLES, ids=[where for where, _ in EXAMPLES])
def test_python_example_runs(where: str, code: str, workdir: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300)  # fmt: skip
    assert proc.returncode == 0, f"{where}:\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip(), f"{where} printed nothing"


def _not_in(text: str, results: list[Path]) -> list[str]:
    """The numbers in ``text`` that no value in ``results`` gives when rounded as quoted (or as a
    percentage): figures a later run replaced."""
    values = [abs(float(v)) for path in results for v in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", path.read_text())]
    missing = []
    for quoted in NUMBER.findall(text):
        places = len(quoted.split(".")[1]) if "." in quoted else 0
        if not any(float(quoted) in (round(v, places), round(v * 100, places)) for v in values):
            missing.append(quoted)
    return missing


def test_docs_tables_quote_the_results_they_name() -> None:
    """Every figure in a docs or model-card table marked ``<!-- figures: FILE.json ... -->`` is in
    those files."""
    pages = [*sorted(DOCS.rglob("*.md")), *sorted((ROOT / "models").glob("*.md"))]
    tables = [(path, match) for path in pages for match in FIGURES.finditer(path.read_text())]
    assert len(tables) >= 2
    stale = []
    for path, match in tables:
        results = [ROOT / name for name in match.group(1).split()]
        labels = int(match.group(2) or 1)
        for row in match.group(3).splitlines()[2:]:  # after the header and the rule
            figures = "|".join(row.split("|")[1 + labels :])
            stale += [f"{path.name}: {q} in '{row[:60]}...'" for q in _not_in(figures, results)]
    assert not stale, f"docs figures not in the results their table names: {stale}"


def test_readme_headline_figures_are_in_the_results_they_link() -> None:
    """Every number in a headline row that links a result file is in that file (rounded as quoted,
    or as a percentage), so the README cannot keep a figure a later run replaced."""
    lines = (ROOT / "README.md").read_text().splitlines()
    rows = [line for line in lines if line.startswith("|") and RESULT_LINK.search(line)]
    assert len(rows) >= 4
    stale = []
    for row in rows:
        figure = row.split("|")[2]
        stale += [f"{q} ({figure.strip()[:40]}...)" for q in _not_in(figure, [ROOT / RESULT_LINK.search(row).group(1)])]
    assert not stale, f"README figures not in the result file they link: {stale}"
