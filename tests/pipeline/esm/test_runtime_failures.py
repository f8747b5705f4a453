"""The Lambda runtime: timeouts kill the environment, a crashed environment is replaced."""

from __future__ import annotations

from tests.pipeline.esm.conftest import Esm, numbers


def test_a_timed_out_invocation_is_a_function_error_and_its_environment_is_replaced(esm: Esm) -> None:
    """AWS: "The amount of time that Lambda allows a function to run before stopping it." (Timeout)
    and a timed-out invocation is an error: the log says "Task timed out after 1.00 seconds", the
    batch counts as failed, and the next invocation runs in a fresh environment."""
    fn = esm.function("slow", timeout=1, env={"SLEEP_SECONDS": "3"})
    esm.mapping(fn, BatchSize=1, MaximumRetryAttempts=0)
    esm.put(["sleep", ""])
    runner = esm.drain()
    st = runner.stats[runner.mappings[0].uuid]
    assert (st.function_errors, st.discarded_batches, st.records, st.cold_starts) == (1, 1, 1, 2)
    # The sleeping call never returned, so the recorder only logged the second record.
    assert numbers(esm.calls(fn)) == [[1]]
    assert "Task timed out after 1.00 seconds" in (esm.settings.state_dir / "logs" / f"{fn}.log").read_text()


def test_a_crashed_environment_is_replaced(esm: Esm) -> None:
    """AWS: when the runtime process exits ("Runtime exited with error"), the invocation fails and
    Lambda starts a new execution environment for the next one."""
    fn = esm.function("crash")
    esm.mapping(fn, BatchSize=1, MaximumRetryAttempts=0)
    esm.put(["crash", ""])
    runner = esm.drain()
    calls = esm.calls(fn)
    assert numbers(calls) == [[0], [1]]
    assert calls[0]["pid"] != calls[1]["pid"]
    st = runner.stats[runner.mappings[0].uuid]
    assert (st.function_errors, st.discarded_batches, st.records) == (1, 1, 1)
    assert "Runtime exited with error" in (esm.settings.state_dir / "logs" / f"{fn}.log").read_text()
