"""Segmentation: losses, confusion-matrix metrics."""
