"""Use cases: no HTTP, no Reflex. Each commits to the database, then emits through the service."""
