"""DynamoDB in the embedded stack: moto's tables, with two of DynamoDB's guarantees moto lacks.

- **Atomic writes.** moto's server is threaded and its item writes read, check and replace without
  a lock, so two concurrent conditional updates of one item could both pass their condition.
  DynamoDB applies each write (and each transaction) atomically: item writes are serialised here.
- **Transactions that cost what they touch.** moto backs up every table a transaction names by
  deep-copying the whole table once per action before running it (100 copies of the table for a
  100-action TransactWriteItems), so a transaction's cost grows with the table. Here a transaction
  saves only the items its actions touch and restores those if it is cancelled; the outcome
  (all actions applied, or none, with per-action cancellation reasons) is the same. Stream records
  of a cancelled transaction are not withdrawn (no DynamoDB stream is used by the pipeline).
- **Requests that cost what they do.** ``FastWrites`` sits in front of moto's app and answers an
  UpdateItem or TransactWriteItems whose every action is a flat ``SET name = :value`` / numeric
  ``ADD name :value`` list (planned once per expression string; moto parses and validates an
  UpdateExpression's syntax tree on every call, milliseconds of the server's CPU) with a simple
  condition (``attribute_not_exists(a)``, ``attribute_exists(a)``, ``a < :v`` and the other
  orderings and ``=``, joined by AND/OR/NOT and parentheses) on string or number attributes, when
  every condition holds: it checks all conditions first, then applies every action, under the write
  lock, straight to moto's tables. Anything else — another operation or parameter, an unused or
  missing placeholder, a failing condition, a type mismatch — is handed to moto untouched, which
  then answers exactly as it always does (cancellation reasons, validation errors).
"""

from __future__ import annotations

import copy
import functools
import io
import json
import os
import re
import threading
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

_LOCK = threading.RLock()
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_PLACEHOLDER = re.compile(r":[A-Za-z0-9_]+")
_CLAUSE = re.compile(r"\b(SET|ADD)\b", re.IGNORECASE)
_MAX_ITEM_BYTES = 390_000  # below moto's 400,000-byte check: near it, moto decides
_PLANS: dict[str, tuple[tuple[str, str, str], ...] | None] = {}


def patch_moto_dynamodb() -> None:
    """Install the serialised writes and the item-level transaction backup (idempotent)."""
    from moto.dynamodb.models import DynamoDBBackend

    if getattr(DynamoDBBackend, "_pipeline_patched", False):
        return
    for name in ("put_item", "update_item", "delete_item"):
        setattr(DynamoDBBackend, name, _serialised(getattr(DynamoDBBackend, name)))
    DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign]
    DynamoDBBackend._pipeline_patched = True  # type: ignore[attr-defined]


_SCALARS = {"S", "N", "B", "BOOL", "NULL"}


def _own(value: dict[str, Any]) -> dict[str, Any]:
    """An attribute value the item can keep: scalars as they are (immutable), lists, maps and
    sets copied (moto changes sets in place, and one placeholder may serve two attributes)."""
    if len(value) == 1 and next(iter(value)) in _SCALARS:
        return value
    return copy.deepcopy(value)


def _serialised(fn: Any) -> Any:
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return fn(*args, **kwargs)

    return call


