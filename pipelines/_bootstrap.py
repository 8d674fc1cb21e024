"""Imported first by every script here: the lidcvae package beside this folder wins on sys.path.

So a script runs from a checkout without ``pip install`` and, in a worktree, imports that worktree's
library. Snakemake puts this folder on the path of the scripts it runs; ``python pipelines/x.py``
does too.
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[1])
if sys.path[:1] != [_ROOT]:
    sys.path.insert(0, _ROOT)
