"""Loss spec strings: ``focal(gamma=2,alpha=[0.25,0.75])``, comma lists of them, ``k=v`` lists,
and composite losses: weighted sums such as ``ce + 0.5*focal(gamma=3)``.

Pure string handling (no torch), so the CLI can parse its arguments cheaply. Values are read
as YAML scalars/lists, so ``2`` is an int, ``0.5`` a float, ``1e-3`` a float (YAML 1.1 would
read it as a string), ``[1,2]`` a list and ``ce`` a string. Validation against the registry
(names, parameter ranges, canonical labels) lives in :mod:`losscli.losses`.
"""

from __future__ import annotations

import math
import re
from typing import Any

from losscli.errors import UsageError

#: longest spec accepted: specs are short; this keeps parsing linear-time work bounded
MAX_SPEC_CHARS = 10_000
_NAME = re.compile(r"[A-Za-z_][\w.\-]*(?::[A-Za-z_]\w*)?")  # plain name, or a plugin "pkg.module:Name"
_PLUGIN_NAME = re.compile(r"[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _split(text: str, sep: str, is_separator=None) -> list[str]:
    """Split on ``sep`` outside parentheses and brackets (``is_separator(text so far)`` may veto one);
    the raw parts, empty ones included."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                raise UsageError(f"unbalanced brackets in {_short(text)!r}")
        if ch == sep and depth == 0 and (is_separator is None or is_separator("".join(current))):
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth != 0:
        raise UsageError(f"unbalanced brackets in {_short(text)!r}")
    parts.append("".join(current))
    return parts


class EmptyItemError(UsageError):
    """An empty item in a comma list (:func:`split_list`): the error to show even where another
    reading of the value is tried next (a config key that is a count or a list)."""


def split_list(text: str, what: str, *, brackets: bool = True) -> list[str]:
    """The items of a comma list option (``--losses ce,focal(gamma=2,alpha=[1,2])``), stripped; split
    outside brackets unless ``brackets`` is False (column names). An empty or blank item (``ce,,gce``,
    a leading or trailing comma) is an error naming ``what`` and the item's position: dropping it
    silently hid a typo or a value lost to an unset shell variable. A list with no item at all
    (``''``, ``,,``) is ``[]``: the caller says that the option is empty."""
    raw = [p.strip() for p in (_split(text, ",") if brackets else text.split(","))]
    if not any(raw):
        return []
    for i, item in enumerate(raw, 1):
        if not item:
            where = _extra_comma(i, len(raw))
            raise EmptyItemError(f"{what}: item {i} of {_short(text)!r} is empty{f' ({where})' if where else ''}; "
                                 "remove the extra comma or write the missing item")
    return raw


def split_params(inner: str, spec: str) -> list[str]:
    """The ``k=v`` items inside the parentheses of ``spec``, split outside brackets. Blank parentheses
    (``focal()``) are no parameters, the defaults, as a call without arguments. An empty item
    (``focal(gamma=2,)``, ``focal(,gamma=2)``, ``focal(gamma=2,,alpha=1)``) is an error, as in the comma
    list options (:func:`split_list`): dropping it silently hid a parameter lost to a typo or an unset
    shell variable."""
    if not inner.strip():
        return []
    raw = [p.strip() for p in _split(inner, ",")]
    for i, item in enumerate(raw, 1):
        if not item:
            where = _extra_comma(i, len(raw))
            raise UsageError(f"loss spec {_short(spec)!r}: its parameter list has an empty item (item {i}"
                             f"{f', {where}' if where else ''}); remove the extra comma or write the missing "
                             "parameter")
    return raw


def _extra_comma(position: int, count: int) -> str:
    """Where the extra comma before an empty item probably is ("" in the middle of the list)."""
    return "a leading comma" if position == 1 else "a trailing comma" if position == count else ""


def parse_value(text: str) -> Any:
    """A YAML scalar or list; bare words stay strings; ``1e-3`` is a number."""
    import yaml

    stripped = text.strip()
    try:
        if _FLOAT.fullmatch(stripped):
            number = float(stripped)
            return int(stripped) if re.fullmatch(r"[+-]?\d+", stripped) else number
        value = _plain_yaml(stripped, text)
    except yaml.YAMLError:
        raise UsageError(f"cannot parse value {_short(text)!r}") from None
    except RecursionError:
        raise UsageError(f"value {_short(text)!r} is nested too deeply") from None
    except UsageError:  # a ValueError too: already the line to show
        raise
    except (ValueError, OverflowError) as exc:  # an integer of thousands of digits, a date like 2020-13-45
        raise UsageError(f"cannot read value {_short(text)!r} ({' '.join(str(exc).split())[:100]}); write a plain "
                         "number such as 0.5 or 1e-3") from None
    if isinstance(value, list):
        return [parse_value(str(v)) if isinstance(v, str) else v for v in value]
    return value


def _plain_yaml(stripped: str, text: str) -> Any:
    """``yaml.safe_load`` with what presets refuse refused here too: a key given twice, aliases (``[&a [x,x], [*a,*a]]``
    doubles per level: a short --set value expanded to gigabytes once validated) and deep nesting."""
    import yaml

    from losscli.serialize import MAX_YAML_DEPTH, DuplicateKey, refuse_aliases, strict_loader, too_deep

    loader = strict_loader(c=False)  # the presets' loader: a key given twice is refused (safe_load kept the last)
    if "*" in stripped:  # an alias needs a '*': only then is the event scan worth it
        refuse_aliases(stripped, f"value {_short(text)!r}", loader)
    try:
        value = yaml.load(stripped, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except DuplicateKey as dup:
        raise UsageError(f"value {_short(text)!r} gives key {dup.key!r} twice; give each key once") from None
    if too_deep(value):
        raise UsageError(f"value {_short(text)!r} is nested too deeply (more than {MAX_YAML_DEPTH} levels)")
    return value


class EmptyValueError(UsageError):
    """``name=`` with nothing after the ``=`` (read as YAML it was None: "cannot be None", "got None").

    ``loss`` is the loss whose parameter it is (None for the options of a sum or ``--param``), ``key``
    the parameter; :func:`losscli.losses.resolve_loss` names the parameter's default in the message."""

    def __init__(self, message: str, loss: str | None, key: str, where: str):
        super().__init__(message)
        self.loss, self.key, self.where = loss, key, where


def _empty_value(where: str, key: str, form: str, loss: str | None, hint: str = "") -> EmptyValueError:
    return EmptyValueError(f"{_short(where)}: the value for {key!r} is empty; write a value, as in {form}{hint}",
                           loss, key, where)


def parse_assignments(items: list[str], what: str = "parameter", *, empty: Any = None) -> dict[str, Any]:
    """``["gamma=2", "alpha=[1,2]"]`` -> ``{"gamma": 2, "alpha": [1, 2]}``; a key given twice is an error.

    ``empty(key, item)``: the error for ``key=`` with no value (None: the value is None, as YAML reads it)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"{what} {_short(item)!r} must look like name=value")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise UsageError(f"{what} {_short(item)!r} has an empty name")
        if key in out:
            raise UsageError(f"{what} {key!r} is given twice")
        if empty is not None and not value.strip():
            raise empty(key, item)
        out[key] = parse_value(value)
    return out


def parse_params(items: list[str], what: str = "--param") -> dict[str, Any]:
    """``--param k=v`` items (loss parameters): as :func:`parse_assignments`, an empty value refused."""
    return parse_assignments(items, what=what,
                             empty=lambda key, item: _empty_value(f"{what} {item}", key, f"{what} {key}=VALUE", None))


def parse_loss_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"focal(gamma=2)"`` -> ``("focal", {"gamma": 2})``; plugin names ``pkg.mod:Name(...)`` too."""
    if not isinstance(spec, str):
        raise UsageError(f"a loss spec must be a string such as focal or focal(gamma=2), got {spec!r}")
    if len(spec) > MAX_SPEC_CHARS:
        raise UsageError(f"loss spec is too long ({len(spec)} characters; at most {MAX_SPEC_CHARS})")
    text = spec.strip()
    if not text:
        raise UsageError("empty loss spec; write a loss name such as ce or focal(gamma=2) (see `losscli losses`)")
    m = _NAME.match(text)
    rest = text[m.end():].lstrip() if m else None
    if m is None or (rest and not (rest.startswith("(") and rest.endswith(")"))):
        if split_composite(text) is not None:
            raise UsageError(f"{_short(spec)!r} is a composite loss (a weighted sum); give one loss here")
        raise UsageError(f"cannot parse loss spec {_short(spec)!r}; write name or name(param=value,...)")
    name = m.group(0)
    if rest:
        _one_parameter_list(text, name, rest)
    inner = rest[1:-1] if rest else ""
    hint = f" (`losscli losses {name}` shows its default)"
    params = parse_assignments(split_params(inner, text), what=f"{name} parameter", empty=lambda key, _: _empty_value(
        text, key, f"{name}({key}=VALUE)", name, hint))
    return name, params


def _one_parameter_list(spec: str, name: str, rest: str) -> None:
    """Refuse text after the parenthesis that closes ``rest``'s first one (``focal(gamma=2)(x=1)``): the
    bracket check inside read it as one list and answered "unbalanced brackets in 'gamma=2)(x=1'"."""
    depth = 0
    for i, ch in enumerate(rest):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0:
            if rest[i + 1:].strip():
                raise UsageError(f"loss spec {_short(spec)!r}: {_short(rest[i + 1:].strip())!r} follows its parameter "
                                 f"list; give all parameters in one list, as {name}(a=1, b=2)")
            return


def is_plugin_name(name: str) -> bool:
    """``pkg.module:Name`` names a loss by import path instead of the registry."""
    return bool(_PLUGIN_NAME.fullmatch(name))


def format_value(value: Any) -> str:
    """A parameter value as a spec writes it: shortest exact text (``3`` for 3.0, ``0.1``, ``1e-05``);
    validation coerces it back to the parameter's type, so the spec round-trips."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, float) and math.isfinite(value):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    if value is None:  # YAML's spelling: "None" would read back as the text 'None'
        return "null"
    return str(value)


def format_loss_spec(name: str, params: dict[str, Any] | None = None) -> str:
    """Inverse of :func:`parse_loss_spec`: ``focal(gamma=3.0)``; no parentheses without parameters."""
    if not params:
        return name
    return f"{name}(" + ",".join(f"{k}={format_value(v)}" for k, v in params.items()) + ")"


# --------------------------------------------------------------------------- composite losses
#: a term so far that is a number's mantissa: the ``+`` that follows is its exponent sign (``1e+3*focal``)
_MANTISSA = re.compile(r"\s*(?:\d+\.?\d*|\.\d+)[eE]")


def _split_plus(text: str) -> list[str]:
    """Split on ``+`` outside brackets (not an exponent's sign); empty terms are kept (and refused)."""
    return [p.strip() for p in _split(text, "+", lambda so_far: not _MANTISSA.fullmatch(so_far))]


def _weighted(term: str) -> tuple[str, str] | None:
    """``"0.5*focal(gamma=3)"`` -> ``("0.5", "focal(gamma=3)")``: split at the first ``*`` outside
    brackets (loss names never contain one); None when the term has no weight."""
    depth = 0
    for i, ch in enumerate(term):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "*" and depth == 0:
            return term[:i].strip(), term[i + 1:].strip()
    return None


def _closing_paren(text: str) -> int:
    """Index of the ``)`` that closes ``text[0] == "("`` (-1 if none)."""
    depth = 0
    for i, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0:
            return i
    return -1


def split_composite(spec: str) -> tuple[list[tuple[float, str]], dict[str, Any]] | None:
    """A composite loss spec as ``([(weight, term), ...], options)``; None for a single loss.

    ``"ce + 0.5*focal(gamma=3)"`` -> ``([(1.0, "ce"), (0.5, "focal(gamma=3)")], {})``. Terms are
    split on ``+`` outside brackets; each may start with a weight ``w*`` (a positive finite
    number; 1 when absent). Keyword arguments of the whole sum (per-class ``weight``,
    ``ignore_index``) follow the parenthesised sum: ``"(ce + focal)(weight=[1,2])"``.
    Terms are not parsed further (they are single loss specs).
    """
    if not isinstance(spec, str):
        return None
    if len(spec) > MAX_SPEC_CHARS:
        raise UsageError(f"loss spec is too long ({len(spec)} characters; at most {MAX_SPEC_CHARS})")
    text = spec.strip()
    options: dict[str, Any] = {}
    grouped = False
    if text.startswith("("):
        end = _closing_paren(text)
        rest = text[end + 1:].strip() if end > 0 else None
        if rest is not None and (rest == "" or (rest.startswith("(") and rest.endswith(")"))):
            grouped, text = True, text[1:end]
            inner = rest[1:-1] if rest else ""
            options = parse_assignments(split_params(inner, spec.strip()), what="composite loss option",
                                        empty=lambda key, _: _empty_value(spec.strip(), key,
                                                                          f"({text.strip()})({key}=VALUE)", None))
    terms = _split_plus(text)
    if len(terms) == 1 and not grouped and _weighted(terms[0]) is None:
        return None  # one loss, no weight: not a composite
    parts: list[tuple[float, str]] = []
    for term in terms:
        if not term:
            raise UsageError(f"empty term in loss spec {_short(spec)!r}; write terms like ce + 0.5*focal")
        split = _weighted(term)
        weight, body = (split[0], split[1]) if split else ("1", term)
        number = float(weight) if _FLOAT.fullmatch(weight) else math.nan
        if not (math.isfinite(number) and number > 0):
            raise UsageError(f"weight {weight!r} in {_short(spec)!r} must be a positive finite number (as in 0.5*focal)")
        if not body:
            raise UsageError(f"weight {weight!r} in {_short(spec)!r} has no loss after it; write e.g. 0.5*focal")
        parts.append((number, body))
    if len(parts) < 2:
        raise UsageError(f"{_short(spec)!r}: a weight or parentheses make a sum of at least two losses, "
                         "e.g. ce + 0.5*focal; a single loss takes no weight")
    return parts, options


def format_composite(parts: list[tuple[float, str]], options: dict[str, Any] | None = None) -> str:
    """Inverse of :func:`split_composite`: ``ce + 0.5*focal(gamma=3)``; weight 1 is not written,
    other weights in their shortest exact form; options after the parenthesised sum."""
    body = " + ".join(term if float(w) == 1.0 else f"{format_value(float(w))}*{term}" for w, term in parts)
    if not options:
        return body
    return f"({body})(" + ",".join(f"{k}={format_value(v)}" for k, v in options.items()) + ")"


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
