"""`cpdebug sweep --onnx FILE | --torch FILE.py:FUNC --min-shapes … --max-shapes …` (issue 110): a search over a
declared shape range for the first shape at which each candidate leaves its precision, and the layer that breaks
there.

The range is read in trtexec's spelling (`samples/shapes.py`, which the kit reads too) and checked against the
graph's dynamic axes; the inputs of every shape are made there (`ShapedInputs`). The search is a pure object
(`search.py`: `ShapeRangeSearch` over points, one size a dynamic axis, run by bisect's one driver,
`bisect/cures/search.run_search`): the min and max corners first; where min passes and max fails, each axis
bisected alone (the others at their min) to its boundary — halving in log space while the bracket spans more than
a factor 2, then on integers to one step —, and where no axis fails alone, all of them together along the
diagonal. `session.py` is the sweep's side: a `judge(point)` that runs every lane once per shape on the sessions
built once and judges it by the sample sweep's own judge (`sweep/samples.judge_feed`), each candidate's search, the
judged shapes ranked as the sample sweep ranks its samples, the first failing shape of each candidate bisected, and
sweep.json's `shape_search` (`CandidateRange.to_json`). A `--torch` model plugs in through the same two seams: a
`ShapeSpace` of its dynamic axes (exported dynamic on the axes the range moves: `export/dynamic.of_range`) and a
model whose `runner` / `bisect` take any shape of it.
"""
