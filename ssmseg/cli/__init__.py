"""The command line (thin: each command validates a config and makes one library call)."""
