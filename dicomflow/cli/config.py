"""``dicomflow config ...``: the effective configuration and its reference."""

from __future__ import annotations

import json

import click

from dicomflow.cli.options import load_context_settings

# Keys whose values are credentials: masked by `config show`.
_SECRET_KEYS = (
    (None, "admin_password"),
    ("postgres", "password"),
    ("pacs", "password"),
    ("s3", "secret_key"),
    ("airflow", "password"),
    ("index", "opensearch_password"),
)


@click.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("show")
@click.pass_context
def config_show(ctx: click.Context) -> None:
    """Print the effective configuration (secrets masked)."""
    from dicomflow.config import settings_json

    data = json.loads(settings_json(load_context_settings(ctx)))
    for section, key in _SECRET_KEYS:
        node = data if section is None else data[section]
        if node.get(key):
            node[key] = "********"
    click.echo(json.dumps(data, indent=2))


@config.command("docs")
def config_docs() -> None:
    """Print the configuration keys as a Markdown table (docs/configuration.md)."""
    from dicomflow.config import settings_table

    click.echo("| key | default | meaning |")
    click.echo("|---|---|---|")
    for key, default, meaning in settings_table():
        click.echo(f"| `{key}` | `{default}` | {meaning} |")


COMMANDS = [config]
