r"""Compiling FHIR R4 search parameters into one SQL boolean expression over `resource r`.

The output runs unchanged on SQLite and PostgreSQL 15: only `?` placeholders (the Postgres back
end renumbers them to `$n`, so no literal may contain `?`), no ILIKE/GLOB, LIKE only with an
explicit `ESCAPE '\'`, and string prefixes as `>= p AND < next(p)` ranges that both engines
answer from the (type, param, value) b-tree indexes of gateway.store.schema.

Every parameter becomes `r.pk [NOT] IN (SELECT pk FROM idx_* WHERE type=? AND param=? AND ...)`,
so repeated parameters AND together and comma alternatives OR inside one subquery, as the
standard requires. Chains join idx_reference to the target's `resource` row; `_has` goes the
other way, from the referring resource's index row to `r.id`.

Besides that one expression, each top-level parameter is kept as its own term, and the positive
index subqueries are also described as `Driver`s: an index table plus a condition on it. The
search runner (gateway.store.search_plan) can then start a pk-ordered page from one driver's
index rows, which end in pk, and stop after `_count + 1` rows instead of building the whole
match set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable
from zoneinfo import ZoneInfo

from gateway.fhir.search_parameters import SearchParam, all_search_types, param_base_name, params_table
from gateway.store.indexing.dates import DEFAULT_TZ, date_range
from gateway.store.indexing.normalize import escape_like, normalize_for_param, normalize_string
from gateway.store.indexing.predicates import date_cond, number_cond, prefix_cond, uri_above_candidates
from gateway.store.indexing.query_values import PREFIXES, parse_number, split_prefix, split_unescaped, unescape
from gateway.store.indexing.references import parse_reference

Frag = tuple[str, list]

# Index table and `_sort` column (an expression over alias `s`) of each parameter type.
_TABLE = {"string": "idx_string", "token": "idx_token", "reference": "idx_reference", "date": "idx_date",
          "number": "idx_number", "quantity": "idx_number", "uri": "idx_uri"}  # fmt: skip
_SORT_COLUMN = {"string": "s.value_norm", "token": "s.code", "date": "s.low", "number": "s.value",
                "quantity": "s.value", "uri": "s.uri",
                "reference": "COALESCE(s.target_type || '/' || s.target_id, s.target_url)"}  # fmt: skip
# Nesting allowed below the top level: a chain inside `_has`, `_has` inside `_has`, or a
# two-step chain. Deeper queries get expensive fast and no client of ours needs them.
_MAX_DEPTH = 2


class SearchError(ValueError):
    """A search the server cannot run; `param` is the query parameter name the client sent."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class _Unsupported(SearchError):
    """Unknown parameter or modifier: an error, or merely ignored in lenient mode."""


@dataclass
class Driver:
    """A parameter a search can start from: rows of `table` (as `alias`) where `cond` holds.

    `ordered` means the condition is equalities on every index column before `pk`, so the index
    yields the matching rows in pk order and a pk-ordered page can stop early.
    """

    table: str
    alias: str
    cond: str
    args: list
    ordered: bool


@dataclass
class CompiledFilter:
    """`where` over alias `r` with `?` placeholders; `ignored` lists names skipped when lenient.

    `where` is `r.type = ? AND r.deleted = 0 AND <term> AND <term> ...`; `terms` holds the same
    parameter terms one by one and `drivers[i]` the Driver of `terms[i]` (None when the term is
    not a plain positive index subquery).
    """

    where: str
    args: list
    ignored: list[str] = field(default_factory=list)
    resource_type: str = ""
    terms: list[Frag] = field(default_factory=list)
    drivers: list[Driver | None] = field(default_factory=list)


@dataclass
class _Ctx:
    tz: ZoneInfo
    n: int = 0
    driver: Driver | None = None  # set by the last top-level `_Q.match`

    def alias(self, prefix: str) -> str:
        # Unique aliases keep nested subqueries unambiguous in both dialects.
        self.n += 1
        return f"{prefix}{self.n}"


