"""What a fix must achieve over its frames: a tolerance on the head outputs, a largest mAP drop, a largest
number of lost boxes. Every given criterion must hold; at least one is needed.

`tol` and `max_lost_boxes` are judged frame by frame (the worst frame decides), so a set that fails on a few
frames fails on all of them: the search may reject on the worst frames first without changing its answer.
`max_map_drop` is judged on the whole set only (mAP over a subset says nothing about mAP over all).
"""

from __future__ import annotations

from dataclasses import dataclass

from cp_debug.errors import BadInputError


@dataclass(frozen=True)
class FixTarget:
    tol: float | None = None  # largest rel. RMSE of the worst head output on the worst frame
    max_map_drop: float | None = None  # largest reference mAP minus candidate mAP
    max_lost_boxes: int | None = None  # largest number of reference boxes the candidate loses, over all frames

    def __post_init__(self) -> None:
        if self.tol is None and self.max_map_drop is None and self.max_lost_boxes is None:
            raise BadInputError("give a target: --tol, --max-map-drop or --max-lost-boxes")
        if self.tol is not None and not self.tol > 0:
            raise BadInputError(f"--tol must be positive, got {self.tol}")
        if self.max_map_drop is not None and not self.max_map_drop >= 0:
            raise BadInputError(f"--max-map-drop must be >= 0, got {self.max_map_drop}")
        if self.max_lost_boxes is not None and self.max_lost_boxes < 0:
            raise BadInputError(f"--max-lost-boxes must be >= 0, got {self.max_lost_boxes}")

    @property
    def needs_boxes(self) -> bool:
        """Decoded boxes are needed (lost boxes, mAP)."""
        return self.max_map_drop is not None or self.max_lost_boxes is not None

    @property
    def needs_map(self) -> bool:
        return self.max_map_drop is not None

    def holds(self, rel_rmse: float | None = None, map_drop: float | None = None,
              lost_boxes: int | None = None) -> bool:
        """Whether the figures meet every criterion given; a criterion whose figure is None is not judged."""
        checks = ((self.tol, rel_rmse), (self.max_map_drop, map_drop), (self.max_lost_boxes, lost_boxes))
        return all(figure is None or limit is None or figure <= limit for limit, figure in checks)

    def describe(self) -> str:
        parts = [f"tol {self.tol:g}" if self.tol is not None else "",
                 f"max mAP drop {self.max_map_drop:g}" if self.max_map_drop is not None else "",
                 f"max lost boxes {self.max_lost_boxes}" if self.max_lost_boxes is not None else ""]
        return ", ".join(p for p in parts if p)

    def to_json(self) -> dict:
        return {"tol": self.tol, "max_map_drop": self.max_map_drop, "max_lost_boxes": self.max_lost_boxes}

    @classmethod
    def from_json(cls, data: dict) -> "FixTarget":
        return cls(data.get("tol"), data.get("max_map_drop"), data.get("max_lost_boxes"))
