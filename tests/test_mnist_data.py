"""MNIST idx reader, checked download, the deterministic split of the real t10k digits, the standard
60k/10k split of the real train files, and the limits that keep quick runs from reading all of them."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from lidcvae.data import mnist, mnist_download
from lidcvae.data.mnist import IdxFormatError, MnistConfig, MnistDownloadError, download_mnist, mnist_split, read_idx

# Digit counts of the real t10k set (LeCun's 10,000 test digits) and of the 60,000 train digits.
T10K_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def digits_of(data_dir, split, **keys):
    """One split of the idx files in ``data_dir``; ``keys`` override the ``mnist`` section's schema defaults."""
    return mnist_split(MnistConfig.from_mapping({"data_dir": str(data_dir), "download": False, **keys}), split)


def _write_idx(path: Path, header: bytes, payload: bytes) -> Path:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as stream:
        stream.write(header + payload)
    return path


BAD_FILES = [
    ("wrong_magic_plain", "x-idx3-ubyte", struct.pack(">I", 0x00000903) + struct.pack(">3I", 2, 2, 2), bytes(8), "magic"),
    ("float_idx_gzip", "x-idx3-ubyte.gz", struct.pack(">I", 0x00000D03) + struct.pack(">3I", 2, 2, 2), bytes(8), "magic"),
    ("truncated_payload", "x-idx3-ubyte.gz", struct.pack(">I", 0x00000803) + struct.pack(">3I", 3, 28, 28), bytes(2000), "truncated"),
    ("truncated_header", "x-idx3-ubyte", struct.pack(">I", 0x00000803) + struct.pack(">I", 3), b"", "truncated header"),
]


