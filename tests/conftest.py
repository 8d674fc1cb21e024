"""Shared fixtures: the real test data in ../shared/data, read in place."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LIDCVAE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
LIDC_SAMPLE = SHARED_DATA / "lidc-sample"
MNIST_DIR = SHARED_DATA / "mnist"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip: it exists on this team's machines and in CI, not elsewhere."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (only on the team's machines and CI)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def lidc_sample(shared_data: Path) -> Path:
    """Real LIDC-IDRI DICOM: LIDC-IDRI-0001 (nodule whole) and LIDC-IDRI-0002 (nodule cut)."""
    if not LIDC_SAMPLE.is_dir():
        pytest.skip(f"LIDC sample DICOM not found at {LIDC_SAMPLE}")
    return LIDC_SAMPLE


@pytest.fixture(scope="session")
def mnist_dir(shared_data: Path) -> Path:
    """The real MNIST test set (t10k idx files, gzip)."""
    if not MNIST_DIR.is_dir():
        pytest.skip(f"MNIST idx files not found at {MNIST_DIR}")
    return MNIST_DIR


@pytest.fixture(scope="session")
def mnist_t10k_dir(mnist_dir: Path, tmp_path_factory) -> Path:
    """A folder with only the real t10k pair (links), as before the train files were shared: the
    seeded 8,000 / 2,000 split of the test digits."""
    folder = tmp_path_factory.mktemp("mnist-t10k-only")
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (folder / name).symlink_to(mnist_dir / name)
    return folder
