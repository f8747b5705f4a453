"""The embedded stack's DynamoDB: atomic conditional writes, item-level transaction rollback, and
the planned update path, which must behave exactly as moto's general one."""

from __future__ import annotations

import functools
import threading
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pipeline.stack import dynamodb as stack_ddb

UPDATE = "ADD events :e, paid :p SET last_position = :last, kind = :k"
CONDITION = "attribute_not_exists(last_position) OR last_position < :first"


def _client(endpoint: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(max_pool_connections=16, retries={"max_attempts": 1}),
    )


def _table(ddb: Any, name: str) -> None:
    ddb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )


def _update(table: str, key: str, first: int, events: int = 1) -> dict[str, Any]:
    return {
        "TableName": table,
        "Key": {"id": {"S": key}},
        "UpdateExpression": UPDATE,
        "ConditionExpression": CONDITION,
        "ExpressionAttributeValues": {
            ":e": {"N": str(events)},
            ":p": {"N": "2.5"},
            ":last": {"S": f"{first + 1:05d}"},
            ":first": {"S": f"{first:05d}"},
            ":k": {"S": "created"},
        },
    }


def test_plan_accepts_flat_set_and_add_only() -> None:
    assert stack_ddb.plan(UPDATE) == (
        ("ADD", "events", ":e"),
        ("ADD", "paid", ":p"),
        ("SET", "last_position", ":last"),
        ("SET", "kind", ":k"),
    )
    for other in (
        "SET a = a + :one",
        "SET #n = :v",
        "REMOVE a",
        "SET a = :v, a = :w",
        "SET a = :v SET b = :w",
        "SET name = :v",  # a reserved word: moto raises DynamoDB's error
        "ADD a :v DELETE s :x",
        "SET a[0] = :v",
        "SET a.b = :v",
        "SET a = if_not_exists(a, :v)",
    ):
        assert stack_ddb.plan(other) is None, other


def test_concurrent_conditional_updates_of_one_item_apply_once(unlimited_stack: str) -> None:
    """DynamoDB: "a conditional write succeeds only if the item attributes meet one or more
    expected conditions" — evaluated atomically with the write, so of many writers racing with the
    same condition exactly one succeeds."""
    ddb = _client(unlimited_stack)
    _table(ddb, "race")
    wins: list[int] = []
    lock = threading.Lock()

    def writer(round_: int) -> None:
        try:
            ddb.update_item(**_update("race", f"k{round_}", 10))
            with lock:
                wins.append(round_)
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "ConditionalCheckFailedException"

    for round_ in range(20):
        threads = [threading.Thread(target=writer, args=(round_,)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(wins) == list(range(20))
    item = ddb.get_item(TableName="race", Key={"id": {"S": "k0"}})["Item"]
    assert item["events"] == {"N": "1"}


def test_cancelled_transaction_leaves_every_item_as_it_was(unlimited_stack: str) -> None:
    """DynamoDB: TransactWriteItems is "an all-or-nothing operation": when one action's condition
    fails, none of the actions is applied, and the cancellation reason is given per action."""
    ddb = _client(unlimited_stack)
    _table(ddb, "tx")
    for i in range(50):
        ddb.update_item(**_update("tx", f"old{i}", 0, events=5))
    before = {i["id"]["S"]: i for i in ddb.scan(TableName="tx")["Items"]}
    actions = [{"Update": _update("tx", f"old{i}", 2)} for i in range(3)]
    actions += [{"Update": _update("tx", f"new{i}", 2)} for i in range(3)]
    actions.append({"Update": _update("tx", "old7", 0)})  # fails: old7 is already at 00001
    with pytest.raises(ClientError) as info:
        ddb.transact_write_items(TransactItems=actions)
    assert info.value.response["Error"]["Code"] == "TransactionCanceledException"
    reasons = [r["Code"] for r in info.value.response["CancellationReasons"]]
    assert reasons == ["None"] * 6 + ["ConditionalCheckFailed"]
    after = {i["id"]["S"]: i for i in ddb.scan(TableName="tx")["Items"]}
    assert after == before
    ddb.transact_write_items(TransactItems=actions[:-1])
    after = {i["id"]["S"]: i for i in ddb.scan(TableName="tx")["Items"]}
    assert after["old0"]["events"] == {"N": "6"} and after["new0"]["events"] == {"N": "1"}
    assert Decimal(after["old0"]["paid"]["N"]) == 5


def test_planned_path_still_raises_what_dynamodb_raises(unlimited_stack: str) -> None:
    ddb = _client(unlimited_stack)
    _table(ddb, "errors")
    ddb.put_item(TableName="errors", Item={"id": {"S": "a"}, "events": {"S": "not a number"}})
    with pytest.raises(ClientError) as info:
        ddb.update_item(**_update("errors", "a", 1))
    assert info.value.response["Error"]["Code"] == "ValidationException"
    bad = _update("errors", "b", 1)
    del bad["ExpressionAttributeValues"][":k"]
    with pytest.raises(ClientError) as info:
        ddb.update_item(**bad)
    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert "Item" not in ddb.get_item(TableName="errors", Key={"id": {"S": "b"}})


# -- the planned path against moto's own, in process ----------------------------------------------
_numbers = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.decimals(-1000, 1000, places=3, allow_nan=False, allow_infinity=False).map(
        lambda d: format(d.normalize(), "f") if d != 0 else "0"
    ),
)
_values = st.one_of(
    _numbers.map(lambda n: {"N": n}),
    st.text(min_size=1, max_size=8).map(lambda s: {"S": s}),
    st.lists(st.text(min_size=1, max_size=3), min_size=1, max_size=3, unique=True).map(lambda v: {"SS": v}),
)
_ops = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),  # key
        st.lists(
            st.tuples(st.sampled_from(["SET", "ADD"]), st.sampled_from(["n1", "n2", "s1", "pos"]), _values),
            min_size=1,
            max_size=4,
            unique_by=lambda t: t[1],
        ),
        st.one_of(st.none(), _numbers),  # condition: pos absent or below this number
    ),
    min_size=1,
    max_size=12,
)


