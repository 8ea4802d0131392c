"""A graph as `cp_debug.probes.qdq_pairs` reads one (`foreign._Graph`'s `model` and `consumers`), for the tests that
read a Q/DQ file's pairs as a user's file is read (tests/precision/test_int8.py, tests/bisect/test_one_story.py)."""

from __future__ import annotations


class QdqGraph:
    """`model` with each tensor's readers, (node index, input slot), as `qdq_pairs` reads them."""

    def __init__(self, model):
        self.model, self.consumers = model, {}
        for j, n in enumerate(model.graph.node):
            for k, t in enumerate(n.input):
                self.consumers.setdefault(t, []).append((j, k))
