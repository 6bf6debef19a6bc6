"""Composite validation (guide §5): several rules per field, all errors collected.

A rule set maps a field name to ``{rule: argument}``. Rules and their arguments:

``required`` (bool), ``length`` (``{"min_length", "max_length"}``), ``range``
(``{"min_value", "max_value"}``), ``regex`` (a pattern, or ``{"pattern", "flags"}``),
``email``, ``url``, ``phone``, ``uuid``, ``credit_card``, ``ip_address`` (``True`` or a dict of
that validator's keyword arguments), ``password`` (``True`` for the default policy of
:func:`validate_password_strength` — 8+ characters with lowercase, uppercase, digit and special —
or a dict of its keyword arguments, which checks only what the dict lists: an unlisted
``require_*`` class is not required and an unlisted ``min_length`` sets no minimum),
``date`` (keyword arguments of :func:`validate_date`), ``enum`` (an ``Enum`` class), ``custom`` (a callable returning a bool, or a
``(callable, message)`` pair).

Add your own rule with :func:`register_rule` (``check(value, argument) -> (ok, msg, type)``).

A missing field (absent, ``None``, blank string or empty collection) is one
``value_error.missing`` error when ``required`` and otherwise skips its other rules. Each failure is one
error ``{"loc": [field], "msg": str, "type": str}``; the input value is never echoed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from crown_nexus.core.exceptions import ConfigurationException
from crown_nexus.core.validation import _validators as v

__all__ = ["RULES", "register_rule", "validate_composite"]


def _kwargs(rule: str, arg: Any) -> dict[str, Any]:
    if arg is True:
        return {}
    if isinstance(arg, Mapping):
        return dict(arg)
    raise ConfigurationException(f"validation rule {rule!r} takes True or a dict of options")


def _bounds(prefix: str, args: dict[str, Any], unit: str = "") -> str:
    low, high = args.get(f"min_{prefix}"), args.get(f"max_{prefix}")
    if low is not None and high is not None:
        return f"between {low} and {high}{unit}"
    if low is not None:
        return f"at least {low}{unit}"
    return f"at most {high}{unit}"


def _simple(name: str, func: Callable[..., bool], msg: str, type_: str) -> Callable[[Any, Any], tuple[bool, str, str]]:
    def check(value: Any, arg: Any) -> tuple[bool, str, str]:
        return func(value, **_kwargs(name, arg)), msg, type_

    return check


def _length(value: Any, arg: Any) -> tuple[bool, str, str]:
    args = _kwargs("length", arg)
    return v.validate_length(value, **args), f"Length must be {_bounds('length', args)}", "value_error.length"


def _range(value: Any, arg: Any) -> tuple[bool, str, str]:
    args = _kwargs("range", arg)
    return v.validate_range(value, **args), f"Value must be {_bounds('value', args)}", "value_error.range"


def _regex(value: Any, arg: Any) -> tuple[bool, str, str]:
    args = dict(arg) if isinstance(arg, Mapping) else {"pattern": arg}
    return v.validate_regex(value, **args), "Value does not match the required pattern", "value_error.regex"


#: The character-class requirements of :func:`validate_password_strength`.
_PASSWORD_CLASSES = ("require_lowercase", "require_uppercase", "require_digit", "require_special")


def _password(value: Any, arg: Any) -> tuple[bool, str, str]:
    args = _kwargs("password", arg)
    if isinstance(arg, Mapping):
        # A listed policy checks only what it lists: unlisted classes are not required and an
        # unlisted ``min_length`` sets no minimum (``max_length`` keeps its input-size cap).
        args = {**dict.fromkeys(_PASSWORD_CLASSES, False), "min_length": 0, **args}
    return (
        v.validate_password_strength(value, **args),
        "Password does not meet the strength requirements",
        "value_error.password",
    )


def _enum(value: Any, arg: Any) -> tuple[bool, str, str]:
    ok = v.validate_enum(value, arg)
    allowed = ", ".join(str(m.value) for m in arg)
    return ok, f"Value must be one of: {allowed}", "value_error.enum"


def _custom(value: Any, arg: Any) -> tuple[bool, str, str]:
    func, msg = (arg if isinstance(arg, tuple) else (arg, "Invalid value"))
    if not callable(func):
        raise ConfigurationException("validation rule 'custom' takes a callable")
    return bool(func(value)), str(msg), "value_error.custom"


#: Rule name → check(value, argument) returning ``(ok, message, error type)``.
RULES: dict[str, Callable[[Any, Any], tuple[bool, str, str]]] = {
    "length": _length,
    "range": _range,
    "regex": _regex,
    "password": _password,
    "enum": _enum,
    "custom": _custom,
    "email": _simple("email", v.validate_email, "Invalid email format", "value_error.email"),
    "url": _simple("url", v.validate_url, "Invalid URL", "value_error.url"),
    "phone": _simple("phone", v.validate_phone, "Invalid phone number", "value_error.phone"),
    "uuid": _simple("uuid", v.validate_uuid, "Invalid UUID", "value_error.uuid"),
    "credit_card": _simple(
        "credit_card", v.validate_credit_card, "Invalid credit card number", "value_error.credit_card"
    ),
    "ip_address": _simple(
        "ip_address", v.validate_ip_address, "Invalid IP address", "value_error.ip_address"
    ),
    "date": _simple("date", v.validate_date, "Invalid date or out of range", "value_error.date"),
}

_BUILTIN = frozenset(RULES)


def register_rule(name: str, check: Callable[[Any, Any], tuple[bool, str, str]]) -> None:
    """Make ``name`` usable in rule sets; ``check(value, argument)`` returns ``(ok, message, type)``.

    Built-in rule names cannot be replaced (a :class:`ConfigurationException`); registering a
    custom name again replaces its check.
    """
    if name == "required" or name in _BUILTIN:
        raise ConfigurationException(f"validation rule {name!r} is built in")
    if not callable(check):
        raise ConfigurationException("a validation rule needs a callable check")
    RULES[name] = check


def validate_composite(
    data: Mapping[str, Any], rules: Mapping[str, Mapping[str, Any]]
) -> tuple[bool, list[dict[str, Any]]]:
    """Check ``data`` against ``rules``; return ``(is_valid, errors)`` with every failure listed.

    ``data`` that is not a mapping is one error at ``loc: []``. An unknown rule name or a
    malformed rule argument raises :class:`ConfigurationException` (a programming error).
    """
    if not isinstance(data, Mapping):
        return False, [{"loc": [], "msg": "Input must be an object", "type": "type_error.dict"}]
    errors: list[dict[str, Any]] = []
    for field, field_rules in rules.items():
        unknown = set(field_rules) - set(RULES) - {"required"}
        if unknown:
            raise ConfigurationException(
                f"unknown validation rule(s) for {field!r}: {', '.join(sorted(unknown))}"
            )
        value = data.get(field)
        if not v.validate_required(value):
            if field_rules.get("required"):
                errors.append({"loc": [field], "msg": "Field is required", "type": "value_error.missing"})
            continue
        for rule, arg in field_rules.items():
            if rule == "required" or arg is False or arg is None:
                continue
            ok, msg, type_ = RULES[rule](value, arg)
            if not ok:
                errors.append({"loc": [field], "msg": msg, "type": type_})
    return not errors, errors
