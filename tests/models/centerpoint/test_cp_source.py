"""load_model: a process makes each seeded random initialisation once, and every caller gets a model of its own."""

from __future__ import annotations

import pytest
import torch

from cp_debug.models.centerpoint.model import build_model
from cp_debug.models.centerpoint.source import load_model


def test_random_weights_are_made_once_and_every_model_is_its_own():
    first = load_model("tiny", seed=3, random_weights=True)
    with torch.no_grad():  # a caller changing its model (training, BN fusion) changes no one else's
        for p in first.model.parameters():
            p.add_(1.0)
    again, other = load_model("tiny", seed=3, random_weights=True), load_model("tiny", seed=4, random_weights=True)
    made = build_model(first.cfg, seed=3).state_dict()
    kept = again.model.state_dict()
    assert kept.keys() == made.keys() and all(torch.equal(kept[k], made[k]) for k in made)
    assert again.weights == "random (seed 3)" and not again.model.training
    assert not torch.equal(next(again.model.parameters()), next(first.model.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(again.model.parameters(), other.model.parameters()))


def test_random_weights_are_kept_on_disk_for_the_next_process(tmp_path, monkeypatch):
    from cp_debug.models.centerpoint import source

    monkeypatch.setenv("CPDEBUG_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(source, "_LOADED", {})  # as a new process
    made = load_model("tiny", seed=5, random_weights=True).model.state_dict()
    (stored,) = (tmp_path / "weights").glob("*.pt")
    monkeypatch.setattr(source, "_LOADED", {})
    with monkeypatch.context() as m:  # read back, not made again
        m.setattr("cp_debug.models.centerpoint.model.build_model", lambda *a, **k: pytest.fail("made again"))
        back = load_model("tiny", seed=5, random_weights=True).model.state_dict()
    assert all(torch.equal(back[k], made[k]) for k in made)
    stored.write_bytes(b"damaged")  # made again and rewritten
    monkeypatch.setattr(source, "_LOADED", {})
    again = load_model("tiny", seed=5, random_weights=True).model.state_dict()
    assert all(torch.equal(again[k], made[k]) for k in made) and stored.stat().st_size > 1000
    monkeypatch.setenv("CPDEBUG_NO_CACHE", "1")
    monkeypatch.setattr(source, "_LOADED", {})
    load_model("tiny", seed=6, random_weights=True)
    assert len(list((tmp_path / "weights").glob("*.pt"))) == 1


def test_a_kept_or_stored_state_is_put_in_a_model_built_without_initialising_it():
    """`_with_state` builds on torch's meta device and takes the state's own tensors: nothing left on meta, the
    parameters trainable as a plain build's, the caller's RNG untouched; a state that does not fit is refused as
    the plain strict load refuses it."""
    from cp_debug.models.centerpoint.model import BackboneNeckHeadStage, CenterPoint
    from cp_debug.models.centerpoint.source import _with_state

    made = build_model(load_model("tiny").cfg, seed=7)
    state = {k: v.clone() for k, v in made.state_dict().items()}
    rng = torch.get_rng_state()
    model = _with_state(made.cfg, state)
    assert torch.equal(torch.get_rng_state(), rng)
    got = model.state_dict()
    assert got.keys() == state.keys() and all(got[k].data_ptr() == state[k].data_ptr() for k in state)
    assert not any(t.is_meta for t in (*model.parameters(), *model.buffers()))
    assert [p.requires_grad for p in model.parameters()] == [p.requires_grad for p in made.parameters()]
    assert all(type(p) is torch.nn.Parameter for p in model.parameters())
    spatial = torch.rand(1, made.cfg.pillar_channels, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        outs = [BackboneNeckHeadStage(m.eval())(spatial) for m in (model, made)]
    assert len(outs[0]) > 1 and all(torch.equal(a, b) for a, b in zip(*outs))
    del state[next(iter(state))]
    with pytest.raises(RuntimeError, match="Missing key"):
        _with_state(made.cfg, state)
    with pytest.raises(RuntimeError, match="Missing key"):
        CenterPoint(made.cfg).load_state_dict(state, strict=True)
