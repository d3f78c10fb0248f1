"""Packing: bin-packing algorithms (plugins), packing plans and stats, NeMo ``.npy`` import."""

from sft_data.packing.algorithms import PackingAlgorithm
from sft_data.packing.plan import check_bins, pack_samples, packing_stats, positions

__all__ = ["PackingAlgorithm", "check_bins", "pack_samples", "packing_stats", "positions"]
