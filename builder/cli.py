"""The `mkserve` command: thin typer commands over library functions."""
# typer declares options as call defaults by design.
# ruff: noqa: B008
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer
from mkserve.runtime.settings import DEBUG_VARIABLE

from .cli_bench import register as register_bench
from .cli_render import register as register_render
from .errors import MkserveError, UsageError
from .sources import model_source

app = typer.Typer(
    name="mkserve",
    help="Serve a PyTorch model (TorchServe .mar, .tar.gz or model folder) with one command: "
         "locally (`serve`) or as a container image (`build`).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        from mkserve.runtime import __version__

        typer.echo(f"mkserve {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    _version: bool = typer.Option(False, "--version", is_eager=True, callback=_show_version,
                                  help="Print mkserve's version and exit."),
) -> None:
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
    port: int | None = typer.Option(
        None, help="Port to listen on (default: 8080, or inference_address of --ts-config)."),
    workers: int | None = typer.Option(None, help="Worker processes (default: from CPUs/GPUs)."),
    threads: int | None = typer.Option(
        None, help="Threads per worker for routes other than plain predictions."),
    batch_size: int | None = typer.Option(None, help="Largest batch (batchSize)."),
    max_batch_delay: float | None = typer.Option(
        None, help="Most a request waits for company while the model is busy, ms (maxBatchDelay)."),
    queue_size: int | None = typer.Option(None, help="Rows waiting per worker (jobQueueSize)."),
    response_timeout: float | None = typer.Option(
        None, help="Request deadline in seconds (responseTimeout)."),
    max_request_size: int | None = typer.Option(None, help="Largest request body, bytes."),
    grpc_port: int | None = typer.Option(
        None, help="Also serve gRPC here (TorchServe's and KServe's inference APIs; "
                   "default off, or grpc_inference_port of --ts-config)."),
    protocol: str | None = typer.Option(
        None, help="What --port serves: http (default) or grpc (gRPC first; the HTTP APIs "
                   "move to MKSERVE_HTTP_PORT, default 8081)."),
    model_name: str | None = typer.Option(None, "--name", help="Serve under this model name."),
    device: str | None = typer.Option(None, help="auto, cpu or gpu."),
    precision: str | None = typer.Option(None, help="fp32, bf16 or fp16 (autocast)."),
    log_format: str | None = typer.Option(
        None, help="text or json (default: text in a terminal, json otherwise)."),
    ts_config: Path | None = typer.Option(
        None, "--ts-config", help="TorchServe config.properties to map (flags win over it)."),
) -> None:
    """Serve SOURCE on this machine with the same runtime the image runs (gunicorn + flask)."""
    from .serve import check_port_free, exec_runtime, serve_env

    source = model_source(str(source), _err)
    mapped: dict[str, Any] = {}
    if ts_config is not None:
        from .tsconfig import read_ts_config

        config = read_ts_config(ts_config, model_name, gpu=True)
        mapped = dict(config.settings)
        for note in config.notes:
            _err(f"{ts_config}: {note}")
    flags = {"host": host, "port": port, "workers": workers, "threads": threads,
             "batch_size": batch_size, "max_batch_delay_ms": max_batch_delay,
             "queue_size": queue_size, "response_timeout_s": response_timeout,
             "max_request_bytes": max_request_size, "grpc_port": grpc_port,
             "protocol": protocol, "model_name": model_name, "device": device,
             "precision": precision,
             "log_format": log_format or ("text" if sys.stderr.isatty() else "json")}
    settings = {**mapped, **{k: v for k, v in flags.items() if v is not None}}
    settings.setdefault("port", 8080)
    check_port_free(host, int(settings["port"]))
    if settings.get("protocol") == "grpc":  # the HTTP APIs move beside gRPC
        from mkserve.runtime.settings import read as read_setting

        check_port_free(host, int(read_setting("http_port")), "MKSERVE_HTTP_PORT")
    elif settings.get("grpc_port"):
        check_port_free(host, int(settings["grpc_port"]), "--grpc-port")
    exec_runtime(serve_env(str(source), settings))


def _err(line: str) -> None:
    typer.echo(line, err=True)


