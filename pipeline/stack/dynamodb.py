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
- **Updates that cost what they say.** moto parses and validates an UpdateExpression's syntax tree
  (twice for a new item) on every call, which makes an UpdateItem cost milliseconds of the
  server's CPU. The state writer's updates are flat ``SET name = :value`` and numeric
  ``ADD name :value`` lists; those are planned once per expression string and applied directly to
  moto's item. Any other expression, a missing placeholder, a reserved word, a non-number ADD, a
  key attribute, ``Expected``/``AttributeUpdates``, or a table with a stream takes moto's own
  path, so every error DynamoDB would raise is still raised by moto.
"""

from __future__ import annotations

import copy
import functools
import re
import threading
from typing import Any

_LOCK = threading.RLock()
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_PLACEHOLDER = re.compile(r":[A-Za-z0-9_]+")
_CLAUSE = re.compile(r"\b(SET|ADD)\b", re.IGNORECASE)
_MAX_ITEM_BYTES = 400 * 1024
_PLANS: dict[str, tuple[tuple[str, str, str], ...] | None] = {}


def patch_moto_dynamodb() -> None:
    """Install the serialised writes and the item-level transaction backup (idempotent)."""
    from moto.dynamodb.models import DynamoDBBackend

    if getattr(DynamoDBBackend, "_pipeline_patched", False):
        return
    for name in ("put_item", "delete_item"):
        setattr(DynamoDBBackend, name, _serialised(getattr(DynamoDBBackend, name)))
    DynamoDBBackend.update_item = _serialised(_fast_update(DynamoDBBackend.update_item))  # type: ignore[method-assign]
    DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign]
    DynamoDBBackend._pipeline_patched = True  # type: ignore[attr-defined]


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


def _fast_update(original: Any) -> Any:
    """moto's ``update_item``, with the planned path of the module docstring in front."""

    @functools.wraps(original)
    def update_item(
        self: Any,
        table_name: str,
        key: dict[str, dict[str, Any]],
        update_expression: str,
        expression_attribute_names: dict[str, Any],
        expression_attribute_values: dict[str, Any],
        attribute_updates: dict[str, Any] | None = None,
        expected: dict[str, Any] | None = None,
        condition_expression: str | None = None,
        return_values_on_condition_check_failure: str | None = None,
    ) -> Any:
        args = (table_name, key, update_expression, expression_attribute_names, expression_attribute_values)
        kwargs = {
            "attribute_updates": attribute_updates,
            "expected": expected,
            "condition_expression": condition_expression,
            "return_values_on_condition_check_failure": return_values_on_condition_check_failure,
        }
        actions = plan(update_expression) if update_expression else None
        if actions is None or attribute_updates or expected:
            return original(self, *args, **kwargs)
        table = self.get_table(table_name)
        values = expression_attribute_values or {}
        keys = {table.hash_key_attr, table.range_key_attr}
        if table.stream_shard is not None or any(
            name in keys or placeholder not in values for _, name, placeholder in actions
        ):
            return original(self, *args, **kwargs)
        if any(op == "ADD" and next(iter(values[p]), None) != "N" for op, _, p in actions):
            return original(self, *args, **kwargs)
        return _apply(self, table, key, actions, values, original, args, kwargs)

    return update_item


def _apply(
    backend: Any,
    table: Any,
    key: dict[str, Any],
    actions: tuple[tuple[str, str, str], ...],
    values: dict[str, Any],
    original: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    from moto.dynamodb.comparisons import create_condition_expression_parser
    from moto.dynamodb.exceptions import ConditionalCheckFailed, ItemSizeToUpdateTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType

    hash_value, range_value = backend.get_keys_value(table, key)
    item = table.get_item(hash_value, range_value)
    if item is not None and any(
        op == "ADD" and name in item.attrs and not item.attrs[name].is_number() for op, name, _ in actions
    ):
        return original(backend, *args, **kwargs)  # moto raises the type mismatch
    condition = kwargs["condition_expression"]
    if condition:
        names = args[3]
        if not create_condition_expression_parser(condition, names, values).parse().expr(item):
            if kwargs["return_values_on_condition_check_failure"] == "ALL_OLD" and item is not None:
                raise ConditionalCheckFailed(item=item.to_json()["Attributes"])
            raise ConditionalCheckFailed
    if item is None:
        data: dict[str, Any] = {table.hash_key_attr: {hash_value.type: hash_value.value}}
        if range_value is not None:
            data[table.range_key_attr] = {range_value.type: range_value.value}
        for _, name, placeholder in actions:
            data[name] = copy.deepcopy(values[placeholder])
        table.put_item(data)
        return table.get_item(hash_value, range_value)
    before = dict(item.attrs)
    for op, name, placeholder in actions:
        value = DynamoType(copy.deepcopy(values[placeholder]))
        if op == "ADD" and name in item.attrs:
            value = item.attrs[name] + value
        item.attrs[name] = value
    if item.size() > _MAX_ITEM_BYTES:
        item.attrs = before
        raise ItemSizeToUpdateTooLarge()
    return item
