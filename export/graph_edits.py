"""Edits of exported ONNX graphs: their metadata, and rewrites of Ultralytics' head that give the same
numbers faster (DFL's softmax on the last axis) or in a form OpenVINO compiles (GatherND top-k)."""

from __future__ import annotations

from typing import Any


def set_metadata(model: Any, props: dict[str, str]) -> None:
    """Replace an ONNX model's ``metadata_props`` (string values; edgepose's are JSON-encoded)."""
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)


def last_axis_dfl(model: Any) -> bool:
    """Rewrite the head's DFL (distribution focal loss decode) so its softmax runs over the last axis.

    Ultralytics exports DFL as Transpose(0,2,1,3) -> Softmax(axis=1) over 16 bins -> a 1x1 Conv
    with the bin indices as weights. onnxruntime runs a softmax on a middle axis slowly: 5.6 ms of
    a ~50 ms forward pass at 640. Transposing the other way, softmax on the last axis and a MatMul
    with the same weights as a column give the same numbers (bit for bit on onnxruntime's CPU
    provider, 1.2 ms). Returns whether the pattern was found (a head without DFL is left alone)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    users: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    weights = {init.name: init for init in graph.initializer}

    def attribute(node: Any, name: str) -> Any:
        return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)

    for softmax in graph.node:
        transpose = producer.get(softmax.input[0]) if softmax.op_type == "Softmax" else None
        after = users.get(softmax.output[0], [])
        if transpose is None or transpose.op_type != "Transpose" or len(after) != 1 or after[0].op_type != "Conv":
            continue
        conv = after[0]
        if list(attribute(transpose, "perm") or []) != [0, 2, 1, 3] or attribute(softmax, "axis") != 1:
            continue
        if len(users[transpose.output[0]]) != 1 or len(conv.input) != 2 or conv.input[1] not in weights:
            continue
        weight = numpy_helper.to_array(weights[conv.input[1]])
        if weight.ndim != 4 or weight.shape[0] != 1 or weight.shape[2:] != (1, 1):
            continue
        for a in transpose.attribute:
            if a.name == "perm":
                a.CopyFrom(helper.make_attribute("perm", [0, 1, 3, 2]))
        for a in softmax.attribute:
            if a.name == "axis":
                a.CopyFrom(helper.make_attribute("axis", -1))
        column = f"{conv.input[1]}_column"
        graph.initializer.append(numpy_helper.from_array(weight.reshape(-1, 1), column))
        matmul = helper.make_node("MatMul", [softmax.output[0], column], list(conv.output),
                                  name=conv.name.rsplit("/", 2)[0] + "/MatMul")  # fmt: skip
        graph.node.insert(list(graph.node).index(conv), matmul)
        graph.node.remove(conv)
        if not any(conv.input[1] in node.input for node in graph.node):
            graph.initializer.remove(weights[conv.input[1]])
        changed = {transpose.output[0], softmax.output[0], *conv.output}  # their shapes changed: drop the stale ones
        for info in [v for v in graph.value_info if v.name in changed]:
            graph.value_info.remove(info)
        return True
    return False


def gather_nd_topk(model: Any) -> int:
    """Rewrite the one-to-one head's top-k gathers as GatherND; returns how many were rewritten.

    Ultralytics exports them as GatherElements over a Slice of the head output, with the top-k
    indices unsqueezed and expanded to the slice's width. onnxruntime runs that, but OpenVINO's
    CPU plugin (2026.4) refuses to compile it (a compile pass gathers from the unsliced tensor:
    "Shapes [1,8400,56] and [1,300,4] are not consistent"). GatherND with batch_dims=1 on the
    unsqueezed indices picks the same rows (bit for bit on onnxruntime) and compiles on both."""
    from onnx import helper

    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    rewritten = 0
    for node in list(graph.node):
        index = producer.get(node.input[1]) if node.op_type == "GatherElements" else None
        if index is not None and index.op_type == "Expand":
            index = producer.get(index.input[0])
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        if index is None or index.op_type != "Unsqueeze" or axis != 1:
            continue
        gather = helper.make_node("GatherND", [node.input[0], index.output[0]], list(node.output),
                                  name=f"{node.name}/GatherND", batch_dims=1)  # fmt: skip
        graph.node.insert(list(graph.node).index(node), gather)
        graph.node.remove(node)
        rewritten += 1
    while rewritten:  # drop what fed only the old gathers (the Expands and their shapes)
        used = {name for node in graph.node for name in node.input} | {out.name for out in graph.output}
        dead = [node for node in graph.node if not any(out in used for out in node.output)]
        if not dead:
            for init in [i for i in graph.initializer if i.name not in used]:
                graph.initializer.remove(init)
            break
        for node in dead:
            graph.node.remove(node)
    return rewritten
