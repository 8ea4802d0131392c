"""What a fix must achieve over its frames: within the candidate's precision (the noise model of
`compare/noise.py`, as bisect and sweep judge: every frame's head maps within the rounding the precision brings and
no box lost, added, moved or rescored beyond it: a recipe's frame verdict, CenterPoint's
`recipes/centerpoint/fix/judge.frame_verdict`), a tolerance on the head outputs, a
largest mAP drop, a largest number of lost boxes. Every given criterion must hold; at least one is needed.

Which ones (`FixTarget.of`): with no fixed criterion given, within precision; `--max-rel-rmse`, `--max-map-drop`,
`--max-lost-boxes` given keep their old meaning and are the target alone; `--tolerance-mode model` adds within
precision to them, `--tolerance-mode fixed` never judges by the noise model (a criterion is then needed).

`tol`, `max_lost_boxes` and within precision are judged frame by frame (the worst frame decides), so a set that
fails on a few frames fails on all of them: the search may reject on the worst frames first without changing its
answer.
`max_map_drop` is judged on the whole set only (mAP over a subset says nothing about mAP over all).
"""

from __future__ import annotations

from dataclasses import dataclass

from cp_debug.compare.noise import Outcome, check_mode
from cp_debug.errors import BadInputError


@dataclass(frozen=True)
class FixTarget:
    tol: float | None = None  # largest rel. RMSE of the worst head output on the worst frame
    max_map_drop: float | None = None  # largest reference mAP minus candidate mAP
    max_lost_boxes: int | None = None  # largest number of reference boxes the candidate loses, over all frames
    within_precision: bool = False  # every frame within the candidate's precision (compare/noise.py)

    def __post_init__(self) -> None:
        if self.tol is None and self.max_map_drop is None and self.max_lost_boxes is None \
                and not self.within_precision:
            raise BadInputError("give a target: --max-rel-rmse, --max-map-drop or --max-lost-boxes (or leave "
                                "--tolerance-mode at 'model': within the candidate's precision)")
        if self.tol is not None and not self.tol > 0:
            raise BadInputError(f"--max-rel-rmse must be positive, got {self.tol}")
        if self.max_map_drop is not None and not self.max_map_drop >= 0:
            raise BadInputError(f"--max-map-drop must be >= 0, got {self.max_map_drop}")
        if self.max_lost_boxes is not None and self.max_lost_boxes < 0:
            raise BadInputError(f"--max-lost-boxes must be >= 0, got {self.max_lost_boxes}")

    @classmethod
    def of(cls, tol: float | None = None, max_map_drop: float | None = None, max_lost_boxes: int | None = None,
           mode: str | None = None) -> "FixTarget":
        """The target the user asked for: `mode` None (not given) judges within precision when no fixed criterion
        is given; "model" always adds it; "fixed" never does."""
        if mode is not None:
            check_mode(mode)
        fixed = (tol, max_map_drop, max_lost_boxes)
        within = mode == "model" or (mode is None and all(x is None for x in fixed))
        return cls(*fixed, within_precision=within)

    @property
    def mode(self) -> str:
        """How the head maps are judged: "model" (the noise model) or "fixed" (the given criteria alone)."""
        return "model" if self.within_precision else "fixed"

    @property
    def per_frame(self) -> bool:
        """A criterion judged frame by frame is given (the search may reject on the worst frames first)."""
        return self.tol is not None or self.max_lost_boxes is not None or self.within_precision

    @property
    def needs_boxes(self) -> bool:
        """Decoded boxes are needed (lost boxes, mAP)."""
        return self.max_map_drop is not None or self.max_lost_boxes is not None

    @property
    def needs_map(self) -> bool:
        return self.max_map_drop is not None

    def holds(self, rel_rmse: float | None = None, map_drop: float | None = None,
              lost_boxes: int | None = None, outcome: Outcome | None = None) -> bool:
        """Whether the figures meet every criterion given; a criterion whose figure is None is not judged.
        `outcome`: the worst frame's by the noise model (must be within precision where the target says so)."""
        checks = ((self.tol, rel_rmse), (self.max_map_drop, map_drop), (self.max_lost_boxes, lost_boxes))
        if self.within_precision and outcome is not None and outcome is not Outcome.WITHIN_PRECISION:
            return False
        return all(figure is None or limit is None or figure <= limit for limit, figure in checks)

    def describe(self) -> str:
        parts = ["within precision" if self.within_precision else "",
                 f"tol {self.tol:g}" if self.tol is not None else "",
                 f"max mAP drop {self.max_map_drop:g}" if self.max_map_drop is not None else "",
                 f"max lost boxes {self.max_lost_boxes}" if self.max_lost_boxes is not None else ""]
        return ", ".join(p for p in parts if p)

    def to_json(self) -> dict:
        return {"tol": self.tol, "max_map_drop": self.max_map_drop, "max_lost_boxes": self.max_lost_boxes,
                "within_precision": self.within_precision}

    @classmethod
    def from_json(cls, data: dict) -> "FixTarget":
        """A recorded target (a fix.json written before the noise model has no `within_precision`: fixed)."""
        return cls(data.get("tol"), data.get("max_map_drop"), data.get("max_lost_boxes"),
                   bool(data.get("within_precision", False)))
