"""All models, imported once so Alembic and the app see the whole schema."""

from app.models.dataset import Dataset, DatasetStatus
from app.models.imageset import Image, ImageSet, Origin
from app.models.job import Job, JobStatus
from app.models.study import (
    Answer,
    ExternalRating,
    Invite,
    ScheduleEntry,
    Study,
    StudyImageSet,
    StudyItem,
    StudyKind,
    StudyReader,
    StudyShare,
)
from app.models.sweep import Sweep
from app.models.user import LoginFailure, Role, User, WebSession

__all__ = [
    "Answer",
    "Dataset",
    "DatasetStatus",
    "ExternalRating",
    "Image",
    "ImageSet",
    "Invite",
    "Job",
    "JobStatus",
    "LoginFailure",
    "Origin",
    "Role",
    "ScheduleEntry",
    "Study",
    "StudyImageSet",
    "StudyItem",
    "StudyKind",
    "StudyReader",
    "StudyShare",
    "Sweep",
    "User",
    "WebSession",
]
