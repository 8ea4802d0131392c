"""What is bisected: the model cut into stages (torch and/or ONNX), loaded from what the user names, its feeds, a
SPEC@DIR candidate's deployed files, the facts of what ran.

`subject.py`: the `Subject`, a model cut into stages, each a torch module and/or an ONNX graph; `loaders.py`: the
loaders of what the user names (`--torch FILE.py:FUNC`, `--onnx FILE.onnx`, `--inputs FILE.npz`); `feeds.py`: the
arrays a user gives as a model's feeds; `deployed.py`: a `SPEC@DIR` candidate's stage views over the user's own
deployed files (the flow in `bisect/__init__.py`, step 2; the deployed file's weights checked against the model's
first, by `lint/weights.py`); `model_facts.py`: what ran, typed (JSON `model`).
"""
