"""Binding a request to a route handler's parameters, decoded into their annotations.

::

    @svc.put("/notes/{name}")
    async def write(name: str, body: Note, ctx, dry_run: bool = False): ...

* a parameter named in the path (``{name}``) comes from the path;
* a parameter named ``body``, or annotated with a pydantic model or a msgspec Struct, is the JSON
  body (at most one);
* ``ctx`` (by name, or annotated ``Context`` / ``RequestContext``) is the request's context;
* every other parameter is a query parameter (required unless it has a default; ``list[...]``
  collects repeated values).

Decoding uses msgspec (pydantic models validate themselves). A value that does not fit raises
:class:`ParamError`, which names the field (``path.name``, ``query.limit``, ``body.text``).
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from setpiece._json import DepthError, check_depth
from setpiece.errors import ConfigError

__all__ = ["Param", "ParamError", "Signature", "compile_signature", "path_names"]

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_AT = re.compile(r" - at `\$(.*)`$")
_MISSING = re.compile(r"^Object missing required field `([^`]*)`")
_EMPTY = inspect.Parameter.empty


class ParamError(ValueError):
    """A request does not fit the handler's parameters. ``status`` is 400, 413, 415 or 422."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status


def path_names(path: str) -> list[str]:
    """The placeholders of a path template, in order."""
    return _PLACEHOLDER.findall(path)


def is_pydantic(annotation: Any) -> bool:
    return isinstance(annotation, type) and hasattr(annotation, "model_validate_json")


def is_struct(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, msgspec.Struct)


def _is_context(name: str, annotation: Any) -> bool:
    if name == "ctx":
        return True
    return getattr(annotation, "__name__", None) in ("Context", "SyncContext", "RequestContext")


def _is_list(annotation: Any) -> bool:
    if annotation in (list, tuple, set, frozenset):
        return True
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, set, frozenset):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_list(a) for a in typing.get_args(annotation) if a is not type(None))
    return False


@dataclass(frozen=True, slots=True)
class Param:
    """One handler parameter and where its value comes from."""

    name: str
    source: str  # "path" | "query" | "body" | "ctx"
    annotation: Any
    required: bool
    default: Any
    many: bool = False

    def convert(self, value: Any) -> Any:
        """A path or query string (or a list of them) decoded into the annotation."""
        if self.annotation in (_EMPTY, str, Any):
            return value
        try:
            return msgspec.convert(value, self.annotation, strict=False)
        except msgspec.ValidationError as exc:
            raise ParamError(f"{self.source}.{self.name}", _plain(str(exc))) from None


def _plain(message: str) -> str:
    return _AT.sub("", message)


def _msgspec_body_error(exc: msgspec.ValidationError) -> ParamError:
    text = str(exc)
    missing = _MISSING.match(text)
    at = _AT.search(text)
    path = at.group(1) if at else ""
    if missing:
        path = f"{path}.{missing.group(1)}"
    field = "body" + re.sub(r"\[(\d+)\]", r".\1", path)
    return ParamError(field, _plain(text))


class Signature:
    """How one handler's parameters are filled from a request."""

    __slots__ = (
        "_decode_body",
        "body",
        "ctx",
        "fn",
        "is_async",
        "params",
        "path",
        "query",
        "returns",
    )

    def __init__(self, fn: Callable[..., Any], params: list[Param], returns: Any) -> None:
        self.fn = fn
        self.params = params
        self.path = [p for p in params if p.source == "path"]
        self.query = [p for p in params if p.source == "query"]
        found = [p for p in params if p.source == "body"]
        self.body = found[0] if found else None
        ctx = [p for p in params if p.source == "ctx"]
        self.ctx = ctx[0].name if ctx else None
        self.is_async = inspect.iscoroutinefunction(fn)
        self.returns = returns
        self._decode_body = _body_decoder(self.body) if self.body else None

    def bind(
        self,
        path: Mapping[str, str],
        query: Mapping[str, list[str]],
        body: bytes,
        ctx: Any,
    ) -> dict[str, Any]:
        """The keyword arguments for one call; raises ParamError naming the first bad field."""
        kwargs: dict[str, Any] = {}
        for p in self.path:
            kwargs[p.name] = p.convert(path[p.name])
        for p in self.query:
            values = query.get(p.name)
            if not values:
                if p.required:
                    raise ParamError(f"query.{p.name}", "required query parameter is missing")
                continue
            kwargs[p.name] = p.convert(values if p.many else values[-1])
        if self.body is not None:
            assert self._decode_body is not None
            if not body:
                if self.body.required:
                    raise ParamError("body", "a JSON body is required")
                kwargs[self.body.name] = self.body.default
            else:
                try:
                    check_depth(body, "body")
                except DepthError as exc:
                    raise ParamError("body", str(exc).removeprefix("body: "), 400) from None
                kwargs[self.body.name] = self._decode_body(body)
        if self.ctx is not None:
            kwargs[self.ctx] = ctx
        return kwargs


