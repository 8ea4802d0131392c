"""The PyTorch runner: a module run eager at the precision asked (emulations of float16 storage, FP8, batch-norm
folding), its probes streamed as they are made."""
