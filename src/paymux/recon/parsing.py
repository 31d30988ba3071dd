"""Reading a bill beside the database: the lines are parsed while the database stores the
previous batch. A small file is parsed in a thread (its database work — PostgreSQL's COPY in
its own process, SQLite's inserts, which release the GIL — overlaps the parsing); a large one
in a process of its own, so the parsing, which is Python, has a core of its own too. The
reader's problems and checks come back with the last batch. At most a few batches wait in
memory either way."""

from __future__ import annotations

import asyncio
import multiprocessing
import queue as queues
import threading
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from paymux.channels import base
from paymux.channels.bills import BillReader

if TYPE_CHECKING:  # the parsing process imports this module: not the database layer too
    from paymux.recon.repository import LineRecord

BATCH = 20_000
PROCESS_FROM_BYTES = 16 * 1024 * 1024
"""Files at least this big are parsed in a process of their own (starting one costs ~1 s)."""
WAITING = 4


def batches(run_id: str, reader: BillReader) -> Iterator[list[LineRecord]]:
    """The bill's lines as staging records (``recon_lines`` columns), in batches."""
    batch: list[LineRecord] = []
    refund = base.StatementLineKind.refund
    for n, line in enumerate(reader.lines(), start=1):
        ref = line.reference
        channel_ref = line.channel_refund_no if line.kind is refund else line.channel_trade_no
        batch.append((run_id, n, line.kind.value, ref[:64] if ref else None,
                      channel_ref[:64] if channel_ref else None, line.amount, line.fee,
                      line.currency[:3], line.occurred_at))  # fmt: skip
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _outcome(reader: BillReader) -> dict[str, Any]:
    return {"problems": reader.problems, "problem_count": reader.problem_count,
            "checks": reader.checks, "finished": reader.finished,
            "balances": reader.balances}  # fmt: skip


def _parse_into(run_id: str, reader: BillReader, out: Any) -> None:
    """The parsing process: batches, then ``("done", outcome)`` (or ``("error", text)``)."""
    try:
        for batch in batches(run_id, reader):
            out.put(("batch", batch))
        out.put(("done", _outcome(reader)))
    except BaseException as exc:
        out.put(("error", f"{type(exc).__name__}: {exc}"))


async def read_ahead(run_id: str, reader: BillReader) -> AsyncIterator[list[LineRecord]]:
    """The bill's batches, parsed beside the caller's database work (see the module)."""
    if reader.path.stat().st_size >= PROCESS_FROM_BYTES:
        async for batch in _in_process(run_id, reader):
            yield batch
    else:
        async for batch in _in_thread(run_id, reader):
            yield batch


async def _in_process(run_id: str, reader: BillReader) -> AsyncIterator[list[LineRecord]]:
    context = multiprocessing.get_context("spawn")  # never fork a process with threads
    channel: Any = context.Queue(maxsize=WAITING)
    worker = context.Process(target=_parse_into, args=(run_id, reader, channel), daemon=True)
    worker.start()
    loop = asyncio.get_running_loop()

    def take() -> tuple[str, Any]:
        while True:
            try:
                return channel.get(timeout=1.0)  # type: ignore[no-any-return]
            except queues.Empty:
                if not worker.is_alive():
                    return ("error", f"the parsing process ended ({worker.exitcode})")

    try:
        while True:
            kind, item = await loop.run_in_executor(None, take)
            if kind == "batch":
                yield item
            elif kind == "done":
                for name, value in item.items():
                    setattr(reader, name, value)
                return
            else:
                raise RuntimeError(f"reading the bill failed: {item}")
    finally:
        if worker.is_alive():
            worker.terminate()
        await loop.run_in_executor(None, worker.join)
        channel.close()


async def _in_thread(run_id: str, reader: BillReader) -> AsyncIterator[list[LineRecord]]:
    loop = asyncio.get_running_loop()
    waiting: asyncio.Queue[list[LineRecord] | BaseException | None] = asyncio.Queue(WAITING)
    stop = threading.Event()

    def produce() -> None:
        def put(item: list[LineRecord] | BaseException | None) -> None:
            asyncio.run_coroutine_threadsafe(waiting.put(item), loop).result()

        try:
            for batch in batches(run_id, reader):
                if stop.is_set():
                    return
                put(batch)
            put(None)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)

    worker = loop.run_in_executor(None, produce)
    try:
        while True:
            item = await waiting.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while not worker.done():  # let a blocked producer finish its put
            if waiting.empty():
                await asyncio.sleep(0.01)
            else:
                waiting.get_nowait()
        await worker
