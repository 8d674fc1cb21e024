"""MNIST as a second dataset through the same stages: idx files → (N, 1, 28, 28) images in [0, 1].

The reader takes the standard idx files (LeCun et al. 1998, http://yann.lecun.com/exdb/mnist/),
gzip-compressed or plain, from a local folder. Where only the 10,000 ``t10k`` digits are present (the
project's shared test data), they are split by a seeded permutation into a train and a test part;
where the 60,000 ``train`` digits are present too, the standard 60k/10k split is used. A val split,
empty by default, can be held out of the train part. ``train_limit`` / ``test_limit`` cap the train part
and the test split for quick runs (the smoke test, the tests); a capped train file is decompressed only
as far as the digits used.
"""

from __future__ import annotations

import functools
import gzip
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from lidcvae.config import Section
from lidcvae.data.mnist_download import MNIST_FILES, MNIST_MIRRORS, MnistDownloadError, download_mnist

__all__ = [
    "MnistConfig",
    "MnistTableConfig",
    "IdxFormatError",
    "MnistDownloadError",  # the download's names stay importable from here too
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "read_idx",
    "find_idx_file",
    "download_mnist",
    "MnistSplit",
    "mnist_split",
    "load",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MnistTableConfig(Section):
    """``mnist.table``: the model-size table (sizes, importance samples k, digits scored together, test digits scored)."""

    SECTION: ClassVar[str] = "mnist.table"
    enabled: bool
    sizes: tuple[tuple[int, int], ...]
    hidden_layers: int
    batch_size: int
    nested_samples: tuple[int, ...]
    importance_samples: int
    test_limit: int | None


@dataclass(frozen=True)
class MnistConfig(Section):
    """The ``mnist`` config section (lidcvae/schemas/mnist.yaml); also the MNIST data source of ``load_split``."""

    SECTION: ClassVar[str] = "mnist"
    data_dir: str
    download: bool
    require_train_files: bool
    train_fraction: float
    val_fraction: float
    split_seed: int
    train_limit: int | None
    test_limit: int | None
    limit: int | None
    table: MnistTableConfig

# idx magic: two zero bytes, a type code (0x08 = unsigned byte), then the number of dimensions.
_UBYTE = 0x08
_EXPECTED_DIMS = {"images": 3, "labels": 1}


class IdxFormatError(ValueError):
    """An idx file has a wrong magic number, wrong dimensions, or a payload of the wrong size."""


def _read_bytes(stream, path: Path, size: int = -1) -> bytes:
    try:
        return stream.read(size)
    except (OSError, EOFError) as error:  # gzip raises these on a truncated or non-gzip file
        raise IdxFormatError(f"{path}: cannot read ({error})") from error


def read_idx(path: str | os.PathLike, expected_dims: int | None = None, limit: int | None = None) -> np.ndarray:
    """Read one idx file of unsigned bytes (gzip or plain) into a uint8 array of its stated shape.

    Args:
        path: ``*-idx3-ubyte[.gz]`` (images, (N, 28, 28)) or ``*-idx1-ubyte[.gz]`` (labels, (N,)).
        expected_dims: the number of dimensions the file must declare, or None to accept any.
        limit: read (and decompress) only the first ``limit`` records along the first axis; None reads
            the whole file. With a limit, only the records read are checked for truncation.

    Returns:
        uint8 array (min(N, limit), ...) in file order.

    Raises:
        IdxFormatError: wrong magic number, unexpected number of dimensions, or a payload shorter or
            longer than the header's shape; the message names the file.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        stream = opener(path, "rb")
    except OSError as error:
        raise IdxFormatError(f"{path}: cannot read ({error})") from error
    with stream:
        magic = _read_bytes(stream, path, 4)
        if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] != _UBYTE:
            raise IdxFormatError(
                f"{path}: not an unsigned-byte idx file (magic number 0x{magic.hex() or '<empty>'}, expected 0x000008..)"
            )
        ndim = magic[3]
        if expected_dims is not None and ndim != expected_dims:
            raise IdxFormatError(f"{path}: header declares {ndim} dimensions, expected {expected_dims}")
        dims = _read_bytes(stream, path, 4 * ndim)
        if len(dims) < 4 * ndim:
            raise IdxFormatError(f"{path}: truncated header ({4 + len(dims)} bytes, need {4 + 4 * ndim})")
        shape = tuple(int(d) for d in np.frombuffer(dims, dtype=">u4"))
        if limit is not None and ndim > 0:
            shape = (min(shape[0], limit), *shape[1:])
        payload = _read_bytes(stream, path, int(np.prod(shape)) if limit is not None else -1)
    if len(payload) != int(np.prod(shape)):
        raise IdxFormatError(
            f"{path}: payload is {len(payload)} bytes but the header's shape {shape} needs {int(np.prod(shape))}"
            " (truncated or corrupt file)"
        )
    return np.frombuffer(payload, dtype=np.uint8).reshape(shape)


def find_idx_file(data_dir: str | os.PathLike, name: str) -> Path | None:
    """The path of ``name`` (e.g. ``t10k-images-idx3-ubyte``) in ``data_dir``, gzip preferred, or None."""
    for candidate in (Path(data_dir) / f"{name}.gz", Path(data_dir) / name):
        if candidate.is_file():
            return candidate
    return None


def _read_pair(data_dir: Path, prefix: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) uint8 of one idx pair (``train`` or ``t10k``), the first
    ``limit`` only when given (only those are decompressed)."""
    images = read_idx(find_idx_file(data_dir, f"{prefix}-images-idx3-ubyte"), _EXPECTED_DIMS["images"], limit)
    labels_path = find_idx_file(data_dir, f"{prefix}-labels-idx1-ubyte")
    labels = read_idx(labels_path, _EXPECTED_DIMS["labels"], limit)
    if len(images) != len(labels):
        raise IdxFormatError(f"{labels_path}: {len(labels)} labels for {len(images)} images")
    return images, labels


def _has_pair(data_dir: Path, prefix: str) -> bool:
    return all(find_idx_file(data_dir, f"{prefix}-{kind}") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"))


@dataclass
class MnistSplit:
    """Digits of one split.

    Attributes:
        images: (N, 1, 28, 28) float32 in [0, 1] (grey level / 255).
        table: one row per digit: ``id`` ("t10k-04242"), ``split``, ``label`` (int digit 0–9),
            ``source`` ("train" or "t10k" file), ``source_index`` (row in that file).
    """

    images: torch.Tensor
    table: pd.DataFrame


def _assign_splits(
    count: int, train_fraction: float, val_fraction: float, seed: int, train_limit: int | None
) -> np.ndarray:
    """Split name per row by a seeded permutation: ``train_fraction`` of the rows form the train part
    (its last ``val_fraction`` goes to val), the rest is test. With ``train_limit``, only the first
    ``train_limit`` rows of the train part (in permutation order) are kept; the others are "unused"."""
    order = np.random.default_rng(seed).permutation(count)
    n_train_part = int(round(train_fraction * count))
    n_kept = n_train_part if train_limit is None else min(n_train_part, train_limit)
    n_val = int(round(val_fraction * n_kept))
    assignment = np.full(count, "test", dtype=object)
    assignment[order[: n_kept - n_val]] = "train"
    assignment[order[n_kept - n_val : n_kept]] = "val"
    assignment[order[n_kept:n_train_part]] = "unused"
    return assignment


def _digit_table(source: str, labels: np.ndarray, splits: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [f"{source}-{i:05d}" for i in range(len(labels))],
            "split": splits,
            "label": pd.array(labels.astype(np.int64), dtype="Int64"),
            "source": source,
            "source_index": np.arange(len(labels), dtype=np.int64),
        }
    )


@dataclass(frozen=True)
class _Subset:
    """Which digits to use: the split fractions and seed, and the caps on the train part and test split."""

    train_fraction: float
    val_fraction: float
    seed: int
    train_limit: int | None
    test_limit: int | None


def _all_digits(data_dir: Path, subset: _Subset) -> tuple[np.ndarray, pd.DataFrame]:
    """Every digit used from ``data_dir`` with its split assigned, as (N, 28, 28) uint8 and a table.

    Decompressed once per folder (and file state) and subset: each stage loads several splits.
    """
    state = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in data_dir.iterdir() if "ubyte" in p.name))
    return _all_digits_of(data_dir.resolve(), state, subset)


