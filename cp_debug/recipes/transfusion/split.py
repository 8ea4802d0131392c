"""A deployed one-graph `transfusion.onnx` (Autoware's interface: `export.py`, or mmdeploy + AWML's fix_graph.py) cut
into the bisect's two stage graphs (`subject.py`), so a `SPEC@DIR` candidate runs the user's own file stage by stage.

The cut is found by structure, not by names:
- the dense heatmap: the input of the Sigmoid the TopK's scores come from (`export.proposal_tensors`);
- the BEV features: the one tensor the dense heatmap is computed from that the rest of the graph (the decoder) reads
  too — the shared conv's output, as the decoder reads it;
- the proposals: the TopK's indices, which the decoder reads from a graph input `top_proposals` (`pin_proposals`'s
  edit); the per-query heatmap score: the GatherElements of the local-max heatmap at those proposals, read from a
  graph input `query_heatmap_score`;
- the outputs: `cls_score0` is `cls_score`; the Sigmoid it multiplies reads `heatmap`; `bbox_pred0`'s Concat reads
  center, height, dim, vel and `dir_cls_pred0` is rot (each through the Slice of the last layer's K, where there is
  one: the stage's outputs are the tensors sliced).
Stage 0 is what `onnx.utils.Extractor` cuts out from the inputs to those two tensors; stage 1 what it cuts out from
the three boundary tensors to the seven outputs, after onnx-graphsurgeon has made the proposals and their scores
graph inputs. Tensors are renamed to the stages' interface names; every other node keeps its name and scope, so the
probes map onto the split graphs as onto the file (`bisect/subjects/deployed.py`). A file that is not Autoware's (other
names, no TopK, a boundary that does not cut the graph in two) is one line (BadInputError, exit 2).
"""

from __future__ import annotations

from pathlib import Path

from cp_debug.errors import BadInputError
from cp_debug.recipes.transfusion.interface import BBOX_HEADS, DEPLOY_INPUTS, interface_mismatch


def _producers(model) -> dict:
    return {t: n for n in model.graph.node for t in n.output}


def _unslice(producer: dict, tensor: str) -> str:
    """The tensor a Slice (the last layer's K) reads, through the Casts of an FP16 file, else `tensor` itself."""
    node = producer.get(tensor)
    while node is not None and node.op_type in ("Slice", "Cast"):
        tensor = node.input[0]
        node = producer.get(tensor)
    return tensor


def _through_casts(producer: dict, tensor: str):
    """The node that computes `tensor`, through the Casts of an FP16 file."""
    node = producer.get(tensor)
    while node is not None and node.op_type == "Cast":
        node = producer.get(node.input[0])
    return node


def _ancestors(model, tensors) -> set[int]:
    """The nodes (by index: a file may leave nodes unnamed) `tensors` are computed from, their producers included."""
    nodes = list(model.graph.node)
    producer = {t: i for i, n in enumerate(nodes) for t in n.output}
    seen: set[int] = set()
    todo = list(tensors)
    while todo:
        i = producer.get(todo.pop())
        if i is None or i in seen:
            continue
        seen.add(i)
        todo += [t for t in nodes[i].input if t]
    return seen


def _outputs(model, producer: dict, what: str) -> dict[str, str]:
    """Stage 1's outputs (by the stage's names) -> the deployed graph's tensors, from the three deployed outputs."""
    score = _through_casts(producer, "cls_score0")
    sig = [_through_casts(producer, t) for t in score.input] if score is not None and score.op_type == "Mul" else []
    sig = [n for n in sig if n is not None and n.op_type == "Sigmoid"]
    cat = _through_casts(producer, "bbox_pred0")
    if not sig or cat is None or cat.op_type != "Concat" or len(cat.input) != len(BBOX_HEADS):
        raise BadInputError(f"{what}: cls_score0 is not a score times the Sigmoid of the class logits, or bbox_pred0 "
                            f"not the Concat of {', '.join(BBOX_HEADS)}: not Autoware's TransFusion outputs")
    found = {h: _unslice(producer, t) for h, t in zip(BBOX_HEADS, cat.input)}
    found["rot"] = _unslice(producer, "dir_cls_pred0")
    found["heatmap"] = _unslice(producer, sig[0].input[0])
    found["cls_score"] = "cls_score0"
    return found


def _renamed(model, names: dict[str, str]):
    """`model` with tensors renamed (old -> new) by onnx-graphsurgeon."""
    from cp_debug.graph.model import export_like
    from cp_debug.graph.weight_store import import_graph

    graph = import_graph(model)
    tensors = graph.tensors()
    for old, new in names.items():
        if old != new:
            tensors[old].name = new
    return export_like(graph, model)


def _extract(model, inputs: list[str], outputs: list[str], what: str, stage: str):
    """The subgraph from `inputs` to `outputs` (onnx.utils.Extractor), checked to read nothing else."""
    import onnx
    from onnx.utils import Extractor

    try:
        part = Extractor(model).extract_model(inputs, outputs)
        onnx.checker.check_model(part)
    except (KeyError, onnx.checker.ValidationError) as e:
        raise BadInputError(f"{what}: the graph does not cut in two at the proposal selection ({stage}: "
                            f"{str(e).splitlines()[0][:160]}): not Autoware's TransFusion") from None
    part.metadata_props.extend(model.metadata_props)
    return part


