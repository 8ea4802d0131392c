"""The probes mapped onto every LLM file of a corpus, with `--torch` and `--onnx` (issue 116: ≥ 90 %), run as a user
runs them, each report kept for a before / after comparison (`benchmarks/json_diff.py BEFORE AFTER`).

    PYTHONPATH=TREE python3 benchmarks/llm_mapped.py run OUT PROMPT.npz ROOT...    # every model folder under ROOT
    python3 benchmarks/llm_mapped.py table BEFORE AFTER                           # the mapped share, before → after

A model folder holds the builder's files (`fp32/`, `int4/`, … each a model.onnx), the plain export and its
quantized files (`plain/`, `rtn_*`, `gptq_b32`, `hqq_*`, `kquant`, `default_*`) and its HF model (`hf/`). `--torch`:
the HF model against its `int4` file (else `fp32`; GPT-OSS against both); `--onnx`: the builder's FP32 file against each
other builder file (a GPTQ checkpoint's build `gptq_act` too), the plain export against each file quantized from it.
Each run decodes 2 tokens (the mapping does not depend on how many) and writes OUT/NAME.json (the report) and
OUT/NAME.txt (exit code, CPU s, the "probes mapped" warning). A run already in OUT is not made again.
"""

from __future__ import annotations

import json
import re
import resource
import sys
import time
from pathlib import Path

_PLAIN = ("rtn", "gptq_b", "hqq", "kquant", "default")  # MatMulNBitsQuantizer's files, made from plain/


def jobs(roots: list[Path], prompt: str) -> dict[str, list[str]]:
    """NAME → the bisect's arguments, for every model folder under `roots` (or a root that is one)."""
    out: dict[str, list[str]] = {}
    folders = [d for r in roots for d in ([r] if (r / "hf").is_dir() or list(r.glob("*/model.onnx"))
                                          else sorted(x for x in r.iterdir() if x.is_dir()))]
    for d in folders:
        files = sorted(p.parent.name for p in d.glob("*/model.onnx"))
        tag = f"{d.parent.name}__{d.name}"
        if (d / "hf").is_dir() and files:
            targets = [f for f in ("int4", "fp32") if f in files] if "gptoss" in d.name else \
                [next(f for f in ("int4", "fp32", *files) if f in files)]
            for f in targets:
                out[f"{tag}__torch__{f}"] = ["--torch", str(d / "hf"), "-b", f"torch,ort@{d / f}", "--inputs", prompt,
                                             "--generate", "2", "--level", "all"]
        for f in files:
            ref = "plain" if f.startswith(_PLAIN) else "fp32"
            if f not in ("fp32", "plain") and ref in files:
                out[f"{tag}__onnx__{f}"] = ["--onnx", str(d / ref / "model.onnx"), "-b", f"ort,ort@{d / f}",
                                            "--inputs", prompt, "--generate", "2"]
    return out


def run(out: Path, prompt: str, roots: list[Path]) -> None:
    from tests.cli_run import cpdebug

    out.mkdir(parents=True, exist_ok=True)
    for name, args in jobs(roots, prompt).items():
        if (out / f"{name}.txt").exists():
            continue
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.time()
        res = cpdebug("bisect", *args, "--json", out / f"{name}.json")
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        report = out / f"{name}.json"
        warnings = json.loads(report.read_text()).get("warnings", []) if report.exists() else []
        notes = [w for w in warnings if "probes mapped onto" in w]
        (out / f"{name}.txt").write_text(json.dumps({"rc": res.returncode, "cpu": round(cpu, 2),
                                                     "wall": round(time.time() - start, 2), "notes": notes,
                                                     "said": (res.stdout + res.stderr)[-400:]}))
        print(name, res.returncode, round(cpu, 1), notes[:1], flush=True)


def counts(path: Path) -> tuple[int, int, int, str] | None:
    """(mapped, probes not inside a fused op, inside fused ops, the missing) of a run's warning; None: no report."""
    notes = json.loads(path.read_text())["notes"]
    m = re.search(r"(\d+) of (\d+) probes mapped", notes[0]) if notes else None
    if m is None:
        return None
    inside = re.search(r"(\d+) more inside its fused ops", notes[0])
    missing = re.search(r"not mapped: (.*) \(reported missing\)", notes[0])
    return int(m[1]), int(m[2]), int(inside[1]) if inside else 0, missing[1] if missing else ""


def table(before: Path, after: Path) -> None:
    print("| run | before | after | share after |\n|---|---|---|---|")
    for path in sorted(after.glob("*.txt")):
        b, a = counts(before / path.name) if (before / path.name).exists() else None, counts(path)
        if a is None:
            print(f"| {path.stem} | — | no report: {json.loads(path.read_text()).get('said', '')[-120:]!r} | — |")
            continue
        said = "—" if b is None else f"{b[0]} of {b[1]}" + (f", {b[2]} inside" if b[2] else "") + \
            (f"; missing {b[3]}" if b[3] else "")
        print(f"| {path.stem} | {said} | {a[0]} of {a[1]}" + (f", {a[2]} inside fused ops" if a[2] else "") +
              (f"; missing {a[3]}" if a[3] else "") + f" | {100 * a[0] / max(a[1], 1):.0f} % |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["run"] and len(sys.argv) > 4:
        run(Path(sys.argv[2]), sys.argv[3], [Path(r) for r in sys.argv[4:]])
    elif sys.argv[1:2] == ["table"] and len(sys.argv) == 4:
        table(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit(__doc__)
