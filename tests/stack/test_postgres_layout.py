"""PostgreSQL's first start as root with the data directory in a private folder (/root is 0700)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import psycopg2
import pytest

from dicomflow.stack.components import Postgres
from dicomflow.stack.supervisor import Stack, State
from tests.stack.stack_testutil import own_settings, quiet

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="PostgreSQL runs as another user only when root starts it"
)


def _query(pg: Postgres, sql: str) -> list[tuple[object, ...]]:
    conf = pg.settings.postgres
    conn = psycopg2.connect(
        host=conf.host, port=conf.port, user=conf.user, password=conf.password, dbname="dicomflow"
    )
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def test_first_start_as_root_under_a_private_folder(tmp_path: Path) -> None:
    home = tmp_path / "root"
    home.mkdir(mode=0o700)
    relocated = Path(tempfile.mkdtemp(prefix="dicomflow-pg-"))
    os.chmod(relocated, 0o755)
    settings = own_settings(home / "project" / "var")
    pg = Postgres(settings)
    pg.relocated_root = relocated
    try:
        Stack(settings, [pg]).up(report=quiet)
        _query(pg, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('first run')")
        assert stat.S_IMODE(home.stat().st_mode) == 0o700  # the user's folder is left alone
        link = settings.data_dir / "postgres"
        assert link.is_symlink() and link.resolve().is_relative_to(relocated)
        assert link.resolve().owner() == "postgres"
        assert Stack(settings, [pg]).down(report=quiet) == ["postgres"]

        # Later starts (a component made afresh, as `dicomflow up` does) find the data
        # through the link.
        again = Postgres(settings)
        Stack(settings, [again]).up(report=quiet)
        assert [r.state for r in Stack(settings, [again]).status()] == [State.HEALTHY]
        assert _query(again, "SELECT v FROM kept") == [("first run",)]
    finally:
        Stack(settings, [pg]).down(report=quiet, sweep=True)
        shutil.rmtree(relocated, ignore_errors=True)