@functools.lru_cache(maxsize=2)
def _all_digits_of(data_dir: Path, file_state: tuple, subset: _Subset) -> tuple[np.ndarray, pd.DataFrame]:
    if not _has_pair(data_dir, "train"):
        images, labels = _read_pair(data_dir, "t10k")
        splits = _assign_splits(len(labels), subset.train_fraction, subset.val_fraction, subset.seed, subset.train_limit)
        table = _digit_table("t10k", labels, splits)
    else:
        train_images, train_labels = _read_pair(data_dir, "train", subset.train_limit)
        test_images, test_labels = _read_pair(data_dir, "t10k", subset.test_limit)
        train_splits = _assign_splits(len(train_labels), 1.0, subset.val_fraction, subset.seed, None)  # capped when read
        images = np.concatenate([train_images, test_images])
        table = pd.concat(
            [
                _digit_table("train", train_labels, train_splits),
                _digit_table("t10k", test_labels, np.full(len(test_labels), "test", dtype=object)),
            ],
            ignore_index=True,
        )
    is_test = (table["split"] == "test").to_numpy()
    past_test_limit = is_test & (np.cumsum(is_test) > (subset.test_limit if subset.test_limit is not None else np.inf))
    used = (table["split"] != "unused").to_numpy() & ~past_test_limit
    return images[used], table[used].reset_index(drop=True)