class _Backup:
    """The items a transaction touched, as they were before it; ``restore`` puts them back."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self._saved: dict[tuple[str, Any, Any], tuple[Any, Any]] = {}

    def save(self, table_name: str, key: dict[str, Any]) -> None:
        table = self._backend.get_table(table_name)
        hash_value, range_value = self._backend.get_keys_value(table, key)
        ident = (table_name, hash_value, range_value)
        if ident not in self._saved:
            current = table.get_item(hash_value, range_value)
            self._saved[ident] = (table, copy.deepcopy(current) if current is not None else None)

    def restore(self) -> None:
        for (_, hash_value, range_value), (table, item) in self._saved.items():
            if range_value is None:
                if item is None:
                    table.items.pop(hash_value, None)
                else:
                    table.items[hash_value] = item
            elif item is None:
                table.items.get(hash_value, {}).pop(range_value, None)
            else:
                table.items[hash_value][range_value] = item


def _transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
    """moto 5.2's TransactWriteItems, with the item-level backup of the module docstring."""
    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.exceptions import (
        ConditionalCheckFailed,
        MockValidationException,
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )

    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    with _LOCK:
        backup = _Backup(self)
        targets: set[tuple[str, str]] = set()
        errors: list[tuple[str | None, str | None, dict[str, Any] | None]] = []
        for item in transact_items:
            original_item: dict[str, Any] | None = None
            if len(item) > 1:
                raise TransactWriteSingleOpException
            try:
                op_type, op = next(iter(item.items()))
                if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                    raise ValueError("Unsupported transaction operation")
                table_name = op["TableName"]
                condition = op.get("ConditionExpression")
                names = op.get("ExpressionAttributeNames")
                values = op.get("ExpressionAttributeValues")
                if op_type == "Put":
                    attrs = op["Item"]
                    table = self.get_table(table_name)
                    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                    if table.range_key_attr is not None:
                        key[table.range_key_attr] = attrs[table.range_key_attr]
                else:
                    key = op["Key"]
                ident = (str(table_name), str(dict(sorted(key.items()))))
                if ident in targets:
                    raise MultipleTransactionsException()
                targets.add(ident)

                current = self.get_item(table_name, key)
                passed = condition is None or get_filter_expression(condition, names, values).expr(current)
                if not passed:
                    if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                        original_item = current.to_json()["Attributes"]
                    raise ConditionalCheckFailed(item=original_item)
                if op_type != "ConditionCheck":
                    backup.save(table_name, key)
                if op_type == "Put":
                    self.put_item(
                        table_name,
                        op["Item"],
                        condition_expression=condition,
                        expression_attribute_names=names,
                        expression_attribute_values=values,
                    )
                elif op_type == "Delete":
                    self.delete_item(
                        table_name,
                        key,
                        condition_expression=condition,
                        expression_attribute_names=names,
                        expression_attribute_values=values,
                    )
                elif op_type == "Update":
                    self.update_item(
                        table_name,
                        key,
                        update_expression=op["UpdateExpression"],
                        condition_expression=condition,
                        expression_attribute_names=names,
                        expression_attribute_values=values,
                    )
                errors.append((None, None, None))
            except (MultipleTransactionsException, MockValidationException):
                backup.restore()
                raise
            except ConditionalCheckFailed as e:
                errors.append(("ConditionalCheckFailed", str(e.message), original_item))
            except Exception as e:  # reported per action, as DynamoDB's cancellation reasons are
                errors.append((type(e).__name__, str(e), original_item))
        if any(code is not None for code, _, _ in errors):
            backup.restore()
            raise TransactionCanceledException(errors)


def plan(expression: str) -> tuple[tuple[str, str, str], ...] | None:
    """``(action, attribute, placeholder)`` per action of a flat SET/ADD update expression, or
    None when the expression is anything else (moto's parser then handles it).

    >>> plan("ADD n :one SET latest = :p")
    (('ADD', 'n', ':one'), ('SET', 'latest', ':p'))
    >>> plan("SET a = a + :one") is None
    True
    """
    if expression in _PLANS:
        return _PLANS[expression]
    from moto.dynamodb.parsing.reserved_keywords import ReservedKeywords

    reserved = set(ReservedKeywords.get_reserved_keywords())
    parts = _CLAUSE.split(expression)
    actions: list[tuple[str, str, str]] = []
    result: tuple[tuple[str, str, str], ...] | None = None
    seen_clauses: set[str] = set()
    if parts and not parts[0].strip():
        ok = True
        for clause, body in zip(parts[1::2], parts[2::2], strict=True):
            clause = clause.upper()
            if clause in seen_clauses or not body.strip():
                ok = False
                break
            seen_clauses.add(clause)
            for action in body.split(","):
                tokens = action.replace("=", " = ").split()
                if clause == "SET" and len(tokens) == 3 and tokens[1] == "=":
                    name, value = tokens[0], tokens[2]
                elif clause == "ADD" and len(tokens) == 2:
                    name, value = tokens
                else:
                    ok = False
                    break
                if not _NAME.fullmatch(name) or not _PLACEHOLDER.fullmatch(value) or name.upper() in reserved:
                    ok = False
                    break
                actions.append((clause, name, value))
            if not ok:
                break
        names = [a[1] for a in actions]
        if ok and actions and len(set(names)) == len(names):
            result = tuple(actions)
    if len(_PLANS) < 1024:
        _PLANS[expression] = result
    return result