@pytest.mark.parametrize("case, name, header, payload, message", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_idx_reader_rejects_bad_file_naming_it(tmp_path, case, name, header, payload, message):
    path = _write_idx(tmp_path / name, header, payload)
    with pytest.raises(IdxFormatError, match=message) as error:
        read_idx(path)
    assert str(path) in str(error.value)


def test_idx_reader_rejects_gz_name_that_is_not_gzip(tmp_path):
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(b"plain bytes")
    with pytest.raises(IdxFormatError, match="cannot read"):
        read_idx(path)


def test_idx_reader_rejects_labels_file_read_as_images(mnist_dir):
    with pytest.raises(IdxFormatError, match="1 dimensions, expected 3"):
        read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz", expected_dims=3)


def test_idx_reader_reads_gzip_and_plain_alike(mnist_dir, tmp_path):
    plain = tmp_path / "t10k-labels-idx1-ubyte"
    with gzip.open(mnist_dir / "t10k-labels-idx1-ubyte.gz", "rb") as source, open(plain, "wb") as target:
        shutil.copyfileobj(source, target)
    from_gzip = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    np.testing.assert_array_equal(read_idx(plain), from_gzip)
    assert from_gzip.shape == (10000,)
    assert np.bincount(from_gzip).tolist() == T10K_LABEL_COUNTS
    assert from_gzip[:5].tolist() == [7, 2, 1, 0, 4]


def test_t10k_split_is_deterministic_disjoint_and_complete(mnist_t10k_dir):
    mnist_dir = mnist_t10k_dir
    train, test = digits_of(mnist_dir, "train"), digits_of(mnist_dir, "test")
    assert (len(train.images), len(test.images)) == (8000, 2000)
    assert train.images.shape[1:] == (1, 28, 28) and train.images.dtype.is_floating_point
    assert 0.0 == float(train.images.min()) and float(train.images.max()) == 1.0
    assert set(train.table["id"]).isdisjoint(test.table["id"])
    counts = np.bincount(np.concatenate([train.table["label"], test.table["label"]]))
    assert counts.tolist() == T10K_LABEL_COUNTS
    again = digits_of(mnist_dir, "test")
    assert again.table["id"].tolist() == test.table["id"].tolist()
    other_seed = digits_of(mnist_dir, "test", split_seed=1)
    assert other_seed.table["id"].tolist() != test.table["id"].tolist()


def test_split_table_matches_images(mnist_dir):
    test = digits_of(mnist_dir, "test", limit=50, train_limit=50)
    raw = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")
    rows = test.table["source_index"].to_numpy()
    np.testing.assert_allclose(test.images[:, 0].numpy(), raw[rows] / 255.0, atol=1e-7)
    assert set(test.table.columns) >= {"id", "split", "label"}
    assert (test.table["split"] == "test").all()


def test_missing_files_without_download_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        digits_of(tmp_path, "train", download=False)


def test_download_offline_raises_clear_error(tmp_path):
    unreachable = ("http://127.0.0.1:9/mnist/",)  # discard port: connection refused at once
    with pytest.raises(MnistDownloadError, match="offline") as error:
        download_mnist(tmp_path, files=["t10k-labels-idx1-ubyte.gz"], mirrors=unreachable, timeout_s=2)
    assert "127.0.0.1:9" in str(error.value)
    assert not any(tmp_path.iterdir()), "a failed download must leave nothing behind"


def test_download_verifies_sha256_and_falls_through_mirrors(mnist_dir, tmp_path):
    corrupt_mirror, good_mirror, target = tmp_path / "corrupt", tmp_path / "good", tmp_path / "data"
    corrupt_mirror.mkdir()
    (corrupt_mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not mnist")
    good_mirror.mkdir()
    shutil.copy(mnist_dir / "t10k-labels-idx1-ubyte.gz", good_mirror)
    only_corrupt = (corrupt_mirror.as_uri() + "/",)
    with pytest.raises(MnistDownloadError, match="SHA-256 mismatch"):
        download_mnist(target, files=["t10k-labels-idx1-ubyte.gz"], mirrors=only_corrupt)
    paths = download_mnist(target, files=["t10k-labels-idx1-ubyte.gz"], mirrors=only_corrupt + (good_mirror.as_uri() + "/",))
    assert paths == [target / "t10k-labels-idx1-ubyte.gz"]
    assert read_idx(paths[0]).shape == (10000,)


def test_canonical_checksums_match_shared_files(mnist_dir):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert mnist_download._sha256(mnist_dir / name) == mnist.MNIST_FILES[name]


@pytest.fixture(scope="module")
def mnist_full_dir(mnist_dir: Path) -> Path:
    """The shared folder when it holds the train pair too (the standard split), else skip."""
    if not (mnist_dir / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST train files not in {mnist_dir}")
    return mnist_dir


def test_standard_split_reads_the_real_train_files(mnist_full_dir):
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        assert mnist_download._sha256(mnist_full_dir / name) == mnist.MNIST_FILES[name]
    train = digits_of(mnist_full_dir, "train", require_train_files=True)
    test = digits_of(mnist_full_dir, "test", require_train_files=True)
    assert (len(train.images), len(test.images)) == (60000, 10000)
    assert np.bincount(train.table["label"].to_numpy(int)).tolist() == TRAIN_LABEL_COUNTS
    assert np.bincount(test.table["label"].to_numpy(int)).tolist() == T10K_LABEL_COUNTS
    assert (train.table["source"] == "train").all() and (test.table["source"] == "t10k").all()
    assert train.table["source_index"].tolist() == list(range(60000))  # file order, nothing dropped
    assert train.table["label"].iloc[:5].tolist() == [5, 0, 4, 1, 9]  # the train file's first digits


def _truncated_copy(source: Path, target: Path, records: int, record_bytes: int, header_bytes: int) -> None:
    """The first ``records`` of a gzip idx file, its header still declaring them all."""
    with gzip.open(source, "rb") as stream:
        head = stream.read(header_bytes + records * record_bytes)
    with gzip.open(target, "wb") as stream:
        stream.write(head)


def test_train_limit_decompresses_only_the_digits_it_uses(mnist_full_dir, tmp_path):
    # A train pair cut after 300 digits: readable only by a reader that stops at the limit.
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / name).symlink_to(mnist_full_dir / name)
    _truncated_copy(mnist_full_dir / "train-images-idx3-ubyte.gz", tmp_path / "train-images-idx3-ubyte.gz", 300, 784, 16)
    _truncated_copy(mnist_full_dir / "train-labels-idx1-ubyte.gz", tmp_path / "train-labels-idx1-ubyte.gz", 300, 1, 8)
    with pytest.raises(IdxFormatError, match="truncated") as error:
        digits_of(tmp_path, "train")
    assert "train-" in str(error.value)
    first = digits_of(tmp_path, "train", train_limit=300)
    full = read_idx(mnist_full_dir / "train-images-idx3-ubyte.gz", limit=300)
    assert first.images.shape == (300, 1, 28, 28)
    np.testing.assert_allclose(first.images[:, 0].numpy(), full / 255.0, atol=1e-7)
    assert digits_of(tmp_path, "test", train_limit=300).images.shape[0] == 10000


def test_read_idx_limit_is_the_head_of_the_whole_file(mnist_dir):
    whole = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    np.testing.assert_array_equal(read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz", limit=123), whole[:123])
    assert read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz", limit=10**6).shape == (10000,)


def test_train_limit_caps_the_t10k_train_part_and_leaves_test_alone(mnist_t10k_dir):
    capped, uncapped = digits_of(mnist_t10k_dir, "train", train_limit=500), digits_of(mnist_t10k_dir, "train")
    assert len(capped.images) == 500 and set(capped.table["id"]) < set(uncapped.table["id"])
    test_ids = digits_of(mnist_t10k_dir, "test", train_limit=500).table["id"].tolist()
    assert test_ids == digits_of(mnist_t10k_dir, "test").table["id"].tolist()
    everything = digits_of(mnist_t10k_dir, "all", train_limit=500)
    assert len(everything.images) == 2500  # the 7,500 unused train-part digits are nowhere


def test_test_limit_keeps_the_first_test_digits_in_file_order(mnist_dir):
    test = digits_of(mnist_dir, "test", test_limit=300, train_limit=100)
    assert test.table["source"].eq("t10k").all() and test.table["source_index"].tolist() == list(range(300))
    assert digits_of(mnist_dir, "all", test_limit=300, train_limit=100).table["split"].eq("test").sum() == 300


def test_require_train_files_names_them_when_missing(mnist_t10k_dir):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        digits_of(mnist_t10k_dir, "train", require_train_files=True)


@pytest.mark.parametrize("folder", ["mnist_dir", "mnist_t10k_dir"])
def test_smoke_config_uses_8000_train_and_2000_test_digits_whatever_the_folder_holds(folder, request):
    from lidcvae.data import load_split
    from lidcvae.run_config import load_config

    data_dir = request.getfixturevalue(folder)
    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "mnist.yaml", {"mnist.data_dir": str(data_dir)})
    train, test = load_split(config.mnist, "train"), load_split(config.mnist, "test")
    assert (len(train), len(test)) == (8000, 2000)
    has_train_files = (data_dir / "train-images-idx3-ubyte.gz").exists()
    assert train.table["source"].eq("train" if has_train_files else "t10k").all()


def test_val_is_empty_by_default_and_carved_from_train_on_request(mnist_t10k_dir):
    mnist_dir = mnist_t10k_dir
    empty = digits_of(mnist_dir, "val")
    assert empty.images.shape == (0, 1, 28, 28) and list(empty.table.columns)[:3] == ["id", "split", "label"]
    train, val = digits_of(mnist_dir, "train", val_fraction=0.1), digits_of(mnist_dir, "val", val_fraction=0.1)
    assert (len(train.images), len(val.images)) == (7200, 800)
    default_train_ids = set(digits_of(mnist_dir, "train").table["id"])
    assert set(train.table["id"]) | set(val.table["id"]) == default_train_ids  # test part unchanged


def test_registry_loads_mnist_from_config_section(mnist_dir):
    from lidcvae.data import load_split

    digits = load_split(MnistConfig.from_mapping({"data_dir": str(mnist_dir), "limit": 64, "train_limit": 64}), "test")
    assert digits.images.shape == (64, 1, 28, 28)
    assert str(digits.table["label"].dtype) == "Int64"
    assert digits.table["split"].eq("test").all()
