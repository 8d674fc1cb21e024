"""pylidc gets its DICOM root from lidcvae, never from (or into) ~/.pylidcrc; nothing lands in the home."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# pylidc's own route: the Scan's path lookup and DICOM loader, with the root lidcvae injected.
LOAD_WITH_PYLIDC = """
import sys
from lidcvae import lidc
lidc.use_dicom_root(sys.argv[1])
pl = lidc.pylidc()
scan = pl.query(pl.Scan).filter(pl.Scan.patient_id == "LIDC-IDRI-0001").first()
images = scan.load_all_dicom_images(verbose=False)
print(len(images), images[0].PatientID)
"""


def _load_with_home(home: Path, dicom_root: Path) -> str:
    unset = ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")
    env = {name: value for name, value in os.environ.items() if name not in unset}
    env["HOME"] = str(home)
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITH_PYLIDC, str(dicom_root)], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_pylidc_writes_no_rc_file_into_an_empty_home(lidc_sample, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    assert _load_with_home(home, lidc_sample) == "16 LIDC-IDRI-0001"
    assert list(home.iterdir()) == []


def test_an_existing_pylidcrc_is_neither_read_nor_rewritten(lidc_sample, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    rc = home / ".pylidcrc"
    rc.write_text("[dicom]\npath = /nonexistent/LIDC-IDRI\nwarn = True\n")
    before = rc.stat().st_mtime_ns, rc.read_text()
    assert _load_with_home(home, lidc_sample) == "16 LIDC-IDRI-0001"
    assert (rc.stat().st_mtime_ns, rc.read_text()) == before
