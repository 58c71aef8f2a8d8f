"""The `mkserve` command: thin typer commands over library functions."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from .errors import MkserveError

app = typer.Typer(
    name="mkserve",
    help="Serve a PyTorch model (TorchServe .mar, .tar.gz or model folder) with one command: "
         "locally (`serve`) or as a container image (`build`).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """mkserve: from a model file to a production endpoint that scales."""


@app.command()
def version() -> None:
    """Print mkserve's version."""
    from mkserve.runtime import __version__

    typer.echo(f"mkserve {__version__}")


@app.command()
def serve(
    source: Path = typer.Argument(..., help="A .mar, .tar.gz, unpacked archive or model folder."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8080, help="Port to listen on."),
    workers: Optional[int] = typer.Option(None, help="Worker processes (default: from CPUs/GPUs)."),
    threads: Optional[int] = typer.Option(None, help="Request threads per worker."),
    batch_size: Optional[int] = typer.Option(None, help="Largest batch (batchSize)."),
    max_batch_delay: Optional[float] = typer.Option(
        None, help="Most a request waits for company while the model is busy, ms (maxBatchDelay)."),
    queue_size: Optional[int] = typer.Option(None, help="Rows waiting per worker (jobQueueSize)."),
    response_timeout: Optional[float] = typer.Option(
        None, help="Request deadline in seconds (responseTimeout)."),
    max_request_size: Optional[int] = typer.Option(None, help="Largest request body, bytes."),
    model_name: Optional[str] = typer.Option(None, "--name", help="Serve under this model name."),
    device: Optional[str] = typer.Option(None, help="auto, cpu or gpu."),
    precision: Optional[str] = typer.Option(None, help="fp32, bf16 or fp16 (autocast)."),
    log_format: Optional[str] = typer.Option(
        None, help="text or json (default: text in a terminal, json otherwise)."),
) -> None:
    """Serve SOURCE on this machine with the same runtime the image runs (gunicorn + flask)."""
    from .serve import exec_runtime, serve_env

    if not source.exists():
        raise MkserveError(f"{source}: no such file or folder; pass a .mar, a .tar.gz or a "
                           "model folder")
    fmt = log_format or ("text" if sys.stderr.isatty() else "json")
    env = serve_env(str(source), {
        "host": host, "port": port, "workers": workers, "threads": threads,
        "batch_size": batch_size, "max_batch_delay_ms": max_batch_delay,
        "queue_size": queue_size, "response_timeout_s": response_timeout,
        "max_request_bytes": max_request_size, "model_name": model_name, "device": device,
        "precision": precision, "log_format": fmt,
    })
    exec_runtime(env)


def main() -> None:
    """Console entry point: render MkserveError as one line and its exit code."""
    try:
        app(standalone_mode=False)
    except MkserveError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except Exception as exc:  # click usage errors carry their own exit code
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
