"""Atomic output: a write that breaks halfway leaves the old file (or none), never a partial one."""

from __future__ import annotations

import pytest

from lidcvae.io import atomic_path


def test_completed_write_appears_under_its_name(tmp_path):
    target = tmp_path / "sub" / "table.parquet"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith(".parquet") and tmp != target
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"
    assert [p.name for p in target.parent.iterdir()] == ["table.parquet"]


def test_broken_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "patch.nii.gz"
    target.write_bytes(b"previous run")
    with pytest.raises(OSError, match="No space left"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half a")
            raise OSError(28, "No space left on device")
    assert target.read_bytes() == b"previous run"
    assert [p.name for p in tmp_path.iterdir()] == ["patch.nii.gz"]