def _ensure_files(data_dir: Path, download: bool, require_train: bool = False) -> None:
    """Download missing files when ``download`` allows: the t10k pair if absent, the train pair too
    when ``require_train``; otherwise raise naming what is missing."""
    needed = ["t10k", "train"] if require_train else ["t10k"]
    missing = [prefix for prefix in needed if not _has_pair(data_dir, prefix)]
    if not missing:
        return
    if not download:
        names = " and ".join(f"{p}-images-idx3-ubyte[.gz] and {p}-labels-idx1-ubyte[.gz]" for p in missing)
        raise FileNotFoundError(
            f"MNIST idx files not found in {data_dir} (need {names}); set mnist.download: true or mnist.data_dir"
        )
    download_mnist(data_dir)


def mnist_split(config: MnistConfig, split: str) -> MnistSplit:
    """Digits of ``split`` from the idx files in ``config.data_dir``.

    Args:
        config: the typed ``mnist`` section: ``data_dir`` (idx files, gzip or plain), ``train_fraction``
            (share of the 10,000 t10k digits in the train part when the train files are absent; with
            them, the train part is the 60,000 train digits), ``val_fraction`` (share of the train part
            held out as val), ``split_seed``, ``download`` (fetch missing files), ``require_train_files``
            (the standard split or an error), ``train_limit`` / ``test_limit`` (only the first digits of
            the train part / of the test digits are used; the rest are never decompressed), ``limit``
            (first digits of the split only; None keeps all).
        split: "train", "val", "test" or "all".

    Returns:
        ``MnistSplit`` with images (N, 1, 28, 28) float32 in [0, 1] and its table, in file order.
    """
    data_dir = Path(config.data_dir)
    _ensure_files(data_dir, config.download, config.require_train_files)
    digits, table = _all_digits(data_dir, _Subset(config.train_fraction, config.val_fraction, config.split_seed,
                                                  config.train_limit, config.test_limit))
    wanted = {"train": ["train"], "val": ["val"], "test": ["test"], "all": ["train", "val", "test"]}
    if split not in wanted:
        raise ValueError(f"unknown MNIST split {split!r}; expected one of {sorted(wanted)}")
    rows = np.flatnonzero(table["split"].isin(wanted[split]).to_numpy())[: config.limit]
    images = torch.from_numpy(digits[rows].astype(np.float32) / 255.0).reshape(len(rows), 1, *digits.shape[1:])
    return MnistSplit(images, table.iloc[rows].reset_index(drop=True))


def load(config: MnistConfig, split: str):
    """Registry entry (``lidcvae.data.DATASETS['MnistConfig']``): the typed ``mnist`` section → ``LabelledImages``."""
    from lidcvae.data import LabelledImages  # the registry imports this module lazily, by path

    digits = mnist_split(config, split)
    return LabelledImages(images=digits.images, table=digits.table)
