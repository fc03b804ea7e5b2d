"""Shipped presets: YAML files installed as the package ``ssmseg.presets``."""
