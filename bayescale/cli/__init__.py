"""Command line: ``bayescale datasets|fit|predict|fit-downstream|plan|demo|evaluate|report``.

``main(argv)`` runs one command and returns its exit code (0 ok, 1 failed,
2 bad input, 130 interrupted) without touching process-wide state, so tests
can call it. The console script calls :func:`run`, which also lets JAX use
several CPU devices (parallel chains) and keeps compiled programs on disk
(``~/.cache/bayescale/xla``; ``BAYESCALE_XLA_CACHE=/path`` moves it, ``off``
disables it). Parsing needs only the standard library: ``--help`` and
argument errors answer without loading JAX.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings

from bayescale.cli.parser import build_parser

__all__ = ["build_parser", "main", "run"]


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"WARNING ({getattr(category, '__name__', 'Warning')}): {message}", file=sys.stderr)


def main(argv=None) -> int:
    """Run one ``bayescale`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from bayescale.cli import commands

    outcome: dict = {}

    def work():
        try:
            outcome["code"] = int(commands.COMMANDS[args.command](args) or 0)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller thread
            outcome["error"] = exc

    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        worker = threading.Thread(target=work, name=f"bayescale {args.command}", daemon=True)
        worker.start()
        try:
            # the work runs in a thread so that Ctrl-C reaches this one even while JAX
            # computes (a signal handler only runs between Python bytecodes)
            while worker.is_alive():
                worker.join(0.2)
        except KeyboardInterrupt:
            from bayescale import fitfile

            fitfile.cancel_writes()
            commands.note("interrupted: nothing was written")
            return commands.EXIT_INTERRUPTED
    return _exit_code(outcome, commands)


def _exit_code(outcome: dict, commands) -> int:
    exc = outcome.get("error")
    if exc is None:
        return outcome.get("code", commands.EXIT_OK)
    from bayescale.fitfile import FitFileError
    from bayescale.tables import DataError

    if isinstance(exc, KeyboardInterrupt):
        commands.note("interrupted: nothing was written")
        return commands.EXIT_INTERRUPTED
    if isinstance(
        exc, (commands.BadInput, DataError, FitFileError, KeyError, ValueError, FileExistsError)
    ):
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        commands.note(f"error: {msg}")
        return commands.EXIT_BAD_INPUT
    commands.note(f"failed: {type(exc).__name__}: {exc}")
    return commands.EXIT_FAILED


def run() -> None:
    """Console entry point: process-wide JAX settings, then :func:`main`, then exit."""
    argv = sys.argv[1:]
    build_parser().parse_args(argv)  # --help, --version and usage errors exit here, JAX unloaded
    from bayescale.devices import enable_compile_cache, set_host_device_count

    set_host_device_count()
    enable_compile_cache()
    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    if code == 130:
        # skip interpreter teardown: JAX's threads may still be computing
        os._exit(code)
    sys.exit(code)
