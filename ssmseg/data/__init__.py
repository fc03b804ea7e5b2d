"""Data: reading scenes, tiling, leak-free splits, statistics, the dataset folder and its loaders."""
