"""``sft train``: supervised fine-tuning from a YAML config and key=value overrides (also under torchrun)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("train", context_settings={"ignore_unknown_options": True})
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML config (NeMo-Aligner gpt_sft.yaml keys).")
@click.argument("overrides", nargs=-1)
@click.pass_obj
def train_command(app, config_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Fine-tune a .nemo model. OVERRIDES are key=value (or +key=value), Hydra style:

    \b
      sft train --config my.yaml model.restore_from_path=base.nemo trainer.sft.max_steps=200 \\
          model.data.train_ds.file_path=train.jsonl model.data.validation_ds.file_path=val.jsonl
      torchrun --nproc-per-node 2 -m sft_cli train --config my.yaml model.tensor_model_parallel_size=2

    Re-running the same command with the same exp_manager.explicit_log_dir resumes from the newest
    complete checkpoint. SIGTERM/SIGINT finish the current step, save and exit 0.
    """
    from sft_trainer.config import load_config
    from sft_trainer.run import train

    for item in overrides:
        if "=" not in item:
            raise click.UsageError(f"expected key=value, got {item!r}")
    cfg = load_config(config_path, overrides, app.pm)
    result = train(cfg, app.pm)
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_rank() == 0:
        stopped = result.state.extra.get("stopped")
        click.echo(f"finished at step {result.state.step}" + (f" ({stopped})" if stopped else ""))
        if result.nemo_path:
            click.echo(f"model: {result.nemo_path}")
        click.echo(f"run directory: {result.run_dir}")
