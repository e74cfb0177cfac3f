"""Study results, exports and imported ratings (researchers)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/studies")
