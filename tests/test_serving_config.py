"""The operator's serving settings (sensmap.serving.config): file, environment, defaults and refusals."""

from __future__ import annotations

import pytest

from sensmap.errors import ParameterError
from sensmap.serving import QueueLimits, RaySettings, load_config


def test_without_a_file_the_defaults_serve_one_job_at_a_time_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(environ={})
    assert config.queue == QueueLimits(max_running=1, max_waiting_per_session=4, max_waiting=64)
    assert config.ray == RaySettings() and config.source == "defaults"
    assert config.places(cluster_ready=False) == 1


def test_the_file_sets_the_limits_and_the_environment_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "sensmap.toml").write_text(
        "[queue]\nmax_running = 2\nmax_waiting_per_session = 3\n[ray]\naddress = '10.0.0.1:6379'\nactors = 4\n"
    )
    config = load_config(environ={})
    assert config.queue == QueueLimits(2, 3, 64) and config.ray.address == "10.0.0.1:6379"
    assert config.places(cluster_ready=True) == 4 and config.places(cluster_ready=False) == 2
    env = {"SENSMAP_RAY_ADDRESS": "127.0.0.1:7000", "SENSMAP_QUEUE_MAX_RUNNING": "1", "SENSMAP_RAY_ACTORS": "2"}
    config = load_config(environ=env)
    assert (config.ray.address, config.ray.actors, config.queue.max_running) == ("127.0.0.1:7000", 2, 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[queue]\nmax_running = 0\n", "max_running must be at least 1"),
        ("[queue]\nmax_waiting = 'many'\n", "max_waiting = 'many' is not a number"),
        ("[ray]\nconnect_timeout_s = -1\n", "connect_timeout_s must be positive"),
        ("[queue\n", "cannot read the sensmap settings"),
    ],
)
def test_a_bad_file_is_refused_with_what_to_fix(tmp_path, text, message):
    path = tmp_path / "sensmap.toml"
    path.write_text(text)
    with pytest.raises(ParameterError, match=message):
        load_config(path, environ={})


def test_a_named_file_that_is_missing_is_refused(tmp_path):
    with pytest.raises(ParameterError, match="does not exist"):
        load_config(environ={"SENSMAP_CONFIG": str(tmp_path / "nowhere.toml")})
