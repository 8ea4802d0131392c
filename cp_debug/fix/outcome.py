"""What one `cpdebug fix` run found, typed: the set it keeps (`FixSet`), the search, the verification, the versions
and the models to write. The CLI renders these fields; `FixOutcome.to_json()` is fix.json (schema `cp_debug.fix/1`,
a contract: extend it, never rename), written by `write(DIR)` through `artifact.write_fix`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cp_debug.errors import BadInputError, ExitCode

if TYPE_CHECKING:
    from cp_debug.data.frames import FrameSet
    from cp_debug.fix.request import FixRequest
    from cp_debug.fix.search import FixSearch
    from cp_debug.fix.verify import Verification

JUDGED_AGAINST = {
    "fp16": "the FP32 ONNX pair in ONNX Runtime",
    "int8": "search: the BN-fused FP32 torch model (fake-quant INT8 candidate); verification: its FP32 ONNX pair in "
            "ONNX Runtime (the Q/DQ pair as candidate)",
}


@dataclass(frozen=True)
class FixSet:
    """What the fix keeps. FP16: the nodes kept in FP32 (`keep_fp32`, the search's FILE:NODE keys), their ONNX nodes
    per file, their modules (sorted) and each node's module. INT8: the layers left out of INT8 (`modules`; None when
    no set meets the target), their ONNX nodes, the layers quantized and those the PTQ plan skipped."""

    kind: str
    modules: tuple[str, ...] | None
    onnx_nodes: dict = field(default_factory=dict)  # ONNX file -> node names
    keep_fp32: tuple[str, ...] = ()
    node_modules: dict = field(default_factory=dict)  # FP16: FILE:NODE -> module (or None)
    quantized: tuple[str, ...] = ()
    skipped_by_plan: tuple[str, ...] = ()

    def to_json(self) -> dict:
        if self.kind == "fp16":
            return {"keep_fp32": list(self.keep_fp32), "onnx_nodes": {f: list(n) for f, n in self.onnx_nodes.items()},
                    "modules": list(self.modules or ()), "node_modules": self.node_modules}
        if self.modules is None:
            return {"modules": None, "onnx_nodes": {}}
        return {"modules": list(self.modules), "onnx_nodes": self.onnx_nodes, "quantized": list(self.quantized),
                "skipped_by_plan": list(self.skipped_by_plan)}


@dataclass(frozen=True)
class FixOutcome:
    """One fix run. `status` (the search's): found | not_needed | impossible (then `fixed` is None and nothing
    can be written). `fixed` / `reference`: {AWML file name: ModelProto} of the pair to write and of the FP32 pair
    it was judged against."""

    request: FixRequest
    preset: str  # the preset, or the config file's path where one was given: what `fix --check` builds again
    weights: str  # the weights in words
    search_frames: FrameSet
    kept: FixSet
    search: FixSearch
    verification: Verification | None
    environment: dict  # the toolchain's versions (fix/check.py)
    version: str  # cp_debug's
    written_at: str  # ISO 8601, UTC
    sensitivity: tuple[Any, ...] | None = None  # INT8: the layer ranking (ptq.sensitivity rows)
    fixed: dict | None = None
    reference: dict = field(default_factory=dict)
    nodes_to_exclude: dict = field(default_factory=dict)
    skip_layers: tuple[str, ...] = ()
    pair: dict | None = None  # a fix of the user's deployed pair (SPEC@DIR): its folder, file names, mapping notes
    judged_against: str | None = None  # what the candidate was judged against, where not JUDGED_AGAINST[kind]

    @property
    def recipe(self) -> str:
        """The name of the recipe whose fix plug-in ran (the request's)."""
        return self.request.recipe.name

    @property
    def held_out_verification(self) -> bool | None:
        """Whether the verification ran on frames the search never saw (None without a verification)."""
        if self.verification is None:
            return None
        return not set(self.verification.frames.tokens) & set(self.search_frames.tokens)

    @property
    def status(self) -> str:
        return self.search.status

    @property
    def kind(self) -> str:
        return self.request.kind

    @property
    def frames_judged(self) -> int:
        return len(self.search_frames)

    @property
    def holds(self) -> bool:
        """A verification ran and the fix meets the target there."""
        return self.verification is not None and self.verification.holds

    @property
    def outcome(self):
        """The overall outcome by the noise model (`compare.noise.Outcome`): the verified pair's worst frame; with
        no set found, the run with every candidate kept; None where the frames were not judged by it."""
        if self.verification is not None:
            return self.verification.fixed.figures.outcome
        s = self.search.steps
        return (s[1] if len(s) > 1 else s[0]).figures.figures.outcome if s else None

    @property
    def exit_code(self) -> ExitCode:
        """OK: written and verified; DIVERGED: no set meets the target, nothing to write; NOT_VERIFIED: a set was
        found and written, but its verification does not hold (other frames, or the written pair in ONNX Runtime)."""
        if self.fixed is None:
            return ExitCode.DIVERGED
        return ExitCode.OK if self.holds else ExitCode.NOT_VERIFIED

    def to_json(self) -> dict:
        """fix.json, less its `files` (written by `write`)."""
        from cp_debug.fix.artifact import SCHEMA

        req = self.request
        doc = {
            "schema": SCHEMA, "kind": self.kind, "status": self.status, "preset": self.preset, "weights": self.weights,
            "source": req.source, "backends": {"reference": req.reference, "candidate": req.candidate},
            "recipe": self.recipe, "deployed_files": list(self.reference),
            "judged_against": self.judged_against or JUDGED_AGAINST[self.kind],
            "target": req.target.to_json(), "target_text": req.target.describe(),
            "tolerance_mode": req.target.mode,
            "outcome": self.outcome.value if self.outcome is not None else None,
            "search_frames": self.search_frames.to_json(), "held_out_verification": self.held_out_verification,
            "model_record": req.model.to_json(), "pair": self.pair, "set": self.kept.to_json(),
            "search": self.search.to_json(),
            "verification": self.verification.to_json() if self.verification else None,
            "environment": self.environment, "cp_debug_version": self.version, "written_at": self.written_at,
        }
        if self.sensitivity is not None:
            doc["sensitivity"] = [{"layer": r.layer, "rel_rmse": r.rel_rmse, "worst_output": r.worst_output}
                                  for r in self.sensitivity]
        return doc

    def write(self, out: str | Path, extra: dict | None = None) -> Path:
        """The fix DIR, its fix.json `to_json()` with `extra` (the command's `runs_on`) beside."""
        from cp_debug.fix.artifact import write_fix

        if self.fixed is None:
            raise BadInputError("no set meets the target: nothing to write (the figures say why)")
        return write_fix(out, fixed=self.fixed, reference=self.reference, doc={**self.to_json(), **(extra or {})},
                         nodes_to_exclude=self.nodes_to_exclude, skip_layers=self.skip_layers,
                         graph_files=self.request.recipe.graph_files)
