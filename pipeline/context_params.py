"""Operation context parameters of botocore's endpoint rules, without jmespath's tree walk per call.

Before every call, botocore's endpoint resolver evaluates each operation context parameter of the
service's rules: for DynamoDB's TransactWriteItems that is ``ResourceArnList``,
``TransactItems[*].[ConditionCheck.TableName, Put.TableName, Delete.TableName,
Update.TableName][]``, searched by jmespath's tree-walking interpreter over the whole request.
For a 100-action transaction that walk cost the state writer more client CPU than serialising and
signing the request. ``compile_path`` turns the expression jmespath parsed into nested Python
closures that compute the same value (``tests/pipeline/test_context_params.py`` compares them with
``jmespath.search``); expressions with a node type outside the handled subset keep jmespath's
own search. ``install`` puts the compiled paths in a client's endpoint resolver.

Example:
    >>> compile_path("TransactItems[*].[Put.TableName, Update.TableName][]")(
    ...     {"TransactItems": [{"Update": {"TableName": "t"}}, {"Put": {"TableName": "u"}}]})
    ['t', 'u']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jmespath
import jmespath.functions

Path = Callable[[Any], Any]

_FUNCTIONS = jmespath.functions.Functions()


class _Unsupported(Exception):
    pass


def compile_path(expression: str) -> Path:
    """A function ``value -> jmespath.search(expression, value)``."""
    parsed = jmespath.compile(expression)
    try:
        return _compile(parsed.parsed)
    except _Unsupported:
        return parsed.search


def _compile(node: dict[str, Any]) -> Path:
    kind = node["type"]
    children = [c for c in node.get("children", []) if isinstance(c, dict)]
    if kind == "field":
        return _field(node["value"])
    if kind in ("identity", "current"):
        return _identity
    if kind in ("subexpression", "index_expression", "pipe"):
        return _chain([_compile(c) for c in children])
    if kind == "projection":
        return _projection(_compile(children[0]), _compile(children[1]))
    if kind == "flatten":
        return _flatten(_compile(children[0]))
    if kind == "multi_select_list":
        return _multi_select([_compile(c) for c in children])
    if kind == "index":
        return _index(node["value"])
    if kind == "literal":
        value = node["value"]
        return lambda _: value
    if kind == "function_expression":
        return _function(node["value"], [_compile(c) for c in children])
    raise _Unsupported(kind)


def _identity(value: Any) -> Any:
    return value


def _field(name: str) -> Path:
    def field(value: Any) -> Any:
        try:
            return value.get(name)
        except AttributeError:
            return None

    return field


def _chain(parts: list[Path]) -> Path:
    def chain(value: Any) -> Any:
        for part in parts:
            value = part(value)
        return value

    return chain


def _projection(base: Path, each: Path) -> Path:
    def projection(value: Any) -> Any:
        items = base(value)
        if not isinstance(items, list):
            return None
        out = []
        for item in items:
            got = each(item)
            if got is not None:
                out.append(got)
        return out

    return projection


def _flatten(base: Path) -> Path:
    def flatten(value: Any) -> Any:
        items = base(value)
        if not isinstance(items, list):
            return None
        out: list[Any] = []
        for item in items:
            if isinstance(item, list):
                out.extend(item)
            else:
                out.append(item)
        return out

    return flatten


def _multi_select(parts: list[Path]) -> Path:
    def multi_select(value: Any) -> Any:
        if value is None:
            return None
        return [part(value) for part in parts]

    return multi_select


def _index(i: int) -> Path:
    def index(value: Any) -> Any:
        if not isinstance(value, list):
            return None
        try:
            return value[i]
        except IndexError:
            return None

    return index


def _function(name: str, args: list[Path]) -> Path:
    def function(value: Any) -> Any:
        return _FUNCTIONS.call_function(name, [arg(value) for arg in args])

    return function


def _none(_: Any) -> None:
    return None


def install(client: Any) -> bool:
    """Evaluate ``client``'s operation context parameters with compiled paths; False (and nothing
    changed) when its botocore has no resolver method of that name."""
    resolver = getattr(client, "_ruleset_resolver", None)
    if resolver is None or not hasattr(resolver, "_resolve_param_as_operation_context_param"):
        return False
    compiled: dict[tuple[str, str], Path] = {}

    def resolve(param_name: str, operation_model: Any, call_args: Any) -> Any:
        key = (operation_model.name, param_name)
        path = compiled.get(key)
        if path is None:
            params = operation_model.operation_context_parameters
            path = compiled[key] = compile_path(params[param_name]["path"]) if param_name in params else _none
        return path(call_args)

    resolver._resolve_param_as_operation_context_param = resolve
    return True
