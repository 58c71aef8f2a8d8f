"""--ts-config: the guide's config.properties, and the .properties format itself."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from mkserve.builder.errors import UsageError
from mkserve.builder.tsconfig import (
    IGNORED,
    MAPPED,
    map_properties,
    parse_properties,
    read_ts_config,
)

GUIDE = Path("/work/shared/seed/torchserve-guide.md")
# The same text, should the shared seed folder be missing where the tests run.
GUIDE_CONFIG = """\
# config.properties
inference_address=http://0.0.0.0:8080
management_address=http://0.0.0.0:8081
metrics_address=http://0.0.0.0:8082
model_store=/home/model-server/model-store
load_models=all
number_of_netty_threads=4
job_queue_size=100
default_workers_per_model=1

# Enable batching
enable_batch=true
batch_size=32
max_batch_delay=100

# GPU settings (if available)
number_of_gpu=1

# Logging
async_logging=true
"""


def guide_config() -> str:
    if GUIDE.is_file():
        match = re.search(r"```properties\n(.*?)```", GUIDE.read_text(), re.DOTALL)
        assert match, "the guide has no config.properties block"
        return match.group(1)
    return GUIDE_CONFIG


@pytest.fixture
def guide_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.properties"
    path.write_text(guide_config())
    return path


def test_the_guides_config_maps_what_still_means_something(guide_file: Path) -> None:
    config = read_ts_config(guide_file, "classifier")
    assert config.settings == {"port": 8080, "queue_size": 100, "workers": 1, "batch_size": 32,
                               "max_batch_delay_ms": 100.0}


def test_every_key_of_the_guide_is_mapped_or_explained_in_one_line(guide_file: Path) -> None:
    props = parse_properties(guide_file.read_text())
    config = read_ts_config(guide_file, "classifier")
    mapped = set(MAPPED) | {"inference_address"}
    for key in props:
        notes = [n for n in config.notes if n.startswith((f"{key}:", f"{key}="))]
        if key in mapped:
            continue
        assert len(notes) == 1, (key, config.notes)
        assert "\n" not in notes[0] and len(notes[0].split(": ", 1)[1]) > 10
    for key in ("management_address", "metrics_address", "model_store", "load_models",
                "number_of_netty_threads", "async_logging", "enable_batch"):
        assert any(n.startswith(f"{key}: ignored: {IGNORED[key]}") for n in config.notes)
    # A CPU image says that number_of_gpu cannot apply; a GPU image explains who decides.
    assert any("number_of_gpu=1: this is a CPU image" in n for n in config.notes)
    gpu = read_ts_config(guide_file, "classifier", gpu=True)
    assert any(n.startswith("number_of_gpu: GPUs are used") for n in gpu.notes)


def test_other_mapped_keys() -> None:
    config = map_properties({"inference_address": "https://127.0.0.1:8443",
                             "default_response_timeout": "30", "max_request_size": "1000000",
                             "max_response_size": "5", "number_of_gpu": "0",
                             "some_future_key": "x", "grpc_inference_port": "7070",
                             "grpc_management_port": "7071"})
    assert config.settings == {"port": 8443, "response_timeout_s": 30.0,
                               "max_request_bytes": 1000000, "device": "cpu",
                               "grpc_port": 7070}
    text = "\n".join(config.notes)
    assert "grpc_management_port: ignored: no management API" in text
    assert "https is not served" in text and "host 127.0.0.1 ignored" in text
    assert "max_response_size: ignored" in text
    assert "some_future_key: ignored: not a setting mkserve knows" in text


def test_models_json_is_more_specific_than_server_wide_keys() -> None:
    models = ('{"classifier": {"1.0": {"defaultVersion": true, "batchSize": 8, '
              '"maxBatchDelay": 5, "responseTimeout": 60, "minWorkers": 2}}}')
    # `models` comes first in the file, yet it still wins over batch_size.
    config = map_properties({"models": models, "batch_size": "32"}, "classifier")
    assert config.settings == {"batch_size": 8, "max_batch_delay_ms": 5.0,
                               "response_timeout_s": 60.0, "workers": 2}
    other = map_properties({"models": '{"a": {}, "b": {}}'}, "classifier")
    assert other.settings == {} and "no entry for 'classifier'" in other.notes[0]


def test_bad_values_are_one_error_listing_each() -> None:
    with pytest.raises(UsageError) as info:
        map_properties({"batch_size": "many", "job_queue_size": "0", "number_of_gpu": "x"},
                       origin="cp.properties")
    message = str(info.value)
    assert message.startswith("cp.properties: ")
    assert "batch_size='many'" in message and "job_queue_size='0'" in message
    assert "number_of_gpu='x'" in message


def test_properties_syntax() -> None:
    text = ("# comment\n! also a comment\n  spaced = value with spaces  \ncolon:  v2\n"
            "blank\nws  v3\ncont = one, \\\n       two\nesc = a\\=b\\tc\\u0041\n"
            "path=C:\\\\models\n")
    assert parse_properties(text) == {"spaced": "value with spaces", "colon": "v2",
                                      "blank": "", "ws": "v3", "cont": "one, two",
                                      "esc": "a=b\tcA", "path": "C:\\models"}


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read"):
        read_ts_config(tmp_path / "missing.properties")


def test_service_envelope_and_model_snapshot() -> None:
    snapshot = json.dumps({"name": "20261207.cfg", "modelCount": 1, "models": {
        "classifier": {"1.0": {"defaultVersion": True, "marName": "classifier.mar",
                               "minWorkers": 2, "batchSize": 8, "maxBatchDelay": 20}}}})
    config = map_properties({"service_envelope": "kserve", "model_snapshot": snapshot},
                            "classifier")
    assert config.settings == {"service_envelope": "kserve", "workers": 2, "batch_size": 8,
                               "max_batch_delay_ms": 20.0}
    assert any("model_snapshot" in n for n in config.notes)
    with pytest.raises(UsageError, match="service_envelope"):
        map_properties({"service_envelope": "xml"})
