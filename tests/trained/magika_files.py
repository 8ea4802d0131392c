"""magika's file-type classifier (magika 1.0.3, Apache-2.0: `magika/models/standard_v3_3/model.onnx`, 3.2 MB in its
16 MB wheel; a JAX model its author converted by tf2onnx): a file's first and last 1024 bytes (whitespace stripped,
padded with 256) as int32 ids, one-hot → Dense → GELU (written as ops) → a LayerNorm written as ops (its variance
E[x²] − E[x]²) → Conv → GELU → a global max pool → LayerNorm → Dense → Softmax over 214 content types.

    pip install --no-deps magika==1.0.3   # its files only (its CLI needs click and python-dotenv)

Decision (`label_metric`): the label magika reports, as `Magika._get_output_label_from_dl_label_and_score` decides
in its default HIGH_CONFIDENCE mode: the argmax type kept where its score reaches the type's own threshold (its
config's `thresholds`, else `medium_confidence_threshold` 0.5), `overwrite_map` applied (randombytes → unknown,
randomtxt → txt), else the fallback `txt` for a text type and `unknown` for a binary one.

Samples (`files()`): files of many real types made here by Python's standard library (its own sources and their
bytecode, the interpreter's ELF, gzip / bz2 / xz / zip / tar of them, JSON, XML, HTML, CSV, INI, a PNG, a BMP, a WAV,
a shell script, Markdown, C), the features extracted by magika's own `_extract_features_from_seekable`;
`CALIB` the even ones."""

from __future__ import annotations

import json

import numpy as np

from tests.trained.corpus import wheel_file

MODEL = "magika/models/standard_v3_3/model.onnx"
CONFIG = "magika/models/standard_v3_3/config.min.json"
KB = "magika/config/content_types_kb.min.json"


def _sources() -> list[bytes]:
    import sysconfig
    from pathlib import Path

    lib = Path(sysconfig.get_paths()["stdlib"])
    return [(lib / n).read_bytes() for n in ("json/decoder.py", "csv.py", "gzip.py", "wave.py", "zipfile.py",
                                                  "tarfile.py", "shlex.py", "textwrap.py")]


def _png(w: int = 64, h: int = 48) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 4 % 256, y * 5 % 256, (x + y) * 3 % 256], -1).astype(np.uint8)
    raw = b"".join(b"\0" + img[r].tobytes() for r in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _bmp(w: int = 40, h: int = 30) -> bytes:
    import struct

    row = bytes((i * 7) % 256 for i in range(w * 3)) + b"\0" * ((4 - w * 3 % 4) % 4)
    pixels = row * h
    return (b"BM" + struct.pack("<IHHI", 54 + len(pixels), 0, 0, 54)
            + struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(pixels), 2835, 2835, 0, 0) + pixels)


def _wav() -> bytes:
    import io
    import wave

    t = np.arange(8000) / 8000
    pcm = (8000 * np.sin(2 * np.pi * 440 * t) * np.exp(-3 * t)).astype("<i2").tobytes()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm)
    return buf.getvalue()


def _archives(src: list[bytes]) -> list[bytes]:
    import bz2
    import gzip
    import io
    import lzma
    import tarfile
    import zipfile

    out = [gzip.compress(src[0], mtime=0), bz2.compress(src[1]), lzma.compress(src[2])]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for k, s in enumerate(src[:3]):
            z.writestr(f"m{k}.py", s)
    out.append(buf.getvalue())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for k, s in enumerate(src[3:5]):
            info = tarfile.TarInfo(f"m{k}.py")
            info.size = len(s)
            t.addfile(info, io.BytesIO(s))
    out.append(buf.getvalue())
    return out


