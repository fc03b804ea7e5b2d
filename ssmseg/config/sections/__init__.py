"""The config schema's sections, one module per concern; ``config/schema.py`` assembles them into
``Config`` and re-exports every name."""
