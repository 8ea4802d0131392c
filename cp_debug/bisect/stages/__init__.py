"""Running a bisect's stages: the reference and each candidate whole or in lockstep, segment by segment, their probes
recorded as they come, local error on the reference's boundary, the screen of what outputs hide, whether a model fits
the machine."""