def _outcome(client: Any, table: str, key: str, actions: list[Any], below: str | None) -> tuple[int, str]:
    clauses: dict[str, list[str]] = {"SET": [], "ADD": []}
    values: dict[str, Any] = {}
    for i, (op, name, value) in enumerate(actions):
        clauses[op].append(f"{name} = :v{i}" if op == "SET" else f"{name} :v{i}")
        values[f":v{i}"] = value
    request: dict[str, Any] = {
        "TableName": table,
        "Key": {"id": {"S": key}},
        "UpdateExpression": " ".join(f"{op} {', '.join(parts)}" for op, parts in clauses.items() if parts),
        "ExpressionAttributeValues": values,
    }
    if below is not None:
        request["ConditionExpression"] = "attribute_not_exists(pos) OR pos < :below"
        values[":below"] = {"N": below}
    try:
        return _post(client, "UpdateItem", request)
    except TypeError as exc:  # moto's own comparison of a string with a number; the test client re-raises
        return 500, type(exc).__name__


def _item(client: Any, table: str, key: str) -> Any:
    import json

    r = client.post(
        "/",
        data=json.dumps({"TableName": table, "Key": {"id": {"S": key}}}),
        headers={"X-Amz-Target": "DynamoDB_20120810.GetItem", "Authorization": _AUTH},
        content_type="application/x-amz-json-1.0",
    )
    item = json.loads(r.get_data()).get("Item")
    return item and _numeric({"Attributes": item})


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ops)
def test_planned_updates_equal_motos(ops: list[Any]) -> None:
    """Flat SET/ADD updates of numbers, strings and string sets, with and without a condition:
    the same answers and the same items behind the fast path as from moto alone."""

    clients = []
    for fast in (True, False):
        client, _ = _wsgi(fast)
        table = _new_table(client, "plan")
        clients.append((client, table))
    (ours, ours_table), (theirs, theirs_table) = clients
    for key, actions, below in ops:
        a = _outcome(ours, ours_table, key, actions, below)
        b = _outcome(theirs, theirs_table, key, actions, below)
        assert a == b, (key, actions, below)
    for key in ("a", "b", "c"):
        assert _item(ours, ours_table, key) == _item(theirs, theirs_table, key)


def _numeric(doc: dict[str, Any]) -> dict[str, Any]:
    """Numbers compared by value (moto writes 1.50 where the planned path writes 1.5)."""
    out = {}
    for name, value in doc["Attributes"].items():
        if "N" in value:
            out[name] = {"N": Decimal(value["N"])}
        elif "SS" in value:
            out[name] = {"SS": sorted(value["SS"])}
        else:
            out[name] = value
    return out


# -- the request-level fast path against moto's answers -------------------------------------------
_conditions = st.recursive(
    st.one_of(
        st.sampled_from(["attribute_exists", "attribute_not_exists"]).flatmap(
            lambda f: st.sampled_from(["n1", "s1", "#p", "missing"]).map(lambda a: f"{f}({a})")
        ),
        st.tuples(
            st.sampled_from(["n1", "#p", ":n", "s1", ":s"]),
            st.sampled_from(["=", "<", "<=", ">", ">="]),
            st.sampled_from(["n1", ":n", "s1", ":s", "#p"]),
        ).map(" ".join),
    ),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["AND", "OR"]), inner).map(" ".join),
        inner.map(lambda c: f"NOT {c}"),
        inner.map(lambda c: f"({c})"),
    ),
    max_leaves=5,
)


