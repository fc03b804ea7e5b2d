"""Task-specific pieces: losses, metrics, inference."""
