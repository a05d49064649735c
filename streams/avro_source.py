"""Assembling generated Python: the source of the functions a compiler emits, the constants
they refer to, and the ``exec`` that turns them into callables."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


class _UnsupportedError(Exception):
    """The compiler declines this schema; fastavro is used for it instead."""


class _Source:
    """Python source of generated functions and the constants they refer to.

    ``env`` starts as a copy of ``base``, the helpers every function of this kind may call.
    Generated code embeds names and small literals only through ``repr``; any other value goes
    in through :meth:`const`.
    """

    def __init__(self, base: Mapping[str, Any]) -> None:
        self.env: dict[str, Any] = dict(base)
        self.functions: list[str] = []
        self._count = 0

    def const(self, value: Any) -> str:
        name = f"_k{len(self.env)}"
        self.env[name] = value
        return name

    def tmp(self) -> str:
        self._count += 1
        return f"t{self._count}"

    def build(self, entry: str, label: str) -> Callable[..., Any]:
        code = compile("\n\n".join(self.functions), f"<cxstream avro {label}>", "exec")
        exec(code, self.env)
        function: Callable[..., Any] = self.env[entry]
        return function
