"""sft_cli."""
