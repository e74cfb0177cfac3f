"""Image set upload and browsing (researchers)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/imagesets")
