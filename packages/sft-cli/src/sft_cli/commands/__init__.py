"""One module per ``sft`` command; ``builtin`` registers them through ``sft_register_commands``."""
