"""A `--torch FILE.py:FUNC` subject's graph through the export cache (bisect/subjects/loaders.py, export/cache.py):
read back,
it is the graph, the exporter's warnings and notes and what the export said (a log record, text on fd 2) of the
export that stored it; an edit to the user's own code (FILE.py, a module beside it) is exported again."""

from __future__ import annotations

import logging
import sys

import pytest

from cp_debug.bisect.subjects.loaders import torch_subject
from cp_debug.export.cache import CACHE_ENV, NO_CACHE_ENV

MODEL = """\
import logging
import os

import torch

import {helper}


def offset():
    return 0.5


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)

    def forward(self, x):
        logging.getLogger("usermodel").warning("forward ran")  # a library logging: said again on a hit
        os.write(2, b"usermodel: C++ says hello\\n")  # text on fd 2, as the TorchScript exporter's C++ writes
        if bool(x.sum() > -1e9):  # data-dependent: a TracerWarning
            x = x + offset()
        return {helper}.scale(self.lin(x))


def build():
    torch.manual_seed(0)
    return Net().eval(), (torch.randn(2, 4),)
"""


@pytest.fixture()
def user_model(tmp_path, monkeypatch):
    """model.py and the helper module it imports from beside it (a name of its own: sys.modules is the process's)."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(NO_CACHE_ENV, raising=False)
    helper = f"helper_{tmp_path.name}"
    (tmp_path / "model.py").write_text(MODEL.format(helper=helper))
    (tmp_path / f"{helper}.py").write_text("def scale(y):\n    return y * 2.0\n")
    yield tmp_path, helper
    sys.modules.pop(helper, None)


class _Heard(logging.Handler):
    def __init__(self):
        super().__init__()
        self.said: list[str] = []

    def emit(self, record):
        self.said.append(f"{record.name}: {record.getMessage()}")


def _export(folder, capfd):
    """The subject's stage exported (or read back), with what the export said on logging and on fd 2."""
    stage = torch_subject(f"{folder / 'model.py'}:build", exporter="torchscript").stages[0]
    heard = _Heard()
    logging.getLogger().addHandler(heard)
    capfd.readouterr()
    try:
        graph = stage.onnx().SerializeToString()
    finally:
        logging.getLogger().removeHandler(heard)
    return stage, graph, heard.said, capfd.readouterr().err


def test_a_read_back_graph_comes_with_the_warnings_notes_and_what_its_export_said(user_model, capfd):
    folder, _ = user_model
    first, graph, logged, fd2 = _export(folder, capfd)
    again, graph_again, logged_again, fd2_again = _export(folder, capfd)
    assert (first.export_cache, again.export_cache) == ("stored", "hit")
    assert graph_again == graph and again.exporter == first.exporter == "torchscript"
    assert again.export_warnings == first.export_warnings
    assert any(w.freezes_control_flow for w in first.export_warnings)
    assert again.export_note == first.export_note
    assert logged_again == logged and "usermodel: forward ran" in logged
    assert fd2_again == fd2 and "usermodel: C++ says hello" in fd2


def test_an_edited_helper_is_exported_again_once_it_is_the_code_that_runs(user_model, capfd):
    folder, helper = user_model
    _, graph, _, _ = _export(folder, capfd)
    # another size as well as other bytes: Python takes a cached .pyc whose source has the size and the mtime (in
    # whole seconds) it recorded, and an edit within the same second would run the old code (seen on the device)
    (folder / f"{helper}.py").write_text("def scale(y):\n    return y * 3.25\n")
    # this process still runs the helper it imported (Python imports a module once): the key is that code's
    still, graph_still, _, _ = _export(folder, capfd)
    assert still.export_cache == "hit" and graph_still == graph
    del sys.modules[helper]  # as a new process: model.py imports the edited helper
    edited, graph_edited, _, _ = _export(folder, capfd)
    assert edited.export_cache == "stored" and graph_edited != graph
    # a helper function in FILE.py itself (it runs afresh on each load)
    model = folder / "model.py"
    model.write_text(model.read_text().replace("return 0.5", "return 0.25"))
    own, graph_own, _, _ = _export(folder, capfd)
    assert own.export_cache == "stored" and graph_own not in (graph, graph_edited)


def test_no_cache_exports_afresh(user_model, capfd, monkeypatch):
    folder, _ = user_model
    monkeypatch.setenv(NO_CACHE_ENV, "1")
    stage, _, _, _ = _export(folder, capfd)
    assert stage.export_cache is None and not (folder / "cache").exists()


def test_user_code_names_the_file_and_the_modules_beside_it(user_model):
    from cp_debug.bisect.subjects.loaders import user_code

    folder, helper = user_model
    torch_subject(f"{folder / 'model.py'}:build", exporter="torchscript")
    names = [name for name, _ in user_code(folder / "model.py")]
    assert "model.py" in names and f"{helper}.py" in names
    assert not any(name.startswith("..") for name in names)  # nothing of the tests' own folders

