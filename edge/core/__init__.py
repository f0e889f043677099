"""The pure core: what edge decides and how a profile changes, with no I/O.

Nothing here talks to Redis, sockets or the event loop: these modules import
none of starlette, uvicorn, redis, websockets or asyncio, and nothing of the
layers above them (``lint-imports`` checks both; docs/architecture.md).
"""
