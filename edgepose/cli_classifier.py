"""The keypoint classifier's verbs of the ``edgepose`` command: ``dataset``, ``train`` and ``eval``.

Registered on the group in ``edgepose.cli`` (which imports this module); the same one-line errors
and exit codes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .cli import DEFAULT_POSE_MODEL, VERIFY_OPTION, _emit_json, _predictor_options, _progress, cli, json_target
from .errors import InputError, PartialFailure


@cli.command()
@click.argument("images_dir", type=click.Path())
@_predictor_options
@click.option("--conf", type=float, default=0.25, show_default=True, help="Person score threshold.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="CSV to write.")
@click.option(
    "--label",
    default=None,
    help="IMAGES_DIR is one flat folder whose images all get this label (e.g. people in no class).",
)
@click.option("--all-persons", is_flag=True, help="One row per person found (default: the most confident one).")
def dataset(images_dir: str, model: str, imgsz: int | None, engine: dict[str, Any], iou: float, max_det: int, conf: float,
            out: str, label: str | None, all_persons: bool) -> None:  # fmt: skip
    """Build a keypoint CSV from IMAGES_DIR/<class>/<image> (the most confident person per image),
    with each photo's perceptual hash so `train` keeps near-copies on one side of its split."""
    from .keypoint_csv import format_table, table_from_images
    from .outputs import write_bytes_atomic
    from .predictor import load
    from .sources import list_images

    root = Path(images_dir)
    if not root.is_dir():
        raise InputError(f"not a folder: {root}")
    if label:
        jobs = [(label, path) for path in list_images(root)]
        classes = [label]
    else:
        folders = sorted(p for p in root.iterdir() if p.is_dir())
        if not folders:
            raise InputError(f"{root} has no class sub-folders (a flat folder needs --label)")
        jobs = [(folder.name, path) for folder in folders for path in list_images(folder)]  # empty class: error
        classes = [folder.name for folder in folders]
    predictor = load(model, **engine, conf=conf, iou=iou, max_det=max_det, imgsz=imgsz)
    done = table_from_images(predictor, jobs, all_persons, progress=lambda x: _progress(x, "dataset"),
                             on_failure=lambda message: click.echo(f"warning: skipped {message}", err=True))  # fmt: skip
    for message in done.no_person:
        click.echo(f"warning: skipped {message}", err=True)
    if done.table is None:
        raise InputError(f"no person found in any image under {root}")
    write_bytes_atomic(out, format_table(done.table, predictor.keypoint_names).encode())
    click.echo(f"wrote {len(done.table.labels)} rows ({len(classes)} classes) to {out}; "
               f"{len(done.no_person) + len(done.failed)} image(s) skipped")  # fmt: skip
    if done.failed:
        raise PartialFailure(
            f"{len(done.failed)} of {len(jobs)} images failed and were skipped; the CSV holds the rest"
        )


