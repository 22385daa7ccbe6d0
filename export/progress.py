"""A rich progress line per export stage: spinner while it runs, tick and time when done."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


class Stages:
    """`with Stages() as stage: with stage("merge adapter"): ...`; `seconds` holds each stage's duration."""

    def __init__(self, console=None, show: bool = True):
        self.console = console or Console(stderr=True)
        self.show = show
        self.seconds: dict[str, float] = {}
        self.progress = None

    def __enter__(self) -> Stages:
        if self.show:
            self.progress = Progress(SpinnerColumn(finished_text="[green]✓[/]"), TextColumn("{task.description}"),
                                     TimeElapsedColumn(), console=self.console)
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        task = self.progress.add_task(name, total=1) if self.progress is not None else None
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            if task is not None:
                self.progress.update(task, description=f"[red]✗ {name}[/]")
                self.progress.stop_task(task)
            raise
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        if task is not None:
            self.progress.update(task, completed=1)