def compile_search(
    resource_type: str, params: list[tuple[str, str]], *, tz: ZoneInfo = DEFAULT_TZ, lenient: bool = False
) -> CompiledFilter:
    """The WHERE expression (alias `r`) selecting live `resource_type` rows matching `params`.

    `params` are raw (name, value) pairs with modifiers in the name, result parameters removed.
    Parameters with an empty value are skipped and listed in `ignored`.
    """
    ctx = _Ctx(tz)
    sql, args, ignored = ["r.type = ?", "r.deleted = 0"], [resource_type], []
    terms: list[Frag] = []
    drivers: list[Driver | None] = []
    for name, value in params:
        if value == "":
            ignored.append(name)
            continue
        ctx.driver = None
        try:
            frag, frag_args = _param(ctx, resource_type, "r", name, value, 0)
        except SearchError as exc:
            if lenient and isinstance(exc, _Unsupported):
                ignored.append(name)
                continue
            exc.param = name  # report what the client sent, not the nested part that failed
            raise
        sql.append(frag)
        args.extend(frag_args)
        terms.append((frag, frag_args))
        drivers.append(ctx.driver)
    return CompiledFilter(" AND ".join(sql), args, ignored, resource_type, terms, drivers)


def sort_expression(resource_type: str, name: str, descending: bool = False) -> tuple[str, list]:
    """A scalar SQL expression over `r` to ORDER BY for `_sort=name`.

    A resource with several values sorts by its lowest when ascending and its highest when
    descending (a period by its start, or by its end when descending), as FHIR servers do.
    """
    if name == "_id":
        return "r.id", []
    if name == "_lastUpdated":
        return "r.last_updated", []
    sp = params_table(resource_type).get(name)
    if sp is None:
        raise SearchError(f"Unknown sort parameter '{name}' for resource type {resource_type}", name)
    col = "s.high" if descending and sp.type == "date" else _SORT_COLUMN[sp.type]
    return f"(SELECT {'MAX' if descending else 'MIN'}({col}) FROM {_TABLE[sp.type]} s WHERE s.pk = r.pk AND s.param = ?)", [name]


@dataclass
class _Q:
    """One parameter being compiled: where it applies (type, alias) and what the client sent."""

    ctx: _Ctx
    rtype: str
    alias: str
    sp: SearchParam
    mod: str
    name: str

    def error(self, message: str) -> SearchError:
        return SearchError(message, self.name)

    def unsupported(self) -> _Unsupported:
        return _Unsupported(f"Modifier ':{self.mod}' is not supported for parameter '{self.sp.name}'", self.name)

    def match(
        self, table: str, param: str, parts: list[str], one: Callable[[str, str], Frag], negate=False,
        ordered: bool = False,
    ) -> Frag:
        """`alias.pk [NOT] IN (rows of param in table matching any of parts)`.

        `ordered`: one part of this kind is equalities on the index columns before pk (see Driver).
        """
        ia = self.ctx.alias("i")
        conds, args, last = [], [self.rtype, param], []
        for part in parts:
            cond, cond_args = one(part, ia)
            conds.append(cond)
            args.extend(cond_args)
            last.append(cond_args[-1] if cond_args else None)
        where = conds[0] if len(conds) == 1 else " OR ".join(f"({c})" for c in conds)
        if len(conds) > 1 and table == "idx_token" and all(c.endswith(f"{ia}.code = ?") for c in conds):
            # An OR of (system, code) pairs is not an index range to either planner (SQLite read every
            # identifier of the type); the codes as an IN list are, and the OR then checks the pairs.
            where = f"{ia}.code IN ({', '.join('?' * len(last))}) AND ({where})"
            args = args[:2] + last + args[2:]
        op = "NOT IN" if negate else "IN"
        sub = f"SELECT {ia}.pk FROM {table} {ia} WHERE {ia}.type = ? AND {ia}.param = ?"
        if self.alias == "r" and not negate:  # a top-level positive filter: the search may start here
            cond = f"{ia}.type = ? AND {ia}.param = ? AND ({where})"
            self.ctx.driver = Driver(table, ia, cond, list(args), ordered and len(parts) == 1)
        return f"{self.alias}.pk {op} ({sub} AND ({where}))", args


def _param(ctx: _Ctx, rtype: str, alias: str, name: str, value: str, depth: int) -> Frag:
    if name.startswith("_has:"):
        return _has(ctx, rtype, alias, name, value, depth)
    head, dot, chain = name.partition(".")
    pname, _, modifier = head.partition(":")
    sp = params_table(rtype).get(pname)
    if sp is None:
        raise _Unsupported(f"Unknown search parameter '{pname}' for resource type {rtype}", name)
    q = _Q(ctx, rtype, alias, sp, modifier, name)
    if dot:
        if sp.type != "reference":
            raise _Unsupported(f"Parameter '{pname}' is not a reference, so it cannot be chained", name)
        return _chain(q, chain, value, depth)
    if modifier == "missing":
        return _missing(q, value)
    parts = split_unescaped(value, ",")
    if sp.name == "_id":
        return _id(q, parts)
    if sp.name == "_lastUpdated":
        return _last_updated(q, parts)
    return _BUILDERS[sp.type](q, parts)


