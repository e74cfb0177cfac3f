"""The one "you may see this but not do that" error, turned into one 403 page in `app.main`.

Services raise it (a domain rule said no); routes let it through, like `NotFound`.
"""

from __future__ import annotations


class Forbidden(Exception):
    def __init__(self, message: str = "You do not have access to this page.") -> None:
        super().__init__(message)
        self.message = message
