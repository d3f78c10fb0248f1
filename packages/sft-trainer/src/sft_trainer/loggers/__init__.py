"""Metric loggers: the contract, the built-in JSONL and console loggers, and safe dispatch."""