def _missing(q: _Q, value: str) -> Frag:
    if value not in ("true", "false"):
        raise q.error(f"':missing' on '{q.sp.name}' takes true or false, not '{value}'")
    if q.sp.name in ("_id", "_lastUpdated"):  # columns every resource has
        return ("1 = 0" if value == "true" else "1 = 1"), []
    ia = q.ctx.alias("m")
    sub = f"SELECT {ia}.pk FROM {_TABLE[q.sp.type]} {ia} WHERE {ia}.type = ? AND {ia}.param = ?"
    return f"{q.alias}.pk {'NOT IN' if value == 'true' else 'IN'} ({sub})", [q.rtype, q.sp.name]


# --- string, token, uri -----------------------------------------------------------------------


def _string(q: _Q, parts: list[str]) -> Frag:
    if q.mod not in ("", "exact", "contains"):
        raise q.unsupported()

    def one(part: str, ia: str) -> Frag:
        v = unescape(part)
        if q.mod == "exact":
            return f"{ia}.value_exact = ?", [v]
        norm = normalize_for_param(q.sp.name, v)
        if q.mod == "contains":
            return f"{ia}.value_norm LIKE ? ESCAPE '\\'", ["%" + escape_like(norm) + "%"]
        return prefix_cond(f"{ia}.value_norm", norm)

    return q.match("idx_string", q.sp.name, parts, one)


def _system_code(q: _Q, part: str, ia: str) -> Frag:
    """`code`, `system|code`, `|code` (no system) or `system|` against system/code columns."""
    pieces = [unescape(p) for p in split_unescaped(part, "|")]
    if len(pieces) > 2 or not any(pieces):
        raise q.error(f"Invalid token '{part}' for '{q.sp.name}'")
    if len(pieces) == 1:
        return f"{ia}.code = ?", pieces
    system, code = pieces
    if not system:
        return f"{ia}.system IS NULL AND {ia}.code = ?", [code]
    if not code:
        return f"{ia}.system = ?", [system]
    return f"{ia}.system = ? AND {ia}.code = ?", [system, code]


def _token(q: _Q, parts: list[str]) -> Frag:
    if q.mod == "text":  # CodeableConcept.text / Coding.display / Identifier.type.text
        return q.match(
            "idx_token", q.sp.name, parts,
            lambda part, ia: prefix_cond(f"{ia}.text_norm", normalize_string(unescape(part))),
        )
    if q.mod == "of-type" and q.sp.name == "identifier":

        def of_type(part: str, ia: str) -> Frag:
            pieces = [unescape(p) for p in split_unescaped(part, "|")]
            if len(pieces) != 3 or not pieces[1] or not pieces[2]:
                raise q.error(f"':of-type' on '{q.sp.name}' needs system|code|value, not '{part}'")
            system, code, value = pieces
            sys_cond = f"{ia}.system = ?" if system else f"{ia}.system IS NULL"
            return f"{sys_cond} AND {ia}.code = ?", ([system] if system else []) + [f"{code}|{value}"]

        return q.match("idx_token", q.sp.name + ":of-type", parts, of_type, ordered=True)
    if q.mod not in ("", "not"):
        raise q.unsupported()
    # :not is "no matching token", which includes resources with no token at all.
    # idx_token_lookup is (type, param, code, pk, system): any value with a code walks in pk order.
    has_code = len(parts) == 1 and not unescape(parts[0]).endswith("|")
    return q.match(
        "idx_token", q.sp.name, parts, lambda part, ia: _system_code(q, part, ia), q.mod == "not", ordered=has_code
    )


def _id(q: _Q, parts: list[str]) -> Frag:
    if q.mod not in ("", "not"):
        raise q.unsupported()
    ids = [unescape(p) for p in parts]
    return f"{q.alias}.id {'NOT IN' if q.mod == 'not' else 'IN'} ({', '.join('?' * len(ids))})", ids


