"""``PaginationService`` (guide §7), registered as ``"pagination_service"``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from crown_nexus.core.exceptions import ConfigurationException
from crown_nexus.core.pagination._cursor import CursorCodec, _default_secret
from crown_nexus.core.pagination._paginate import paginate_with_cursor, paginate_with_offset
from crown_nexus.core.pagination.models import (
    CursorPaginationParams,
    CursorPaginationResult,
    OffsetPaginationParams,
    OffsetPaginationResult,
)

__all__ = ["PaginationService", "get_pagination_service"]


class PaginationService:
    """Offset and cursor pagination bound to one database session (and a cursor secret).

    Build one per session: ``get_pagination_service(db)`` or
    ``get_service("pagination_service", db=db)``. Metrics are recorded on every call.
    """

    def __init__(self, db: Any = None, secret_key: str | bytes | None = None) -> None:
        self.db = db
        self._secret_key = secret_key

    @property
    def secret_key(self) -> str | bytes:
        """The secret the cursor key is derived from (the settings' secret key unless one was given)."""
        return self._secret_key or _default_secret()

    def _session(self) -> Any:
        if self.db is None:
            raise ConfigurationException(
                "PaginationService needs a database session: get_pagination_service(db)"
            )
        return self.db

    async def paginate_with_offset(
        self,
        model_class: Any,
        query: Any = None,
        params: OffsetPaginationParams | None = None,
        response_model: Any = None,
        transform_func: Callable[[Any], Any] | None = None,
        **options: Any,
    ) -> OffsetPaginationResult[Any]:
        """See :func:`crown_nexus.core.pagination.paginate_with_offset` (on the service's session)."""
        return await paginate_with_offset(
            self._session(), model_class, query, params, response_model, transform_func, **options
        )

    async def paginate_with_cursor(
        self,
        model_class: Any,
        query: Any = None,
        params: CursorPaginationParams | None = None,
        response_model: Any = None,
        transform_func: Callable[[Any], Any] | None = None,
        **options: Any,
    ) -> CursorPaginationResult[Any]:
        """See :func:`crown_nexus.core.pagination.paginate_with_cursor` (on the service's session)."""
        options.setdefault("secret_key", self.secret_key)
        return await paginate_with_cursor(
            self._session(), model_class, query, params, response_model, transform_func, **options
        )

    def encode_cursor(self, fingerprint: str, values: Sequence[Any], direction: str = "n") -> str:
        """A cursor encrypted with the service's key and bound to ``fingerprint`` (for custom
        keyset implementations: make the fingerprint identify the whole query, e.g. with
        :func:`~crown_nexus.core.pagination.query_fingerprint`)."""
        return CursorCodec(self.secret_key).encode(fingerprint, values, direction)

    def decode_cursor(self, cursor: Any, fingerprint: str | None = None) -> tuple[str, list[Any]]:
        """Authenticate and decrypt a cursor made by :meth:`encode_cursor` for ``fingerprint``;
        raises :class:`InvalidCursorException` (422) for anything else."""
        return CursorCodec(self.secret_key).decode(cursor, fingerprint)


def get_pagination_service(db: Any = None, secret_key: str | bytes | None = None) -> PaginationService:
    """A :class:`PaginationService` bound to ``db`` (an ``AsyncSession``)."""
    return PaginationService(db, secret_key)
