"""The broadcast tests' real ``redis-server`` fixture, for the room page on two workers."""

from tests.broadcast.conftest import redis_server

__all__ = ["redis_server"]
