"""rxnfp 0.1.0's reaction classifier (`rxnfp/models/transformers/bert_ft_10k_25s`, MIT, in its 75 MB wheel): a
12-layer BERT (hidden 256, 4 heads, LayerNorms, GELU) fine-tuned on the 50 reaction classes of Schneider's set,
as a user exports it (`torch.onnx.export`) to ONNX. The decision: the reaction's class (the argmax of the 50 logits,
`BertForSequenceClassification`'s). Reactions written here in SMILES, tokenised as rxnfp's `SmilesTokenizer` does
(its regex, the wheel's vocabulary; rxnfp's canonicalisation needs RDKit and is left out: the model reads tokens)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

DIST, DIR = "rxnfp", "rxnfp/models/transformers/bert_ft_10k_25s"
LENGTH = 96  # tokens a reaction: [CLS] … [SEP], padded
SMI = re.compile(r"(\%\([0-9]{3}\)|\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\||\(|\)|\.|=|#|-|\+|\\|\/|:|~|@|\?|>>?|"
                 r"\*|\$|\%[0-9]{2}|[0-9])")
ACIDS = ["CC(=O)O", "OC(=O)c1ccccc1", "OC(=O)c1ccc(Cl)cc1", "OC(=O)c1ccncc1", "OC(=O)C1CCCCC1", "OC(=O)Cc1ccccc1",
         "OC(=O)c1ccc(OC)cc1", "OC(=O)c1cccs1"]
AMINES = ["NCc1ccccc1", "C1CCNCC1", "Nc1ccccc1", "CN", "C1COCCN1", "NC1CC1", "NCCO", "CNc1ccccc1"]
HALIDES = ["Brc1ccccc1", "Brc1ccc(C)cc1", "Brc1cccnc1", "Ic1ccc(F)cc1", "Brc1ccc(C#N)cc1", "Brc1cccs1"]
BORONICS = ["OB(O)c1ccccc1", "OB(O)c1ccc(OC)cc1", "OB(O)c1ccoc1"]
ALDEHYDES = ["O=Cc1ccccc1", "O=Cc1ccc(Cl)cc1", "O=CC1CCCCC1", "O=Cc1ccncc1"]


def _reactions() -> list[str]:
    """Reactions of five classes a chemist would recognise: amide couplings, Suzuki couplings, Boc deprotections,
    reductive aminations, ester hydrolyses (reactants >> product, the product written by hand)."""
    out = []
    for i, a in enumerate(ACIDS):
        n = AMINES[i % len(AMINES)]
        out.append(f"{a}.{n}.CCN(C(C)C)C(C)C.CN(C)C(On1nnc2cccnc21)=[N+](C)C>>{a[:-1] if a.endswith('O') else a}"
                   f"{'N' + n[1:] if n.startswith('N') else n}")
    for h in HALIDES:
        for b in BORONICS:
            out.append(f"{h}.{b}.O=C([O-])[O-].[K+].[K+]>>{h[2:]}{b[5:]}" if h.startswith("Br") else
                       f"{h}.{b}.[Pd]>>{h[1:]}{b[5:]}")
    for n in AMINES + ["NCc1ccc(Cl)cc1", "NC1CCCC1"]:
        out.append(f"CC(C)(C)OC(=O)N{n[1:] if n.startswith('N') else n}.O=C(O)C(F)(F)F>>{n}")
    for a in ALDEHYDES:
        for n in AMINES[:4]:
            out.append(f"{a}.{n}.[BH-](OC(C)=O)(OC(C)=O)OC(C)=O.[Na+]>>{a[2:]}C{n[1:] if n.startswith('N') else n}")
    for a in ACIDS:
        out.append(f"CO{a[1:] if a.startswith('O') else 'C(=O)C'}.[OH-].[Li+].C1CCOC1>>{a}")
    return out


REACTIONS = _reactions()


def model_dir() -> Path:
    from tests.trained.corpus import wheel_file

    return wheel_file(DIST, f"{DIR}/config.json").parent


def feeds(reactions=REACTIONS) -> dict:
    """input_ids and attention_mask of `reactions` as rxnfp's tokenizer gives them, padded to LENGTH."""
    vocab = {t: i for i, t in enumerate((model_dir() / "vocab.txt").read_text(encoding="utf-8").split("\n"))}
    ids = np.zeros((len(reactions), LENGTH), np.int64)
    for row, smi in enumerate(reactions):
        tokens = ["[CLS]", *SMI.findall(smi)][:LENGTH - 1] + ["[SEP]"]
        ids[row, :len(tokens)] = [vocab.get(t, vocab["[UNK]"]) for t in tokens]
    return {"input_ids": ids, "attention_mask": (ids != 0).astype(np.int64)}


def export(out: Path, dynamo: bool = False) -> Path:
    """The classifier as a user exports it: `torch.onnx.export`, opset 17, the batch dynamic."""
    import torch
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(str(model_dir())).eval()
    x = {k: torch.from_numpy(v[:2]) for k, v in feeds().items()}
    kw = (dict(dynamo=True, dynamic_shapes=({0: "batch"}, {0: "batch"})) if dynamo else
          dict(dynamo=False, dynamic_axes={k: {0: "batch"} for k in (*x, "logits")}))
    torch.onnx.export(model, (x["input_ids"], x["attention_mask"]), str(out), input_names=list(x),
                      output_names=["logits"], opset_version=17, **kw)
    return out


def class_metric(outputs, reference, label=None) -> float:
    """The share of reactions whose class (the argmax of `logits`) is the reference's."""
    out, ref = (np.asarray(d["logits"], dtype=np.float32) for d in (outputs, reference))
    return float(np.mean(out.argmax(-1) == ref.argmax(-1)))
