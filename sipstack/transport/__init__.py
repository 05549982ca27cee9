"""Thin asyncio glue between sockets and the sans-IO SIP core: UDP, TCP, TLS and WebSocket."""
