"""What a sweep leaves for the next in the server (`sweep/kept.py`): a thing is handed back only under the key it was
kept under; another key lets it go with everything kept after it (the actors before their cluster); outside the
server nothing is kept; the server's end lets all go, the last made first."""

from __future__ import annotations

from cp_debug.sweep import kept


def _keeper(gone: list):
    return lambda thing: gone.append(thing)


def test_outside_the_server_a_thing_put_is_let_go_at_once():
    gone: list = []
    kept.put("ray", "k", "cluster", _keeper(gone))
    assert gone == ["cluster"] and kept.held() == [] and kept.take("ray", "k") is None


def test_a_thing_comes_back_under_its_own_key_only():
    gone: list = []
    said: list = []
    with kept.keep_between(said.append):
        kept.put("ray", ("local", "/here"), "cluster", _keeper(gone))
        kept.put("ray-workers", "settings A", "actors A", _keeper(gone))
        kept.put("metrics-pool", 16, "pool", _keeper(gone))
        assert kept.held() == ["ray", "ray-workers", "metrics-pool"] and gone == []
        assert kept.holds("ray", ("local", "/here")) and not kept.holds("ray", ("local", "/there"))
        # the cluster taken back as it was; the actors of other settings let go, with what was kept after them
        assert kept.take("ray", ("local", "/here")) == "cluster"
        assert kept.take("ray-workers", "settings B") is None
        assert gone == ["pool", "actors A"] and kept.held() == []
        kept.put("ray", ("local", "/here"), "cluster", _keeper(gone))
        kept.put("ray-workers", "settings B", "actors B", _keeper(gone))
        # a cluster started under another environment: it goes, and its actors before it
        assert kept.take("ray", ("local", "/there")) is None
        assert gone == ["pool", "actors A", "actors B", "cluster"]
        kept.put("ray", ("local", "/there"), "cluster 2", _keeper(gone))
        kept.put("ray-workers", "settings C", "actors C", _keeper(gone))
    # the server's end: the actors first, then their cluster, and nothing kept any more
    assert gone[-2:] == ["actors C", "cluster 2"] and kept.held() == [] and not kept.keeping()
    assert said == ["letting go of what sweeps kept: ray, ray-workers"]


def test_a_second_thing_of_a_kind_lets_the_first_go():
    gone: list = []
    with kept.keep_between():
        kept.put("metrics-pool", 8, "pool of 8", _keeper(gone))
        kept.put("metrics-pool", 16, "pool of 16", _keeper(gone))
        assert gone == ["pool of 8"] and kept.take("metrics-pool", 16) == "pool of 16"
    assert gone == ["pool of 8"]


def test_the_export_and_a_users_files_as_keys(tmp_path):
    a = {"encoder": b"\x01" * 10, "backbone": b"\x02" * 20}
    assert kept.stages_digest(a) == kept.stages_digest(dict(reversed(a.items())))
    assert kept.stages_digest(a) != kept.stages_digest({**a, "backbone": b"\x02" * 19 + b"\x03"})
    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(b"weights")
    stamp = kept.file_stamp(ckpt)
    assert stamp == kept.file_stamp(str(ckpt)) and kept.file_stamp(None) is None
    ckpt.write_bytes(b"other weights")
    assert kept.file_stamp(ckpt) != stamp
    (tmp_path / "int8").mkdir()
    (tmp_path / "int8" / "calib.cache").write_text("scales")
    assert len(kept.file_stamp(tmp_path / "int8")) == 1 and kept.file_stamp(tmp_path / "missing") == ()


def test_what_is_kept_is_said_in_words():
    with kept.keep_between():
        kept.put("ray", "k", True, lambda _: None)
        kept.put("ray-workers", "k", kept.RayWorkers(["a", "b"], [], "digest", None, [], {}), lambda _: None)
        kept.put("metrics-pool", 16, "pool", lambda _: None)
        assert kept.described() == ["the Ray cluster a `--ray local` sweep started",
                                    "2 Ray sweep worker(s), their sessions open", "the metrics' process pool"]
    assert kept.described() == []


def test_the_workers_key_holds_what_the_actors_are_made_of(tmp_path):
    """Settings that change how the lanes run (`overlap`, which the manifest leaves out) or a checkpoint written anew
    give other workers; the same settings and files, the same key."""
    import dataclasses

    from cp_debug.recipes import catalog
    from cp_debug.sweep.records import SweepSettings

    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(b"weights")
    s = SweepSettings(("torch", "ort-cpu-fp16"), preset="tiny", checkpoint=str(ckpt), recipe=catalog.recipe())
    cluster = {"CPU": 2.0, "memory": 1e9}

    def key(settings):
        return kept.workers_key(settings, cluster, 1, 2, False, 0.0, None)

    assert key(s) == key(dataclasses.replace(s))
    assert key(dataclasses.replace(s, overlap=False)) != key(s)
    assert key(dataclasses.replace(s, level="stage")) != key(s)
    before = key(s)
    ckpt.write_bytes(b"new weights")
    assert key(s) != before
