"""A bug-report bundle: the failing subgraph, its boundary inputs, both outputs and a one-file repro script.

The directory is built beside its target and renamed into place at the end, so a reader (or a crash) never
sees half a bundle; a read-only or full destination is one BadInputError line and leaves nothing behind.
`shrink_segment` (window.py) makes the subgraph smaller before it is bundled.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import platform
import re
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cp_debug.bisect.result import BisectReport
from cp_debug.bugreport.polygraphy import polygraphy_cmd, polygraphy_inputs, polygraphy_outputs
from cp_debug.compare.diff import TensorDiff, Tolerance
from cp_debug.errors import BadInputError
from cp_debug.report._format import fmt_db, fmt_num
from cp_debug.files import json_text, os_reason, sha256_file, write_json
from cp_debug.graph.onnx_files import encoded, save_onnx

if TYPE_CHECKING:
    import onnx

BUNDLE_FORMAT = "cp_debug.bundle/1"
_TEMPLATE = Path(__file__).with_name("_repro_template.py")
_SETTINGS_LINE = re.compile(r"^SETTINGS: dict = \{\}  # <cp_debug:settings>$", re.M)


def write_bundle(out_dir: str | os.PathLike, *, subgraph: "onnx.ModelProto", inputs: dict[str, np.ndarray],
                 ref_outputs: dict[str, np.ndarray], cand_outputs: dict[str, np.ndarray], candidate_label: str,
                 candidate_spec: str, report: BisectReport | None, tolerance: Tolerance, settings: dict,
                 environment: dict, providers=("CPUExecutionProvider",), session_options: dict | None = None,
                 make_tar: bool = False, story: list[str] | None = None,
                 extra_files: dict[str, tuple[bytes, str]] | None = None) -> Path:
    """Write the bundle directory (and `<out_dir>.tar.gz` with make_tar); returns the directory.

    `subgraph` is the candidate's graph of the failing segment, already in the candidate's precision;
    `inputs` its boundary inputs (the reference's values), cast here to the types the subgraph declares.
    `story`: paragraphs for README.md saying how the window was chosen (its node count, and why);
    `extra_files`: name → (bytes, what it is), written beside the others.
    """
    extra_files = dict(extra_files or {})

    out = Path(out_dir)
    _check_target(out)
    if make_tar:
        _check_target(_tar_path(out), file=True)
    feed, cast_notes = _boundary_inputs(subgraph, inputs)
    _check_outputs(subgraph, ref_outputs, cand_outputs)
    data = encoded(subgraph)  # None past 2 GiB: written with its weights beside it and checked by path
    if data is not None:
        _checked(data)
    diffs = {name: TensorDiff.from_arrays(name, ref_outputs[name], cand_outputs[name], tolerance)
             for name in ref_outputs if name in cand_outputs}
    providers = [p if isinstance(p, str) else [p[0], dict(p[1])] for p in providers]
    reference = report.reference if report else settings.get("reference", "reference")
    repro_settings = {"candidate": candidate_label, "candidate_spec": candidate_spec, "reference": reference,
                      "tolerance": {"atol": tolerance.atol, "rtol": tolerance.rtol, "max_share": tolerance.max_share},
                      "providers": providers, "session_options": session_options or {},
                      "device": environment.get("device") or platform.machine()}

    tmp = tar_tmp = None
    try:
        tmp = Path(tempfile.mkdtemp(dir=_parent(out), prefix=f".{out.name}.tmp-"))
        files: dict[str, bytes] = {}
        written = _put_subgraph(tmp, subgraph, data, files)
        files["inputs.npz"] = _npz(feed)
        files["reference_outputs.npz"] = _npz(ref_outputs)
        files["candidate_outputs.npz"] = _npz(cand_outputs)
        files["inputs.json"] = polygraphy_inputs(feed)
        pg_outputs = polygraphy_outputs(ref_outputs, reference)
        if pg_outputs is not None:
            files["reference_outputs.json"] = pg_outputs
        files["repro.py"] = _repro(repro_settings).encode()
        files["polygraphy_cmd.txt"] = polygraphy_cmd(tolerance, providers, pg_outputs is not None).encode()
        if report is not None:
            files["report.json"] = (json_text(report) + "\n").encode()
        for name, (data, _) in extra_files.items():
            files[name] = data
        files["README.md"] = _readme(subgraph, diffs, report, candidate_label, candidate_spec, reference, tolerance,
                                     settings, environment, providers, cast_notes,
                                     {**files, **dict.fromkeys(written, b"")}, story or [],
                                     {k: why for k, (_, why) in extra_files.items()}).encode()
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        os.chmod(tmp / "repro.py", 0o755)
        manifest = _manifest(subgraph, diffs, candidate_label, candidate_spec, reference, tolerance, settings,
                             environment, providers, session_options, cast_notes, tmp, sorted([*files, *written]))
        write_json(tmp / "manifest.json", manifest)
        os.chmod(tmp, 0o755)
        if make_tar:
            fd, tar_tmp = tempfile.mkstemp(dir=_parent(out), prefix=f".{out.name}.tar.", suffix=".tmp")
            with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w:gz") as tar:
                tar.add(tmp, arcname=out.name)
            os.chmod(tar_tmp, 0o644)
        _replace_dir(tmp, out)
        tmp = None
        if tar_tmp:
            os.replace(tar_tmp, _tar_path(out))
            tar_tmp = None
    except OSError as e:
        raise BadInputError(f"cannot write bundle {out}: {os_reason(e)}") from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if tar_tmp is not None:
            try:
                os.unlink(tar_tmp)
            except OSError:
                pass
    return out


# -- checks -----------------------------------------------------------------------------------------------------------
def _put_subgraph(tmp: Path, subgraph: "onnx.ModelProto", data: bytes | None, files: dict[str, bytes]) -> list[str]:
    """subgraph.onnx into `files` (its bytes), or, past 2 GiB (`data` None), written into `tmp` with its weights
    beside it (subgraph.onnx.data) and checked by path: the names written in place."""
    if data is not None:
        files["subgraph.onnx"] = data
        return []
    written = [p.name for p in save_onnx(subgraph, tmp / "subgraph.onnx", external=True)]
    _checked(str(tmp / "subgraph.onnx"))
    return written


def _checked(model) -> None:
    """onnx.checker on the bundle's subgraph (a model, its bytes, or the path of a file with external data)."""
    import onnx

    try:
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001 - onnx raises ValidationError, or ValueError for a >2 GB proto
        raise BadInputError(f"the bundle's subgraph fails onnx.checker: {str(e).strip().splitlines()[0]}") from None



def _parent(out: Path) -> Path:
    return out.parent if str(out.parent) else Path(".")


def _tar_path(out: Path) -> Path:
    return out.with_name(out.name + ".tar.gz")


def _check_target(p: Path, file: bool = False) -> None:
    parent = _parent(p)
    if not parent.exists():
        raise BadInputError(f"cannot write bundle {p}: directory {parent} does not exist")
    if not parent.is_dir():
        raise BadInputError(f"cannot write bundle {p}: {parent} is not a directory")
    if file:
        if p.is_dir():
            raise BadInputError(f"cannot write {p}: it is a directory")
        return
    if p.exists() and not p.is_dir():
        raise BadInputError(f"cannot write bundle {p}: a file of that name exists")
    if p.is_dir() and any(p.iterdir()) and not _is_bundle(p):
        raise BadInputError(f"cannot write bundle {p}: the directory holds other files; choose an empty or new one")


def _is_bundle(p: Path) -> bool:
    try:
        return json.loads((p / "manifest.json").read_text(encoding="utf-8")).get("format") == BUNDLE_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished bundle into place; an older bundle of the same name is replaced, never merged."""
    if out.is_dir():
        if not any(out.iterdir()):
            out.rmdir()
        else:
            old = Path(tempfile.mkdtemp(dir=_parent(out), prefix=f".{out.name}.old-"))
            os.rename(out, old / "b")
            try:
                os.rename(tmp, out)
            except OSError:
                os.rename(old / "b", out)
                shutil.rmtree(old, ignore_errors=True)
                raise
            shutil.rmtree(old, ignore_errors=True)
            return
    os.rename(tmp, out)


def _graph_inputs(model) -> list:
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def _boundary_inputs(model, inputs: dict) -> tuple[dict, list[str]]:
    from onnx import helper

    declared = {i.name: i for i in _graph_inputs(model)}
    missing = [n for n in declared if n not in inputs]
    if missing:
        raise BadInputError(f"bundle: no value given for subgraph input(s) {', '.join(missing)}")
    extra = [n for n in inputs if n not in declared]
    if extra:
        raise BadInputError(f"bundle: {', '.join(extra)} is not an input of the subgraph "
                            f"(its inputs: {', '.join(declared) or 'none'})")
    feed, notes = {}, []
    for name, vi in declared.items():
        a = np.asarray(inputs[name])
        et = vi.type.tensor_type.elem_type
        want = np.dtype(helper.tensor_dtype_to_np_dtype(et)) if et else a.dtype
        if a.dtype != want:
            if not (np.issubdtype(a.dtype, np.number) and np.issubdtype(want, np.number)):
                raise BadInputError(f"bundle: input {name} is {a.dtype} but the subgraph declares {want}")
            notes.append(f"input {name} cast from {a.dtype} to {want} (the type the subgraph declares)")
            a = a.astype(want)
        feed[name] = a
    return feed, notes


def _check_outputs(model, ref: dict, cand: dict) -> None:
    names = [o.name for o in model.graph.output]
    if not ref:
        raise BadInputError("bundle: no reference outputs given")
    unknown = [n for n in list(ref) + list(cand) if n not in names]
    if unknown:
        raise BadInputError(f"bundle: {unknown[0]} is not an output of the subgraph (its outputs: {', '.join(names)})")


# -- file contents ----------------------------------------------------------------------------------------------------
def _npz(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def _repro(settings: dict) -> str:
    text = _TEMPLATE.read_text(encoding="utf-8")
    line = "SETTINGS: dict = " + json.dumps(settings, indent=4, allow_nan=False) \
        + "  # written by cp_debug"
    new, n = _SETTINGS_LINE.subn(lambda _: line, text, count=1)
    assert n == 1, "repro template lost its settings line"
    return new


def _library_versions() -> dict:
    from importlib import metadata

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for dist in ("cp-debug", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "onnx-graphsurgeon", "polygraphy",
                 "tensorrt", "torch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def _subgraph_info(model) -> dict:
    from collections import Counter

    def vi(v):
        t = v.type.tensor_type
        from onnx import helper
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
        return {"name": v.name, "dtype": helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else None,
                "shape": dims}

    ops = Counter(n.op_type for n in model.graph.node)
    return {"nodes": len(model.graph.node), "op_types": dict(ops.most_common()),
            "node_names": [n.name for n in model.graph.node][:200],
            "inputs": [vi(i) for i in _graph_inputs(model)], "outputs": [vi(o) for o in model.graph.output],
            "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import}, "ir_version": model.ir_version}


def _size(d: TensorDiff) -> int:
    n = 1
    for k in d.ref_shape:
        n *= int(k)
    return n


def _diff_json(d: TensorDiff) -> dict:
    return {"status": d.status, "shape": list(d.ref_shape), "max_abs": d.max_abs, "max_rel": d.max_rel,
            "rel_max": d.rel_max,
            "rel_rmse": d.rel_rmse, "snr_db": d.snr_db, "share_beyond": d.share_beyond, "nan": d.nan, "inf": d.inf,
            "ref_absmax": d.ref_absmax, "test_absmax": d.test_absmax}


def _manifest(model, diffs, label, spec, reference, tol, settings, environment, providers, session_options,
              cast_notes, tmp: Path, names: list[str]) -> dict:
    files = {}
    for name in names:
        files[name] = {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size}
    return {
        "format": BUNDLE_FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "candidate": label, "candidate_spec": spec, "reference": reference,
        "diverged": any(d.status != "ok" for d in diffs.values()),
        "outputs": {k: _diff_json(d) for k, d in diffs.items()},
        "tolerance": {"atol": tol.atol, "rtol": tol.rtol, "max_share": tol.max_share},
        "backend": {"providers": providers, "session_options": session_options or {}},
        "subgraph": _subgraph_info(model),
        "notes": cast_notes,
        "device": environment.get("device") or platform.machine(),
        "settings": settings, "environment": environment, "libraries": _library_versions(),
        "files": files,
    }


def _readme(model, diffs, report, label, spec, reference, tol, settings, environment, providers, cast_notes,
            files, story=(), extra=None) -> str:
    info = _subgraph_info(model)
    bad = [d for d in diffs.values() if d.status != "ok"]
    ops = ", ".join(f"{op} ×{n}" if n > 1 else op for op, n in info["op_types"].items())
    lines = [f"# Numerical divergence: {label} vs {reference}", ""]
    if bad:
        worst = max(bad, key=lambda d: (d.max_abs if d.max_abs == d.max_abs else float("inf")))
        lines += [f"Running `subgraph.onnx` ({info['nodes']} node{'s' if info['nodes'] != 1 else ''}: {ops}) as "
                  f"**{label}** (`{spec}`) gives outputs that differ from the reference (**{reference}**) beyond "
                  f"tolerance: {len(bad)} of {len(diffs)} output(s), worst `{worst.name}` with max |diff| "
                  f"{fmt_num(worst.max_abs)} (reference values up to {fmt_num(worst.ref_absmax)}, "
                  + (f"the candidate has {worst.inf} Inf and {worst.nan} NaN of {_size(worst)} values)."
                     if worst.nan or worst.inf else f"candidate up to {fmt_num(worst.test_absmax)}).")]
    else:
        lines += [f"`subgraph.onnx` ({info['nodes']} nodes: {ops}) as **{label}** stays within tolerance of the "
                  f"reference (**{reference}**) on these inputs: this bundle does not show a divergence."]
    lines += ["",
              "| output | shape | max abs | max/\\|ref\\|max | rel RMSE | SNR dB | beyond tol. | NaN/Inf | status |",
              "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for d in diffs.values():
        lines.append(f"| `{d.name}` | {'×'.join(map(str, d.ref_shape))} | {fmt_num(d.max_abs)} | {fmt_num(d.rel_max)} "
                     f"| {fmt_num(d.rel_rmse)} | {fmt_db(d.snr_db)} | {d.share_beyond * 100:.3g}% | {d.nan}/{d.inf} "
                     f"| **{d.status}** |")
    lines += ["", f"An element is beyond tolerance when |candidate − reference| > atol + rtol·|reference| "
              f"(atol = {tol.atol:g}, rtol = {tol.rtol:g}); an output diverges when more than {tol.max_share:g} of its "
              "elements are (0: any one). NaN or Inf in the candidate is its own status."]
    if story:
        lines += ["", "## How this window was chosen", ""]
        for para in story:
            lines += [para, ""]
        lines.pop()
    if report is not None:
        c = next((c for c in report.candidates if c.label == label), None)
        if c is not None and (c.first_divergent or c.root_cause):
            lines += ["", "## What cp_debug found in the whole model", ""]
            if c.first_divergent:
                lines.append(f"- first divergent probe: `{c.first_divergent}`")
            if c.root_cause:
                hint = f" — {c.root_cause.hint}" if c.root_cause.hint else ""
                lines.append(f"- root cause: `{c.root_cause.probe}`{hint}")
            if c.precision:
                lines.append(f"- precision: requested {c.precision.get('requested')}, ran "
                             f"{c.precision.get('effective')}")
    for note in cast_notes:
        lines += ["", f"Note: {note}."]
    names = [p if isinstance(p, str) else p[0] for p in providers]
    lines += ["", "## Run it", "", "```sh", "pip install numpy onnxruntime",
              "python repro.py          # exit 1: the divergence reproduces, 0: within tolerance, 2: cannot run here",
              "python repro.py --trt    # the same through TensorRT (needs tensorrt and polygraphy)",
              "```", "", f"`repro.py` runs ONNX Runtime with {', '.join(names)} and the recorded session options; "
              "`--providers`, `--atol`, `--rtol` override them. It needs neither cp_debug nor PyTorch.",
              "", "With Polygraphy (see `polygraphy_cmd.txt`):", "", "```sh",
              *[ln for ln in polygraphy_cmd(tol, providers, "reference_outputs.json" in files).splitlines()
                if not ln.startswith("#")], "```",
              "", "## Files", ""]
    described = {
        "subgraph.onnx": "the failing segment, in the candidate's precision",
        "inputs.npz": "its boundary inputs: the reference's values at the cut",
        "inputs.json": "the same inputs in Polygraphy's format (`--load-inputs`)",
        "reference_outputs.npz": f"what the reference ({reference}) computes for the segment",
        "reference_outputs.json": "the same in Polygraphy's format (`--load-outputs`)",
        "candidate_outputs.npz": f"what {label} computed when the bundle was made",
        "repro.py": "the one-file reproduction (numpy + onnxruntime)",
        "polygraphy_cmd.txt": "the equivalent polygraphy command lines",
        "report.json": "the whole cp_debug report (`cp_debug.report/1`); render it with `cpdebug report report.json`",
        "manifest.json": "library versions, device, determinism settings, backend options, sha256 of every file",
        **(extra or {}),
    }
    for name in sorted(set(files) | {"manifest.json"}):
        if name != "README.md":
            lines.append(f"- `{name}` — {described.get(name, '')}")
    libs = _library_versions()
    lines += ["", "## Where it was recorded", "",
              f"- device: {environment.get('device') or platform.machine()}",
              "- libraries: " + ", ".join(f"{k} {v}" for k, v in libs.items() if k != "platform"),
              f"- platform: {libs['platform']}"]
    det = {k: v for k, v in (settings or {}).items() if k in ("deterministic", "seed", "tf32", "ort", "trt", "torch")}
    if det:
        lines.append("- settings: `" + json.dumps(det, default=str) + "`")
    return "\n".join(lines) + "\n"
