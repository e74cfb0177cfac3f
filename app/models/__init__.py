"""All models, imported once so Alembic and the app see the whole schema."""

from app.models.job import Job, JobStatus
from app.models.study import Invite, Study, StudyReader
from app.models.user import Role, User, WebSession

__all__ = ["Invite", "Job", "JobStatus", "Role", "Study", "StudyReader", "User", "WebSession"]
