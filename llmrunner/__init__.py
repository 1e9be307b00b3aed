"""LLMRunner: the Python side of the Snakemake workflow. One subpackage per pipeline stage."""

__version__ = "0.1.0"
