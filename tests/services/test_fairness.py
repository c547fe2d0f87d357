"""A fair share of the render workers (services/fairness.py): each render's priority
level from its owner's backlog, alone and in the reconciler's batches."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from imagepipe.db.models import TaskStatus
from imagepipe.services import fairness
from tests.services.conftest import AddTask


def test_levels_are_the_bit_length_of_the_backlog_capped() -> None:
    assert [fairness.level(n) for n in (-1, 0, 1, 2, 3, 4, 7, 8)] == [0, 0, 1, 2, 2, 3, 3, 4]
    assert fairness.level(10**9) == fairness.LAST_LEVEL


def test_a_newcomer_goes_ahead_of_a_burst(
    sessions: sessionmaker[Session], add_task: AddTask
) -> None:
    for _ in range(8):
        add_task(owner_scope="burst", status=TaskStatus.queued)
    add_task(owner_scope="burst", status=TaskStatus.processing)
    # Ended tasks are no backlog.
    add_task(owner_scope="newcomer", status=TaskStatus.succeeded)
    add_task(owner_scope="newcomer", status=TaskStatus.failed)
    newcomer = add_task(owner_scope="newcomer", status=TaskStatus.queued)
    with sessions() as session:
        # The task being published is one of its owner's nine waiting tasks.
        assert fairness.priority(session, "burst") == fairness.level(8) == 4
        assert fairness.priority(session, "newcomer") == 0
        assert fairness.priorities(session, [newcomer]) == {newcomer: 0}


def test_anonymous_tasks_count_together(sessions: sessionmaker[Session], add_task: AddTask) -> None:
    for _ in range(3):
        add_task(owner_scope=None, status=TaskStatus.queued)
    add_task(owner_scope="someone", status=TaskStatus.queued)
    with sessions() as session:
        assert fairness.priority(session, None) == fairness.level(2)


def test_a_batch_gets_each_owners_level_in_one_go(
    sessions: sessionmaker[Session], add_task: AddTask
) -> None:
    heavy = [add_task(owner_scope="heavy", status=TaskStatus.queued) for _ in range(4)]
    light = add_task(owner_scope="light", status=TaskStatus.queued)
    with sessions() as session:
        levels = fairness.priorities(session, [*heavy[:2], light])
        assert fairness.priorities(session, []) == {}
    assert levels == {heavy[0]: 2, heavy[1]: 2, light: 0}
