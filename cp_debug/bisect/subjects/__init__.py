"""What is bisected: the model cut into stages (torch and/or ONNX), loaded from what the user names, its feeds, a
SPEC@DIR candidate's deployed files, the facts of what ran."""
