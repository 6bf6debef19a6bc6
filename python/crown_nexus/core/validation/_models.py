"""Pydantic model validation (guide §5): failures become :class:`ValidationException`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from crown_nexus.core.exceptions import ConfigurationException, ValidationException
from crown_nexus.logging import get_logger

__all__ = ["validate_data", "validate_model"]

M = TypeVar("M", bound=BaseModel)

_logger = get_logger("crown_nexus.core.validation")


def _require_model_class(model: Any) -> None:
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ConfigurationException("validation needs a pydantic BaseModel subclass")


def validate_data(data: Any, model: type[M], *, strict: bool | None = None) -> M:
    """Validate ``data`` (a mapping, or an object read by attribute) against pydantic ``model``.

    Returns the validated model instance. Raises :class:`ValidationException` whose ``errors``
    are pydantic's (``loc``, ``msg``, ``type`` per item; the rejected input is never included).
    """
    _require_model_class(model)
    try:
        if isinstance(data, Mapping) or isinstance(data, model):
            return model.model_validate(data, strict=strict)
        return model.model_validate(data, strict=strict, from_attributes=True)
    except PydanticValidationError as exc:
        error = ValidationException.from_errors(exc)
        _logger.debug(
            "Data failed model validation",
            model=model.__name__,
            errors=[{"loc": e["loc"], "type": e["type"]} for e in error.errors],
        )
        raise error from None


def validate_model(instance: M) -> M:
    """Validate an existing model instance again (e.g. after its fields were assigned directly).

    Returns a fresh, validated instance of the same class; raises :class:`ValidationException`.
    """
    if not isinstance(instance, BaseModel):
        raise ConfigurationException("validate_model needs a pydantic model instance")
    return validate_data(instance.model_dump(), type(instance))
