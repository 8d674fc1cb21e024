"""The representation benchmark: rows of nodule features scored on a held-out test split (benchmark.smk)."""
