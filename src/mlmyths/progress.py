"""Progress reporting that library code can use without knowing who is watching.

Library functions take an optional ``progress`` factory with the signature of
:func:`progress_bar`; by default nothing is shown. Interactive terminals get a
``rich`` bar, logs get a line at most every few seconds.
"""
from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Protocol


class Progress(Protocol):
    def advance(self, n: int = 1, **info: object) -> None: ...


class ProgressFactory(Protocol):
    def __call__(self, total: int, description: str) -> contextlib.AbstractContextManager[Progress]: ...


class _Null:
    def advance(self, n: int = 1, **info: object) -> None:
        pass


@contextlib.contextmanager
def no_progress(total: int, description: str) -> Iterator[Progress]:
    yield _Null()


class _Logged:
    def __init__(self, total: int, description: str, log: Callable[[str], None], every_s: float):
        self.total, self.description, self.log, self.every_s = total, description, log, every_s
        self.done = 0
        self.start = self.last = time.monotonic()

    def advance(self, n: int = 1, **info: object) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every_s or self.done >= self.total:
            self.last = now
            extra = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
            self.log(f"{self.description}: {self.done}/{self.total} ({now - self.start:.0f}s) {extra}".rstrip())


class _Rich:
    def __init__(self, bar, task):
        self.bar, self.task = bar, task

    def advance(self, n: int = 1, **info: object) -> None:
        extra = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
        self.bar.update(self.task, advance=n, info=extra)


def progress_bar(*, interactive: bool | None = None, log: Callable[[str], None] | None = None,
                 every_s: float = 10.0) -> ProgressFactory:
    """A progress factory: a rich bar on a terminal, else periodic log lines (or nothing)."""
    if interactive is None:
        interactive = sys.stderr.isatty()

    @contextlib.contextmanager
    def factory(total: int, description: str) -> Iterator[Progress]:
        if interactive:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress
            from rich.progress import TextColumn, TimeElapsedColumn, TimeRemainingColumn

            with RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                              TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                              transient=True) as bar:
                yield _Rich(bar, bar.add_task(description, total=total, info=""))
        elif log is not None:
            yield _Logged(total, description, log, every_s)
        else:
            yield _Null()

    return factory
