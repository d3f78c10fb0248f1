"""sft_data."""
