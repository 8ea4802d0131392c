"""Findings of the quantized formats read from a candidate's Q/DQ graph (INT8 / FP8, the built-in's or a user's file)
that are no one segment's arithmetic: a decision the candidate takes otherwise, with the Q/DQ step of the values it
reads (`choice.py`). The formats' segment whys stay beside their FP16 twins (`findings/segment_int8.py`, …).

The parts of a user's Q/DQ file's why (`findings/qdq_file_why.py`): the formats' levels (`levels.py`), a scale no
number (`scale_fault.py`), an FP16 overflow between its pairs (`half_overflow.py`), a stored weight against the
reference's (`stored_weight.py`)."""