@app.command()
def build(
    source: str = typer.Argument(..., help="A .mar, .tar.gz, unpacked archive or model folder."),
    tag: list[str] = typer.Option([], "--tag", "-t", help="Image tag (repeatable); default "
                                  "NAME:VERSION from the manifest."),
    base_image: str | None = typer.Option(
        None, help="Fully qualified base image with python3 (default: "
                   "docker.io/library/python:3.11-slim)."),
    gpu: bool = typer.Option(False, "--gpu", help="CUDA build of torch, NVIDIA runtime env."),
    torch_version: str | None = typer.Option(
        None, help="torch version to pin (default: this machine's, +cpu for CPU images)."),
    torch_index_url: str | None = typer.Option(
        None, help="Extra index for torch when filling the wheelhouse, e.g. "
                   "https://download.pytorch.org/whl/cpu."),
    python_version: str = typer.Option("3.11", help="Python of the base image (wheel tags)."),
    platform: str = typer.Option("linux/amd64", help="Target platform: linux/amd64 or "
                                 "linux/arm64."),
    requirements: list[Path] = typer.Option([], "--requirements", "-r",
                                            help="Extra requirements file (repeatable)."),
    label: list[str] = typer.Option([], help="Extra image label KEY=VALUE (repeatable)."),
    build_arg: list[str] = typer.Option([], help="Build argument KEY=VALUE (repeatable)."),
    env: list[str] = typer.Option([], "--env", "-e", help="Bake ENV NAME=VALUE into the image "
                                  "(any MKSERVE_* setting, or your own)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not use the engine's cache."),
    push: bool = typer.Option(False, "--push", help="Push every tag after the build."),
    ts_config: Path | None = typer.Option(None, help="TorchServe config.properties to map."),
    batch_size: int | None = typer.Option(None, help="Largest batch (batchSize)."),
    max_batch_delay: float | None = typer.Option(
        None, help="Most a request waits for company while the model is busy, ms."),
    workers: int | None = typer.Option(None, help="Worker processes (0 = from CPUs/GPUs)."),
    port: int | None = typer.Option(None, help="Serving port (default 8080)."),
    queue_size: int | None = typer.Option(None, help="Rows waiting per worker (jobQueueSize)."),
    response_timeout: float | None = typer.Option(None, help="Request deadline, s."),
    max_request_size: int | None = typer.Option(None, help="Largest request body, bytes."),
    grpc_port: int | None = typer.Option(
        None, help="Also serve gRPC on this port (TorchServe's and KServe's inference APIs); "
                   "default off."),
    protocol: str | None = typer.Option(
        None, help="What the serving port speaks: http (default) or grpc (gRPC first, for "
                   "Knative/Cloud Run/KServe, which route one port; HTTP moves to 8081)."),
    wheelhouse: Path | None = typer.Option(
        None, help="Install only from the wheels in DIR (offline; nothing is downloaded)."),
    fill_wheelhouse: bool = typer.Option(
        False, "--fill-wheelhouse", help="Download missing wheels into --wheelhouse first "
                                         "(on this machine, with its pip configuration)."),
    context_only: Path | None = typer.Option(
        None, help="Write the Dockerfile and full build context to DIR; no engine needed."),
    check: bool = typer.Option(True, "--check/--no-check",
                               help="Load the handler before building (here and in the image)."),
    optimize: bool = typer.Option(
        False, "--optimize", help="Freeze and optimize_for_inference a TorchScript model; kept "
                                  "only if it answers --sample-input like the original."),
    sample_input: Path | None = typer.Option(
        None, help="What the model is called with, for --optimize: a JSON batch such as "
                   "[[0.1, ...]], or a torch.save'd tensor / tuple of arguments (.pt)."),
) -> None:
    """Build a container image that serves SOURCE (validates first; DOCKER_HOST = the engine)."""
    from .build import ContextResult, run_build
    from .progress import human, summary
    from .spec import BuildRequest

    if fill_wheelhouse and wheelhouse is None:
        raise UsageError("--fill-wheelhouse needs --wheelhouse DIR (without --wheelhouse "
                         "mkserve always downloads into its cache)")
    request = BuildRequest(
        source=str(model_source(source, _err)), tags=tuple(tag), base_image=base_image, gpu=gpu,
        torch_version=torch_version, torch_index_url=torch_index_url,
        python_version=python_version, platform=platform,
        requirements=tuple(str(r) for r in requirements), labels=tuple(label),
        build_args=tuple(build_arg), env=tuple(env), no_cache=no_cache, push=push,
        ts_config=str(ts_config) if ts_config else None,
        settings={"batch_size": batch_size, "max_batch_delay_ms": max_batch_delay,
                  "workers": workers, "port": port, "queue_size": queue_size,
                  "response_timeout_s": response_timeout, "max_request_bytes": max_request_size,
                  "grpc_port": grpc_port, "protocol": protocol},
        wheelhouse=str(wheelhouse) if wheelhouse else None, fill_wheelhouse=fill_wheelhouse,
        context_only=str(context_only) if context_only else None, check=check,
        optimize=optimize, sample_input=str(sample_input) if sample_input else None)
    result = run_build(request, _err)
    if isinstance(result, ContextResult):
        typer.echo(f"wrote the build context to {result.info.path} ({result.info.files} files, "
                   f"{human(result.info.bytes)}); build it with one of:")
        for command in result.commands:
            typer.echo(f"  {command}")
        return
    typer.echo(summary(result))