def _texts() -> list[bytes]:
    rows = [{"id": k, "name": f"item {k}", "price": round(1.5 * k, 2), "tags": ["a", "b"][: k % 3]} for k in range(60)]
    csv = "id,name,price\n" + "".join(f"{r['id']},{r['name']},{r['price']}\n" for r in rows)
    xml = '<?xml version="1.0" encoding="UTF-8"?>\n<catalog>\n' + "".join(
        f'  <item id="{r["id"]}"><name>{r["name"]}</name><price>{r["price"]}</price></item>\n' for r in rows
    ) + "</catalog>\n"
    html = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>Items</title></head>\n<body>\n"
            "<table>\n" + "".join(f"<tr><td>{r['id']}</td><td>{r['name']}</td></tr>\n" for r in rows)
            + "</table>\n</body>\n</html>\n")
    ini = "".join(f"[section{k}]\nname = item {k}\nenabled = true\npath = /var/lib/item{k}\n\n" for k in range(30))
    sh = "#!/bin/sh\nset -e\n" + "".join(f'if [ -f "/tmp/f{k}" ]; then\n  echo "found {k}"\n  rm -f "/tmp/f{k}"\nfi\n'
                                         for k in range(40))
    md = "# Items\n\nA list of the items.\n\n" + "".join(f"## Item {k}\n\n- **name**: item {k}\n- *price*: "
                                                          f"{1.5 * k}\n\nSee [the docs](https://example.org/{k}).\n\n"
                                                          for k in range(25))
    c = "#include <stdio.h>\n#include <stdlib.h>\n\n" + "".join(
        f"static int f{k}(int x)\n{{\n    int y = x * {k};\n    if (y > 10) {{\n        return y - 1;\n    }}\n"
        f"    return y + 1;\n}}\n\n" for k in range(30))
    c += "int main(void)\n{\n    printf(\"%d\\n\", f1(2));\n    return 0;\n}\n"
    return [s.encode() for s in (json.dumps(rows, indent=2), csv, xml, html, ini, sh, md, c)]


def files() -> list[bytes]:
    """File contents of many real types, made here (deterministic)."""
    import importlib.util
    import marshal
    import sys

    src = _sources()
    pyc = [importlib.util.MAGIC_NUMBER + b"\0" * 12 + marshal.dumps(compile(s, f"m{k}.py", "exec"))
           for k, s in enumerate(src[:3])]
    with open(sys.executable, "rb") as f:
        elf = f.read(1 << 16)  # its first 64 kB: an ELF's header and its code (magika reads 4 kB each end)
    return src + pyc + [elf] + _archives(src) + _texts() + [_png(), _bmp(), _wav()]


def features(content: bytes) -> list[int]:
    """magika's own features of `content` (its first and last 1024 ids), as `Magika` feeds its model."""
    import io

    from magika import Magika
    from magika.types.seekable import Seekable

    cfg = json.loads(wheel_file("magika", CONFIG).read_text())
    fs = Magika._extract_features_from_seekable(Seekable(io.BytesIO(content)), cfg["beg_size"], cfg["mid_size"],
                                                 cfg["end_size"], cfg["padding_token"], cfg["block_size"],
                                                 cfg["use_inputs_at_offsets"])
    return fs.beg[: cfg["beg_size"]] + fs.end[-cfg["end_size"]:]


def feeds() -> np.ndarray:
    """The features of every file of `files()`, (n, 2048) int32: the model's input `bytes`."""
    return np.array([features(c) for c in files()], np.int32)


CALIB = tuple(range(0, 30, 2))  # the even files calibrate; the odd ones are held out


def labels(probs: np.ndarray) -> list[str]:
    """The label magika reports for each row of its model's output (HIGH_CONFIDENCE, its default)."""
    cfg = json.loads(wheel_file("magika", CONFIG).read_text())
    kb = json.loads(wheel_file("magika", KB).read_text())
    space, out = cfg["target_labels_space"], []
    for row in np.asarray(probs, np.float64).reshape(-1, len(space)):
        k = int(row.argmax())
        dl = space[k]
        label = cfg["overwrite_map"].get(dl, dl)
        if row[k] < cfg["thresholds"].get(dl, cfg["medium_confidence_threshold"]):
            label = "txt" if kb[label]["is_text"] else "unknown"
        out.append(label)
    return out


def label_metric(outputs, reference, label=None) -> float:
    """The share of files whose reported label (`labels`) is the reference's."""
    got, ref = labels(outputs["target_label"]), labels(reference["target_label"])
    return float(np.mean([a == b for a, b in zip(got, ref)]))