def _body_decoder(param: Param) -> Callable[[bytes], Any]:
    annotation = param.annotation
    if is_pydantic(annotation):
        model: Any = annotation

        def decode_model(body: bytes) -> Any:
            try:
                return model.model_validate_json(body)
            except ValueError as exc:  # pydantic.ValidationError
                errors = getattr(exc, "errors", None)
                if errors is None:
                    raise ParamError("body", str(exc)) from None
                first = errors()[0]
                loc = ".".join(str(x) for x in first.get("loc", ()))
                if first.get("type") == "json_invalid":
                    raise ParamError("body", f"not valid JSON ({first.get('msg')})", 400) from None
                field = f"body.{loc}" if loc else "body"
                raise ParamError(field, str(first.get("msg", "invalid"))) from None

        return decode_model
    target = Any if annotation is _EMPTY else annotation
    decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(target)

    def decode(body: bytes) -> Any:
        try:
            return decoder.decode(body)
        except msgspec.ValidationError as exc:
            raise _msgspec_body_error(exc) from None
        except msgspec.DecodeError as exc:
            raise ParamError("body", f"not valid JSON ({exc})", 400) from None

    return decode


def compile_signature(fn: Callable[..., Any], path: str, where: str) -> Signature:
    """Check a route handler against its path and say where each parameter comes from."""
    if not callable(fn):
        raise ConfigError(f"{where}: {fn!r} is not callable")
    if not path.startswith("/"):
        raise ConfigError(f"{where}: the path must start with '/', got {path!r}")
    names = path_names(path)
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: the path {path!r} names a parameter twice")
    if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
        raise ConfigError(f"{where}: generators are not route handlers")
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # unresolvable forward references
        raise ConfigError(f"{where}: cannot resolve the annotations ({exc})") from None
    params: list[Param] = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ConfigError(f"{where}: *args and **kwargs are not supported ({p.name})")
        if p.kind is p.POSITIONAL_ONLY:
            raise ConfigError(f"{where}: positional-only parameters are not supported")
        annotation = hints.get(p.name, _EMPTY)
        required = p.default is _EMPTY
        if p.name in names:
            source = "path"
        elif _is_context(p.name, annotation):
            source = "ctx"
        elif p.name == "body" or is_pydantic(annotation) or is_struct(annotation):
            source = "body"
        else:
            source = "query"
        if source == "query" and annotation is not _EMPTY:
            _check_convertible(annotation, f"{where}: query parameter {p.name!r}")
        if source == "path" and annotation is not _EMPTY:
            _check_convertible(annotation, f"{where}: path parameter {p.name!r}")
        params.append(
            Param(p.name, source, annotation, required, None if required else p.default,
                  many=source == "query" and _is_list(annotation))
        )
    for name in names:
        if not any(p.name == name for p in params):
            raise ConfigError(f"{where}: the path names {{{name}}} but the handler has no "
                              f"parameter {name!r}")
    if sum(p.source == "body" for p in params) > 1:
        raise ConfigError(f"{where}: more than one body parameter "
                          f"({[p.name for p in params if p.source == 'body']})")
    if sum(p.source == "ctx" for p in params) > 1:
        raise ConfigError(f"{where}: more than one context parameter")
    return Signature(fn, params, hints.get("return", _EMPTY))


def _check_convertible(annotation: Any, where: str) -> None:
    try:
        msgspec.json.schema(annotation)
    except Exception as exc:
        raise ConfigError(f"{where}: cannot decode into {annotation!r} ({exc})") from None
