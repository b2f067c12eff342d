"""Tracing settings from the standard OTEL_* variables, and the traceparent helpers (issue 18)."""

from __future__ import annotations

import pytest

from userstream.edge.fanout_trace import is_sampled
from userstream.settings import Env, SettingsError
from userstream.tracing import DEFAULT_SAMPLER, TracingSettings, current_traceparent

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}


def test_off_unless_an_endpoint_is_set() -> None:
    assert not TracingSettings.from_env(Env({})).enabled
    assert not TracingSettings.from_env(Env({"OTEL_SERVICE_NAME": "edge-eu"})).enabled


def test_the_base_endpoint_gets_the_traces_path_and_the_signal_endpoint_is_used_as_given() -> None:
    assert TracingSettings.from_env(Env(ENDPOINT)).endpoint == "http://collector:4318/v1/traces"
    exact = {**ENDPOINT, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://other:4318/custom"}
    assert TracingSettings.from_env(Env(exact)).endpoint == "http://other:4318/custom"


@pytest.mark.parametrize("switch", [{"OTEL_SDK_DISABLED": "true"}, {"OTEL_TRACES_EXPORTER": "none"}])
def test_the_standard_switches_turn_it_off(switch: dict[str, str]) -> None:
    assert not TracingSettings.from_env(Env({**ENDPOINT, **switch})).enabled


def test_sampler_and_service_name() -> None:
    settings = TracingSettings.from_env(
        Env(
            {
                **ENDPOINT,
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "0.01",
                "OTEL_SERVICE_NAME": "edge-eu",
            }
        )
    )
    assert (settings.sampler, settings.ratio, settings.service_name) == ("parentbased_traceidratio", 0.01, "edge-eu")
    assert TracingSettings.from_env(Env(ENDPOINT)).sampler == DEFAULT_SAMPLER


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"),
        ({"OTEL_TRACES_SAMPLER_ARG": "half"}, "OTEL_TRACES_SAMPLER_ARG"),
        ({"OTEL_TRACES_SAMPLER_ARG": "2"}, "OTEL_TRACES_SAMPLER_ARG"),
    ],
)
def test_bad_sampler_settings_name_the_variable(variables: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        TracingSettings.from_env(Env({**ENDPOINT, **variables}))


def test_sampled_flag() -> None:
    assert is_sampled("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    assert not is_sampled("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
    assert not is_sampled("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"[:-3])  # truncated
    assert not is_sampled("garbage-01")
    assert not is_sampled(None)


def test_no_current_span_no_traceparent() -> None:
    assert current_traceparent() is None
