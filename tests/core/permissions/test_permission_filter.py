"""One object rule for objects and lists: ObjectRule.allows, ObjectRule.where / permission_filter.

Every database test runs on SQLite and PostgreSQL (``database_url``) and, through the package
conftest, on every implementation of the registry's bit checks.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import ForeignKey, Integer, String, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crown_nexus.core.exceptions import PermissionDeniedException
from crown_nexus.core.permissions import (
    ObjectRule,
    PermissionChecker,
    ShareRelation,
    permission_filter,
)
from crown_nexus.testing import override_service
from tests.core.permissions.conftest import EventRecorder


class Base(DeclarativeBase):
    """Tables private to this module (never the demo's)."""


class Doc(Base):
    """A document owned by a user (string ids)."""

    __tablename__ = "pf_docs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    title: Mapped[str] = mapped_column(String(100), default="")


class DocShare(Base):
    """A grant (read | write) on a document for a user."""

    __tablename__ = "pf_doc_shares"

    document_id: Mapped[int] = mapped_column(
        ForeignKey("pf_docs.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    grant: Mapped[str] = mapped_column(String(16))


class Note(Base):
    """A row whose owner column is an integer (ids must bind as the column's type)."""

    __tablename__ = "pf_notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    author: Mapped[int] = mapped_column(Integer)


SHARES = ShareRelation(
    object_column=DocShare.document_id,
    user_column=DocShare.user_id,
    grant_column=DocShare.grant,
    target_column=Doc.id,
)
RULE = ObjectRule(Doc.owner_id, shares=SHARES)
ACTIONS = ("document:read", "document:update", "document:delete")


def _user(
    uid: str, role: str = "user", perms: tuple[str, ...] = (), active: bool = True
) -> dict[str, Any]:
    return {"id": uid, "role": role, "permissions": list(perms), "is_active": active}


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The module's tables on the database under test, dropped afterwards."""
    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    try:
        yield async_sessionmaker(engine, expire_on_commit=False)
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
        await engine.dispose()


async def _seed(
    factory: async_sessionmaker[AsyncSession],
    docs: dict[int, str | None],
    shares: dict[tuple[int, str], str],
) -> None:
    async with factory() as db:
        await db.execute(delete(DocShare))
        await db.execute(delete(Doc))
        db.add_all(Doc(id=i, owner_id=owner, title=f"d{i}") for i, owner in docs.items())
        await db.flush()
        db.add_all(DocShare(document_id=d, user_id=u, grant=g) for (d, u), g in shares.items())
        await db.commit()


async def _listed(factory: async_sessionmaker[AsyncSession], user: Any, perm: str) -> list[int]:
    async with factory() as db:
        query = permission_filter(select(Doc.id), user, perm, rule=RULE)
        return sorted((await db.execute(query)).scalars().all())


async def _allowed(factory: async_sessionmaker[AsyncSession], user: Any, perm: str) -> list[int]:
    """The documents the object check allows, each checked with its grants loaded from the DB."""
    async with factory() as db:
        docs = (await db.execute(select(Doc))).scalars().all()
        return sorted(
            [
                d.id
                for d in docs
                if RULE.allows(user, d, perm, grants=await RULE.grants_of(db, user, d))
            ]
        )


DOCS = {1: "alice", 2: "alice", 3: "bob", 4: "carol", 5: None}
GRANTS = {(3, "alice"): "read", (4, "alice"): "write", (1, "bob"): "write", (3, "dave"): "write"}


async def _both(factory: async_sessionmaker[AsyncSession], user: Any, perm: str) -> list[int]:
    listed = await _listed(factory, user, perm)
    assert listed == await _allowed(factory, user, perm)
    return listed


async def test_owners_and_shares(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Owners reach their own documents; read shares allow reading only, write shares updating."""
    await _seed(sessions, DOCS, GRANTS)
    alice = _user("alice")
    assert await _both(sessions, alice, "document:read") == [1, 2, 3, 4]
    assert await _both(sessions, alice, "document:update") == [1, 2, 4]
    assert await _both(sessions, alice, "document:delete") == [1, 2]
    assert await _both(sessions, alice, "document:share") == [1, 2]
    bob = _user("bob")
    assert await _both(sessions, bob, "document:read") == [1, 3]
    assert await _both(sessions, bob, "document:update") == [1, 3]
    assert await _both(sessions, _user("erin"), "document:read") == []


async def test_admins(sessions: async_sessionmaker[AsyncSession]) -> None:
    """system:admin and the resource admin (document:admin) reach every document, even unowned."""
    await _seed(sessions, DOCS, GRANTS)
    for admin in (
        _user("root", "guest", ("system:admin",)),
        _user("boss", "guest", ("document:admin",)),
        _user("a", "admin"),
    ):
        for perm in ACTIONS:
            assert await _both(sessions, admin, perm) == [1, 2, 3, 4, 5]
    # document:admin is no admin of another resource
    resource_admin = _user("boss", "guest", ("product:admin",))
    assert await _both(sessions, resource_admin, "document:read") == []


async def test_inactive_and_missing_base_permission(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Inactive users and users without the base permission reach nothing, not even with shares."""
    await _seed(sessions, DOCS, GRANTS)
    assert await _both(sessions, _user("alice", active=False), "document:read") == []
    assert await _both(sessions, _user("alice", "admin", active=False), "document:read") == []
    assert await _both(sessions, _user("dave", "guest"), "document:read") == []
    assert await _both(sessions, _user("dave", "user"), "document:read") == [3]
    # client holds document:read only: a write share does not let it update
    assert await _both(sessions, _user("alice", "client"), "document:read") == [1, 2, 3, 4]
    assert await _both(sessions, _user("alice", "client"), "document:update") == []
    assert await _both(sessions, None, "document:read") == []
    assert await _both(sessions, {"role": "user"}, "document:read") == []


async def test_unregistered_permission(sessions: async_sessionmaker[AsyncSession]) -> None:
    """A permission never registered is denied (not an error), except to a superuser."""
    await _seed(sessions, DOCS, GRANTS)
    assert await _both(sessions, _user("alice", "manager"), "widget:read") == []
    assert await _both(sessions, _user("root", "admin"), "widget:read") == [1, 2, 3, 4, 5]


async def test_no_duplicates_when_owner_also_has_a_share(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A row the user both owns and holds shares on is listed once (EXISTS, not a join)."""
    await _seed(sessions, {1: "alice"}, {(1, "alice"): "write"})
    async with sessions() as db:
        query = permission_filter(select(Doc), _user("alice"), "document:read", rule=RULE)
        rows = (await db.execute(query)).scalars().all()
        assert [d.id for d in rows] == [1]
        count = select(func.count()).select_from(query.subquery())
        assert await db.scalar(count) == 1


async def test_without_shares_matches_check_object_permission(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """owner_column alone is SPEC §4's check_object_permission, object by object."""
    await _seed(sessions, DOCS, GRANTS)
    rule = ObjectRule(Doc.owner_id)
    users = [
        _user("alice"),
        _user("bob", "client"),
        _user("x", "guest", ("document:admin",)),
        _user("alice", active=False),
        _user("root", "admin"),
    ]
    async with sessions() as db:
        docs = (await db.execute(select(Doc))).scalars().all()
        for user in users:
            for perm in ACTIONS:
                listed = (
                    (
                        await db.execute(
                            permission_filter(select(Doc.id), user, perm, owner_column=Doc.owner_id)
                        )
                    )
                    .scalars()
                    .all()
                )
                expected = [
                    d.id for d in docs if PermissionChecker.check_object_permission(user, d, perm)
                ]
                assert sorted(listed) == sorted(expected)
                assert [d.id for d in docs if rule.allows(user, d, perm)] == [
                    d.id for d in docs if PermissionChecker.check_object_permission(user, d, perm)
                ]


async def test_integer_owner_column_binds_its_type(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """An integer owner column compares as str(owner) == user id: "7" owns 7, "07" and "x" own nothing."""
    async with sessions() as db:
        db.add_all([Note(id=1, author=7), Note(id=2, author=8)])
        await db.commit()
        notes = (await db.execute(select(Note))).scalars().all()
        rule = ObjectRule(Note.author)
        for uid, expected in (("7", [1]), ("07", []), ("x", []), (" 7", [])):
            user = _user(uid)
            listed = (
                await db.execute(rule.filter(select(Note.id), user, "document:read"))
            ).scalars()
            assert sorted(listed) == expected
            assert [n.id for n in notes if rule.allows(user, n, "document:read")] == expected


def test_permission_filter_needs_a_rule() -> None:
    """Neither rule= nor owner_column= is a TypeError, not a silently unfiltered query."""
    with pytest.raises(TypeError):
        permission_filter(select(Doc), _user("alice"), "document:read")


def test_admin_query_is_unchanged_and_none_is_false() -> None:
    """An admin's listing is the query itself; nobody's is a false clause."""
    query = select(Doc)
    assert RULE.filter(query, _user("root", "admin"), "document:read") is query
    assert RULE.decide(None, "document:read").scope == "none"
    assert RULE.decide(_user("alice"), "document:read").share_grants == frozenset({"read", "write"})
    assert RULE.decide(_user("alice"), "document:update").share_grants == frozenset({"write"})
    assert RULE.decide(_user("alice"), "document:delete").share_grants == frozenset()


async def test_check_and_ensure_publish_denials(sessions: async_sessionmaker[AsyncSession]) -> None:
    """check() loads the grants; a denial publishes permission.object_denied; ensure() raises 403."""
    await _seed(sessions, DOCS, GRANTS)
    recorder = EventRecorder()
    async with sessions() as db:
        doc3 = await db.get(Doc, 3)
        with override_service("event_service", recorder):
            assert await RULE.check(db, _user("alice"), doc3, "document:read")
            assert not await RULE.check(db, _user("alice"), doc3, "document:update")
            with pytest.raises(PermissionDeniedException) as info:
                await RULE.ensure(db, _user("erin"), doc3, "document:read")
            await asyncio.sleep(0)
            await asyncio.sleep(0)
    assert info.value.status_code == 403
    names = [name for name, _ in recorder.published]
    assert names == ["permission.object_denied", "permission.object_denied"]
    assert recorder.published[0][1]["resource_id"] == "3"
    assert recorder.published[0][1]["permission"] == "document:update"


# --- property: for every user, list results == the documents the object check allows --------

_IDS = ["u0", "u1", "u2", "u3", "u4"]
# "user" (document permissions, no document:admin) is the interesting case: weight it
_ROLES = ["user", "user", "user", "client", "admin", "manager", "read_only", "guest", "nope"]
_EXTRA = ["document:admin", "document:read", "document:update", "system:admin", "product:admin"]

users_st = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(_ROLES),
            "permissions": st.lists(st.sampled_from(_EXTRA), max_size=2, unique=True),
            "is_active": st.sampled_from([True, True, True, False]),
        }
    ),
    min_size=1,
    max_size=len(_IDS),
)
docs_st = st.lists(st.sampled_from([*_IDS, None, "ghost"]), max_size=6)
shares_st = st.dictionaries(
    st.tuples(st.integers(0, 5), st.sampled_from(_IDS)),
    st.sampled_from(["read", "write", "other"]),
    min_size=2,
    max_size=20,
)


@pytest.fixture
def property_db(database_url: str) -> Iterator[dict[str, Any]]:
    """An engine on its own loop shared by the hypothesis examples; tables dropped afterwards."""
    loop = asyncio.new_event_loop()
    engine = create_async_engine(database_url)

    async def create() -> None:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
            await conn.run_sync(Base.metadata.create_all)

    async def drop() -> None:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
        await engine.dispose()

    loop.run_until_complete(create())
    try:
        yield {"loop": loop, "factory": async_sessionmaker(engine, expire_on_commit=False)}
    finally:
        loop.run_until_complete(drop())
        loop.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(users=users_st, owners=docs_st, shares=shares_st)
def test_list_and_detail_always_agree(
    property_db: dict[str, Any],
    users: list[dict[str, Any]],
    owners: list[str | None],
    shares: dict[tuple[int, str], str],
) -> None:
    """For random users, documents and shares, the filtered list is exactly what allows() allows."""
    docs = {i + 1: owner for i, owner in enumerate(owners)}
    grants = {(d + 1, u): g for (d, u), g in shares.items() if d + 1 in docs}
    people = [{"id": _IDS[i], **spec} for i, spec in enumerate(users)]
    factory = property_db["factory"]

    async def run() -> None:
        await _seed(factory, docs, grants)
        for user in people:
            for perm in ACTIONS:
                listed = await _listed(factory, user, perm)
                expected = sorted(
                    d
                    for d, owner in docs.items()
                    if RULE.allows(
                        user, Doc(id=d, owner_id=owner), perm, grants=[grants.get((d, user["id"]))]
                    )
                )
                assert listed == expected, (user, perm)
                assert listed == await _allowed(factory, user, perm)

    property_db["loop"].run_until_complete(run())


def test_share_relation_custom_grants() -> None:
    """A ShareRelation's grants map decides which grant values allow which action."""
    relation = ShareRelation(
        object_column=DocShare.document_id,
        user_column=DocShare.user_id,
        grant_column=DocShare.grant,
        target_column=Doc.id,
        grants={"read": frozenset({"viewer", "editor"}), "delete": frozenset({"editor"})},
    )
    rule = ObjectRule(Doc.owner_id, shares=relation)
    doc = Doc(id=1, owner_id=str(uuid.uuid4()))
    alice = _user("alice")
    assert rule.allows(alice, doc, "document:read", grants=["viewer"])
    assert not rule.allows(alice, doc, "document:delete", grants=["viewer"])
    assert rule.allows(alice, doc, "document:delete", grants=["editor"])
    assert not rule.allows(alice, doc, "document:update", grants=["editor", "write"])


async def test_check_with_given_grants_on_a_mapping() -> None:
    """check() accepts grants from elsewhere (a cache) and a dict object; denials name the model."""
    recorder = EventRecorder()
    record = {"id": 9, "owner_id": "bob"}
    with override_service("event_service", recorder):
        assert await RULE.check(None, _user("alice"), record, "document:read", grants=["read"])
        assert not await RULE.check(
            None, _user("alice"), record, "document:update", grants=["read"]
        )
        with pytest.raises(PermissionDeniedException) as info:
            await RULE.ensure(None, _user("alice"), record, "document:read", grants=[None])
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    assert info.value.resource_type == "Doc"
    assert [p["resource_type"] for _, p in recorder.published] == ["Doc", "Doc"]
    assert [p["resource_id"] for _, p in recorder.published] == ["9", "9"]
