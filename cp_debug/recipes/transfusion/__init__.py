"""TransFusion-L: its deployment export (one ONNX file), its bisect subject, its proposal flips."""
