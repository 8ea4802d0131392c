"""A `--metric` file reading an output by a name the model does not give it (cp_debug/samples/tasks.py).

g2p_en's decoder through `cpdebug bisect --torch`: the metric written for the user's own export read
`outputs["logits"]`, and cp_debug's export names the output `output0`. The KeyError went past the metric's handler
and read "g2p_model.py:53 in words_metric: KeyError: 'logits' (your model's code raised; …)", with no word of the
metric or of the names it was given. It is now said in the --metric, with the outputs' names."""

from __future__ import annotations

import numpy as np
import pytest

from cp_debug.errors import BadInputError
from cp_debug.samples.tasks import task_metric


def _raised(tmp_path, source: str, name: str, outputs: dict, inputs: dict | None = None):
    """The metric `name` of the file written from `source`, and what it said raising on `outputs` (and `inputs`)."""
    (tmp_path / "m.py").write_text(source)
    metric = task_metric(f"{tmp_path / 'm.py'}:{name}")
    with pytest.raises(BadInputError) as caught:
        metric.value(outputs, outputs, None, inputs)
    return metric, str(caught.value)


def test_a_metric_reading_an_output_it_is_not_given_names_the_outputs(tmp_path):
    metric, said = _raised(tmp_path, "def words(outputs, reference, label=None):\n"
                           "    return float((outputs['logits'] == reference['logits']).all())\n",
                           "words", {"output0": np.zeros((2, 3), np.float32)})
    assert "in the --metric" in said and "KeyError: 'logits'" in said, said
    assert "(the outputs it was given: 'output0')" in said, said
    assert metric.value({"logits": np.ones(2)}, {"logits": np.ones(2)}, None) == 1.0


def test_a_metric_reading_an_input_it_is_not_given_names_the_inputs_too(tmp_path):
    out = {"p": np.zeros((2, 3), np.float32)}
    metric, said = _raised(tmp_path, "def asked(outputs, reference, label=None, inputs=None):\n"
                           "    return float(inputs['positions'].sum())\n",
                           "asked", out, {"x": np.zeros(3), "pos": np.arange(2)})
    assert "KeyError: 'positions'" in said and "(the outputs it was given: 'p'; the inputs: 'x', 'pos')" in said, said
    assert metric.value(out, out, None, {"positions": np.arange(3)}) == 3.0
