"""sft_model: ModelConfig, megatron-core GPTModel builders, .nemo I/O, HF conversion, generation."""
