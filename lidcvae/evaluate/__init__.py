"""Evaluate a trained VAE: likelihood (ELBO, IWAE), reconstruction, posterior collapse, probe, figures, report.

Entry points for the workflow: ``lidcvae.train.checkpoint.load_model(checkpoint)`` loads the model,
``read_data(trained, embeddings_path, history_path, manifest=...)`` reads what it is evaluated on, then
``evaluate_run(trained, data, out_dir, settings, info)`` computes and writes; ``evaluate_model`` does the same for a model and
data built in memory (tests).
"""

from __future__ import annotations

from lidcvae.evaluate.inputs import EvaluationData, SplitData, read_data
from lidcvae.evaluate.run import evaluate_model, evaluate_run
from lidcvae.evaluate.settings import EvaluateSettings, ProbeSettings

__all__ = ["EvaluateSettings", "EvaluationData", "ProbeSettings", "SplitData", "evaluate_model", "evaluate_run", "read_data"]
