"""What the commands run: training, cross-validation."""
