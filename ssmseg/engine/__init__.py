"""The one engine every command uses: runtime (device, seeds, torchrun), precision, optimisation,
checkpoints, logging and the training loop."""
