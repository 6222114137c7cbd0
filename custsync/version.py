"""The version, on its own so that reading it loads nothing else."""

VERSION = "0.1.0"
