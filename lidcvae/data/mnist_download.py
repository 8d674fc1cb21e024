"""Fetching the MNIST idx files: the canonical mirrors, each file checked against its published SHA-256.

Only ``mnist.download: true`` reaches the network; reading the files is ``lidcvae.data.mnist``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from lidcvae.io import atomic_path

__all__ = ["MNIST_FILES", "MNIST_MIRRORS", "MnistDownloadError", "download_mnist"]

logger = logging.getLogger(__name__)

#: SHA-256 of the canonical gzip files, as published with torchvision's and TensorFlow's loaders.
MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
#: Tried in order; the first is the mirror PyTorch uses since the original site started refusing bots.
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


class MnistDownloadError(RuntimeError):
    """No mirror delivered a file with the expected SHA-256 (offline, blocked, or corrupt)."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(url: str, target: Path, sha256: str, timeout_s: float) -> None:
    """Download ``url`` to ``target`` atomically; raise ValueError on a checksum mismatch."""
    with atomic_path(target) as tmp:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, open(tmp, "wb") as out:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
        actual = _sha256(tmp)
        if actual != sha256:
            raise ValueError(f"SHA-256 mismatch for {url}: got {actual}, expected {sha256}")


def download_mnist(
    data_dir: str | os.PathLike,
    files: Sequence[str] | None = None,
    mirrors: Sequence[str] = MNIST_MIRRORS,
    timeout_s: float = 30.0,
) -> list[Path]:
    """Download the MNIST idx files missing from ``data_dir``, verifying each SHA-256.

    Args:
        data_dir: folder to write ``*.gz`` into (created if needed).
        files: file names from ``MNIST_FILES``; None downloads all four.
        mirrors: base URLs tried in order for each file.
        timeout_s: socket timeout per request, s.

    Returns:
        The paths of the requested files, existing or downloaded.

    Raises:
        MnistDownloadError: every mirror failed for a file (no network, blocked, wrong checksum);
            the message lists each mirror's error and says where to put the files by hand.
    """
    data_dir = Path(data_dir)
    paths = []
    for name in files or list(MNIST_FILES):
        target = data_dir / name
        if not (target.is_file() and _sha256(target) == MNIST_FILES[name]):
            _download_one(name, target, mirrors, timeout_s)
        paths.append(target)
    return paths


def _download_one(name: str, target: Path, mirrors: Sequence[str], timeout_s: float) -> None:
    errors = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + name
        try:
            logger.info("downloading %s", url)
            _fetch(url, target, MNIST_FILES[name], timeout_s)
            return
        except (urllib.error.URLError, OSError, ValueError) as error:
            errors.append(f"  {url}: {error}")
    raise MnistDownloadError(
        f"could not download {name} from any MNIST mirror (offline?):\n" + "\n".join(errors)
        + f"\nPut the idx files (gzip or plain) into {target.parent} by hand, or set mnist.data_dir to a folder"
        " that holds them."
    )