# -- the request-level fast path ------------------------------------------------------------------
_TARGET = "DynamoDB_20120810."
_UPDATE_KEYS = {
    "TableName",
    "Key",
    "UpdateExpression",
    "ConditionExpression",
    "ExpressionAttributeNames",
    "ExpressionAttributeValues",
    "ReturnValues",
    "ReturnConsumedCapacity",
    "ReturnItemCollectionMetrics",
    "ReturnValuesOnConditionCheckFailure",
}
_TOKEN = re.compile(r"\s*(<=|>=|<|>|=|\(|\)|,|[#:]?[A-Za-z0-9_]+)")
_CONDITIONS: dict[str, Any] = {}
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class _Unsupported(Exception):
    """The request is not one the fast path answers; moto will."""


def condition(expression: str) -> Any:
    """A condition expression as a nested tuple, or None outside the supported subset.

    >>> condition("attribute_not_exists(#p) OR #p < :first")
    ('or', ('not_exists', '#p'), ('cmp', '<', '#p', ':first'))
    >>> condition("size(a) > :n") is None
    True
    """
    if expression in _CONDITIONS:
        return _CONDITIONS[expression]
    tokens: list[str] = []
    pos = 0
    tree = None
    while pos < len(expression):
        m = _TOKEN.match(expression, pos)
        if m is None:
            if expression[pos:].strip():
                tokens = []
            break
        tokens.append(m.group(1))
        pos = m.end()
    if tokens:
        try:
            tree, rest = _disjunction(tokens, 0)
            if rest != len(tokens):
                tree = None
        except _Unsupported:
            tree = None
    if len(_CONDITIONS) < 1024:
        _CONDITIONS[expression] = tree
    return tree


_ACCEPTED: dict[tuple[Any, ...], bool] = {}


def accepted(expression: str, names: dict[str, str], values: dict[str, Any]) -> bool:
    """Whether moto's own parser accepts the condition (DynamoDB's syntax rules, such as no
    redundant parentheses, are moto's to apply); asked once per expression and placeholder set."""
    from moto.dynamodb.comparisons import create_condition_expression_parser

    key = (expression, tuple(sorted(names.items())), tuple(sorted(values)))
    if key not in _ACCEPTED:
        try:
            create_condition_expression_parser(expression, names, values).parse()
            ok = True
        except Exception:
            ok = False
        if len(_ACCEPTED) < 4096:
            _ACCEPTED[key] = ok
        return ok
    return _ACCEPTED[key]


def _disjunction(t: list[str], i: int) -> tuple[Any, int]:
    left, i = _conjunction(t, i)
    while i < len(t) and t[i].upper() == "OR":
        right, i = _conjunction(t, i + 1)
        left = ("or", left, right)
    return left, i


def _conjunction(t: list[str], i: int) -> tuple[Any, int]:
    left, i = _factor(t, i)
    while i < len(t) and t[i].upper() == "AND":
        right, i = _factor(t, i + 1)
        left = ("and", left, right)
    return left, i


def _factor(t: list[str], i: int) -> tuple[Any, int]:
    if i >= len(t):
        raise _Unsupported
    word = t[i]
    if word.upper() == "NOT":
        if i + 1 < len(t) and t[i + 1].upper() == "NOT":
            raise _Unsupported  # moto rejects a double NOT; let it answer
        inner, i = _factor(t, i + 1)
        return ("not", inner), i
    if word == "(":
        inner, i = _disjunction(t, i + 1)
        if i >= len(t) or t[i] != ")":
            raise _Unsupported
        return inner, i + 1
    if word in ("attribute_exists", "attribute_not_exists"):
        if t[i + 1 : i + 2] != ["("] or t[i + 3 : i + 4] != [")"] or not _is_name(t[i + 2]):
            raise _Unsupported
        return ("exists" if word == "attribute_exists" else "not_exists", t[i + 2]), i + 4
    if i + 2 < len(t) and t[i + 1] in _COMPARE and _is_operand(word) and _is_operand(t[i + 2]):
        return ("cmp", t[i + 1], word, t[i + 2]), i + 3
    raise _Unsupported


