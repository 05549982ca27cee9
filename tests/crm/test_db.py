"""The shared-connection rules of crm.db: transactions never interleave, failures roll back."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from crm.db import Database


async def _table(db: Database) -> None:
    await db.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
    await db.execute("INSERT INTO counter (id, n) VALUES (1, 0)")


async def test_commit_and_rollback(db: Database) -> None:
    await _table(db)
    async with db.transaction() as tx:
        await tx.execute("UPDATE counter SET n = 5 WHERE id = 1")
    with pytest.raises(RuntimeError, match="boom"):
        async with db.transaction() as tx:
            await tx.execute("UPDATE counter SET n = 99 WHERE id = 1")
            raise RuntimeError("boom")
    assert await db.fetch_value("SELECT n FROM counter WHERE id = 1") == 5
    assert not db.conn.in_transaction


async def test_read_modify_write_from_many_tasks_loses_nothing(db: Database) -> None:
    await _table(db)

    async def bump() -> None:
        async with db.transaction() as tx:
            n = await tx.fetch_value("SELECT n FROM counter WHERE id = 1")
            await asyncio.sleep(0)  # let every other task try to run in between
            await tx.execute("UPDATE counter SET n = ? WHERE id = 1", (n + 1,))

    await asyncio.gather(*(bump() for _ in range(200)))
    assert await db.fetch_value("SELECT n FROM counter WHERE id = 1") == 200


async def test_one_failing_task_does_not_undo_another(db: Database) -> None:
    await _table(db)
    started = asyncio.Event()

    async def failing() -> None:
        async with db.transaction() as tx:
            await tx.execute("UPDATE counter SET n = n + 100 WHERE id = 1")
            started.set()
            await asyncio.sleep(0)
            raise ValueError("rejected")

    async def succeeding() -> None:
        await started.wait()
        async with db.transaction() as tx:
            await tx.execute("UPDATE counter SET n = n + 1 WHERE id = 1")

    results = await asyncio.gather(failing(), succeeding(), return_exceptions=True)
    assert isinstance(results[0], ValueError) and results[1] is None
    assert await db.fetch_value("SELECT n FROM counter WHERE id = 1") == 1


async def test_reads_do_not_see_uncommitted_writes_of_other_tasks(db: Database) -> None:
    await _table(db)
    inside = asyncio.Event()
    release = asyncio.Event()

    async def writer() -> None:
        with pytest.raises(KeyError):
            async with db.transaction() as tx:
                await tx.execute("UPDATE counter SET n = 42 WHERE id = 1")
                inside.set()
                await release.wait()
                raise KeyError("roll back")

    task = asyncio.create_task(writer())
    await inside.wait()
    reader = asyncio.create_task(db.fetch_value("SELECT n FROM counter WHERE id = 1"))
    await asyncio.sleep(0.01)
    assert not reader.done()  # waits for the transaction instead of reading its dirty state
    release.set()
    await task
    assert await reader == 0


async def test_nested_transaction_is_a_savepoint(db: Database) -> None:
    await _table(db)
    async with db.transaction() as tx:
        await tx.execute("UPDATE counter SET n = 1 WHERE id = 1")
        with pytest.raises(LookupError):
            async with db.transaction() as inner:
                await inner.execute("UPDATE counter SET n = 2 WHERE id = 1")
                raise LookupError
        # a read through the Database inside the transaction joins it instead of deadlocking
        assert await db.fetch_value("SELECT n FROM counter WHERE id = 1") == 1
    assert await db.fetch_value("SELECT n FROM counter WHERE id = 1") == 1


async def test_cancelled_transaction_rolls_back_and_frees_the_lock(db: Database) -> None:
    await _table(db)
    inside = asyncio.Event()

    async def slow() -> None:
        async with db.transaction() as tx:
            await tx.execute("UPDATE counter SET n = 7 WHERE id = 1")
            inside.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(slow())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await db.fetch_value("SELECT n FROM counter WHERE id = 1") == 0
    await db.execute("UPDATE counter SET n = 8 WHERE id = 1")
    assert await db.fetch_value("SELECT n FROM counter WHERE id = 1") == 8


async def test_writing_inside_a_read_block_is_refused(db: Database) -> None:
    await _table(db)
    async with db.reading() as r:
        with pytest.raises(RuntimeError):
            await r.execute("UPDATE counter SET n = 1")
        with pytest.raises(RuntimeError):
            async with db.transaction():
                pass
    assert await db.fetch_value("SELECT n FROM counter") == 0


async def test_a_failed_commit_is_rolled_back(db: Database) -> None:
    await db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    await db.execute("CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES parent (id))")
    with pytest.raises(sqlite3.IntegrityError):
        async with db.transaction() as tx:
            # a deferred foreign key is only checked at COMMIT, which then fails
            await tx.execute("PRAGMA defer_foreign_keys = ON")
            await tx.execute("INSERT INTO child (id, parent_id) VALUES (1, 42)")
    assert not db.conn.in_transaction
    assert await db.fetch_value("SELECT COUNT(*) FROM child") == 0
    await db.execute("INSERT INTO parent (id) VALUES (42)")
    assert await db.fetch_value("SELECT COUNT(*) FROM parent") == 1
