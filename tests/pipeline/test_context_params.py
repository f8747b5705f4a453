"""Compiled operation context parameters: the same values as jmespath's search, in the client too."""

from __future__ import annotations

from typing import Any

import botocore.session
import jmespath
import jmespath.exceptions
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.context_params import compile_path, install


def _botocore_paths() -> list[str]:
    session = botocore.session.get_session()
    paths = set()
    for service in ("dynamodb", "s3", "kinesis", "lambda", "sqs"):
        model = session.get_service_model(service)
        for name in model.operation_names:
            params = model.operation_model(name).operation_context_parameters
            paths.update(params[p]["path"] for p in params)
    return sorted(paths)


PATHS = _botocore_paths() + [
    "a.b[0]",
    "a[-1].c",
    "a[*].b[]",
    "a[]",
    "a.[b, c]",
    "@",
    "keys(a)",
    "length(a)",
    "a[?b == 'x'].c",  # a filter: not compiled, jmespath's own search
    "a[1:2]",  # a slice: the same
    "`[1, 2]`",
]

NAMES = st.sampled_from(
    ["TransactItems", "ConditionCheck", "Put", "Delete", "Update", "Get", "TableName", "RequestItems"]
    + ["TableCreationParameters", "a", "b", "c"]
)
values = st.recursive(
    st.none() | st.text(max_size=3) | st.integers(-3, 3) | st.booleans(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(NAMES, inner, max_size=4),
    max_leaves=30,
)


def _outcome(fn: Any, value: Any) -> Any:
    try:
        return ("value", fn(value))
    except jmespath.exceptions.JMESPathError as exc:
        return ("error", type(exc))


def test_botocore_has_the_paths_the_state_writer_pays_for() -> None:
    assert any(p.startswith("TransactItems[*]") for p in PATHS)


@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=150, deadline=None)
@given(value=values)
def test_a_compiled_path_gives_what_jmespath_gives(path: str, value: Any) -> None:
    assert _outcome(compile_path(path), value) == _outcome(lambda v: jmespath.search(path, v), value)


def test_transaction_table_names_in_action_order() -> None:
    items = [{"Update": {"TableName": f"t{i}"}} for i in range(3)] + [{"Put": {"TableName": "p"}}]
    path = "TransactItems[*].[ConditionCheck.TableName, Put.TableName, Delete.TableName, Update.TableName][]"
    assert compile_path(path)({"TransactItems": items}) == jmespath.search(path, {"TransactItems": items})
    assert compile_path(path)({"TransactItems": items}) == ["t0", "t1", "t2", "p"]


def test_an_installed_client_resolves_the_parameters_botocore_resolves() -> None:
    session = botocore.session.get_session()
    kwargs: dict[str, Any] = {
        "region_name": "us-east-1",
        "endpoint_url": "http://127.0.0.1:9",
        "aws_access_key_id": "x",
        "aws_secret_access_key": "x",
    }
    stock, fast = session.create_client("dynamodb", **kwargs), session.create_client("dynamodb", **kwargs)
    assert install(fast)
    args = {"TransactItems": [{"Update": {"TableName": "a"}}, {"ConditionCheck": {"TableName": "b"}}]}
    for op, call_args in (("TransactWriteItems", args), ("BatchGetItem", {"RequestItems": {"x": {}}})):
        model = stock.meta.service_model.operation_model(op)
        got = fast._ruleset_resolver._get_provider_params(model, call_args, {})
        assert got == stock._ruleset_resolver._get_provider_params(model, call_args, {})
        assert got.get("ResourceArnList")
    model = stock.meta.service_model.operation_model("PutItem")
    assert (
        fast._ruleset_resolver._resolve_param_as_operation_context_param("ResourceArnList", model, {}) is None
    )
