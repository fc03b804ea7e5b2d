"""ssmseg: state-space (Mamba) models for dense prediction on spectral and remote-sensing imagery."""

__version__ = "0.1.0"
