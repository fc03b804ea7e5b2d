"""SIGTERM (what schedulers, ``timeout`` and ``kill`` send) handled like Ctrl-C: the command stops where it
is, keeps what it finished (checkpoints, history.json says ``interrupted``) and exits 143 with the line that
says how to continue. A second SIGTERM ends the process at once."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_received: list[int] = []


def received() -> int | None:
    """The signal that stopped this command (``signal.SIGTERM``), or None (Ctrl-C, or still running)."""
    return _received[-1] if _received else None


def _handler(signum: int, frame: object) -> None:
    _received.append(signum)
    signal.signal(signum, signal.SIG_DFL)  # a second one is not caught: it ends the process at once
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Inside the block SIGTERM raises ``KeyboardInterrupt`` (so every Ctrl-C path runs); the previous handler
    is restored after it. Only the main thread can set handlers: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def exit_code() -> int:
    """128 + the signal's number (143 for SIGTERM), 130 for Ctrl-C."""
    signum = received()
    return 128 + signum if signum is not None else 130


def describe() -> str:
    """``interrupted`` or ``terminated (SIGTERM)``: the first word of the stop line."""
    signum = received()
    return f"terminated ({signal.Signals(signum).name})" if signum is not None else "interrupted"
