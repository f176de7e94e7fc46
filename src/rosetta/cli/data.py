"""``rosetta data …``: the corpora Rosetta knows."""

from __future__ import annotations

from pathlib import Path

from rosetta.cli.app import DataDir, data_app


@data_app.command("list")
def data_list(data_dir: Path = DataDir) -> None:
    """Known corpora, where they were found, and their sizes."""
    from rich.console import Console
    from rich.table import Table

    from rosetta.data import corpora

    table = Table("name", "task", "languages", "found at", "size")
    for info in corpora.list_corpora():
        row = corpora.describe(info.name, data_dir)
        table.add_row(info.name, info.task, "-".join(info.languages), row["location"], row["size"])
    Console().print(table)