@app.command()
def run(
    image: str = typer.Argument(..., help="An image built by mkserve build."),
    port: str | None = typer.Option(None, "--port", "-p", metavar="HOST_PORT[:PORT]",
                                    help="Host port to publish the serving port on, or "
                                         "HOST:CONTAINER as docker -p (default: a free one)."),
    detach: bool = typer.Option(False, "--detach", "-d", help="Leave it running and return."),
    env: list[str] = typer.Option([], "--env", "-e", help="Run-time ENV NAME=VALUE."),
    read_only: bool = typer.Option(False, "--read-only",
                                   help="Read-only root filesystem with a tmpfs /tmp."),
) -> None:
    """Start IMAGE, wait until it is ready and print its URL (Ctrl-C stops and removes it)."""
    from .engine import connect
    from .run import env_pairs, host_port
    from .run import run as run_container

    published = host_port(port)
    environment = env_pairs(env)
    run_container(connect(), image, published, detach, _err, environment, read_only)


@app.command()
def predict(
    target: str = typer.Argument(..., help="A running server (http://HOST:PORT, or HOST:PORT "
                                           "for localhost, an IP or a dotted host name), or "
                                           "an IMAGE (started for this one request)."),
    data: str = typer.Option(..., "--data", "-d", help="@file.json, - for stdin, or the body."),
    model: str | None = typer.Option(None, help="Model name (default: what it serves)."),
    content_type: str | None = typer.Option(None, help="Default: JSON if the body parses."),
) -> None:
    """Send one request to /predictions/<model> and print the answer."""
    from .engine import connect
    from .run import predict as send
    from .run import read_data

    status, text = send(target, read_data(data), connect, model, content_type, _err)
    typer.echo(text)
    if status >= 400:
        raise MkserveError(f"the server answered HTTP {status}")


@app.command(name="inspect")
def inspect_(
    target: str = typer.Argument(..., help="An image, or a .mar/.tar.gz/model folder here."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show what TARGET serves and how it was built (image labels, or the source), without
    starting it."""
    import json

    from .engine import connect
    from .inspect import describe, format_text
    from .sources import looks_like_a_path

    if Path(target).exists() or looks_like_a_path(target):
        target = str(model_source(target, _err))
    data = describe(target, connect)
    typer.echo(json.dumps(data, indent=2, default=str) if as_json else format_text(data))


@app.command()
def prune() -> None:
    """Remove the untagged build-stage images that builds leave as layer cache (Podman and
    Docker's legacy builder keep every stage; the next build of a model then starts over)."""
    from .engine import connect

    removed = connect().prune_stages()
    if removed:
        typer.echo(f"removed {removed} untagged build-stage images")
    else:
        typer.echo("no build-stage images to remove (Docker's BuildKit keeps its cache "
                   "apart: docker builder prune)")


register_render(app)
register_bench(app)


def tidy_help(command: Any) -> None:
    """Help placeholders as a reader expects them: no `<bool>` after a flag, TEXT / INTEGER /
    PATH rather than `<str>` / `<int>` / `<path>`, NAME... for repeatable options."""
    kinds = {int: "INTEGER", float: "NUMBER", str: "TEXT", Path: "PATH"}
    for param in command.params:
        if param.param_type_name == "argument":
            param.metavar = param.metavar or param.name.upper()
            # typer prints an argument's type after its name (SOURCE <str>); its help says it
            param.display_type_rich = lambda ctx: ""
            continue
        if param.metavar is not None:
            continue
        annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
        if getattr(param, "is_flag", False):
            param.metavar = ""
        elif getattr(param, "multiple", False):
            param.metavar = param.name.upper().replace("_", "-") + "..."
        else:
            inner = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
            kind = inner[0] if len(inner) == 1 else annotation
            param.metavar = kinds.get(kind, "TEXT") if isinstance(kind, type) else "TEXT"
    make_help_option = command.get_help_option  # made per context, not in .params

    def help_option(ctx: Any) -> Any:
        option = make_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = help_option
    for sub in getattr(command, "commands", {}).values():
        tidy_help(sub)


def main() -> None:
    """Console entry point: usage errors as typer prints them (exit 2), MkserveError as one
    line and its exit code, anything else as one line unless MKSERVE_DEBUG is set."""
    command = typer.main.get_command(app)
    tidy_help(command)
    try:
        command.main(prog_name="mkserve", standalone_mode=True)
    except MkserveError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if os.environ.get(DEBUG_VARIABLE):
            raise
        typer.secho(f"error: mkserve failed unexpectedly ({type(exc).__name__}: {exc}); rerun "
                    "with MKSERVE_DEBUG=1 for the traceback, and please report it",
                    err=True, fg=typer.colors.RED)
        sys.exit(1)


if __name__ == "__main__":
    main()