def _descendants(model, tensor: str) -> set[str]:
    """The tensors computed from `tensor` (itself included), by the graph's node order (topological)."""
    out = {tensor}
    for node in model.graph.node:
        if any(t in out for t in node.input):
            out.update(node.output)
    return out


def _query_score(model, topk_indices: str, dense: str, what: str) -> str:
    """The GatherElements that reads the local-max heatmap (computed from the dense heatmap) at the proposals."""
    heat, cells = _descendants(model, dense), _descendants(model, topk_indices)
    gathers = [n for n in model.graph.node if n.op_type == "GatherElements" and n.input[0] in heat
               and n.input[1] in cells]
    if len(gathers) != 1:
        raise BadInputError(f"{what}: the proposals' heatmap scores: no one GatherElements of the local-max "
                            f"heatmap at the TopK's cells ({len(gathers)} found): not Autoware's TransFusion")
    return gathers[0].output[0]


def split_transfusion(model, what: str = "transfusion.onnx"):
    """(stage 0 `pts_bev`, stage 1 `pts_bbox_head`) graphs of a deployed one graph, by the stages' interface."""
    import onnx

    from cp_debug.recipes.transfusion.export import PINNED_PROPOSALS, pin_proposals, proposal_tensors
    from cp_debug.recipes.transfusion.stages import BEV_OUTPUTS, QUERY_INPUTS, QUERY_OUTPUTS

    wrong = interface_mismatch(model)
    if wrong is not None:
        raise BadInputError(f"{what} {wrong}: not Autoware's TransFusion-L")
    dense, _, indices = proposal_tensors(model)
    model = onnx.shape_inference.infer_shapes(model)
    producer = _producers(model)
    stage0, nodes = _ancestors(model, [dense]), list(model.graph.node)
    # the BEV features: computed on the way to the dense heatmap and read outside that way (by the decoder)
    consumed_out = {t for i, n in enumerate(nodes) if i not in stage0 and n.op_type != "Constant" for t in n.input}
    bev = [t for i, n in enumerate(nodes) if i in stage0 and n.op_type != "Constant" for t in n.output
           if t in consumed_out and t != dense and _is_float(model, t)]
    if len(bev) != 1:
        raise BadInputError(f"{what}: the decoder reads {len(bev)} tensors of the BEV branch ({', '.join(bev[:4])}), "
                            "not one shared feature map: not Autoware's TransFusion")
    score = _query_score(model, indices, dense, what)
    heads = _outputs(model, producer, what)

    first = _extract(model, list(DEPLOY_INPUTS), [bev[0], dense], what, "pts_bev")
    first = _renamed(first, dict(zip([bev[0], dense], BEV_OUTPUTS)))

    pinned_model = pin_proposals(model)  # the decoder reads `top_proposals`, a graph input
    second = _extract(onnx.shape_inference.infer_shapes(pinned_model), [bev[0], PINNED_PROPOSALS, score],
                      [heads[h] for h in QUERY_OUTPUTS], what, "pts_bbox_head")
    second = _renamed(second, {bev[0]: QUERY_INPUTS[0], score: QUERY_INPUTS[2],
                               **{heads[h]: h for h in QUERY_OUTPUTS}})
    return first, second


def _is_float(model, tensor: str) -> bool:
    import onnx

    elem = {vi.name: vi.type.tensor_type.elem_type for vi in model.graph.value_info}
    return elem.get(tensor, onnx.TensorProto.FLOAT) in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)


def deployed_file(folder: Path, what: str):
    """(DIR's transfusion.onnx, the graph) checked to be Autoware's TransFusion-L (names, a TopK of the dense
    heatmap's local maxima) — cheap, so the command says it before the model loads (`cli/bisect_cmd.py`)."""
    from cp_debug.graph.model import load_onnx
    from cp_debug.recipes.transfusion.export import ONNX_FILE, proposal_tensors

    path = Path(folder) / ONNX_FILE
    if not path.is_file():
        raise BadInputError(f"{what}: {path} is missing ({folder} must hold TransFusion-L's deployed {ONNX_FILE}, as "
                            "`cpdebug export --recipe transfusion --out DIR` or AWML's mmdeploy + fix_graph.py "
                            "write it)")
    model = load_onnx(path)
    wrong = interface_mismatch(model)
    if wrong is not None:
        raise BadInputError(f"{what}: {ONNX_FILE} {wrong}: not Autoware's TransFusion-L")
    try:
        proposal_tensors(model)
    except BadInputError as e:
        raise BadInputError(f"{what}: {ONNX_FILE}: {e}") from None
    return path, model


def deployed_split(folder: Path, what: str) -> tuple[Path, tuple]:
    """(the folder's transfusion.onnx, its two stage graphs) for a `SPEC@DIR` candidate
    (`bisect/subjects/deployed.py`)."""
    path, model = deployed_file(folder, what)
    return path, split_transfusion(model, f"{what}: {path.name}")
