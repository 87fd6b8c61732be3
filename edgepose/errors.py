"""edgepose's exception types: every failure the API raises is one of these, and the CLI turns
each into one ``error:`` line on stderr with the class's exit code."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of a foreign exception's message (at most 200 characters) for a one-line error;
    libraries (onnxruntime, OpenVINO, torch) raise multi-line C++ text."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def apply_only(flags: list[str], where: str) -> str:
    """The message for options given where they do nothing: "--a, --b apply to <where>"."""
    return f"{', '.join(flags)} {'applies' if len(flags) == 1 else 'apply'} {where}"


class EdgeposeError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class InputError(EdgeposeError):
    """A source (image, folder, dataset, CLI value) that cannot be used."""

    exit_code = 3


class ModelError(EdgeposeError):
    """A model file that is missing, not a graph edgepose runs, or not a pose model."""

    exit_code = 4


class ExportError(EdgeposeError):
    """Export failed, or the exported graph did not reproduce its source."""

    exit_code = 5


class MissingExtraError(EdgeposeError):
    """A verb needs an optional dependency group (``pip install 'edgepose[NAME]'``)."""

    exit_code = 2

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(f"this needs the '{extra}' extra ({module} is not installed): pip install 'edgepose[{extra}]'")
        self.extra = extra


class PartialFailure(EdgeposeError):
    """A batch (a folder of images) finished, but some inputs failed and were skipped, each reported.

    Its own exit code so a supervisor can tell "results written for the rest" from "nothing done"."""

    exit_code = 6
