"""Evaluation, the pipeline's last stage: caption metrics, CIDEr-D, localisation, comparing models."""
