"""A small AIP-160 filter language: parsed here into a tree, checked against the
fields a list allows, and turned into SQL only by the adapters (never by string
concatenation, so a filter cannot inject SQL).

    country_code = "KR" AND (status = ACTIVE OR status = SUSPENDED)
    therapeutic_areas:oncology  NOT region_code = "KR-11"  "서울"

Supported: `=`, `!=`, `:` (has, for lists), AND, OR, NOT / `-`, parentheses,
and bare strings (free text). Juxtaposed terms are ANDed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from services.common.errors import FieldViolation, InvalidArgument

MAX_FILTER_LENGTH = 1000
MAX_DEPTH = 8
MAX_TERMS = 32


@dataclass(frozen=True)
class Compare:
    field: str
    op: str  # "=", "!=", ":"
    value: str


@dataclass(frozen=True)
class Text:
    value: str


@dataclass(frozen=True)
class And:
    terms: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    terms: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    term: Node


Node = Compare | Text | And | Or | Not

_TOKEN = re.compile(
    r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<op>!=|=|:)|(?P<lparen>\()|(?P<rparen>\))'
    r'|(?P<minus>-(?=[\w("]))|(?P<word>[^\s()=!:"]+))'
)


def _bad(description: str) -> InvalidArgument:
    return InvalidArgument([FieldViolation("filter", description)])


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise _bad(f"unexpected character at position {pos}: {text[pos]!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "string":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        tokens.append((kind, value))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], fields: Mapping[str, object]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.fields = fields
        self.terms = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expression(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise _bad(f"nested deeper than {MAX_DEPTH} levels")
        terms = [self.sequence(depth)]
        while self._is_word("AND"):
            self.take()
            terms.append(self.sequence(depth))
        return terms[0] if len(terms) == 1 else And(tuple(terms))

    def sequence(self, depth: int) -> Node:
        # Juxtaposition binds looser than OR in AIP-160: `a b OR c` is `a AND (b OR c)`.
        terms = [self.disjunction(depth)]
        while (tok := self.peek()) is not None and tok[0] != "rparen" and not self._is_word("AND"):
            terms.append(self.disjunction(depth))
        return terms[0] if len(terms) == 1 else And(tuple(terms))

    def disjunction(self, depth: int) -> Node:
        terms = [self.unary(depth)]
        while self._is_word("OR"):
            self.take()
            terms.append(self.unary(depth))
        return terms[0] if len(terms) == 1 else Or(tuple(terms))

    def unary(self, depth: int) -> Node:
        if self._is_word("NOT") or (self.peek() or ("", ""))[0] == "minus":
            if depth >= MAX_DEPTH:  # `NOT NOT ...` nests as much as parentheses do
                raise _bad(f"nested deeper than {MAX_DEPTH} levels")
            self.take()
            return Not(self.unary(depth + 1))
        return self.primary(depth)

    def primary(self, depth: int) -> Node:
        token = self.peek()
        if token is None:
            raise _bad("ends where a term was expected")
        kind, value = token
        if kind == "lparen":
            self.take()
            node = self.expression(depth + 1)
            if (self.peek() or ("", ""))[0] != "rparen":
                raise _bad("a '(' is not closed")
            self.take()
            return node
        if kind not in ("word", "string"):
            raise _bad(f"unexpected {value!r}")
        self.take()
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise _bad(f"more than {MAX_TERMS} terms")
        nxt = self.peek()
        if nxt is not None and nxt[0] == "op":
            if kind != "word":
                raise _bad(f"a field name is expected before {nxt[1]!r}, not a string")
            op = self.take()[1]
            if value not in self.fields:
                allowed = ", ".join(sorted(self.fields))
                raise _bad(f"unknown field {value!r}; filterable fields: {allowed}")
            operand = self.peek()
            if operand is None or operand[0] not in ("word", "string"):
                raise _bad(f"a value is expected after '{value} {op}'")
            return Compare(value, op, self.take()[1])
        if kind == "word" and value.upper() in ("AND", "OR", "NOT"):
            raise _bad(f"unexpected {value!r}")
        return Text(value)

    def _is_word(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token[0] == "word" and token[1] == word


def parse(text: str, fields: Mapping[str, object]) -> Node | None:
    """The filter's tree, or None for an empty filter. `fields` are the filterable names."""
    if len(text) > MAX_FILTER_LENGTH:
        raise _bad(f"longer than {MAX_FILTER_LENGTH} characters")
    if not text.strip():
        return None
    parser = _Parser(_tokenize(text), fields)
    node = parser.expression(0)
    if parser.peek() is not None:
        raise _bad(f"unexpected {parser.peek()[1]!r}")  # type: ignore[index]
    return node


def matches(node: Node | None, values: Mapping[str, str | tuple[str, ...]]) -> bool:
    """Evaluate a filter on values computed in memory (for fields no column holds, such as
    whether a site is overdue today). Text compares case-insensitively; booleans as
    `true`/`false`; a tuple is a list field (`:` means has)."""
    if node is None:
        return True
    if isinstance(node, And):
        return all(matches(t, values) for t in node.terms)
    if isinstance(node, Or):
        return any(matches(t, values) for t in node.terms)
    if isinstance(node, Not):
        return not matches(node.term, values)
    if isinstance(node, Text):
        raise _bad("free text is not supported here")
    value = values[node.field]
    wanted = node.value.casefold()
    if isinstance(value, tuple):
        found = wanted in (v.casefold() for v in value)
    else:
        found = value.casefold() == wanted
    return not found if node.op == "!=" else found
