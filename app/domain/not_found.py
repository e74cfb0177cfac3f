"""One not-found error for every owned thing, turned into one 404 page by one handler.

Missing and not-yours give the same answer, so ids of other people's things are not confirmed.
Services raise a subclass naming what was looked for; routes let it through to the handler in
`app.main`.
"""

from __future__ import annotations


class NotFound(LookupError):
    noun = "record"
    template = "There is no {noun} {ident} that you can see."

    def __init__(self, ident: object, message: str | None = None) -> None:
        super().__init__(ident)
        self.ident = ident
        self.message = message or self.template.format(noun=self.noun, ident=ident)

    def __str__(self) -> str:
        return self.message
