"""FHIRPath text -> syntax tree (tuples), with the operator precedence of FHIRPath N1 §"Operator precedence".

Tree nodes are tuples whose first item names the node:
  ("lit", value, type)         a literal (type is a System type name, or None for {})
  ("id", name)                 an identifier in a path (a member name or a type name)
  ("var", name)                $this / $index / $total or %name
  ("fn", name, [args])         a function call on the focus
  ("dot", left, right)         left.right (right is an "id" or "fn")
  ("index", left, expr)        left[expr]
  ("op", op, left, right)      a binary operator
  ("neg", expr)                unary minus
  ("type", op, left, typename) `is` / `as` with a type specifier
"""

from __future__ import annotations

import re

__all__ = ["FhirPathSyntaxError", "parse"]


class FhirPathSyntaxError(ValueError):
    pass


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<datetime>@\d{4}(?:-\d{2}(?:-\d{2})?)?(?:T(?:\d{2}(?::\d{2}(?::\d{2}(?:\.\d+)?)?)?)?(?:Z|[+-]\d{2}:\d{2})?)?)
  | (?P<time>@T\d{2}(?::\d{2}(?::\d{2}(?:\.\d+)?)?)?)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<quoted>`(?:[^`\\]|\\.)*`)
  | (?P<var>[$%](?:[A-Za-z_][A-Za-z0-9_]*|'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|!=|!~|[=~<>|&+\-*/(),.\[\]{}])
    """,
    re.VERBOSE | re.DOTALL,
)

_ESCAPES = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _unescape(body: str) -> str:
    def sub(m: re.Match) -> str:
        c = m.group(1)
        if c.startswith("u"):
            return chr(int(c[1:], 16))
        return _ESCAPES.get(c, c)

    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", sub, body)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise FhirPathSyntaxError(f"Unexpected character {text[pos]!r} at {pos} in {text!r}")
        kind = m.lastgroup
        pos = m.end()
        if kind != "ws":
            out.append((kind, m.group()))
    out.append(("end", ""))
    return out


# Binary operators by precedence level, loosest first.
_LEVELS: list[tuple[str, ...]] = [
    ("implies",),
    ("or", "xor"),
    ("and",),
    ("in", "contains"),
    ("=", "~", "!=", "!~"),
    ("<=", "<", ">", ">="),
    ("|",),
    ("is", "as"),
    ("+", "-", "&"),
    ("*", "/", "div", "mod"),
]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i]

    def take(self) -> tuple[str, str]:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        kind, got = self.take()
        if got != value:
            raise FhirPathSyntaxError(f"Expected {value!r} but found {got or 'the end'!r} in {self.text!r}")

    def parse(self) -> tuple:
        node = self.binary(0)
        if self.peek()[0] != "end":
            raise FhirPathSyntaxError(f"Unexpected {self.peek()[1]!r} in {self.text!r}")
        return node

    def binary(self, level: int) -> tuple:
        if level == len(_LEVELS):
            return self.unary()
        ops = _LEVELS[level]
        left = self.binary(level + 1)
        while True:
            kind, value = self.peek()
            if kind not in ("op", "ident") or value not in ops:
                return left
            self.take()
            if value in ("is", "as"):
                left = ("type", value, left, self.type_name())
            else:
                left = ("op", value, left, self.binary(level + 1))

    def type_name(self) -> str:
        parts = [self.identifier()]
        while self.peek()[1] == ".":
            self.take()
            parts.append(self.identifier())
        return ".".join(parts)

    def identifier(self) -> str:
        kind, value = self.take()
        if kind == "ident":
            return value
        if kind == "quoted":
            return _unescape(value[1:-1])
        raise FhirPathSyntaxError(f"Expected a name but found {value or 'the end'!r} in {self.text!r}")

    def unary(self) -> tuple:
        kind, value = self.peek()
        if kind == "op" and value in ("+", "-"):
            self.take()
            inner = self.unary()
            return ("neg", inner) if value == "-" else inner
        return self.postfix(self.term())

    def postfix(self, node: tuple) -> tuple:
        while True:
            value = self.peek()[1]
            if value == ".":
                self.take()
                node = ("dot", node, self.member())
            elif value == "[":
                self.take()
                index = self.binary(0)
                self.expect("]")
                node = ("index", node, index)
            else:
                return node

    def member(self) -> tuple:
        name = self.identifier()
        if self.peek()[1] == "(":
            return self.call(name)
        return ("id", name)

    def call(self, name: str) -> tuple:
        self.expect("(")
        args: list[tuple] = []
        if self.peek()[1] != ")":
            args.append(self.binary(0))
            while self.peek()[1] == ",":
                self.take()
                args.append(self.binary(0))
        self.expect(")")
        return ("fn", name, args)

    def term(self) -> tuple:
        kind, value = self.take()
        if kind == "number":
            return ("lit", float(value) if "." in value else int(value), "Decimal" if "." in value else "Integer")
        if kind == "string":
            return ("lit", _unescape(value[1:-1]), "String")
        if kind == "datetime":
            return ("lit", value[1:], "DateTime" if "T" in value else "Date")
        if kind == "time":
            return ("lit", value[2:], "Time")
        if kind == "var":
            name = value[1:]
            if name[:1] in "'`":
                name = _unescape(name[1:-1])
            return ("var", value[0] + name)
        if kind == "op" and value == "(":
            inner = self.binary(0)
            self.expect(")")
            return inner
        if kind == "op" and value == "{":
            self.expect("}")
            return ("lit", None, None)
        if kind in ("ident", "quoted"):
            name = value if kind == "ident" else _unescape(value[1:-1])
            if kind == "ident" and name in ("true", "false"):
                return ("lit", name == "true", "Boolean")
            if self.peek()[1] == "(" and kind == "ident":
                return self.call(name)
            return ("id", name)
        raise FhirPathSyntaxError(f"Unexpected {value or 'end of expression'!r} in {self.text!r}")


def parse(text: str) -> tuple:
    """Parse one FHIRPath expression into a tree (raises FhirPathSyntaxError)."""
    return _Parser(text).parse()
