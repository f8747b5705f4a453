"""The Lambda runtime: execution environments, environment variables, context object, /tmp."""

from __future__ import annotations

import hashlib
import json

from tests.pipeline.esm.conftest import PROBE, Esm


def _probes(esm: Esm) -> list[dict]:
    return [json.loads(x) for x in (esm.out / "probe.jsonl").read_text().splitlines()]


def test_one_environment_is_initialised_once_and_reused_with_the_documented_context(esm: Esm) -> None:
    """AWS: "When the handler finishes processing the first event, the runtime sends it another. The
    function's class stays in memory, so clients and variables that are declared outside of the
    handler method in initialization code can be reused." and "Your function also has access to
    local storage in the /tmp directory, a transient cache that can be used for multiple
    invocations." (Lambda programming model). The context object has function_name,
    function_version, invoked_function_arn, memory_limit_in_mb, aws_request_id, log_group_name,
    log_stream_name and get_remaining_time_in_millis() (Python context object); the function's
    environment variables are set."""
    fn = esm.function("probe", handler=PROBE, env={"GREETING": "hello"}, timeout=7)
    esm.mapping(fn, BatchSize=1)
    esm.put(count=4)
    runner = esm.drain()
    probes = _probes(esm)
    arn = esm.lam.get_function_configuration(FunctionName=fn)["FunctionArn"]
    assert [p["calls_in_this_environment"] for p in probes] == [1, 2, 3, 4]
    assert len({p["pid"] for p in probes}) == 1 and len({p["init_at"] for p in probes}) == 1
    assert runner.stats[runner.mappings[0].uuid].cold_starts == 1
    assert probes[0]["env"] == {
        "GREETING": "hello",
        "AWS_LAMBDA_FUNCTION_NAME": fn,
        "AWS_REGION": "us-east-1",
    }
    ctx = probes[0]["context"]
    assert {k: ctx[k] for k in ("function_name", "function_version", "invoked_function_arn")} == {
        "function_name": fn,
        "function_version": "$LATEST",
        "invoked_function_arn": arn,
    }
    assert ctx["memory_limit_in_mb"] == 256 and ctx["log_group_name"] == f"/aws/lambda/{fn}"
    assert "[$LATEST]" in ctx["log_stream_name"]
    assert 0 < ctx["remaining_ms"] <= 7000
    assert len({p["context"]["aws_request_id"] for p in probes}) == 4
    # A warm environment keeps what it wrote to /tmp.
    assert probes[1]["tmp_before"] == ["call-1"]


def test_each_environment_has_its_own_tmp(esm: Esm) -> None:
    """AWS: "Lambda provides ephemeral storage for functions in the /tmp directory. This storage is
    temporary and unique to each execution environment." (ephemeral storage); two concurrent
    environments of one function never see each other's files."""
    fn = esm.function("tmp", handler=PROBE, env={"PROBE_SLEEP": "0.5"})
    esm.mapping(fn, BatchSize=1, ParallelizationFactor=2)
    # One key for each of the shard's two lanes (a lane is chosen by MD5 of the key).
    lanes = {int(hashlib.md5(k.encode()).hexdigest(), 16) % 2: k for k in "abcdefgh"}
    esm.put(count=6, key=lambda n: lanes[n % 2])
    esm.drain()
    probes = _probes(esm)
    tmps = {p["pid"]: p["tmp"] for p in probes}
    assert len(tmps) == 2 and len(set(tmps.values())) == 2
    for p in probes:
        assert all(name.startswith("call-") for name in p["tmp_before"])
        assert len(p["tmp_before"]) == p["calls_in_this_environment"] - 1
