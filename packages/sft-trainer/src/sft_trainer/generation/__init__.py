"""Generation glue: a .nemo's stored template + prompts → sft_model's token-level generation → text;
and the generation metrics computed at validation time (``trainer.sft.inference_metrics``)."""
