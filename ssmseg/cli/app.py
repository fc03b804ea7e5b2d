"""The ``ssmseg`` command line: one Typer app; every expected failure becomes one line and an exit code.

Exit codes: 0 success, 1 runtime failure, 2 usage or config error, 130 interrupted (Ctrl-C), 143 terminated
(SIGTERM, handled like Ctrl-C).
``--debug`` or ``SSMSEG_DEBUG=1`` shows tracebacks.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
import warnings
from collections.abc import Iterator
from typing import Any

import typer
from typer.core import TyperGroup

from ssmseg import __version__
from ssmseg.errors import ConfigError, Interrupted, SsmsegError

_state = {"debug": False}


def _debugging() -> bool:
    return _state["debug"] or os.environ.get("SSMSEG_DEBUG", "") not in ("", "0", "false")


def report_error(exc: SsmsegError) -> int:
    """Print an expected failure as ``error: ...`` (plus one line per config problem); return its code."""
    if _debugging():
        traceback.print_exception(exc)
    typer.echo(f"error: {exc}", err=True)
    if isinstance(exc, ConfigError):
        for line in exc.problems:
            typer.echo(f"  - {line}", err=True)
    return exc.exit_code


class SsmsegGroup(TyperGroup):
    """Runs the app without Click's standalone handling, so that every error is printed our way."""

    def main(self, args: Any = None, prog_name: str | None = None, **extra: Any) -> Any:
        from ssmseg.engine.signals import terminate_as_interrupt

        extra.pop("standalone_mode", None)
        with _quiet_unless_rank_zero(), terminate_as_interrupt(), warnings.catch_warnings():
            # rasterio's own two-line warning for a raster without a transform: ssmseg says it in one line
            # wherever such a file is read or written (prep: "has no CRS", eval: "written without georeference").
            warnings.filterwarnings("ignore", message="Dataset has no geotransform")
            code = self._run(args, prog_name, extra)
        sys.exit(code if isinstance(code, int) else 0)

    def _run(self, args: Any, prog_name: str | None, extra: dict[str, Any]) -> Any:
        try:
            return super().main(args=args, prog_name=prog_name or "ssmseg", standalone_mode=False, **extra)
        except SsmsegError as exc:
            return report_error(exc)
        except KeyboardInterrupt as exc:
            return _interrupted(exc)
        except OSError as exc:  # any I/O fault not caught nearer its source: one line with the path
            from ssmseg.outputs import io_error

            return report_error(io_error(exc))
        except Exception as exc:
            return _click_exit(exc)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:  # caught here: typer would turn it into a silent Exit(130)
            raise typer.Exit(_interrupted(exc)) from None


def _interrupted(exc: KeyboardInterrupt) -> int:
    """Ctrl-C (130) or SIGTERM (143): where it stopped and how to continue when the command knows (a training
    run), else one line."""
    from ssmseg.engine import signals

    if _debugging():
        traceback.print_exception(exc)
    word = signals.describe()
    typer.echo(f"{word}: {exc}" if isinstance(exc, Interrupted) else word, err=True)
    return signals.exit_code()


@contextlib.contextmanager
def _quiet_unless_rank_zero() -> Iterator[None]:
    """Under torchrun only rank 0 prints (every rank runs the same command); --debug lets every rank print."""
    rank = os.environ.get("RANK", "0") or "0"
    if rank == "0" or _debugging():
        yield
        return
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        yield


def _click_exit(exc: Exception) -> int:
    """Print Click's own exceptions (typer may vendor Click, so they are matched by shape) as one line."""
    kind = type(exc).__name__
    if kind == "Exit":
        return int(getattr(exc, "exit_code", 0))
    if kind == "Abort":
        typer.echo("error: aborted", err=True)
        return 130
    if kind == "NoArgsIsHelpError":
        typer.echo(exc.format_message())  # type: ignore[attr-defined]
        return 0
    if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
        ctx = getattr(exc, "ctx", None)
        hint = f"; run '{ctx.command_path} --help' for usage" if ctx is not None else ""
        typer.echo(f"error: {exc.format_message().rstrip('.')}{hint}", err=True)
        return int(exc.exit_code)
    if _debugging():
        raise exc
    typer.echo(f"error: unexpected {kind}: {exc} (a bug; rerun with --debug and report the traceback)", err=True)
    return 1


app = typer.Typer(
    cls=SsmsegGroup,
    name="ssmseg",
    help="State-space (Mamba) models for dense prediction on spectral and remote-sensing imagery.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ssmseg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks (also SSMSEG_DEBUG=1)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """State-space (Mamba) models for dense prediction on spectral and remote-sensing imagery."""
    _state["debug"] = debug


def _register() -> None:
    # Each command module adds itself to the app; imported here so `ssmseg --help` lists them all.
    from ssmseg.cli import (  # noqa: F401
        baseline_cmd,
        config_cmd,
        doctor_cmd,
        eval_cmd,
        export_cmd,
        prep_cmd,
        report_cmd,
        sweep_cmd,
        train_cmd,
    )


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    app(args=argv, prog_name="ssmseg")


if __name__ == "__main__":  # python -m ssmseg.cli.app (without it: a silent exit 0)
    from ssmseg.cli.app import main as registered  # the module the commands registered on, not this __main__ copy

    registered()
