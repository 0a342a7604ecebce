"""WebTransport (HTTP/3) sessions for Starlette and FastAPI apps, served by hypercorn."""

__version__ = "0.1.0"
