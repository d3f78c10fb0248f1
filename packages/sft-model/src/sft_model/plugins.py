"""sft-model's built-in plugins (registered first by every plugin manager)."""

DEFAULT_PLUGINS: tuple[str, ...] = ("sft_model.families.builtin",)
