"""Account pages: sign-in and out, invitations, and the administrators' user pages.

Kept apart from `app.auth` (who someone is, what they may do) so that the web dependencies in
`app.deps`, which need `app.auth`, are not needed by it in turn: no import cycle.
"""
