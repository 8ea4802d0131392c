"""attacut's character model (attacut 1.0.6, MIT: `attacut/artifacts/attacut-c/model.pth`, 0.7 MB in its 1.3 MB
wheel), a Thai word tokenizer: an embedding, three dilated Conv1d whose outputs are max-pooled across, two Linear
layers, a sigmoid per character — a word starts where it is > 0.5 (`Tokenizer.tokenize`'s `pred_threshold`).
The module is written out here as `attacut.models.seq_ch_conv.Model` builds it (importing attacut imports its
syllable tokenizer `ssg` and python-crfsuite, which the model does not need), its weights the wheel's own.

    pip install --no-deps attacut==1.0.6   # its files only

Samples: windows of 128 characters (stride 64) over Thai sentences written here (everyday news, food, school
and travel): `windows()`; the calibration the even windows (`CALIB`), the odd ones held out."""

from __future__ import annotations

import json

import numpy as np

from tests.trained.corpus import wheel_file

TEXT = (
    "วันนี้อากาศดีมากเราจึงออกไปเดินเล่นที่สวนสาธารณะใกล้บ้าน "
    "ฉันชอบกินข้าวผัดกุ้งกับต้มยำที่ร้านอาหารริมแม่น้ำเจ้าพระยา "
    "นักเรียนทุกคนต้องส่งการบ้านภายในวันศุกร์หน้าก่อนเวลาเที่ยงตรง "
    "รัฐบาลประกาศมาตรการใหม่เพื่อช่วยเหลือเกษตรกรที่ได้รับผลกระทบจากน้ำท่วม "
    "คุณแม่ไปตลาดตั้งแต่เช้าเพื่อซื้อผักผลไม้และปลาสดสำหรับทำอาหารเย็น "
    "การพัฒนาซอฟต์แวร์ต้องอาศัยความร่วมมือของทีมงานหลายฝ่าย "
    "โรงพยาบาลแห่งนี้มีแพทย์ผู้เชี่ยวชาญด้านโรคหัวใจหลายท่าน "
    "เด็กๆ กำลังเล่นฟุตบอลอยู่ในสนามหลังโรงเรียนอย่างสนุกสนาน "
    "ประเทศไทยมีสถานที่ท่องเที่ยวที่สวยงามมากมายทั้งทะเลและภูเขา "
    "เขาทำงานเป็นวิศวกรที่บริษัทขนาดใหญ่ในกรุงเทพมหานครมาห้าปีแล้ว "
    "ราคาน้ำมันเพิ่มขึ้นอย่างต่อเนื่องทำให้ค่าครองชีพสูงขึ้นตามไปด้วย "
    "พวกเราจะเดินทางไปเชียงใหม่โดยรถไฟในช่วงวันหยุดยาวปีใหม่ "
    "ห้องสมุดเปิดให้บริการทุกวันตั้งแต่แปดโมงเช้าจนถึงสองทุ่ม "
    "นักวิทยาศาสตร์ค้นพบวิธีใหม่ในการผลิตพลังงานไฟฟ้าจากแสงอาทิตย์ "
    "ถ้าฝนตกหนักเราอาจจะต้องเลื่อนการประชุมออกไปเป็นสัปดาห์หน้า "
    "แมวของฉันชอบนอนอยู่บนโซฟาในห้องนั่งเล่นทั้งวัน "
    "มหาวิทยาลัยเปิดรับสมัครนักศึกษาใหม่ประจำปีการศึกษาสองพันห้าร้อยหกสิบแปด "
    "ตำรวจกำลังสืบสวนคดีลักทรัพย์ที่เกิดขึ้นในย่านการค้าเมื่อคืนนี้ "
    "ร้านกาแฟเล็กๆ ตรงหัวมุมถนนขายขนมปังอร่อยที่สุดในละแวกนี้ "
    "ผู้ป่วยควรพักผ่อนให้เพียงพอและดื่มน้ำมากๆ ตามคำแนะนำของแพทย์ "
)
ARTIFACTS = "attacut/artifacts/attacut-c"
CALIB = tuple(range(0, 17, 2))  # the even windows calibrate; the odd ones are held out


def windows(n: int = 128, stride: int = 64) -> list[np.ndarray]:
    """The text's characters as attacut-c's indices (`characters.json`, 1 where unknown), windows of (1, n)."""
    table = json.loads(wheel_file("attacut", f"{ARTIFACTS}/characters.json").read_text(encoding="utf-8"))
    ids = np.array([table.get(c, 1) for c in TEXT], dtype=np.int64)
    return [ids[s:s + n][None] for s in range(0, ids.size - n + 1, stride)]


def model():
    """attacut-c (`emb:48|conv:196|l1:32`) with the wheel's weights, in eval mode, the sigmoid its tokenizer applies
    at the end: (1, n) character indices → (n,) the probability that a word starts at each."""
    import torch
    from torch import nn

    class Conv(nn.Module):
        def __init__(self, k: int, dilation: int = 1):
            super().__init__()
            self.conv = nn.Conv1d(48, 196, k, dilation=dilation, padding=k // 2 * dilation)

        def forward(self, x):
            return self.conv(x)

    class AttaCutC(nn.Module):
        def __init__(self, tokens: int):
            super().__init__()
            self.embeddings = nn.Embedding(tokens, 48, padding_idx=0)
            self.conv1, self.conv2, self.conv3 = Conv(3), Conv(5, 3), Conv(9, 2)
            self.linear1, self.linear2 = nn.Linear(196, 32), nn.Linear(32, 1)

        def forward(self, chars):
            e = self.embeddings(chars).permute(0, 2, 1)
            out = torch.stack([c(e).permute(0, 2, 1) for c in (self.conv1, self.conv2, self.conv3)], 3).max(3)[0]
            return torch.sigmoid(self.linear2(torch.relu(self.linear1(out))).view(-1))

    table = json.loads(wheel_file("attacut", f"{ARTIFACTS}/characters.json").read_text(encoding="utf-8"))
    m = AttaCutC(len(table))
    m.load_state_dict(torch.load(wheel_file("attacut", f"{ARTIFACTS}/model.pth"), map_location="cpu"))
    return m.eval()


def boundary_metric(outputs, reference, label=None) -> float:
    """The share of characters whose word boundary (> 0.5, attacut's tokenizer's) is the reference's."""
    return float(np.mean((np.asarray(outputs["boundary"]) > 0.5) == (np.asarray(reference["boundary"]) > 0.5)))
