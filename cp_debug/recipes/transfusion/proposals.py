"""The proposal selection of TransFusion-L's head as bisect glue, and its flips: the discrete decision between the
dense heatmap and the decoder.

The head keeps the dense heatmap's local maxima and takes the top K of (classes x cells); the decoder then runs one
query per chosen cell. Where a candidate's heatmap differs a little from the reference's, a cell near the K-th
score can leave the set and another enter it — a flip — and every per-query value after it is then about another
cell. Compared query by query that reads as the decoder diverging. So a candidate's decoder runs on the
*reference's* proposals (its own features and scores at those cells, under the reference's local-max mask), and
the flip is reported once, as what it is: how many of K, which cells, how near the K-th score they were.

The selection runs in PyTorch FP32 on each side's dense heatmap (deployed, it runs in the graph at the engine's
precision; argsort as AWML's head).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_LISTED = 8  # flipped cells listed in the report, nearest the K-th score first


@dataclass(frozen=True)
class FlippedCell:
    """One cell of (classes x cells) in one side's top K and not the other's."""

    side: str  # "entered" (candidate's, not the reference's) | "left" (the reference's, not the candidate's)
    cls: str
    row: int  # head-grid cell (y, x)
    col: int
    ref_score: float  # the reference's sigmoid score there
    cand_score: float  # the candidate's
    margin: float  # ref_score - the reference's K-th score
    ref_local_max: bool  # the cell is a local maximum of the reference's heatmap (else its window held a higher one)

    def to_json(self) -> dict:
        return {"side": self.side, "class": self.cls, "cell": [self.row, self.col], "ref_score": self.ref_score,
                "cand_score": self.cand_score, "margin_to_kth": self.margin,
                "ref_local_max": self.ref_local_max}


@dataclass(frozen=True)
class ProposalFlips:
    """The top-K proposal selection of one candidate against the reference's (`bisect.subjects.subject.Decision`)."""

    k: int
    kth_score: float  # the reference's K-th score
    flipped: int  # cells of the reference's top K the candidate did not choose (= cells it chose instead)
    cells: tuple[FlippedCell, ...]
    name: str = "proposal selection (top-K)"
    # every flipped cell's (side, margin to the K-th score), listed or not (`cells` lists MAX_LISTED of them)
    margins: tuple[tuple[str, float], ...] = ()

    @property
    def changed(self) -> bool:
        return self.flipped > 0

    def beyond(self, band: float) -> int:
        """The flips a score band does not explain: cells that left the top K with a reference score more than
        `band` above the K-th, or entered it from more than `band` below; the larger of the two counts (each flip
        is one cell out and one in, and a flip is explained only where both lay within the band)."""
        left = sum(1 for side, m in self.margins if side == "left" and m > band)
        entered = sum(1 for side, m in self.margins if side == "entered" and -m > band)
        return max(left, entered)

    @property
    def summary(self) -> str:
        if not self.flipped:
            return f"top-{self.k} proposals: the candidate chose the reference's {self.k}"
        near = max(abs(c.margin) for c in self.cells)
        first = self.cells[0]
        return (f"top-{self.k} proposals: {self.flipped} of {self.k} flipped, reference scores within {near:.3g} of "
                f"the K-th ({self.kth_score:.4g}; nearest: {first.side} {first.cls} at cell "
                f"({first.row}, {first.col}), {first.ref_score:.4g} -> {first.cand_score:.4g}); the decoder ran on "
                "the reference's proposals")

    def to_json(self) -> dict:
        return {"name": self.name, "kind": "top_k", "changed": self.changed, "summary": self.summary, "k": self.k,
                "flipped": self.flipped, "kth_score": self.kth_score, "cells": [c.to_json() for c in self.cells]}


