"""``python -m sft_cli`` (and ``torchrun -m sft_cli``)."""

from sft_cli.main import main

if __name__ == "__main__":
    main()
