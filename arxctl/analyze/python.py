"""The libcst analyzer: resolves names through imports, scopes and assignments, and asks the rules about calls."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import libcst as cst
from libcst.metadata import (
    Assignment,
    MetadataWrapper,
    PositionProvider,
    QualifiedNameSource,
    Scope,
    ScopeProvider,
)

from arxctl.analyze.values import DictV, Obj, Str, Sym, Value, text

MAX_DEPTH = 40
_FORMAT_FIELD = re.compile(r"\{[^{}]*\}")
_PERCENT_FIELD = re.compile(r"%[-#0 +]*\d*(?:\.\d+)?[sdrfix]")


@dataclass(frozen=True, slots=True)
class Hit:
    """What a rule found at a node: a connector action, or a hygiene problem when `connector` is None."""

    rule_id: str
    node: cst.CSTNode
    message: str
    connector: str | None = None
    action: str | None = None
    fallback_operation: str | None = None
    severity: str | None = None
    detail: tuple[tuple[str, str], ...] = ()


Outcome = tuple[Value | None, list[Hit]]


@dataclass(slots=True)
class Position:
    start_line: int
    start_col: int
    end_line: int
    end_col: int


@dataclass(slots=True)
class PythonResult:
    """Hits with their 1-based positions, or the parse error that stopped analysis."""

    hits: list[tuple[Hit, Position]] = field(default_factory=list)
    error: tuple[int, int, str] | None = None


class Ctx:
    """What rules may ask about the module being analysed."""

    def __init__(self, analyzer: Analyzer) -> None:
        self._a = analyzer

    def arg(self, call: cst.Call, index: int | None = None, keyword: str | None = None) -> cst.BaseExpression | None:
        """The expression passed at a position or as a keyword."""
        positional = 0
        for a in call.args:
            if a.keyword is not None:
                if keyword is not None and a.keyword.value == keyword:
                    return a.value
                continue
            if a.star:
                return None
            if index is not None and positional == index:
                return a.value
            positional += 1
        return None

    def value(self, node: cst.BaseExpression | None) -> Value | None:
        return None if node is None else self._a.ev(node)

    def string(self, node: cst.BaseExpression | None) -> Str | None:
        v = self.value(node)
        return v if isinstance(v, Str) else None

    def arg_value(self, call: cst.Call, index: int | None = None, keyword: str | None = None) -> Value | None:
        return self.value(self.arg(call, index, keyword))

    def arg_string(self, call: cst.Call, index: int | None = None, keyword: str | None = None) -> Str | None:
        return self.string(self.arg(call, index, keyword))

    def has_arg(self, call: cst.Call, index: int | None = None, keyword: str | None = None) -> bool:
        return self.arg(call, index, keyword) is not None

    def qualified(self, node: cst.BaseExpression) -> str | None:
        v = self.value(node)
        return v.qname if isinstance(v, Sym) else None

    @property
    def catalog(self) -> Any:
        return self._a.catalog


def _dotted(node: cst.BaseExpression) -> str | None:
    parts: list[str] = []
    while isinstance(node, cst.Attribute):
        parts.append(node.attr.value)
        node = node.value
    if isinstance(node, cst.Name):
        parts.append(node.value)
        return ".".join(reversed(parts))
    return None


class _Bindings(cst.CSTVisitor):
    """Pre-pass: what expression each assignment target is bound to, and `self.x` assignments per class."""

    def __init__(self) -> None:
        self.bound: dict[int, tuple[str, cst.CSTNode]] = {}
        self.class_attrs: dict[tuple[int, str], list[cst.BaseExpression]] = {}
        self.method_self: dict[int, cst.ClassDef] = {}
        self._classes: list[cst.ClassDef] = []
        self._selfs: list[tuple[str, cst.ClassDef] | None] = []

    def _bind(self, target: cst.CSTNode, how: str, expr: cst.CSTNode) -> None:
        if isinstance(target, cst.Name):
            self.bound[id(target)] = (how, expr)
        elif isinstance(target, cst.Attribute) and isinstance(target.value, cst.Name) and how == "value":
            owner = self._self_owner(target.value.value)
            if owner is not None and isinstance(expr, cst.BaseExpression):
                self.class_attrs.setdefault((id(owner), target.attr.value), []).append(expr)
        elif (isinstance(target, cst.Tuple | cst.List) and isinstance(expr, cst.Tuple | cst.List) and how == "value"
              and len(target.elements) == len(expr.elements)):
            for t, e in zip(target.elements, expr.elements, strict=True):
                self._bind(t.value, how, e.value)

    def _self_owner(self, name: str) -> cst.ClassDef | None:
        for entry in reversed(self._selfs):
            if entry is not None and entry[0] == name:
                return entry[1]
        return None

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self._classes.append(node)
        for stmt in node.body.body:
            if isinstance(stmt, cst.SimpleStatementLine):
                for small in stmt.body:
                    if isinstance(small, cst.Assign):
                        for t in small.targets:
                            if isinstance(t.target, cst.Name):
                                self.class_attrs.setdefault((id(node), t.target.value), []).append(small.value)
                    elif isinstance(small, cst.AnnAssign) and small.value is not None and isinstance(
                        small.target, cst.Name
                    ):
                        self.class_attrs.setdefault((id(node), small.target.value), []).append(small.value)

    def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
        self._classes.pop()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        owner = None
        parent_class = self._classes[-1] if self._classes else None
        params = node.params.params or node.params.posonly_params
        if parent_class is not None and params and parent_class.body.body and any(
            stmt is node for stmt in parent_class.body.body
        ):
            first = params[0]
            self.method_self[id(first)] = parent_class
            owner = (first.name.value, parent_class)
        self._selfs.append(owner)
        for p in (*node.params.posonly_params, *node.params.params, *node.params.kwonly_params):
            if p.annotation is not None:
                self.bound[id(p)] = ("annot", p.annotation.annotation)

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self._selfs.pop()

    def visit_Assign(self, node: cst.Assign) -> None:
        for t in node.targets:
            self._bind(t.target, "value", node.value)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if node.value is not None:
            self._bind(node.target, "value", node.value)
        elif isinstance(node.target, cst.Name):
            self.bound[id(node.target)] = ("annot", node.annotation.annotation)

    def visit_NamedExpr(self, node: cst.NamedExpr) -> None:
        self._bind(node.target, "value", node.value)

    def visit_For(self, node: cst.For) -> None:
        self._bind(node.target, "iter", node.iter)

    def visit_CompFor(self, node: cst.CompFor) -> None:
        self._bind(node.target, "iter", node.iter)

    def visit_WithItem(self, node: cst.WithItem) -> None:
        if node.asname is not None:
            self._bind(node.asname.name, "enter", node.item)


class Analyzer:
    """Evaluates expressions of one module to abstract values and collects the rules' hits."""

    def __init__(self, module: cst.Module, catalog: Any, rules: Any) -> None:
        self.wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
        self.module = self.wrapper.module
        self.scopes: dict[cst.CSTNode, Scope | None] = dict(self.wrapper.resolve(ScopeProvider))
        self.positions = self.wrapper.resolve(PositionProvider)
        self.catalog = catalog
        self.rules = rules
        self.ctx = Ctx(self)
        binder = _Bindings()
        self.module.visit(binder)
        self.bound = binder.bound
        self.class_attrs = binder.class_attrs
        self.method_self = binder.method_self
        self._memo: dict[int, Value | None] = {}
        self._calls: dict[int, Outcome] = {}
        self._busy: set[int] = set()
        self._depth = 0
        self.call_funcs: set[int] = set()

    # ------------------------------------------------------------ names

    def _referents(self, node: cst.Name) -> list[Any]:
        scope = self.scopes.get(node)
        if scope is None:
            return []
        found: list[Any] = []
        for access in scope.accesses[node]:
            found.extend(access.referents)
        if not found and node.value in scope:
            found.extend(scope[node.value])
        return sorted((r for r in found if hasattr(r, "node")), key=lambda r: self._pos_key(r.node))

    def _pos_key(self, node: cst.CSTNode) -> tuple[int, int]:
        pos = self.positions.get(node)
        return (pos.start.line, pos.start.column) if pos else (0, 0)

    def _name(self, node: cst.Name) -> Value | None:
        scope = self.scopes.get(node)
        if scope is None:
            return None
        qnames = scope.get_qualified_names_for(node)
        imports = sorted(q.name for q in qnames if q.source == QualifiedNameSource.IMPORT)
        if imports and not any(q.source == QualifiedNameSource.LOCAL for q in qnames):
            return Sym(imports[0])
        values: list[Value] = []
        for ref in self._referents(node):
            if not isinstance(ref, Assignment):
                continue
            v = self._binding_value(ref.node)
            if v is not None:
                values.append(v)
        if imports:
            values.insert(0, Sym(imports[0]))
        return _choose(values)

    def _binding_value(self, target: cst.CSTNode) -> Value | None:
        if isinstance(target, cst.ClassDef):
            return Obj("local", "class", (("id", id(target)),))
        how_expr = self.bound.get(id(target))
        if how_expr is None:
            return None
        how, expr = how_expr
        if how == "value" and isinstance(expr, cst.BaseExpression):
            return self.ev(expr)
        if how == "iter" and isinstance(expr, cst.BaseExpression):
            coll = self.ev(expr)
            return self._iterate(coll)
        if how == "enter" and isinstance(expr, cst.BaseExpression):
            v = self.ev(expr)
            if isinstance(v, Obj):
                rule = self.rules.by_family.get(v.family)
                enter = getattr(rule, "enter", None)
                return enter(v) if enter else v
            return v
        if how == "annot" and isinstance(expr, cst.BaseExpression):
            ann = self.ev(expr)
            if isinstance(ann, Sym):
                return self._construct(ann.qname, None)[0]
            if isinstance(ann, Str) and ann.known:
                return None
        return None

    def _iterate(self, coll: Value | None) -> Value | None:
        if isinstance(coll, Obj):
            rule = self.rules.by_family.get(coll.family)
            it = getattr(rule, "iterate", None)
            return it(coll) if it else None
        return None

    def _self_attr(self, base: cst.Name, attr: str) -> Value | None:
        for ref in self._referents(base):
            owner = self.method_self.get(id(ref.node)) if isinstance(ref, Assignment) else None
            if owner is None:
                continue
            values = [self.ev(e) for e in self.class_attrs.get((id(owner), attr), [])]
            return _choose([v for v in values if v is not None])
        return None

    # ------------------------------------------------------------ expressions

    def ev(self, node: cst.BaseExpression) -> Value | None:
        key = id(node)
        if key in self._memo:
            return self._memo[key]
        if key in self._busy or self._depth > MAX_DEPTH:
            return None
        self._busy.add(key)
        self._depth += 1
        try:
            value = self._ev(node)
        except RecursionError:
            value = None
        finally:
            self._depth -= 1
            self._busy.discard(key)
        self._memo[key] = value
        return value

    def _ev(self, node: cst.BaseExpression) -> Value | None:
        if isinstance(node, cst.SimpleString):
            raw = node.evaluated_value
            return text(raw.decode("latin-1") if isinstance(raw, bytes) else raw)
        if isinstance(node, cst.ConcatenatedString):
            left, right = self.ev(node.left), self.ev(node.right)
            if isinstance(left, Str) and isinstance(right, Str):
                return left + right
            return None
        if isinstance(node, cst.FormattedString):
            parts: list[str | None] = []
            for p in node.parts:
                if isinstance(p, cst.FormattedStringText):
                    parts.append(p.value.replace("{{", "{").replace("}}", "}"))
                else:
                    v = self.ev(p.expression) if p.conversion is None and p.format_spec is None else None
                    parts.extend(v.parts if isinstance(v, Str) else (None,))
            return Str(()) + Str(tuple(parts)) if parts else text("")
        if isinstance(node, cst.Integer):
            return text(str(node.evaluated_value))
        if isinstance(node, cst.Name):
            return self._name(node)
        if isinstance(node, cst.Attribute):
            return self._attribute(node)
        if isinstance(node, cst.Call):
            return self.call(node)[0]
        if isinstance(node, cst.Await):
            return self.ev(node.expression)
        if isinstance(node, cst.BinaryOperation):
            return self._binary(node)
        if isinstance(node, cst.Dict):
            items: list[tuple[str, Any]] = []
            for el in node.elements:
                if isinstance(el, cst.DictElement):
                    k = self.ev(el.key)
                    if isinstance(k, Str) and k.known is not None:
                        items.append((k.known, self.ev(el.value)))
            return DictV(tuple(items))
        if isinstance(node, cst.BooleanOperation):
            left = self.ev(node.left)
            if (isinstance(left, Str) and left.known is not None) or isinstance(left, Obj):
                return left
            return self.ev(node.right) or left
        if isinstance(node, cst.IfExp):
            return self.ev(node.body) or self.ev(node.orelse)
        if isinstance(node, cst.Subscript):
            return self._subscript(node)
        return None

    def _subscript(self, node: cst.Subscript) -> Value | None:
        base = self.ev(node.value)
        if isinstance(base, Obj):
            rule = self.rules.by_family.get(base.family)
            sub = getattr(rule, "subscript", None)
            return sub(base) if sub else None
        if isinstance(base, DictV) and len(node.slice) == 1:
            el = node.slice[0].slice
            if isinstance(el, cst.Index):
                k = self.ev(el.value)
                if isinstance(k, Str) and k.known is not None:
                    return base.get(k.known)
        return None

    def _binary(self, node: cst.BinaryOperation) -> Value | None:
        if isinstance(node.operator, cst.Add):
            left, right = self.ev(node.left), self.ev(node.right)
            if isinstance(left, Str) or isinstance(right, Str):
                return (left if isinstance(left, Str) else Str((None,))) + (
                    right if isinstance(right, Str) else Str((None,))
                )
            return None
        if isinstance(node.operator, cst.Modulo):
            left = self.ev(node.left)
            if not isinstance(left, Str) or left.known is None:
                return None
            args = node.right.elements if isinstance(node.right, cst.Tuple) else None
            values = [self.ev(e.value) for e in args] if args is not None else [self.ev(node.right)]
            return _substitute(left.known, _PERCENT_FIELD, values)
        return None

    def _attribute(self, node: cst.Attribute) -> Value | None:
        name = node.attr.value
        if isinstance(node.value, cst.Name):
            own = self._self_attr(node.value, name)
            if own is not None:
                return own
        base = self.ev(node.value)
        if isinstance(base, Sym):
            return Sym(f"{base.qname}.{name}")
        if isinstance(base, Obj) and base.family == "local":
            return self._instance_attr(base, name)
        if isinstance(base, Obj):
            rule = self.rules.by_family.get(base.family)
            attribute = getattr(rule, "attribute", None)
            return attribute(base, name, self.ctx) if attribute else None
        return None

    def _instance_attr(self, inst: Obj, attr: str) -> Value | None:
        """An attribute of an instance of a class defined in this module (assigned in its methods or body)."""
        if inst.kind != "instance":
            return None
        values = [self.ev(e) for e in self.class_attrs.get((inst.get("id"), attr), [])]
        return _choose([v for v in values if v is not None])

    # ------------------------------------------------------------ calls

    def call(self, node: cst.Call) -> Outcome:
        key = id(node)
        if key in self._calls:
            return self._calls[key]
        self._calls[key] = (None, [])
        outcome = self._call(node)
        self._calls[key] = outcome
        return outcome

    def _call(self, node: cst.Call) -> Outcome:
        func = node.func
        if isinstance(func, cst.Attribute):
            name = func.attr.value
            if isinstance(func.value, cst.Name):
                own = self._self_attr(func.value, name)
                if isinstance(own, Obj | Sym):
                    return self._invoke(own, node)
            recv = self.ev(func.value)
            if isinstance(recv, Sym):
                return self._construct(f"{recv.qname}.{name}", node)
            if isinstance(recv, Obj) and recv.family == "local":
                return self._invoke(self._instance_attr(recv, name), node)
            if isinstance(recv, Obj):
                rule = self.rules.by_family.get(recv.family)
                out = rule.method(recv, name, node, self.ctx) if rule else None
                return out if out is not None else (None, [])
            if isinstance(recv, Str):
                return self._string_method(recv, name, node), []
            return None, []
        v = self.ev(func)
        return self._invoke(v, node)

    def _invoke(self, v: Value | None, node: cst.Call) -> Outcome:
        if isinstance(v, Sym):
            return self._construct(v.qname, node)
        if isinstance(v, Obj) and v.family == "local":
            return (v.with_(kind="instance") if v.kind == "class" else None), []
        if isinstance(v, Obj):
            rule = self.rules.by_family.get(v.family)
            invoke = getattr(rule, "invoke", None)
            out = invoke(v, node, self.ctx) if invoke else None
            return out if out is not None else (None, [])
        return None, []

    def _construct(self, qname: str, node: cst.Call | None) -> Outcome:
        for rule in self.rules.for_qname(qname):
            out = rule.construct(qname, node, self.ctx)
            if out is not None:
                return out
        if node is not None and qname in ("urllib.parse.urljoin", "posixpath.join"):
            return _urljoin(self.ctx.arg_string(node, 0), self.ctx.arg_string(node, 1)), []
        if node is not None and qname in ("builtins.str",):
            return self.ctx.arg_string(node, 0), []
        return None, []

    def _string_method(self, s: Str, name: str, node: cst.Call) -> Value | None:
        if name == "format":
            if s.known is None:
                return None
            values = [self.ev(a.value) for a in node.args if a.keyword is None and not a.star]
            names = {a.keyword.value: self.ev(a.value) for a in node.args if a.keyword is not None}
            return _substitute(s.known, _FORMAT_FIELD, values, names)
        if name in ("strip", "rstrip", "lstrip", "lower", "upper") and not node.args:
            return Str(tuple(getattr(p, name)() if p is not None else None for p in s.parts))
        if name == "rstrip" and s.known is not None:
            chars = self.ctx.arg_string(node, 0)
            return text(s.known.rstrip(chars.known if chars and chars.known else None))
        if name == "join":
            arg = self.ctx.arg(node, 0)
            if isinstance(arg, cst.List | cst.Tuple) and s.known is not None:
                out = Str(("",))
                for i, el in enumerate(arg.elements):
                    v = self.ev(el.value)
                    out = out + (text(s.known) if i else Str(("",))) + (v if isinstance(v, Str) else Str((None,)))
                return out
        return None

    # ------------------------------------------------------------ driver

    def position(self, node: cst.CSTNode) -> Position:
        r = self.positions[node]
        return Position(r.start.line, r.start.column + 1, r.end.line, r.end.column + 1)

    def run(self, extra: Sequence[Callable[[Analyzer, cst.CSTNode], list[Hit]]]) -> list[tuple[Hit, Position]]:
        """Evaluate every call (and give every node to the hygiene checks); hits in source order."""
        hits: list[Hit] = []
        seen: set[tuple[int, str, str | None]] = set()
        nodes = list(_walk(self.module))
        self.call_funcs = {id(n.func) for n in nodes if isinstance(n, cst.Call)}
        for node in nodes:
            if isinstance(node, cst.Call):
                for h in self.call(node)[1]:
                    k = (id(h.node), h.rule_id, h.action)
                    if k not in seen:
                        seen.add(k)
                        hits.append(h)
            if isinstance(node, cst.Attribute):
                for h in self.rules.references(self, node):
                    k = (id(h.node), h.rule_id, h.action)
                    if k not in seen:
                        seen.add(k)
                        hits.append(h)
            for check in extra:
                hits.extend(check(self, node))
        out = [(h, self.position(h.node)) for h in hits]
        out.sort(key=lambda hp: (hp[1].start_line, hp[1].start_col, hp[0].rule_id, hp[0].action or ""))
        return out


