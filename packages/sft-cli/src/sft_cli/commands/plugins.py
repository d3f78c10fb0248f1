"""``sft plugins``: what is loaded, from where, and which hooks each plugin implements."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table


def describe_plugins(pm, include_builtin: bool, hook: str | None) -> list[dict]:
    builtin, versions = pm.builtin, pm.versions
    rows = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # blocked
            continue
        is_builtin = name in builtin
        if is_builtin and not include_builtin:
            continue
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        if hook and hook not in hooks:
            continue
        rows.append({"name": name, "version": versions.get(name), "builtin": is_builtin, "hooks": hooks})
    return rows


@click.command("plugins")
@click.option("--all", "include_builtin", is_flag=True, help="Include the built-in plugins.")
@click.option("--hook", metavar="NAME", help="Only plugins implementing this hook.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def plugins_command(app, include_builtin: bool, hook: str | None, as_json: bool) -> None:
    """List loaded plugins, their versions and the hooks each implements."""
    pm = app.pm
    if hook and not any(caller == hook for caller in pm.hook.__dict__):
        known = ", ".join(sorted(n for n in pm.hook.__dict__ if n.startswith("sft_")))
        raise click.BadParameter(f"unknown hook {hook!r} (hooks: {known})", param_hint="--hook")
    rows = describe_plugins(pm, include_builtin, hook)
    failures = [{"name": f.name, "error": f.error} for f in getattr(pm, "load_failures", [])]
    blocked = sorted(name for name, plugin in pm.list_name_plugin() if plugin is None)
    if as_json:
        click.echo(json.dumps({"plugins": rows, "failed": failures, "blocked": blocked}, indent=2))
        return
    console = Console()
    if not rows:
        console.print("No plugins installed." if not include_builtin else "No plugins.")
        if not include_builtin:
            console.print("Use --all to include the built-in plugins.")
    else:
        table = Table("plugin", "version", "hooks")
        for row in rows:
            label = row["name"] + (" (built-in)" if row["builtin"] else "")
            table.add_row(label, row["version"] or "-", ", ".join(row["hooks"]))
        console.print(table)
    for failure in failures:
        console.print(f"[red]failed to load[/red] {failure['name']}: {failure['error']}")
    if blocked:
        console.print(f"blocked: {', '.join(blocked)}")
