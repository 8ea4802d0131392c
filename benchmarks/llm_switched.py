"""Issue 116 item 5: one INT4 session serving the candidate's probed run AND its local-error segments.

Before s22 the bisect of `benchmarks/llm_size.py`'s pair made the INT4 file's probed session and then one more
session for the local errors (every segment side by side), each prepacking the file's 4-bit weights again (ONNX
Runtime's Python API shares no prepacked weights between sessions). This measures `cp_debug.graph.switches` on the
INT4 file alone: the probed graph with a switch at each probe tensor that a node reads, `Where(t::use, t::ref, t)`
feeding t's readers, `t::use` and `t::ref` overridable initializers (graph inputs with a default: False, and a scalar
0 that broadcasts): run as it is it is the probed forward; fed `t::use` = True and the reference's value at every
probe tensor, each probe's output is computed from the reference's values at its boundaries — its segment's local
value.

    python benchmarks/llm_switched.py /tmp/llm_size [--rounds 3]      # after `llm_size.py measure` (bisect_8.json)

Prints, alternating the probed graph and the switched one: the session's CPU seconds (the process's, while ONNX
Runtime makes it), its wall, one prompt forward's CPU seconds; for the switched one whether every output equals the
probed session's bit for bit, the local run's CPU seconds and whether fed its own values it gives them back. Then the
local values against the bisect's: each probe's max |local − reference| (the FP32 file's probed run fed the prompt)
equal to the report's `local_max_abs` (float32 arithmetic, as the bisect's) or not.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

WEIGHTS = "session.model_external_initializers_file_folder_path"


def exposed(model, tensors: list[str]):
    """A copy of `model` with `tensors` added as float outputs (the builder's probe tensors are float32)."""
    import onnx
    from onnx import TensorProto, helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    have = {o.name for o in out.graph.output}
    out.graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in tensors
                            if t not in have)
    return out


def session(model, folder: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.add_session_config_entry(WEIGHTS, str(folder))
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    data = model.SerializeToString()
    c0, w0 = time.process_time(), time.perf_counter()
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    return sess, time.process_time() - c0, time.perf_counter() - w0


def prompt_feed(sess, ids: np.ndarray, head: int) -> dict:
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    for i in sess.get_inputs():
        if i.name.startswith("past_key_values"):
            feed[i.name] = np.zeros((1, i.shape[1], 0, head), np.float32)
    return feed


def timed(sess, feed: dict) -> tuple[dict, float]:
    names = [o.name for o in sess.get_outputs()]
    c0 = time.process_time()
    got = sess.run(names, feed)
    return dict(zip(names, got)), time.process_time() - c0


def main() -> int:
    import onnx

    from cp_debug.graph.switches import switch_feed, switched_graph

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    out = args.out
    rep = json.loads((out / "bisect_8.json").read_text())
    label = next(iter(rep["results"]))
    mapped = rep["settings"]["deployed"][label]["model"]["mapped"]  # reference probe -> the INT4 file's tensor
    tensors = list(dict.fromkeys(v["tensor"] for v in mapped.values()))
    int4 = onnx.load(str(out / "int4" / "model.onnx"), load_external_data=False)
    probed = exposed(int4, tensors)
    sw, cut = switched_graph(probed, tensors)
    ids = np.load(out / "prompt.npz")["input_ids"]
    head = json.loads((out / "int4" / "genai_config.json").read_text())["model"]["decoder"]["head_size"]
    print(f"{len(tensors)} probe tensors, {len(cut)} read by a node (switched)")
    for _ in range(args.rounds):
        sess, cpu, wall = session(probed, out / "int4")
        base, run_cpu = timed(sess, prompt_feed(sess, ids, head))
        print(f"probed    session {cpu:.2f} CPU s ({wall:.2f} s)  forward {run_cpu:.2f} CPU s", flush=True)
        del sess
        sess, cpu, wall = session(sw, out / "int4")
        feed = prompt_feed(sess, ids, head)
        got, run_cpu = timed(sess, feed)
        same = all(np.array_equal(base[k], got[k]) for k in base)
        own = {**feed, **switch_feed({t: base[t] for t in cut})}
        back, local_cpu = timed(sess, own)
        print(f"switched  session {cpu:.2f} CPU s ({wall:.2f} s)  forward {run_cpu:.2f} CPU s, the probed outputs bit "
              f"for bit: {same}; local run {local_cpu:.2f} CPU s, fed its own values gives them back: "
              f"{all(np.array_equal(base[k], back[k]) for k in base)}", flush=True)
        del sess
    fp32 = onnx.load(str(out / "fp32" / "model.onnx"), load_external_data=False)
    where = {p["name"]: p["onnx_tensor"] for p in rep["probes"]}
    sess, _, _ = session(exposed(fp32, list(where.values())), out / "fp32")
    ref, _ = timed(sess, prompt_feed(sess, ids, head))
    del sess
    sess, _, _ = session(sw, out / "int4")
    of = {t: name for name, t in ((n, mapped[n]["tensor"]) for n in where if n in mapped)}
    feed = {**prompt_feed(sess, ids, head), **switch_feed({t: ref[where[of[t]]] for t in cut if t in of})}
    local, _ = timed(sess, feed)
    said = {r["probe"]: r["local_max_abs"] for r in rep["results"][label]}
    equal = [n for n, t in ((n, mapped[n]["tensor"]) for n in where if n in mapped) if said.get(n) is not None
             and float(np.max(np.abs(local[t] - ref[where[n]])) if local[t].size else 0.0) == said[n]]
    print(f"local max |local - reference| equal to the bisect's local_max_abs: {len(equal)} of "
          f"{sum(1 for n in where if said.get(n) is not None)} probes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
