"""The tracker side of the server: WebSocket and beacon ingest, the wire
protocol, and the context of each visit."""