class ProposalSelection:
    """The glue of stage 1 (`Subject.glue`) and its decision hook (`Subject.decide`) for one head."""

    def __init__(self, head, class_names, head_size: tuple[int, int]):
        self.head = head
        self.class_names = tuple(class_names)
        self.width = int(head_size[0])  # x cells (the grid is square in AWML's configs; flat index = y * nx + x)

    def _select(self, dense: np.ndarray):
        """(sigmoid heatmap, local-max heatmap, top_proposals), flat over classes x cells, as torch tensors."""
        import torch

        from cp_debug.half import as_float32

        d = torch.as_tensor(np.array(as_float32(np.asarray(dense)), dtype=np.float32))
        with torch.no_grad():
            pooled, top = self.head.select_proposals(d)
        return d.sigmoid().reshape(pooled.shape), pooled, top

    @staticmethod
    def _feed(upstream: dict, scores, top) -> dict[str, np.ndarray]:
        import torch

        gathered = torch.gather(scores, -1, (top % scores.shape[-1])[:, None, :].expand(-1, scores.shape[1], -1))
        from cp_debug.half import as_float32

        return {"bev_features_in": np.asarray(as_float32(np.asarray(upstream["bev_features"]))),
                "top_proposals": top.numpy(),
                "query_heatmap_score": gathered.numpy().astype(np.float32)}

    def glue(self, index: int, upstream: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A side's own selection (the reference's run, a subject without the decision hook)."""
        _, pooled, top = self._select(upstream["dense_heatmap"])
        return self._feed(upstream, pooled, top)

    def decide(self, index: int, ref_up: dict[str, np.ndarray], cand_up: dict[str, np.ndarray]):
        """(the candidate's feed on the reference's proposals, the flips of the candidate's own selection)."""
        ref_sig, ref_pooled, ref_top = self._select(ref_up["dense_heatmap"])
        cand_sig, _, cand_top = self._select(cand_up["dense_heatmap"])
        scores = cand_sig * (ref_pooled > 0)  # the candidate's scores under the reference's local-max decision
        return self._feed(cand_up, scores, ref_top), self.flips(ref_sig, ref_pooled, ref_top, cand_sig, cand_top)

    def chosen_flips(self, ref_dense: np.ndarray, ref_top: np.ndarray, cand_dense: np.ndarray,
                     cand_top: np.ndarray) -> ProposalFlips:
        """The flips between two sides' own choices as a graph made them (`ref_top` / `cand_top`: the TopK's
        indices into classes x cells, (1, K)), scored on each side's dense heatmap as `decide` scores them."""
        import torch

        ref_sig, ref_pooled, _ = self._select(ref_dense)
        cand_sig, _, _ = self._select(cand_dense)
        return self.flips(ref_sig, ref_pooled, torch.as_tensor(np.asarray(ref_top, dtype=np.int64)), cand_sig,
                          torch.as_tensor(np.asarray(cand_top, dtype=np.int64)))

    def local_max_flips(self, ref_dense: np.ndarray, ref_pooled: np.ndarray, cand_pooled: np.ndarray,
                        cells: np.ndarray, band: float):
        """The other discrete decision at a chosen cell: whether each class is a local maximum there (its
        query_heatmap_score is the pooled score, or 0), as each side's local-max scores say (`*_pooled`, flat over
        classes x cells, as the graph computed them). For the flat cells `cells`: (a (classes, len(cells)) bool
        array, True where both sides decided alike; how many entries differ; how many of those the band does not
        explain: the reference's score more than `band` below its window's max)."""
        import torch
        import torch.nn.functional as F

        ref_sig, _, _ = self._select(ref_dense)
        cells = torch.as_tensor(np.asarray(cells, dtype=np.int64))
        masks = [torch.as_tensor(np.asarray(p, dtype=np.float32)).reshape(ref_sig.shape) > 0
                 for p in (ref_pooled, cand_pooled)]
        agree = (masks[0] == masks[1])[0][:, cells].numpy()
        k = self.head.nms_kernel_size
        grid = ref_sig.reshape(1, ref_sig.shape[1], -1, self.width)
        window = F.max_pool2d(grid, kernel_size=k, stride=1, padding=k // 2).reshape(ref_sig.shape)
        gap = (window - ref_sig)[0][:, cells].numpy()
        return agree, int((~agree).sum()), int(((~agree) & (gap > band)).sum())

    def flips(self, ref_sig, ref_pooled, ref_top, cand_sig, cand_top) -> ProposalFlips:
        ref_flat, ref_sig_flat = ref_pooled.reshape(-1).numpy(), ref_sig.reshape(-1).numpy()
        cand_sig_flat = cand_sig.reshape(-1).numpy()
        ref_set, cand_set = set(ref_top[0].tolist()), set(cand_top[0].tolist())
        k = len(ref_top[0])
        kth = float(ref_flat[ref_top[0, -1]])
        cells_per_class = ref_pooled.shape[-1]
        found = []
        for side, where in (("left", ref_set - cand_set), ("entered", cand_set - ref_set)):
            for flat in where:
                cls, cell = divmod(int(flat), cells_per_class)
                ref_score = float(ref_sig_flat[flat])
                found.append(FlippedCell(side, self.class_names[cls] if cls < len(self.class_names) else str(cls),
                                         cell // self.width, cell % self.width, ref_score,
                                         float(cand_sig_flat[flat]), ref_score - kth, bool(ref_flat[flat] > 0)))
        found.sort(key=lambda c: (abs(c.margin), c.side, c.row, c.col))
        return ProposalFlips(k, kth, len(ref_set - cand_set), tuple(found[:MAX_LISTED]),
                             margins=tuple((c.side, c.margin) for c in found))
