"""Every serving setting is declared once, in runtime/settings.py; what restates it agrees.

The table there names each setting's variable, parser, default, help, CLI flag, image
label and model-config key. The typed RuntimeSettings, the CLI options, the labels an
image is built with and read back by, TorchServe's model-config keys in
config.properties and DeploySpec's runtime fields are derived from it or checked here.
"""
from __future__ import annotations

import ast
import dataclasses
import io
import re
import tokenize
from pathlib import Path

import typer
from mkserve.builder import deploy, spec, tsconfig
from mkserve.builder import labels as L
from mkserve.builder.cli import app
from mkserve.runtime.settings import BY_NAME, SETTINGS, RuntimeSettings

ROOT = Path(__file__).resolve().parents[1]


def test_runtime_settings_has_each_setting_with_its_default_and_type() -> None:
    fields = [f for f in dataclasses.fields(RuntimeSettings) if f.name != "sources"]
    assert [f.name for f in fields] == [s.name for s in SETTINGS]
    defaults = RuntimeSettings()
    for setting in SETTINGS:
        value = getattr(defaults, setting.name)
        assert value == setting.default and type(value) is type(setting.default), setting.name
        assert setting.parse(str(setting.default).lower() if isinstance(setting.default, bool)
                             else str(setting.default)) == setting.default, setting.name


def options(command: str) -> set[str]:
    click = typer.main.get_command(app)
    return {o for p in click.commands[command].params for o in p.opts if o.startswith("--")}


def test_every_declared_flag_is_an_option_and_the_shared_options_are_declared() -> None:
    flags = {s.flag for s in SETTINGS if s.flag}
    assert flags <= options("serve"), "serve sets every setting that has a flag"
    # What build and serve both take is a setting (build bakes it, serve passes it on);
    # --ts-config is a file of them.
    assert options("build") & options("serve") - {"--name", "--env", "--ts-config"} <= flags
    assert spec.FLAGS == {s.name: s.flag for s in SETTINGS if s.flag}


def test_labels_come_from_the_table_and_the_deploy_spec_reads_them_back() -> None:
    assert L.SETTING_LABELS == {s.name: L.PREFIX + s.label for s in SETTINGS if s.label}
    spec_fields = {f.name for f in dataclasses.fields(deploy.DeploySpec)}
    assert set(deploy.RUNTIME_FIELDS) <= spec_fields
    assert set(deploy.RUNTIME_FIELDS) <= set(L.SETTING_LABELS)
    # A spec field named like a setting is that setting (read from the image or resolved);
    # the model's name has a label of its own (the manifest's name when not overridden).
    assert spec_fields & set(BY_NAME) - {"model_name"} == set(deploy.RUNTIME_FIELDS)


def test_config_properties_keys_are_the_settings_declared_keys() -> None:
    for key, name in tsconfig.MODEL_KEYS.items():
        assert BY_NAME[name].model_config == key and BY_NAME[name].in_models_entry, (key, name)
    for key, name in tsconfig.MAPPED.items():
        assert BY_NAME[name].ts_property == key, (key, name)
    # TorchServe's documented server-wide keys that mean something in one image: each is
    # declared once, and none is also listed as ignored.
    assert set(tsconfig.MAPPED) == {"batch_size", "max_batch_delay", "default_workers_per_model",
                                    "job_queue_size", "default_response_timeout",
                                    "max_request_size", "service_envelope",
                                    "grpc_inference_port"}
    assert set(tsconfig.MODEL_KEYS) == {"batchSize", "maxBatchDelay", "responseTimeout",
                                        "minWorkers"}
    assert not set(tsconfig.MAPPED) & set(tsconfig.IGNORED)


def test_route_paths_are_the_runtimes() -> None:
    """The builder and the benchmark name the runtime's paths through runtime/routes.py
    (docstrings aside); tests/builder/test_deploy.py checks that the app serves them."""
    from mkserve.runtime import routes

    paths = (routes.LIVENESS, routes.READINESS, routes.METRICS, routes.PING)
    # A path as a whole string or ending a URL ("/readyz", f"{url}/readyz", ":8080/readyz",
    # "%s/readyz"), not prose that mentions it.
    used = re.compile("(^f?[\"']|[}s0-9])(" + "|".join(map(re.escape, paths)) + ")[\"'?]")
    literals = []
    for folder in ("builder", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            for tok in tokenize.generate_tokens(io.StringIO(text).readline):
                if tok.type == tokenize.STRING and not tok.string.endswith(('"""', "'''")) \
                        and used.search(tok.string):
                    literals.append(f"{path.relative_to(ROOT)}:{tok.start[0]}: {tok.string}")
    assert literals == []


def _environment_reads(path: Path) -> list[str]:
    """MKSERVE_* names a module reads from the environment (os.environ[...], .get, getenv)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        target = None
        if isinstance(node, ast.Call) and node.args and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("get", "getenv", "pop"):
            target = node.args[0]
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "environ":
            target = node.slice
        if isinstance(target, ast.Constant) and str(target.value).startswith("MKSERVE_"):
            found.append(str(target.value))
    return found


def test_every_mkserve_variable_is_read_through_the_table() -> None:
    readers = {path.relative_to(ROOT).as_posix(): names
               for folder in ("runtime", "builder", "bench")
               for path in (ROOT / folder).rglob("*.py")
               if (names := _environment_reads(path))}
    assert readers == {}
