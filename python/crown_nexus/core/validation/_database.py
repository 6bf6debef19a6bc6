"""Database validations (guide §5) over a SQLAlchemy 2 async session."""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, inspect, select
from sqlalchemy.exc import NoInspectionAvailable
from sqlalchemy.ext.asyncio import AsyncSession

from crown_nexus.core.exceptions import ConfigurationException

__all__ = ["validate_unique"]


def _column(model: Any, field: str) -> Any:
    try:
        mapper = inspect(model)
    except NoInspectionAvailable:
        raise ConfigurationException(
            f"validate_unique: {model!r} is not a mapped SQLAlchemy model"
        ) from None
    attrs = mapper.column_attrs
    if not isinstance(field, str) or field not in attrs:
        raise ConfigurationException(
            f"validate_unique: {mapper.class_.__name__} has no column {field!r}",
            details={"field": str(field)},
        )
    return getattr(mapper.class_, field)


async def validate_unique(
    field: str,
    value: Any,
    model: Any,
    db: AsyncSession,
    exclude_id: Any = None,
    id_field: str = "id",
) -> bool:
    """True when no row of ``model`` has ``field == value`` (one ``EXISTS`` query).

    ``exclude_id`` ignores the row whose ``id_field`` equals it (an update keeping its own value).
    An unknown column or a non-model raises :class:`ConfigurationException` (a programming error).
    """
    if db is None:
        raise ConfigurationException("validate_unique needs a database session")
    column = _column(model, field)
    condition = column == value
    if exclude_id is not None:
        condition = condition & (_column(model, id_field) != exclude_id)
    taken = await db.scalar(select(exists().where(condition)))
    return not bool(taken)