def _uri(q: _Q, parts: list[str]) -> Frag:
    if q.mod not in ("", "below", "above"):
        raise q.unsupported()

    def one(part: str, ia: str) -> Frag:
        v = unescape(part)
        if q.mod == "below":  # the stored URI starts with v
            return prefix_cond(f"{ia}.uri", v)
        if q.mod == "above":  # the stored URI is v or one of its parents
            cands = uri_above_candidates(v)
            return f"{ia}.uri IN ({', '.join('?' * len(cands))})", cands
        return f"{ia}.uri = ?", [v]

    return q.match("idx_uri", q.sp.name, parts, one, ordered=q.mod == "" and len(parts) == 1)


# --- reference, chaining, _has ------------------------------------------------------------------


def _reference(q: _Q, parts: list[str]) -> Frag:
    if q.mod == "identifier":  # logical references, indexed as tokens by the extractor
        return q.match("idx_token", q.sp.name + ":identifier", parts, lambda part, ia: _system_code(q, part, ia),
                       ordered=len(parts) == 1 and not unescape(parts[0]).endswith("|"))
    type_mod = q.mod if q.mod[:1].isupper() else ""
    if (q.mod and not type_mod) or (type_mod and q.sp.targets and type_mod not in q.sp.targets):
        raise q.unsupported()

    def one(part: str, ia: str) -> Frag:
        v = unescape(part)
        if "://" in v or v.startswith("urn:"):
            return f"{ia}.target_url = ?", [v.split("|", 1)[0]]  # canonicals are stored unversioned
        parsed = parse_reference(v)
        if parsed is None or ("/" in v and parsed[0] is None):  # '#x', 'patient/1', 'a/b/c'
            raise q.error(f"Invalid reference '{v}' for '{q.sp.name}'")
        ttype, tid, _ = parsed
        if ttype is None:  # a bare id, of any target type unless the modifier names one
            if type_mod:
                return f"{ia}.target_type = ? AND {ia}.target_id = ?", [type_mod, v]
            return f"{ia}.target_id = ?", [v]
        if type_mod and ttype != type_mod:
            raise q.error(f"Reference '{v}' does not match modifier ':{type_mod}'")
        return f"{ia}.target_type = ? AND {ia}.target_id = ?", [ttype, tid]

    # idx_reference_lookup ends (..., type, pk) and idx_reference_url (..., target_url, pk): a
    # typed reference or a URL walks in pk order, a bare id (any target type) does not.
    single = unescape(parts[0]) if len(parts) == 1 else ""
    ordered = bool(single) and ("://" in single or single.startswith("urn:") or "/" in single or bool(type_mod))
    return q.match("idx_reference", q.sp.name, parts, one, ordered=ordered)


def _chain(q: _Q, child: str, value: str, depth: int) -> Frag:
    """`subject:Patient.family=x`: resources whose reference points at a resource matching the child.

    Written to start from the child's own match (usually an index lookup giving a few targets),
    then follow `idx_reference_lookup` (target_id, target_type, param, type) back to the referring
    rows: one arm per possible target type, joined by UNION ALL (an OR across types made both
    planners read every reference of the parameter instead: 7 s on SQLite, 27 s on PostgreSQL for
    `Encounter?subject.name=smith` over 10,000 patients, now a few ms). CROSS JOIN fixes that join
    order on SQLite; PostgreSQL plans it from its statistics.
    """
    sp, type_mod = q.sp, q.mod
    if depth >= _MAX_DEPTH:
        raise _Unsupported(f"Search '{q.name}' nests chains/_has too deeply", q.name)
    if type_mod and (not type_mod[:1].isupper() or (sp.targets and type_mod not in sp.targets)):
        raise _Unsupported(f"'{sp.name}:{type_mod}' cannot be chained", q.name)
    candidates = (type_mod,) if type_mod else sp.targets or all_search_types()
    child_base = param_base_name(child)
    types = [t for t in candidates if child_base in params_table(t)]
    if not types:
        raise _Unsupported(f"Unknown chained parameter '{child_base}' for {', '.join(candidates)}", q.name)
    arms, args = [], []
    for t in types:  # the child parameter is compiled once per possible target type
        xa, ta = q.ctx.alias("x"), q.ctx.alias("t")
        frag, frag_args = _param(q.ctx, t, ta, child, value, depth + 1)
        arms.append(
            f"SELECT {xa}.pk FROM resource {ta} CROSS JOIN idx_reference {xa}"
            f" WHERE {ta}.type = ? AND {ta}.deleted = 0 AND {frag}"
            f" AND {xa}.target_id = {ta}.id AND {xa}.target_type = {ta}.type AND {xa}.param = ? AND {xa}.type = ?"
        )
        args += [t, *frag_args, sp.name, q.rtype]
    return f"{q.alias}.pk IN ({' UNION ALL '.join(arms)})", args


