"""The ONNX Runtime runner: sessions and what they are made from, IO binding on CUDA, the precision a session ran, files
ORT refuses, sessions kept by the server."""
