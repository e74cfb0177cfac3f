"""The one access rule for owned things: the owner and admins, never an invitation session."""

from __future__ import annotations

from dataclasses import dataclass

from app.auth.service import Principal, may_see
from app.models import Role, User, WebSession


@dataclass
class Thing:
    owner_id: int | None


def _principal(user_id: int, role: Role, study_id: int | None = None) -> Principal:
    user = User(id=user_id, username=f"u{user_id}", role=role)
    return Principal(user=user, session=WebSession(user_id=user_id, study_id=study_id))


def test_owners_and_admins_see_and_change_others_do_not() -> None:
    owner, other = _principal(1, Role.researcher), _principal(2, Role.researcher)
    admin = _principal(3, Role.admin)
    mine, unowned = Thing(owner_id=1), Thing(owner_id=None)
    assert owner.can_see(mine) and owner.can_change(mine)
    assert not other.can_see(mine) and not other.can_change(mine)
    assert admin.can_see(mine) and admin.can_change(mine)
    # Things made from the CLI have no owner: only admins see them on the web.
    assert not owner.can_see(unowned) and admin.can_see(unowned)


def test_an_admin_in_an_invitation_session_is_not_an_admin() -> None:
    reading = _principal(3, Role.admin, study_id=7)
    assert not reading.can_see(Thing(owner_id=1)) and reading.visible_owner == 3


def test_listings_are_limited_to_the_owner_except_for_admins() -> None:
    assert _principal(1, Role.researcher).visible_owner == 1
    assert _principal(3, Role.admin).visible_owner is None


def test_the_cli_without_a_principal_sees_everything() -> None:
    assert may_see(None, Thing(owner_id=5))
    assert not may_see(_principal(1, Role.researcher), Thing(owner_id=5))


def test_every_not_found_is_one_error_with_its_own_words() -> None:
    from app.auth.admin import NotFound as AdminNotFound
    from app.datasets.service import DatasetNotFound
    from app.domain.not_found import NotFound
    from app.imagesets.service import ImageSetNotFound
    from app.jobs.service import JobNotFound
    from app.studies.sharing import StudyNotFound
    from app.sweeps.service import SweepNotFound

    for error in (JobNotFound, DatasetNotFound, ImageSetNotFound, StudyNotFound, SweepNotFound):
        assert issubclass(error, NotFound)
    assert JobNotFound(4).message == "There is no job 4 that you can see."
    assert DatasetNotFound(9).message == "There is no dataset #9 you can see."
    assert str(ImageSetNotFound(2)) == "There is no image set 2 that you can see."
    assert AdminNotFound("There is no user #3.").message == "There is no user #3."
