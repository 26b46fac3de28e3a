"""The realtime core: events, channels, the connection manager, the service and brokers.

Pure asyncio. Nothing in this package imports Reflex, FastAPI or the database, so it can be
tested (and benchmarked) alone; the web layer and Reflex states are its clients.
"""