def _has(ctx: _Ctx, rtype: str, alias: str, name: str, value: str, depth: int) -> Frag:
    parts = name.split(":", 3)
    if len(parts) != 4 or not all(parts[1:]):
        raise SearchError(f"Invalid '{name}': expected _has:Type:reference:parameter", name)
    _, htype, ref, inner = parts
    if depth >= _MAX_DEPTH:
        raise _Unsupported(f"Search '{name}' nests chains/_has too deeply", name)
    if htype not in all_search_types():
        raise _Unsupported(f"Unknown resource type '{htype}' in '{name}'", name)
    rsp = params_table(htype).get(ref)
    if rsp is None or rsp.type != "reference":
        raise _Unsupported(f"'{ref}' is not a reference parameter of {htype}", name)
    if rsp.targets and rtype not in rsp.targets:
        raise SearchError(f"{htype}.{ref} cannot refer to {rtype}", name)
    xa, ha = ctx.alias("x"), ctx.alias("h")
    frag, frag_args = _param(ctx, htype, ha, inner, value, depth + 1)
    return (
        f"{alias}.id IN (SELECT {xa}.target_id FROM idx_reference {xa} JOIN resource {ha} ON {ha}.pk = {xa}.pk"
        f" WHERE {xa}.type = ? AND {xa}.param = ? AND {xa}.target_type = ? AND {ha}.deleted = 0 AND {frag})",
        [htype, ref, rtype, *frag_args],
    )


# --- date, number, quantity -------------------------------------------------------------------


def _prefixed(q: _Q, part: str) -> tuple[str, str]:
    prefix, rest = split_prefix(unescape(part))
    if prefix not in PREFIXES:
        raise q.error(f"Unknown prefix '{prefix}' in '{part}' for '{q.sp.name}'")
    return prefix, rest


def _date_value(q: _Q, part: str) -> tuple[str, int, int]:
    prefix, rest = _prefixed(q, part)
    rest = rest.replace(" ", "+")  # an unencoded '+' in the offset arrives as a space
    try:
        low, high = date_range(rest, q.ctx.tz)
    except ValueError:
        raise q.error(f"Invalid date '{rest}' for '{q.sp.name}'") from None
    return prefix, low, high


def _date(q: _Q, parts: list[str]) -> Frag:
    if q.mod:
        raise q.unsupported()

    def one(part: str, ia: str) -> Frag:
        return date_cond(*_date_value(q, part), f"{ia}.low", f"{ia}.high")

    return q.match("idx_date", q.sp.name, parts, one)


def _last_updated(q: _Q, parts: list[str]) -> Frag:
    if q.mod:
        raise q.unsupported()
    col = f"{q.alias}.last_updated"  # an instant: its own low and high
    frags = [date_cond(*_date_value(q, part), col, col) for part in parts]
    return "(" + " OR ".join(f"({c})" for c, _ in frags) + ")", [a for _, args in frags for a in args]


def _number(q: _Q, parts: list[str]) -> Frag:
    if q.mod:
        raise q.unsupported()

    def one(part: str, ia: str) -> Frag:
        pieces = split_unescaped(part, "|")  # quantity: value|system|code
        if len(pieces) not in ((1,) if q.sp.type == "number" else (1, 3)):
            raise q.error(f"Invalid {q.sp.type} '{part}' for '{q.sp.name}'")
        prefix, text = _prefixed(q, pieces[0])
        try:
            v, lo, hi = parse_number(text)
        except ValueError:
            raise q.error(f"Invalid number '{text}' for '{q.sp.name}'") from None
        cond, args = number_cond(prefix, v, lo, hi, f"{ia}.value")
        system, code = (unescape(pieces[1]), unescape(pieces[2])) if len(pieces) == 3 else ("", "")
        if system:
            cond, args = f"{cond} AND {ia}.system = ?", [*args, system]
        if code:  # the extractor stored Quantity.code, or the unit when there is no code
            cond, args = f"{cond} AND {ia}.code = ?", [*args, code]
        return cond, args

    return q.match("idx_number", q.sp.name, parts, one)


_BUILDERS: dict[str, Callable[[_Q, list[str]], Frag]] = {
    "string": _string, "token": _token, "reference": _reference, "date": _date,
    "number": _number, "quantity": _number, "uri": _uri,
}  # fmt: skip
