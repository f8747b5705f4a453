"""FunctionResponseTypes = ReportBatchItemFailures."""

from __future__ import annotations

import json

from tests.pipeline.esm.conftest import Esm, numbers

REPORT = ["ReportBatchItemFailures"]


def test_the_lowest_reported_sequence_number_is_the_checkpoint(esm: Esm) -> None:
    """AWS: "If the batchItemFailures array contains multiple items, Lambda uses the record with the
    lowest sequence number as the checkpoint. Lambda then retries all records starting from that
    checkpoint." (services-kinesis-batchfailurereporting)."""
    fn = esm.function("lowest")
    esm.mapping(fn, BatchSize=8, FunctionResponseTypes=REPORT)
    esm.put(["", "", "", "partial_once", "", "partial_once", "", ""])
    runner = esm.drain()
    assert numbers(esm.calls(fn)) == [[0, 1, 2, 3, 4, 5, 6, 7], [3, 4, 5, 6, 7]]
    assert runner.stats[runner.mappings[0].uuid].records == 8


def test_empty_and_null_lists_and_responses_are_complete_successes(esm: Esm) -> None:
    """AWS: "Lambda treats a batch as a complete success if your function returns any of the
    following: An empty batchItemFailure list, A null batchItemFailure list, An empty EventResponse,
    A null EventResponse"."""
    responses = {
        "empty-list": {"batchItemFailures": []},
        "null-list": {"batchItemFailures": None},
        "empty-response": {},
        "null-response": None,
    }
    fns = [esm.function(name, env={"RESPONSE": json.dumps(r)}) for name, r in responses.items()]
    for fn in fns:
        esm.mapping(fn, BatchSize=3, FunctionResponseTypes=REPORT, MaximumRetryAttempts=1)
    esm.put(count=3)
    esm.drain()
    assert {fn: numbers(esm.calls(fn)) for fn in fns} == {fn: [[0, 1, 2]] for fn in fns}


def test_malformed_responses_fail_the_whole_batch(esm: Esm) -> None:
    """AWS: "Lambda treats a batch as a complete failure if your function returns any of the
    following: An empty string itemIdentifier, A null itemIdentifier, An itemIdentifier with a bad
    key name, An itemIdentifier value with a sequence number that doesn't exist"."""
    responses = {
        "empty-id": {"batchItemFailures": [{"itemIdentifier": ""}]},
        "null-id": {"batchItemFailures": [{"itemIdentifier": None}]},
        "bad-key": {"batchItemFailures": [{"itemId": "1"}]},
        "unknown-seq": {"batchItemFailures": [{"itemIdentifier": "999999"}]},
    }
    fns = [esm.function(name, env={"RESPONSE": json.dumps(r)}) for name, r in responses.items()]
    for fn in fns:
        esm.mapping(fn, BatchSize=2, FunctionResponseTypes=REPORT, MaximumRetryAttempts=1)
    esm.put(count=2)
    runner = esm.drain()
    assert {fn: numbers(esm.calls(fn)) for fn in fns} == {fn: [[0, 1], [0, 1]] for fn in fns}
    assert all(runner.stats[m.uuid].discarded_batches == 1 for m in runner.mappings)


def test_reports_are_ignored_unless_the_mapping_turns_them_on(esm: Esm) -> None:
    """AWS: "Even when your function code returns partial batch failure responses, these responses
    will not be processed by Lambda unless the ReportBatchItemFailures feature is explicitly turned
    on for your event source mapping."."""
    fn = esm.function("not-on")
    esm.mapping(fn, BatchSize=4)
    esm.put(["", "partial", "", ""])
    esm.drain()
    assert numbers(esm.calls(fn)) == [[0, 1, 2, 3]]