@settings(max_examples=200, deadline=None)
@given(
    _conditions,
    st.fixed_dictionaries(
        {},
        optional={"n1": _numbers.map(lambda n: {"N": n}), "s1": st.text(max_size=4).map(lambda s: {"S": s})},
    ),
    st.fixed_dictionaries(
        {":n": _numbers.map(lambda n: {"N": n}), ":s": st.text(max_size=4).map(lambda s: {"S": s})}
    ),
    st.one_of(st.none(), _numbers.map(lambda n: {"N": n})),
)
def test_fast_conditions_evaluate_as_motos(
    expression: str, attrs: dict[str, Any], values: dict[str, Any], position: Any
) -> None:
    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    if position is not None:
        attrs = dict(attrs, position=position)
    item = Item(DynamoType({"S": "k"}), None, dict(attrs, id={"S": "k"}))
    names = {"#p": "position"}
    tree = stack_ddb.condition(expression)
    assume(tree is not None)  # "NOT NOT", which moto rejects, is left to moto
    try:
        op = get_filter_expression(expression, names, values)
    except Exception:  # DynamoDB's syntax rules (redundant parentheses, ...): moto answers those
        assert not stack_ddb.accepted(expression, names, values)
        return
    assert stack_ddb.accepted(expression, names, values)
    try:
        ours = stack_ddb._holds(tree, item.attrs, names, values)
    except stack_ddb._Unsupported:
        return  # a missing attribute compared, or mixed types: moto decides
    assert ours == op.expr(item), (expression, attrs, values)


def test_conditions_outside_the_subset_go_to_moto() -> None:
    for supported in (CONDITION, "attribute_exists(a) AND NOT (a >= :v OR b = :w)", "#p <= :p"):
        assert stack_ddb.condition(supported) is not None, supported
    for other in (
        "begins_with(a, :v)",
        "a <> :v",
        "a BETWEEN :x AND :y",
        "a IN (:x, :y)",
        "size(a) < :v",
        "attribute_type(a, :t)",
        "a.b < :v",
        "a[0] < :v",
        "name < :v",
        "(a < :v",
        "a < :v)",
        "a <",
    ):
        assert stack_ddb.condition(other) is None, other


@functools.lru_cache(maxsize=2)
def _wsgi(fast: bool) -> tuple[Any, Any]:
    """A client of the stack's app, and its fast path; without it (moto alone) unless ``fast``."""
    from werkzeug.test import Client

    from pipeline.stack.server import build_app

    app = build_app(limits=False)
    front = app
    while not isinstance(front, stack_ddb.FastWrites):
        front = front.app
    return (Client(app), front) if fast else (Client(front.app), None)


def _new_table(client: Any, prefix: str) -> str:
    """A fresh table (hash key ``id``) on the shared test app; its name."""
    import uuid

    table = f"{prefix}-{uuid.uuid4().hex[:8]}"
    _post(
        client,
        "CreateTable",
        {
            "TableName": table,
            "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
        },
    )
    return table


_AUTH = (
    "AWS4-HMAC-SHA256 Credential=x/20261127/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0"
)


def _post(client: Any, op: str, body: dict[str, Any]) -> tuple[int, str]:
    import json

    r = client.post(
        "/",
        data=json.dumps(body),
        headers={"X-Amz-Target": f"DynamoDB_20120810.{op}", "Authorization": _AUTH},
        content_type="application/x-amz-json-1.0",
    )
    answer = json.loads(r.get_data() or b"{}")
    return r.status_code, str(answer.get("__type", "")).rsplit("#", 1)[-1]


_requests = st.lists(
    st.tuples(
        st.sampled_from(["update", "transact"]),
        st.lists(
            st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 6), st.integers(-5, 5)),
            min_size=1,
            max_size=4,
        ),
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_requests)
def test_fast_path_answers_and_stores_what_moto_does(requests: list[Any]) -> None:
    """Same requests to moto alone and to moto behind the fast path: same status, same error
    type, same items — and the fast path answered the requests whose conditions all held."""
    import json

    outcomes = []
    answered = 0
    for fast in (True, False):
        client, front = _wsgi(fast)
        start = front.answered if front is not None else 0
        table = _new_table(client, "eq")
        answers = []
        for kind, actions in requests:
            updates = [_update(table, key, first, events) for key, first, events in actions]
            if kind == "update":
                answers += [_post(client, "UpdateItem", u) for u in updates]
            else:
                answers.append(
                    _post(client, "TransactWriteItems", {"TransactItems": [{"Update": u} for u in updates]})
                )
        if front is not None:
            answered = front.answered - start
        scan = client.post(
            "/",
            data=json.dumps({"TableName": table}),
            headers={"X-Amz-Target": "DynamoDB_20120810.Scan", "Authorization": _AUTH},
            content_type="application/x-amz-json-1.0",
        )
        items = sorted(
            json.dumps(_numeric({"Attributes": i}), sort_keys=True, default=str)
            for i in json.loads(scan.get_data())["Items"]
        )
        outcomes.append((answers, items))
    assert outcomes[0] == outcomes[1]
    answers = outcomes[0][0]
    assert answered <= sum(1 for code, _ in answers if code == 200)
    if answers[0][0] == 200:  # the first request on an empty table: no condition can fail
        assert answered >= 1