def _is_name(token: str) -> bool:
    if token.startswith("#"):
        return len(token) > 1
    from moto.dynamodb.parsing.reserved_keywords import ReservedKeywords

    return bool(_NAME.fullmatch(token)) and token.upper() not in ReservedKeywords.get_reserved_keywords()


def _is_operand(token: str) -> bool:
    return _is_name(token) or bool(_PLACEHOLDER.fullmatch(token))


def _names_in(tree: Any) -> Iterable[str]:
    if tree[0] in ("or", "and"):
        yield from _names_in(tree[1])
        yield from _names_in(tree[2])
    elif tree[0] == "not":
        yield from _names_in(tree[1])
    elif tree[0] == "cmp":
        yield tree[2]
        yield tree[3]
    else:
        yield tree[1]


def _holds(tree: Any, attrs: dict[str, Any], names: dict[str, str], values: dict[str, Any]) -> bool:
    kind = tree[0]
    if kind == "or":
        return _holds(tree[1], attrs, names, values) or _holds(tree[2], attrs, names, values)
    if kind == "and":
        return _holds(tree[1], attrs, names, values) and _holds(tree[2], attrs, names, values)
    if kind == "not":
        return not _holds(tree[1], attrs, names, values)
    if kind in ("exists", "not_exists"):
        return (names.get(tree[1], tree[1]) in attrs) == (kind == "exists")
    a, b = _operand(tree[2], attrs, names, values), _operand(tree[3], attrs, names, values)
    if a is None or b is None or a[0] != b[0]:
        raise _Unsupported  # a missing attribute or mixed types: moto's comparison decides
    return _COMPARE[tree[1]](a[1], b[1])


def _operand(token: str, attrs: dict[str, Any], names: dict[str, str], values: dict[str, Any]) -> Any:
    if token.startswith(":"):
        typed = values[token]
    else:
        held = attrs.get(names.get(token, token))
        if held is None:
            return None
        typed = {held.type: held.value}
    if len(typed) != 1:
        raise _Unsupported
    kind, value = next(iter(typed.items()))
    if kind == "S" and isinstance(value, str):
        return ("S", value)
    if kind == "N" and isinstance(value, str):
        return ("N", Decimal(value))
    raise _Unsupported


