"""One interface over the sync and the async pool, so that the pool tests run unchanged
against both. The async driver owns an event loop running in a background thread; every
call is submitted to it and waited for, so a test reads the same either way."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from ferrite_integrations import PoolManager

T = TypeVar("T")


class SyncDriver:
    name = "sync"

    def __init__(self, manager: PoolManager) -> None:
        self.manager = manager
        self._threads = ThreadPoolExecutor(max_workers=64)

    def pool(self, alias: str = "default") -> Any:
        return self.manager.pool(alias)

    def command(self, alias: str, *args: Any) -> Any:
        return self.manager.client(alias).execute_command(*args)

    def borrow(self, alias: str = "default") -> Any:
        return self.pool(alias).get_connection()

    def borrow_soon(self, alias: str = "default") -> Future[Any]:
        return self._threads.submit(self.borrow, alias)

    def release(self, connection: Any, alias: str = "default") -> None:
        self.pool(alias).release(connection)

    def warm(self, alias: str | None = None) -> dict[str, int]:
        return self.manager.warm(alias)

    def maintain(self, alias: str = "default") -> None:
        self.pool(alias).maintain()

    def stats(self, alias: str = "default") -> dict[str, Any]:
        report = self.manager.stats(alias)["sync"]
        assert report is not None
        return report

    def health(self, alias: str | None = None) -> dict[str, Any]:
        return self.manager.health(alias)

    def start_monitor(self) -> None:
        self.manager.start_monitor()

    def tolerant(self, alias: str, *args: Any, default: Any = None) -> Any:
        client = self.manager.client(alias)
        return self.manager.degraded(alias).call(client.execute_command, *args, default=default)

    def pipeline(self, alias: str, commands: list[tuple[Any, ...]]) -> list[Any]:
        pipe = self.manager.client(alias).pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return pipe.execute()

    def close_manager(self) -> None:
        self.manager.close()

    def shutdown(self) -> None:
        self.manager.close()
        self._threads.shutdown(wait=True, cancel_futures=True)


class AsyncDriver:
    name = "async"

    def __init__(self, manager: PoolManager) -> None:
        self.manager = manager
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, make: Callable[[], Awaitable[T]]) -> T:
        async def call() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout=30)

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def pool(self, alias: str = "default") -> Any:
        async def get() -> Any:
            return self.manager.async_pool(alias)

        return self.run(get)

    def command(self, alias: str, *args: Any) -> Any:
        return self.run(lambda: self.manager.async_client(alias).execute_command(*args))

    def borrow(self, alias: str = "default") -> Any:
        return self.run(lambda: self.manager.async_pool(alias).get_connection())

    def borrow_soon(self, alias: str = "default") -> Future[Any]:
        async def borrow() -> Any:
            return await self.manager.async_pool(alias).get_connection()

        return self.submit(borrow())

    def release(self, connection: Any, alias: str = "default") -> None:
        self.run(lambda: self.manager.async_pool(alias).release(connection))

    def warm(self, alias: str | None = None) -> dict[str, int]:
        return self.run(lambda: self.manager.awarm(alias))

    def maintain(self, alias: str = "default") -> None:
        self.run(lambda: self.manager.async_pool(alias).maintain())

    def stats(self, alias: str = "default") -> dict[str, Any]:
        async def get() -> dict[str, Any]:
            self.manager.async_pool(alias)
            reports: list[dict[str, Any]] = self.manager.stats(alias)["async"]
            assert len(reports) == 1
            return reports[0]

        return self.run(get)

    def health(self, alias: str | None = None) -> dict[str, Any]:
        return self.run(lambda: self.manager.ahealth(alias))

    def start_monitor(self) -> None:
        async def start() -> None:
            self.manager.start_async_monitor()

        self.run(start)

    def tolerant(self, alias: str, *args: Any, default: Any = None) -> Any:
        async def call() -> Any:
            client = self.manager.async_client(alias)
            degraded = self.manager.degraded(alias)
            return await degraded.acall(client.execute_command, *args, default=default)

        return self.run(call)

    def pipeline(self, alias: str, commands: list[tuple[Any, ...]]) -> list[Any]:
        async def call() -> list[Any]:
            pipe = self.manager.async_client(alias).pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            result: list[Any] = await pipe.execute()
            return result

        return self.run(call)

    def close_manager(self) -> None:
        self.run(self.manager.aclose)

    def shutdown(self) -> None:
        try:
            self.run(self.manager.aclose)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()


Driver = SyncDriver | AsyncDriver
DRIVERS: dict[str, Callable[[PoolManager], Driver]] = {
    "sync": SyncDriver,
    "async": AsyncDriver,
}
