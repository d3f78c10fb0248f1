"""Built-in commands, added through the same hook a third-party plugin uses."""

from __future__ import annotations

from sft_core import hookimpl


@hookimpl
def sft_register_commands(cli):
    from sft_cli.commands import plugins, prepare, preview, tokenizer, train

    cli.add_command(plugins.plugins_command)
    cli.add_command(tokenizer.tokenizer_group)
    cli.add_command(preview.preview_command)
    cli.add_command(prepare.prepare_command)
    cli.add_command(train.train_command)

    from sft_cli.commands.import_packed import import_packed_command

    cli.add_command(import_packed_command)

    from sft_cli.commands import convert, init_model, inspect_model

    cli.add_command(init_model.init_command)
    cli.add_command(inspect_model.inspect_command)
    cli.add_command(convert.convert_group)

    from sft_cli.commands import generate, report

    cli.add_command(report.report_command)
    cli.add_command(generate.generate_command)
