"""Stage: print the versions of the distributions named on the command line (for tools make.py runs as CLIs)."""

from __future__ import annotations

import json
import sys

import _stage

_stage.result(versions=_stage.versions(*json.loads(sys.argv[1])["dists"]))