@cli.command()
@click.argument("csv_paths", metavar="CSV...", nargs=-1, required=True, type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), default="runs/classifier", show_default=True)
@click.option(
    "--model",
    "kind",
    type=click.Choice(["mlp", "svc"]),
    default="mlp",
    show_default=True,
    help="mlp: two hidden layers (--hidden, --hidden/2; --epochs); svc: RBF SVC, sigmoid-calibrated.",
)
@click.option("--hidden", type=click.IntRange(min=2), default=256, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--name", default="classifier", show_default=True, help="File stem of the graph and report.")
@click.option("--negatives", multiple=True, type=click.Path(),
              help="People in no class: a keypoint CSV, or a folder of photos (every person found). Repeatable; "
                   "adds the 'no known pose' outcome.")  # fmt: skip
@click.option("--pose-model", default=DEFAULT_POSE_MODEL, show_default=True,
              help="Pose graph that reads --negatives folders.")  # fmt: skip
@click.option("--max-false-accept", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.04,
              show_default=True, help="With --negatives: share of validation negatives the threshold may still label.")  # fmt: skip
def train(csv_paths: tuple[str, ...], out: str, kind: str, hidden: int, epochs: int, seed: int, name: str,
          negatives: tuple[str, ...], pose_model: str, max_false_accept: float) -> None:  # fmt: skip
    """Train a keypoint classifier on CSVs (split together: one photo's rows on one side; the first CSV's
    seed split, or by photo content where a CSV has image hashes) and export it to ONNX."""
    from .errors import MissingExtraError

    try:
        from .export.classifier import train_classifier
    except ImportError as exc:
        raise MissingExtraError("export", exc.name or "a dependency") from None
    report = train_classifier(list(csv_paths), out, model=kind, hidden=hidden, epochs=epochs, seed=seed, name=name,
                              negatives=list(negatives), pose_model=pose_model,
                              max_false_accept=max_false_accept)  # fmt: skip
    for source in report.sources:
        click.echo(f"{report.model}: {source['csv']}: accuracy {source['accuracy']:.4f} on {source['test_rows']} "
                   f"held-out rows ({source['split']}); 2 keypoints missing {source['accuracy_two_missing']:.4f}; "
                   f"mirrored {source['accuracy_mirrored']:.4f}")  # fmt: skip
    if report.rejection:
        r = report.rejection
        held = r["held_out_negatives"]
        click.echo(f"no known pose below {r['threshold']:.4f}: validation accuracy {r['validation']['accuracy']:.4f}, "
                   f"false accepts {r['validation']['false_accept']:.4f}; held-out negatives labelled "
                   f"{held['false_accept']:.4f} of {held['rows']}")  # fmt: skip
    for label, row in report.per_class.items():
        click.echo(f"  {label:<12} precision {row['precision']:.3f}  recall {row['recall']:.3f}  n={row['support']}")
    names = report.classes + (["none"] if report.rejection else [])
    click.echo(f"confusion (rows truth, columns predicted, {', '.join(names)}): {report.confusion}")
    click.echo(f"wrote {Path(out) / (name + '.onnx')} and {name}.report.json")
    unreadable = report.rejection["held_out_negatives"]["unreadable_images"] if report.rejection else []
    for message in unreadable:
        click.echo(f"warning: skipped {message}", err=True)
    if unreadable:
        raise PartialFailure(f"{len(unreadable)} --negatives image(s) could not be read and were skipped; "
                             "the classifier learnt from the rest")  # fmt: skip


@cli.command(name="eval")
@click.argument("classifier", type=click.Path())
@click.argument("csv_path", metavar="CSV", type=click.Path())
@click.option("--json", "json_out", default=None, callback=json_target, help="Write the report here ('-' for stdout).")
@VERIFY_OPTION
def evaluate(classifier: str, csv_path: str, json_out: str | None, verify: bool) -> None:
    """Accuracy and confusion matrix of a classifier graph on a keypoint CSV."""
    import numpy as np

    from .classifier import KeypointClassifier, per_class_report
    from .keypoint_csv import read_table

    clf = KeypointClassifier(classifier, verify=verify)
    table = read_table(csv_path, clf.keypoint_names)
    names = clf.names + (["none"] if clf.threshold is not None else [])  # rows labelled none: people in no pose
    unknown = sorted(set(table.labels) - set(names))
    if unknown:
        raise InputError(f"{csv_path}: labels the classifier does not know: {', '.join(unknown)}")
    truth = np.array([names.index(label) for label in table.labels])
    pred = clf.decide(table.keypoints)[0]
    none = int((pred < 0).sum())
    pred = np.where(pred < 0, len(clf.names), pred)  # no known pose: a column of its own
    per_class, confusion = per_class_report(truth, pred, names)
    if not (truth == len(clf.names)).any():
        per_class.pop("none", None)  # no row says none: its column alone says what was rejected
    report = {"classifier": classifier, "csv": csv_path, "rows": len(truth), "classes": names,
              "accuracy": round(float((truth == pred).mean()), 4), "no_pose": none, "per_class": per_class,
              "confusion": confusion}  # fmt: skip
    if json_out != "-":
        click.echo(f"accuracy {report['accuracy']:.4f} on {len(truth)} rows ({none} with no known pose)")
        click.echo(f"confusion (rows truth, columns predicted, {', '.join(names)}): {report['confusion']}")
    _emit_json(json_out, report)
