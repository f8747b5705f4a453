"""Operation context parameters of botocore's endpoint rules, without jmespath's tree walk per call.

Before every call, botocore's endpoint resolver evaluates each operation context parameter of the
service's rules: for DynamoDB's TransactWriteItems that is ``ResourceArnList``,
``TransactItems[*].[ConditionCheck.TableName, Put.TableName, Delete.TableName,
Update.TableName][]``, searched by jmespath's tree-walking interpreter over the whole request.
For a 100-action transaction that walk cost the state writer more client CPU than serialising and
signing the request. ``compile_path`` turns the expression jmespath parsed into the source of one
Python function that computes the same value (``tests/pipeline/test_context_params.py`` compares
them with ``jmespath.search``); expressions with a node type outside the handled subset keep jmespath's
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
    source = _Source()
    try:
        result = source.node(parsed.parsed, "value", "    ")
    except _Unsupported:
        return parsed.search
    code = "def path(value):\n" + "\n".join(source.lines) + f"\n    return {result}\n"
    namespace: dict[str, Any] = {"_call": _FUNCTIONS.call_function, "_field": _field, **source.consts}
    exec(compile(code, f"<context parameter {expression!r}>", "exec"), namespace)  # noqa: S102 - from jmespath's parse
    return namespace["path"]  # type: ignore[no-any-return]


class _Source:
    """Python statements computing a jmespath expression, one node at a time, into variables.

    Each node's value is computed where its parent needs it, so the whole path is one function with
    its loops inline: no call per node and per value, which is what a 100-action transaction's
    table names cost as nested closures."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {}
        self.count = 0

    def _var(self) -> str:
        self.count += 1
        return f"v{self.count}"

    def node(self, node: dict[str, Any], src: str, ind: str) -> str:
        """Statements (at indent ``ind``) computing ``node`` applied to the value in variable
        ``src``; returns the variable that holds the result."""
        kind = node["type"]
        children = [c for c in node.get("children", []) if isinstance(c, dict)]
        out = self._var()
        add = self.lines.append
        if kind == "field":
            # Most values are dicts or None (an action kind absent from a transaction item);
            # anything else answers ``get`` or is not a mapping (None), as jmespath has it.
            add(f"{ind}if type({src}) is dict:\n{ind}    {out} = {src}.get({node['value']!r})")
            add(f"{ind}elif {src} is None:\n{ind}    {out} = None\n{ind}else:")
            add(f"{ind}    {out} = _field({src}, {node['value']!r})")
        elif kind in ("identity", "current"):
            return src
        elif kind in ("subexpression", "index_expression", "pipe"):
            for child in children:
                src = self.node(child, src, ind)
            return src
        elif kind == "projection":
            base = self.node(children[0], src, ind)
            item = self._var()
            add(f"{ind}if not isinstance({base}, list):\n{ind}    {out} = None\n{ind}else:")
            add(f"{ind}    {out} = []\n{ind}    for {item} in {base}:")
            got = self.node(children[1], item, ind + "        ")
            add(f"{ind}        if {got} is not None:\n{ind}            {out}.append({got})")
        elif kind == "flatten":
            base = self.node(children[0], src, ind)
            item = self._var()
            add(f"{ind}if not isinstance({base}, list):\n{ind}    {out} = None\n{ind}else:")
            add(f"{ind}    {out} = []\n{ind}    for {item} in {base}:")
            add(f"{ind}        if isinstance({item}, list):\n{ind}            {out}.extend({item})")
            add(f"{ind}        else:\n{ind}            {out}.append({item})")
        elif kind == "multi_select_list":
            add(f"{ind}if {src} is None:\n{ind}    {out} = None\n{ind}else:")
            parts = [self.node(child, src, ind + "    ") for child in children]
            add(f"{ind}    {out} = [{', '.join(parts)}]")
        elif kind == "index":
            add(f"{ind}if not isinstance({src}, list):\n{ind}    {out} = None\n{ind}else:")
            add(f"{ind}    try:\n{ind}        {out} = {src}[{int(node['value'])}]")
            add(f"{ind}    except IndexError:\n{ind}        {out} = None")
        elif kind == "literal":
            self.consts[f"_{out}"] = node["value"]
            add(f"{ind}{out} = _{out}")
        elif kind == "function_expression":
            args = [self.node(child, src, ind) for child in children]
            add(f"{ind}{out} = _call({node['value']!r}, [{', '.join(args)}])")
        else:
            raise _Unsupported(kind)
        return out


def _field(value: Any, name: str) -> Any:
    try:
        return value.get(name)
    except AttributeError:
        return None


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
