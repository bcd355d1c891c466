"""Where the SQL store keeps attachment bytes: files beside SQLite, chunk rows in PostgreSQL.

Both stream: bytes arrive and leave in 256 KiB blocks, never whole, and no transaction stays
open while the client sends or reads. Both replace atomically: a new upload is written aside
(a temporary file, or chunk rows under a fresh generation) and becomes the stored bytes in one
short transaction with the metadata, so a failed upload leaves the old bytes and metadata as
they were. What runs inside a transaction is synchronous (see :class:`~._database.Database`),
file operations included: on SQLite that is a worker thread, off the event loop.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
import secrets
import tempfile
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from contextlib import aclosing
from pathlib import Path
from typing import IO, Any, ParamSpec, TypeVar

import anyio
from sqlalchemy import ColumnElement, Connection, delete, exists, func, insert, select, tuple_
from sqlalchemy import exc as sa_exc

from .._clock import Clock
from ._database import Run
from ._schema import attachment_chunks, attachments
from ._values import AttachmentNotFound, AttachmentTooLarge, StoredAttachment, StoreUnavailable

#: Bytes per block written and read (and per ``attachment_chunks`` row).
CHUNK_BYTES = 256 * 1024

#: ``finish(conn, attachment_id, size, columns)`` records arrived bytes in the metadata (their
#: size, no pending upload, plus ``columns``), in the caller's transaction; it raises
#: AttachmentNotFound when the attachment is gone.
Finish = Callable[[Connection, str, int, dict[str, Any]], StoredAttachment]

P = ParamSpec("P")
R = TypeVar("R")


async def _blocks(
    attachment_id: str, chunks: AsyncIterable[bytes], max_bytes: int
) -> AsyncGenerator[bytes, None]:
    """Regroup ``chunks`` into blocks of :data:`CHUNK_BYTES` (the last one shorter).

    Raises:
        AttachmentTooLarge: as soon as more than ``max_bytes`` arrived.
    """
    buffer = bytearray()
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise AttachmentTooLarge(attachment_id, max_bytes)
        buffer += chunk
        while len(buffer) >= CHUNK_BYTES:
            yield bytes(buffer[:CHUNK_BYTES])
            del buffer[:CHUNK_BYTES]
    if buffer:
        yield bytes(buffer)


class FileBlobs:
    """Attachment bytes as files in one directory beside the SQLite database.

    A file is named by the SHA-256 of its attachment id (any id is a safe file name). Its
    rows' transactions hold SQLite's write lock while a file is replaced or removed, so a
    file always matches the metadata committed with it. Not thread-safe (one event loop).

    Args:
        directory: where the files go (``<db path>.attachments``).
        unavailable: turns a failing file operation into the store's error.
    """

    def __init__(
        self, directory: Path, unavailable: Callable[[BaseException], StoreUnavailable]
    ) -> None:
        self.directory = directory
        self._unavailable = unavailable

    async def open(self) -> None:
        """Create the directory when missing."""
        await self._io(self.directory.mkdir, parents=True, exist_ok=True)

    def path(self, attachment_id: str) -> Path:
        """Return the file holding an attachment's bytes."""
        return (
            self.directory
            / hashlib.sha256(attachment_id.encode("utf-8", "surrogatepass")).hexdigest()
        )

    async def _io(self, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run blocking file I/O on a worker thread; its failures are the store's."""
        try:
            return await anyio.to_thread.run_sync(lambda: function(*args, **kwargs))
        except OSError as exc:
            raise self._unavailable(exc) from exc

    def attachments_of(self, conn: Connection, where: ColumnElement[bool]) -> list[str]:
        """Return the ids of the attachments ``where`` selects (their files go with them)."""
        return list(conn.execute(select(attachments.c.id).where(where)).scalars())

    def remove(self, attachment_ids: list[str]) -> None:
        """Remove the files of these attachments (those that have one), in the transaction."""
        for attachment_id in attachment_ids:
            self.path(attachment_id).unlink(missing_ok=True)

    async def write(
        self,
        run: Run,
        attachment_id: str,
        chunks: AsyncIterable[bytes],
        max_bytes: int,
        finish: Finish,
    ) -> StoredAttachment:
        """Write the bytes to a temporary file, then swap it in with the metadata."""
        await self._io(self.directory.mkdir, parents=True, exist_ok=True)
        fd, name = await self._io(
            tempfile.mkstemp, dir=self.directory, prefix=".upload-", suffix=".part"
        )
        temporary = Path(name)
        try:
            with os.fdopen(fd, "wb") as file:
                size = 0
                async with aclosing(_blocks(attachment_id, chunks, max_bytes)) as blocks:
                    async for block in blocks:
                        await self._io(file.write, block)
                        size += len(block)
                # On disk before the metadata says so: a power cut must not leave a size
                # without its bytes.
                await self._io(_flush, file)

            def swap(conn: Connection) -> StoredAttachment:
                stored = finish(conn, attachment_id, size, {"blob_size": size})
                # Under the write lock, before the commit: a crash in between leaves the new
                # bytes with the old metadata (the upload still pending, so it is retried).
                # Abandoned at the deadline, this thread races the unlink below: either the
                # replace fails and the transaction rolls back, or both land together.
                os.replace(temporary, self.path(attachment_id))
                return stored

            return await run(swap, write=True)
        finally:
            # Gone already when the upload succeeded. Synchronous: it must run even when the
            # upload was cancelled, and one unlink is quick.
            temporary.unlink(missing_ok=True)  # noqa: ASYNC240

    async def read(self, run: Run, attachment_id: str) -> AsyncIterator[bytes]:
        """Stream the file (opened at the start: a replacement meanwhile does not tear it)."""
        query = select(attachments.c.blob_size).where(attachments.c.id == attachment_id)
        size = await run(lambda conn: conn.execute(query).scalar())
        if size is None:
            raise AttachmentNotFound(attachment_id)
        try:
            file = await anyio.to_thread.run_sync(open, self.path(attachment_id), "rb")
        except FileNotFoundError:
            raise AttachmentNotFound(attachment_id) from None
        except OSError as exc:
            raise self._unavailable(exc) from exc
        try:
            while block := await self._io(file.read, CHUNK_BYTES):
                yield block
        finally:
            file.close()

    async def purge(self, run: Run, cutoff: int, batch: int) -> None:
        """Remove the temporary files of uploads abandoned before ``cutoff``.

        Files of stored bytes go with their rows; an upload cleans up its own temporary file
        however it ends, unless its process died first. Such a ``.upload-*.part`` file is
        removed once it was last written before ``cutoff`` (an hour ago). A running upload
        writes a block every 256 KiB; one that sent less than that in an hour loses its file
        and fails rather than keeping a stale one forever.
        """
        await self._io(_remove_part_files, self.directory, cutoff)


class ChunkBlobs:
    """Attachment bytes as rows of ``attachment_chunks`` in PostgreSQL.

    Each upload writes its chunks under a fresh random generation, one short transaction per
    chunk; the final transaction points the attachment at that generation and deletes the
    previous one. A failed upload deletes its chunks; those it could not (the database went
    away) are purged after an hour. Not thread-safe (one event loop).

    Args:
        clock: stamps chunks, so purge can tell an abandoned upload from a running one.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def open(self) -> None:
        """Nothing to prepare: the chunks' table is part of the schema."""

    def attachments_of(self, conn: Connection, where: ColumnElement[bool]) -> list[str]:
        """Nothing to read: chunks go with their attachment rows (ON DELETE CASCADE)."""
        return []

    def remove(self, attachment_ids: list[str]) -> None:
        """Nothing to do: chunks go with their attachment rows (ON DELETE CASCADE)."""

    async def write(
        self,
        run: Run,
        attachment_id: str,
        chunks: AsyncIterable[bytes],
        max_bytes: int,
        finish: Finish,
    ) -> StoredAttachment:
        """Insert the chunks of a fresh generation, then switch the attachment to it."""
        generation = secrets.randbits(62)
        stamp = math.floor(self._clock.time())
        written = 0
        size = 0
        try:
            async with aclosing(_blocks(attachment_id, chunks, max_bytes)) as blocks:
                async for block in blocks:
                    row = {
                        "attachment_id": attachment_id,
                        "generation": generation,
                        "n": written,
                        "created_at": stamp,
                        "data": block,
                    }
                    try:
                        await run(functools.partial(_insert_chunk, row), write=True)
                    except sa_exc.IntegrityError:  # the attachment was deleted meanwhile
                        raise AttachmentNotFound(attachment_id) from None
                    written += 1
                    size += len(block)
            switch = functools.partial(_switch, attachment_id, generation, written, size, finish)
            return await run(switch, write=True)
        except BaseException:
            if written:
                await self._discard(run, attachment_id, generation)
            raise

    async def _discard(self, run: Run, attachment_id: str, generation: int) -> None:
        """Delete the chunks of a failed upload, best effort (purge takes what is left)."""
        statement = delete(attachment_chunks).where(
            attachment_chunks.c.attachment_id == attachment_id,
            attachment_chunks.c.generation == generation,
        )
        # Shielded: a cancelled upload still cleans up (within the store's timeout).
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await run(lambda conn: conn.execute(statement), write=True)

    async def read(self, run: Run, attachment_id: str) -> AsyncIterator[bytes]:
        """Stream the chunks, one short query each."""
        query = select(attachments.c.blob_size, attachments.c.blob_generation).where(
            attachments.c.id == attachment_id
        )
        row = await run(lambda conn: conn.execute(query).first())
        if row is None or row.blob_size is None:
            raise AttachmentNotFound(attachment_id)
        chunk = select(attachment_chunks.c.data).where(
            attachment_chunks.c.attachment_id == attachment_id,
            attachment_chunks.c.generation == row.blob_generation,
        )
        sent = 0
        n = 0
        while sent < row.blob_size:
            data = await run(functools.partial(_scalar, chunk.where(attachment_chunks.c.n == n)))
            if data is None:  # replaced or deleted since the stream began
                raise AttachmentNotFound(attachment_id)
            sent += len(data)
            n += 1
            yield bytes(data)

    async def purge(self, run: Run, cutoff: int, batch: int) -> None:
        """Delete chunks of uploads abandoned before ``cutoff``, ``batch`` rows at a time."""
        orphan = attachment_chunks.alias("orphan")
        current = exists().where(
            attachments.c.id == orphan.c.attachment_id,
            attachments.c.blob_generation == orphan.c.generation,
        )
        orphans = (
            select(orphan.c.attachment_id, orphan.c.generation, orphan.c.n)
            .where(orphan.c.created_at < cutoff, ~current)
            .limit(batch)
        )
        key = tuple_(
            attachment_chunks.c.attachment_id,
            attachment_chunks.c.generation,
            attachment_chunks.c.n,
        )
        statement = delete(attachment_chunks).where(key.in_(orphans))
        while await run(lambda conn: conn.execute(statement).rowcount, write=True) >= batch:
            pass


def _remove_part_files(directory: Path, cutoff: int) -> None:
    """Unlink the ``.upload-*.part`` files in ``directory`` last modified before ``cutoff``."""
    for part in directory.glob(".upload-*.part"):
        with contextlib.suppress(FileNotFoundError):  # its upload finished meanwhile
            if part.stat().st_mtime < cutoff:
                part.unlink()


def _scalar(query: Any, conn: Connection) -> Any:
    return conn.execute(query).scalar()


def _insert_chunk(row: dict[str, Any], conn: Connection) -> None:
    conn.execute(insert(attachment_chunks).values(row))


def _switch(
    attachment_id: str,
    generation: int,
    written: int,
    size: int,
    finish: Finish,
    conn: Connection,
) -> StoredAttachment:
    """Point the attachment at a fully landed generation and delete the previous one."""
    current = select(attachments.c.blob_generation).where(attachments.c.id == attachment_id)
    previous = conn.execute(current.with_for_update()).first()
    if previous is None:
        raise AttachmentNotFound(attachment_id)
    landed = (
        select(func.count())
        .select_from(attachment_chunks)
        .where(
            attachment_chunks.c.attachment_id == attachment_id,
            attachment_chunks.c.generation == generation,
        )
    )
    if conn.execute(landed).scalar_one() != written:
        # Purged as abandoned (an upload running for over an hour): never point the
        # attachment at bytes with holes.
        raise AttachmentNotFound(attachment_id)
    blob = {"blob_size": size, "blob_generation": generation}
    stored = finish(conn, attachment_id, size, blob)
    if previous.blob_generation is not None:
        conn.execute(
            delete(attachment_chunks).where(
                attachment_chunks.c.attachment_id == attachment_id,
                attachment_chunks.c.generation == previous.blob_generation,
            )
        )
    return stored


def _flush(file: IO[bytes]) -> None:
    file.flush()
    os.fsync(file.fileno())
