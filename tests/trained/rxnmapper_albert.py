"""rxnmapper 0.4.3 (`pip install --no-deps rxnmapper==0.4.3`, MIT): IBM RXN's reaction atom mapper, its trained
ALBERT (3.2 MB `pytorch_model.bin` in the wheel: 12 layers sharing one block, 8 heads, 256 wide, LayerNorm, GELU)
tried as a new user (docs/trained-models.md, eleventh stop). Read by path (the package imports rdkit and
rxn-chem-utils at import; its model and vocabulary load with transformers alone).

The application's decision: `RXNMapper` reads layer 10's head 5 attention (its config's `layers=[10]`, `head=5`)
and maps each product atom to the reactant atom it attends to most among the atoms of its element
(`AttentionScorer.atom_type_masked_attentions`, the first pick before its neighbour multiplier) —
`mapping_metric`, the share of the product atoms of REACTIONS whose reactant atom is the reference's.

The reactions are written here (no data downloads)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np

# rxnmapper's smiles_utils.SMI_REGEX_PATTERN (the Schwaller et al. SMILES regex)
SMI_REGEX = re.compile(r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|\/|:|~|@|\?|>>?|\*|\$"
                       r"|\%[0-9]{2}|[0-9])")
LAYER, HEAD = 10, 5  # RXNMapper's defaults

REACTIONS = (
    "CC(=O)O.OCC>>CC(=O)OCC",
    "CC(=O)Cl.NCc1ccccc1>>CC(=O)NCc1ccccc1",
    "Brc1ccccc1.OB(O)c1ccccc1>>c1ccc(-c2ccccc2)cc1",
    "O=C(O)c1ccccc1.CN>>CNC(=O)c1ccccc1",
    "CCOC(=O)c1ccc(N)cc1.CC(=O)OC(C)=O>>CCOC(=O)c1ccc(NC(C)=O)cc1",
    "OC1CCCCC1>>O=C1CCCCC1",
    "CC(C)=O.[BH4-]>>CC(C)O",
    "C=Cc1ccccc1.BrBr>>BrCC(Br)c1ccccc1",
    "CCBr.Oc1ccccc1>>CCOc1ccccc1",
    "O=Cc1ccccc1.NCCO>>OCCN=Cc1ccccc1",
    "Nc1ccccc1.O=S(=O)(Cl)c1ccc(C)cc1>>Cc1ccc(S(=O)(=O)Nc2ccccc2)cc1",
    "CC(C)(C)OC(=O)NCCC(=O)O>>NCCC(=O)O",
    "COC(=O)c1ccc(Br)cc1>>OC(=O)c1ccc(Br)cc1",
    "Clc1ccc(I)cc1.C#Cc1ccccc1>>Clc1ccc(C#Cc2ccccc2)cc1",
    "CC(=O)c1ccccc1.BrCc1ccccc1>>CC(=O)c1ccccc1.Brc1ccccc1",
    "O=[N+]([O-])c1ccc(Cl)cc1>>Nc1ccc(Cl)cc1",
    "C1CCNCC1.O=C(Cl)c1ccco1>>O=C(c1ccco1)N1CCCCC1",
    "OCc1ccccc1.CS(=O)(=O)Cl>>CS(=O)(=O)OCc1ccccc1",
    "CCN.O=C1CCCC1>>CCNC1CCCC1",
    "c1ccc2[nH]ccc2c1.CI>>Cn1ccc2ccccc21",
    "Oc1ccc(Br)cc1.CC(C)(C)[Si](C)(C)Cl>>CC(C)(C)[Si](C)(C)Oc1ccc(Br)cc1",
    "CC(=O)OCC.NN>>CC(=O)NN",
    "O=C(O)CCc1ccccc1.OCC(F)(F)F>>O=C(CCc1ccccc1)OCC(F)(F)F",
    "N#Cc1ccccc1>>NCc1ccccc1",
    "Cc1ccc(S(=O)(=O)Cl)cc1.OC1CCOCC1>>Cc1ccc(S(=O)(=O)OC2CCOCC2)cc1",
    "COc1ccc(B(O)O)cc1.Brc1cccnc1>>COc1ccc(-c2cccnc2)cc1",
    "O=C(Cl)C1CC1.Nc1ccc(F)cc1>>O=C(Nc1ccc(F)cc1)C1CC1",
    "CCCCBr.[N-]=[N+]=[N-]>>CCCCN=[N+]=[N-]",
    "OC(=O)c1cc(Cl)ccc1O.CO>>COC(=O)c1cc(Cl)ccc1O",
    "CC1(C)OB(c2ccc(N)cc2)OC1(C)C.Ic1ccc(C#N)cc1>>N#Cc1ccc(-c2ccc(N)cc2)cc1",
    "C=CC(=O)OC.NCc1ccco1>>COC(=O)CCNCc1ccco1",
    "Nc1ccc(O)cc1.CC(=O)OC(C)=O>>CC(=O)Nc1ccc(O)cc1",
)
CALIB = (
    "CC(=O)O.OCCCC>>CC(=O)OCCCC",
    "O=C(Cl)c1ccccc1.NC1CCCCC1>>O=C(NC1CCCCC1)c1ccccc1",
    "Brc1ccc(C)cc1.OB(O)c1ccco1>>Cc1ccc(-c2ccco2)cc1",
    "OCCc1ccccc1>>O=CCc1ccccc1",
    "CC(=O)CC(C)C.[BH4-]>>CC(O)CC(C)C",
    "CCI.Oc1ccc(Cl)cc1>>CCOc1ccc(Cl)cc1",
    "O=Cc1ccc(O)cc1.NCCCC>>CCCCN=Cc1ccc(O)cc1",
    "Nc1ccc(C)cc1.CS(=O)(=O)Cl>>Cc1ccc(NS(C)(=O)=O)cc1",
    "CC(C)(C)OC(=O)N1CCNCC1>>C1CNCCN1",
    "CCOC(=O)c1ccccc1O>>O=C(O)c1ccccc1O",
    "O=[N+]([O-])c1cccc(C)c1>>Cc1cccc(N)c1",
    "C1CCOC1.O=C(Cl)c1ccccc1>>O=C(OCCCCCl)c1ccccc1",
    "OCc1ccc(F)cc1.CC(=O)Cl>>CC(=O)OCc1ccc(F)cc1",
    "CCCN.O=C1CCCCC1>>CCCNC1CCCCC1",
    "c1ccc2[nH]ccc2c1.BrCc1ccccc1>>c1ccc(Cn2ccc3ccccc32)cc1",
    "N#CCc1ccccc1>>NCCc1ccccc1",
    "Clc1ccc(I)cc1.C#CCO>>OCC#Cc1ccc(Cl)cc1",
    "COc1ccccc1B(O)O.Brc1ccccn1>>COc1ccccc1-c1ccccn1",
    "O=C(O)c1ccncc1.NCc1ccccc1>>O=C(NCc1ccccc1)c1ccncc1",
    "CC(C)Br.[N-]=[N+]=[N-]>>CC(C)N=[N+]=[N-]",
    "Oc1ccccc1C=O.CI>>COc1ccccc1C=O",
    "CC(=O)OC(C)=O.NCCO>>CC(=O)NCCO",
    "C=CC#N.NC1CCCC1>>N#CCCNC1CCCC1",
    "OC(=O)CCCl.OCC>>CCOC(=O)CCCl",
)


def model_dir() -> Path:
    spec = importlib.util.find_spec("rxnmapper")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("rxnmapper is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "models" / "transformers" / "albert_heads_8_uspto_all_1310k"


def tokens(rxn: str) -> list[str]:
    return ["[CLS]"] + SMI_REGEX.findall(rxn) + ["[SEP]"]


def feeds(reactions=REACTIONS) -> dict[str, np.ndarray]:
    """`RXNMapper.convert_batch_to_attns`' input: the tokens' ids, padded to the longest, and the attention mask."""
    vocab = {t: i for i, t in enumerate((model_dir() / "vocab.txt").read_text(encoding="utf-8").split("\n"))}
    rows = [[vocab.get(t, vocab["[UNK]"]) for t in tokens(r)] for r in reactions]
    n = max(map(len, rows))
    ids = np.array([r + [vocab["[PAD]"]] * (n - len(r)) for r in rows], dtype=np.int64)
    mask = np.arange(n)[None] < np.array([[len(r)] for r in rows])
    return {"input_ids": ids, "attention_mask": mask.astype(np.int64)}


def _element(tok: str) -> str | None:
    m = re.match(r"\[?\d*([A-Z][a-z]?|[a-z]{1,2})", tok)
    if m is None or tok in ("[CLS]", "[SEP]"):
        return None
    return m.group(1).capitalize()


def mappings(attn: np.ndarray, reactions=REACTIONS) -> list[list[int]]:
    """Each product atom's reactant atom: the argmax of its attention row over the reactant atoms of its element
    (-1 where none), reaction by reaction."""
    out = []
    for a, rxn in zip(attn, reactions):
        toks = tokens(rxn)
        split = toks.index(">>")
        elem = [_element(t) if t not in ("(", ")", ".", ">>") else None for t in toks]
        reac = [i for i in range(split) if elem[i]]
        prod = [i for i in range(split + 1, len(toks)) if elem[i]]
        picks = []
        for p in prod:
            same = [r for r in reac if elem[r] == elem[p]]
            picks.append(max(same, key=lambda r: a[p, r]) if same else -1)
        out.append(picks)
    return out


def mapping_metric(outputs, reference, label=None) -> float:
    """The share of REACTIONS' product atoms mapped to the reference's reactant atom (layer 10's head 5); the share
    of tokens whose argmax is the reference's where the batch is not REACTIONS. The output `attn` (the exported
    file's), else the only one (a `--torch` run's)."""
    out, ref = (np.asarray(d["attn"] if "attn" in d else next(iter(d.values())), dtype=np.float32)
                for d in (outputs, reference))
    if out.shape[0] != len(REACTIONS):
        return float(np.mean(out.argmax(-1) == ref.argmax(-1)))
    got, want = mappings(out), mappings(ref)
    flat = [(g == w) for gs, ws in zip(got, want) for g, w in zip(gs, ws)]
    return float(np.mean(flat))


def attention_module():
    """The ALBERT as RXNMapper runs it, `input_ids`, `attention_mask` → layer 10's head 5 attention (its
    `convert_batch_to_attns`): the module for `--torch FILE.py:attention_module` (with --inputs)."""
    import torch
    from transformers import AlbertModel

    model = AlbertModel.from_pretrained(str(model_dir()), attn_implementation="eager").eval()

    class Attn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.albert = model

        def forward(self, input_ids, attention_mask):
            out = self.albert(input_ids=input_ids, attention_mask=attention_mask, output_attentions=True)
            return out.attentions[LAYER][:, HEAD]

    return Attn().eval()


def export(path: Path, dynamo: bool = False) -> Path:
    """The ALBERT as the user exports it: `input_ids`, `attention_mask` → `attn`, opset 17 (18 through dynamo);
    `dynamo` picks torch.onnx's exporter."""
    import torch

    f = feeds(REACTIONS[:2])
    args = (torch.from_numpy(f["input_ids"]), torch.from_numpy(f["attention_mask"]))
    dyn = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
    with torch.no_grad():
        torch.onnx.export(attention_module(), args, str(path), input_names=["input_ids", "attention_mask"],
                          output_names=["attn"], opset_version=17, dynamo=dynamo,
                          dynamic_axes=None if dynamo else {**dyn, "attn": {0: "batch", 1: "seq", 2: "seq"}},
                          dynamic_shapes=dyn if dynamo else None)
    return path
