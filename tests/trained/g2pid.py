"""g2p-id-py 0.4.2 (`pip install --no-deps g2p-id-py==0.4.2`, Apache-2.0): Indonesian grapheme-to-phoneme by
Bookbot, its two networks as its author ships them (Keras → tf2onnx, opset 14), tried as a new user
(docs/trained-models.md, tenth stop). Read by path (the package imports nltk and a POS tagger at import).

- `models/bert/bert_mlm.onnx` (1.3 MB): a two-layer BERT masked LM over letters; `BERT.predict` masks each `e` of a
  word and reads the argmax at the mask: `e` or the schwa `ə` — the decision here, `reading_metric`.
- `models/lstm/decoder_model.onnx` (1.2 MB): the seq2seq LSTM decoder, one step; `LSTM.predict` takes the argmax of
  `dense` as the next phoneme — `phoneme_metric`, on steps of the words below decoded in FP32 (teacher forced).

The words are written here (no data downloads)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

WORDS = ("bebek enak sehat beras meja kereta pergi desember seperti telepon merah bekerja sepeda gerobak pelajar "
         "berenang kecewa lebar enam peta becak lele mereka tempe sore remaja pesawat kemeja selesai bendera "
         "gelas kertas ember sedekah getek senter memeras teman esok ekor kelelawar perempuan lepas tegel dekat "
         "cerewet pendek sebelas kembali segera petani setelah").split()
CALIB = ("bersepeda kepala belajar semester benar gelap sejuk teras kecil negeri perang berkembang pelabuhan "
         "menteri pedesaan serentak sekolah memetik terbang kemarau penyebab lengket beres cemberut pesan geser "
         "keset rendah gereja tebal setempat").split()
DECODED = ("rumah makan minum jalan sekolah pasar buku meja kursi pintu jendela kucing anjing burung ikan sapi "
           "kambing mobil motor kereta sepeda pesawat kapal dokter guru petani nelayan pedagang hujan panas dingin "
           "angin gunung laut sungai danau hutan kota desa negara bahasa budaya sejarah musik lagu tari gambar "
           "warna merah kuning hijau biru putih hitam nyanyi nyaman syarat khusus ngopi sayang anak ibu bapak "
           "kakak adik teman").split()
MAX_LEN = 32  # bert/config.json's max_seq_length


def models() -> Path:
    spec = importlib.util.find_spec("g2p_id")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("g2p-id-py is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def letter_ids(words) -> np.ndarray:
    """`BERT.predict`'s input for each word: its letters' ids, each `e` masked, padded to 32 (int64)."""
    tok = json.loads((models() / "bert" / "token2id.json").read_text(encoding="utf-8"))
    rows = [[tok["[mask]"] if c == "e" else tok[c] for c in w.replace("x", "ks")] for w in words]
    return np.array([r + [tok[""]] * (MAX_LEN - len(r)) for r in rows], dtype=np.int64)


def reading_metric(outputs, reference, label=None, inputs=None) -> float:
    """The share of the masked letters (the input ids at `[mask]`: `BERT.predict` masks each `e`) whose reading (the
    argmax there) is the reference's: the decision is at the masked positions, which only the input holds (a
    `--metric` that names `inputs` gets the sample's, by name)."""
    tok = json.loads((models() / "bert" / "token2id.json").read_text(encoding="utf-8"))
    mask = np.asarray(inputs["input_1"]) == tok["[mask]"]
    out, ref = (np.asarray(next(iter(d.values())), dtype=np.float32) for d in (outputs, reference))
    return float(np.mean(out.argmax(-1)[mask] == ref.argmax(-1)[mask]))


def phoneme_metric(outputs, reference, label=None) -> float:
    """The share of decoding steps whose next phoneme (the argmax of `dense`, `LSTM.predict`'s) is the reference's."""
    out, ref = (np.asarray(d["dense"], dtype=np.float32) for d in (outputs, reference))
    return float(np.mean(out.argmax(-1) == ref.argmax(-1)))


def decoder_steps(n_judged: int = 128, n_calib: int = 128) -> tuple[dict, dict]:
    """(judged, calibration) feeds of the decoder: the steps of DECODED's words greedily decoded in FP32 as
    `LSTM.predict` decodes them (the previous phoneme one-hot, the states), shuffled (seed 0), split."""
    import onnxruntime as ort

    d = models() / "lstm"
    g2id, p2id = (json.loads((d / f).read_text(encoding="utf-8")) for f in ("g2id.json", "p2id.json"))
    cfg = json.loads((d / "config.json").read_text(encoding="utf-8"))
    enc, dec = (ort.InferenceSession(str(d / f), providers=["CPUExecutionProvider"])
                for f in ("encoder_model.onnx", "decoder_model.onnx"))
    steps = []
    for w in DECODED:
        x = np.zeros((1, cfg["max_encoder_seq_length"], cfg["num_encoder_tokens"]), np.float32)
        x[0, np.arange(len(w)), [g2id[c] for c in w]] = 1
        x[0, len(w):, g2id[cfg["pad_token"]]] = 1
        h, c = enc.run(None, {"input_1": x})
        k = p2id[cfg["bos_token"]]
        for _ in range(cfg["max_decoder_seq_length"] + 1):
            t = np.zeros((1, 1, cfg["num_decoder_tokens"]), np.float32)
            t[0, 0, k] = 1
            steps.append((t[0], h[0], c[0]))
            out, h, c = dec.run(None, {"input_2": t, "input_3": h, "input_4": c})
            k = int(out[0, -1].argmax())
            if k == p2id[cfg["eos_token"]]:
                break
    order = np.random.default_rng(0).permutation(len(steps))

    def pack(ix):
        return {name: np.stack([steps[i][j] for i in ix]) for j, name in enumerate(("input_2", "input_3", "input_4"))}
    return pack(order[:n_judged]), pack(order[n_judged:n_judged + n_calib])
