"""The admin API and page under ``/admin/`` (docs/operations.md).

Off unless ``EDGE_ADMIN_TOKEN`` is set; every route then needs that bearer
token. Bind the server to localhost or a private network (the default host is
127.0.0.1): the admin API is for operators, not for the internet.
"""

from edge.admin.api import routes

__all__ = ["routes"]
