"""Evaluate a trained VAE: likelihood (ELBO, IWAE), reconstruction, posterior collapse, probe, figures, report.

Entry point for the workflow: ``evaluate_run(checkpoint, embeddings_path, history_path, out_dir, settings, manifest=..., info=...)``;
``evaluate_model`` does the same for a model and data already in memory (the MNIST smoke test, tests).
"""

from __future__ import annotations

from lidcvae.evaluate.run import SplitData, evaluate_model, evaluate_run
from lidcvae.evaluate.settings import EvaluateSettings, ProbeSettings

__all__ = ["EvaluateSettings", "ProbeSettings", "SplitData", "evaluate_model", "evaluate_run"]
