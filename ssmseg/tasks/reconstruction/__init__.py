"""Sparse-field reconstruction by flow matching: the path, ODE solvers, classical baselines and metrics."""
