"""Comparisons (floor 2): `TensorDiff`, tolerances, plot arrays, and the noise model with its three outcomes.

`TensorDiff`, tolerances, plot arrays (`diff.py`, `plot_data.py`, `pooled.py`); the noise model and the three
outcomes (a centering mean judged on the scale of what it centres: `cancellation.py`; `noise.py`: what each
precision's rounding brings, within precision / degraded / diverged, boxes at the threshold, a box's turn weighed by
how well the reference defines its yaw (`YawTurn`: the rot map's noise over the box's |(sin, cos)|) — one home, so
bisect, sweep, fix and eval give the same verdict, in the same three words; INT8's carried budget, `int8_carry.py`);
`kernels.py` computes every metric in one compiled pass (numba, `_numba_kernels.py`), with numpy paths where numba is
missing.

On a device: a probe compared where it lies (`device_diff.py`: the host kernel's arithmetic, only the figures reach
the host; on CUDA one fused Triton pass per probe, `fused_diff.py`, every probe's figures reaching the host in one
copy), its plots left on the device as material (`device_plots.py`: a sample of the errors and the pooled heat map),
made into JSON only for those the report shows (the root causes and their segments' heat maps); the fused pass's
first kernel made on a helper thread while the model loads (`device_warm.warm_up_in_background`, with the plots'
kernels). The resident pipeline these serve: `recipes/centerpoint/__init__.py`.
"""
