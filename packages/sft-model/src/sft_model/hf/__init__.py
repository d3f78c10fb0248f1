"""Hugging Face checkpoints: streaming safetensors I/O and conversion to and from ``.nemo``."""
