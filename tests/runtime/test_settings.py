"""The environment contract: precedence, validation, round trip through to_env."""
from __future__ import annotations

import pytest
from mkserve.runtime.settings import SETTINGS, SettingsError, resolve, to_env


def test_defaults_without_env_or_config():
    s = resolve({}, {})
    assert s.batch_size == 1 and s.max_batch_delay_ms == 100 and s.queue_size == 100
    assert s.port == 8080 and s.response_timeout_s == 120


def test_env_beats_model_config_beats_default():
    s = resolve({"MKSERVE_BATCH_SIZE": "16"}, {"batchSize": 8, "maxBatchDelay": 5})
    assert s.batch_size == 16
    assert s.max_batch_delay_ms == 5
    assert s.sources["batch_size"] == "MKSERVE_BATCH_SIZE"
    assert s.sources["max_batch_delay_ms"] == "model-config.yaml:maxBatchDelay"


def test_bad_env_values_are_all_reported_with_their_meaning():
    with pytest.raises(SettingsError) as err:
        resolve({"MKSERVE_BATCH_SIZE": "zero", "PORT": "-1", "MKSERVE_DEVICE": "tpu"}, {})
    text = str(err.value)
    assert "MKSERVE_BATCH_SIZE='zero'" in text and "PORT='-1'" in text
    assert "MKSERVE_DEVICE='tpu'" in text and "expected one of auto, cpu, gpu" in text
    assert "\n" not in text  # one line


def test_grpc_first_moves_http_to_its_own_port():
    plain = resolve({"PORT": "9000", "MKSERVE_GRPC_PORT": "7070"}, {})
    assert (plain.http_listen_port, plain.grpc_listen_port) == (9000, 7070)
    first = resolve({"PORT": "9000", "MKSERVE_PROTOCOL": "grpc"}, {})
    assert (first.http_listen_port, first.grpc_listen_port) == (8081, 9000)
    with pytest.raises(SettingsError, match="MKSERVE_HTTP_PORT=9000"):
        resolve({"PORT": "9000", "MKSERVE_PROTOCOL": "grpc", "MKSERVE_HTTP_PORT": "9000"}, {})


def test_bad_model_config_value_warns_and_falls_back():
    warnings: list[str] = []
    s = resolve({}, {"batchSize": "lots", "deviceType": "gpu"}, warn=warnings.append)
    assert s.batch_size == 1 and s.device == "gpu"
    assert warnings and "batchSize" in warnings[0]


def test_to_env_round_trips_every_setting():
    s = resolve({}, {})
    values = {setting.name: getattr(s, setting.name) for setting in SETTINGS}
    assert resolve(to_env(values), {}) == s


def test_to_env_refuses_values_the_runtime_would_refuse():
    with pytest.raises(ValueError):
        to_env({"batch_size": 0})