def _walk(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children))


def _choose(values: list[Value]) -> Value | None:
    for v in values:
        if isinstance(v, Obj | Sym):
            return v
    strings = [v for v in values if isinstance(v, Str)]
    if strings:
        return strings[0]
    return values[0] if values else None


def _substitute(template: str, pattern: re.Pattern[str], values: list[Any],
                names: dict[str, Any] | None = None) -> Str:
    parts: list[str | None] = []
    last = 0
    auto = 0
    for m in pattern.finditer(template):
        parts.append(template[last:m.start()])
        field_text = m.group(0)[1:-1].split(":")[0].split("!")[0] if m.group(0).startswith("{") else ""
        if field_text and not field_text.isdigit() and names is not None:
            v = names.get(field_text)
        else:
            index = int(field_text) if field_text.isdigit() else auto
            auto += 1
            v = values[index] if index < len(values) else None
        parts.extend(v.parts if isinstance(v, Str) else (None,))
        last = m.end()
    parts.append(template[last:])
    return Str(("",)) + Str(tuple(parts))


def _urljoin(base: Str | None, rel: Str | None) -> Str | None:
    if rel is not None and "://" in rel.glob():
        return rel
    if base is None:
        return rel
    if rel is None:
        return base + Str((None,))
    b = base.known
    r = rel.prefix()
    if b is not None and r.startswith("/") and "://" in b:
        scheme, rest = b.split("://", 1)
        return text(f"{scheme}://{rest.split('/', 1)[0]}") + rel
    joiner = "" if (b or "").endswith("/") or r.startswith("/") else "/"
    return base + text(joiner) + rel


def analyze_module(source: str, catalog: Any, rules: Any,
                   extra: Sequence[Callable[[Analyzer, cst.CSTNode], list[Hit]]] = ()) -> PythonResult:
    """Parse with libcst and run the connector rules and the `extra` node checks."""
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        try:
            ast.parse(source)
        except SyntaxError as syntax:
            return PythonResult(error=(syntax.lineno or 1, syntax.offset or 1, syntax.msg))
        return PythonResult(error=(exc.raw_line, exc.raw_column + 1, exc.message))
    except (RecursionError, ValueError) as exc:
        return PythonResult(error=(1, 1, f"cannot parse: {type(exc).__name__}"))
    analyzer = Analyzer(module, catalog, rules)
    try:
        return PythonResult(hits=analyzer.run(extra))
    except RecursionError:
        return PythonResult(error=(1, 1, "source nested too deeply to analyse"))


