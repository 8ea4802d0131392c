"""TensorRT and TensorRT for RTX: the library found, the build planned and made, the engine run, and Polygraphy /
trtexec dumps read back."""
