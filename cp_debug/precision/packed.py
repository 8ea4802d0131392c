"""Packed integer weights' shared pieces (`nbits` for MatMulNBits, `qmoe` for a QMoE's experts): an initializer's
values, a node's attributes, bytes unpacked to 4- or 8-bit values as ONNX Runtime packs them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def array(t) -> "np.ndarray | None":
    """An initializer's values: in the message, or in this process's weights folder (`graph/weight_store.py`); None
    where they lie elsewhere (a file not read in)."""
    import onnx
    from onnx import numpy_helper

    from cp_debug.graph import weight_store

    if weight_store.is_stored(t):
        return weight_store.values(t)
    if t.data_location == onnx.TensorProto.EXTERNAL:
        return None
    values = numpy_helper.to_array(t)
    return values if values.size or not t.dims else None


def _unpack(packed: "np.ndarray", bits: int) -> "np.ndarray":
    """Bytes to `bits`-bit values, the low nibble first (ONNX Runtime's layout)."""
    import numpy as np

    if bits == 8:
        return packed.reshape(packed.shape[0], -1)
    flat = packed.reshape(packed.shape[0], -1)
    return np.stack([flat & 0x0F, flat >> 4], axis=-1).reshape(flat.shape[0], -1)
