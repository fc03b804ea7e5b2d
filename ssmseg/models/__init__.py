"""Segmentation models, built by name from the registry (``ssmseg models`` lists them)."""

from ssmseg.models.registry import MODELS, build_model, model_names

__all__ = ["MODELS", "build_model", "model_names"]
