"""Starlette application: health and metrics, SIP over WebSocket, and (soon) the agent desktop,
wallboard, administration and REST API."""