class FastWrites:
    """WSGI middleware: the planned updates of the module docstring, answered without moto's
    request parsing, expression parsers and response serialiser; everything else passed on."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.answered = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        op = target[len(_TARGET) :] if target.startswith(_TARGET) else ""
        if op not in ("UpdateItem", "TransactWriteItems"):
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else environ["wsgi.input"].read()
        try:
            body = json.loads(raw)
            backend = _backend(environ)
            if op == "UpdateItem":
                actions = [_action(backend, body, top_level=True)]
            else:
                actions = _transaction(backend, body)
            with _LOCK:
                _commit(actions)
        except (_Unsupported, ValueError, KeyError, TypeError, AttributeError):
            environ["wsgi.input"] = io.BytesIO(raw)
            environ["CONTENT_LENGTH"] = str(len(raw))
            return self.app(environ, start_response)
        self.answered += 1
        start_response("200 OK", [("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", "2")])
        return [b"{}"]


def _backend(environ: dict[str, Any]) -> Any:
    from moto.dynamodb.models import dynamodb_backends
    from moto.iam.models import get_account_id_from

    auth = str(environ.get("HTTP_AUTHORIZATION", ""))
    m = re.search(r"Credential=([^/]+)/[^/]+/([^/]+)/", auth)
    if m is None:
        raise _Unsupported
    account = os.environ.get("MOTO_ACCOUNT_ID") or environ.get("HTTP_X_MOTO_ACCOUNT_ID")
    return dynamodb_backends[account or get_account_id_from(m.group(1))][m.group(2)]


def _transaction(backend: Any, body: dict[str, Any]) -> list[Any]:
    items = body.get("TransactItems")
    # ClientRequestToken: moto keeps no idempotency record of tokens either.
    known = {"TransactItems", "ReturnConsumedCapacity", "ReturnItemCollectionMetrics", "ClientRequestToken"}
    if set(body) - known:
        raise _Unsupported
    if not isinstance(items, list) or not 0 < len(items) <= 100:
        raise _Unsupported
    if any(set(i) != {"Update"} for i in items):
        raise _Unsupported
    actions = [_action(backend, i["Update"], top_level=False) for i in items]
    if len({(id(a[0]), a[1], a[2]) for a in actions}) != len(actions):
        raise _Unsupported  # two actions on one item: moto reports the error
    return actions


def _action(backend: Any, req: dict[str, Any], top_level: bool) -> Any:
    """(table, hash, range, actions, condition tree, names, values), or _Unsupported."""
    if set(req) - _UPDATE_KEYS:
        raise _Unsupported
    if top_level and req.get("ReturnValues", "NONE") != "NONE":
        raise _Unsupported
    if not top_level and "ReturnValues" in req:
        raise _Unsupported
    if req.get("ReturnConsumedCapacity", "NONE") != "NONE":
        raise _Unsupported
    if req.get("ReturnItemCollectionMetrics", "NONE") != "NONE":
        raise _Unsupported
    table = backend.tables.get(req["TableName"])
    if table is None or table.stream_shard is not None:
        raise _Unsupported
    actions = plan(req["UpdateExpression"])
    if actions is None:
        raise _Unsupported
    key = req["Key"]
    wanted = {table.hash_key_attr} | ({table.range_key_attr} if table.range_key_attr else set())
    if set(key) != wanted or any(n in wanted for _, n, _ in actions):
        raise _Unsupported
    for attr in table.attr:
        name = attr["AttributeName"]
        kind = attr["AttributeType"]
        if name in key and (set(key[name]) != {kind} or key[name][kind] == ""):
            raise _Unsupported
    values = req.get("ExpressionAttributeValues") or {}
    names = req.get("ExpressionAttributeNames") or {}
    tree = None
    used_values = {p for _, _, p in actions}
    used_names: set[str] = set()
    if "ConditionExpression" in req:
        tree = condition(req["ConditionExpression"])
        if tree is None or not accepted(req["ConditionExpression"], names, values):
            raise _Unsupported
        for token in _names_in(tree):
            (used_values if token.startswith(":") else used_names).add(token)
    if used_values != set(values) or {n for n in used_names if n.startswith("#")} != set(names):
        raise _Unsupported
    if any(not isinstance(values[p], dict) or len(values[p]) != 1 for p in used_values):
        raise _Unsupported
    if any(op == "ADD" and "N" not in values[p] for op, _, p in actions):
        raise _Unsupported
    hash_value, range_value = backend.get_keys_value(table, key)
    return table, hash_value, range_value, actions, tree, names, values


def _commit(actions: list[Any]) -> None:
    """Check every condition, then apply every action; _Unsupported before any change otherwise."""
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict

    staged = []
    for table, hash_value, range_value, plan_, tree, names, values in actions:
        item = table.get_item(hash_value, range_value)
        attrs = item.attrs if item is not None else {}
        if tree is not None and not _holds(tree, attrs, names, values):
            raise _Unsupported  # moto evaluates it again and answers with the failure
        new = dict(attrs)
        for op, name, placeholder in plan_:
            value = DynamoType(_own(values[placeholder]))
            if op == "ADD" and name in new:
                if not new[name].is_number():
                    raise _Unsupported
                value = new[name] + value
            new[name] = value
        if item is None:
            new[table.hash_key_attr] = hash_value
            if range_value is not None:
                new[table.range_key_attr] = range_value
        size = sum(len(k.encode()) + v.size() for k, v in new.items())
        if size > _MAX_ITEM_BYTES:
            raise _Unsupported
        staged.append((table, hash_value, range_value, item, new))
    for table, hash_value, range_value, item, new in staged:
        if item is not None:
            item.attrs = LimitedSizeDict(new)
        else:
            fresh = Item(hash_value, range_value, {})
            fresh.attrs = LimitedSizeDict(new)
            if range_value is not None:
                table.items[hash_value][range_value] = fresh
            else:
                table.items[hash_value] = fresh
