"""Event-loop utilities shared by storage and the shells.

``breaker``: the circuit breaker and the event-loop stall watch; ``supervisor``:
background tasks restarted with back-off; ``logs``: the log format. They
import nothing of edge but each other (docs/architecture.md).
"""
