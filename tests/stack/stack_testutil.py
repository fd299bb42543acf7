"""Stacks of a few components of their own, for the tests of starting, watching and stopping."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from dicomflow.config import Settings, load_settings
from dicomflow.stack.components import Component
from dicomflow.stack.isolated import stack_data_dir, stack_environment
from dicomflow.stack.supervisor import Stack


def quiet(_line: str) -> None:
    """A report that prints nothing."""


def own_settings(data_dir: Path) -> Settings:
    """Settings of a stack in ``data_dir`` on free loopback ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMFLOW_")}
    env.update(stack_environment(data_dir))
    return load_settings(environ=env)


@contextmanager
def own_stack(*kinds: Callable[[Settings], Component]) -> Iterator[Stack]:
    """A stack of the given components in a data directory of its own, stopped at the end."""
    data_dir = stack_data_dir()
    settings = own_settings(data_dir)
    stack = Stack(settings, [kind(settings) for kind in kinds])
    try:
        yield stack
    finally:
        stack.down(report=quiet, sweep=True)
        shutil.rmtree(data_dir, ignore_errors=True)


def ended(pid: int) -> bool:
    """Whether the process has ended (a zombie waiting for its parent's wait() has too)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
