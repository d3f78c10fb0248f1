"""sft_trainer."""
