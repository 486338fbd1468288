"""The body budget's accounting: what fits is counted, what does not is refused and not counted, and each
request's first ALWAYS_TAKEN bytes are taken whatever the others hold."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.web.budget import ALWAYS_TAKEN, BodyBudget


def test_chunks_are_counted_until_the_limit_then_refused_without_being_counted() -> None:
    budget = BodyBudget(limit=ALWAYS_TAKEN * 4)
    assert budget.take(0, ALWAYS_TAKEN * 3)
    assert not budget.take(ALWAYS_TAKEN * 3, ALWAYS_TAKEN * 2)  # would hold 5 of 4
    assert budget.held == ALWAYS_TAKEN * 3
    assert budget.take(0, ALWAYS_TAKEN)  # exactly the limit fits
    budget.give(ALWAYS_TAKEN * 4)
    assert (budget.held, budget.peak) == (0, ALWAYS_TAKEN * 4)


def test_a_small_body_is_taken_even_when_large_ones_fill_the_budget() -> None:
    budget = BodyBudget(limit=ALWAYS_TAKEN)
    assert budget.take(0, ALWAYS_TAKEN)
    assert budget.take(0, 1024)  # a typical delivery is never refused because of others
    assert not budget.take(ALWAYS_TAKEN - 10, 11)  # past its own first ALWAYS_TAKEN bytes it must fit


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 3 * ALWAYS_TAKEN)), max_size=60))
def test_whatever_the_requests_the_budget_holds_what_they_hold_and_no_large_one_passes_the_limit(
    chunks: list[tuple[int, int]],
) -> None:
    """Four requests taking chunks in any order: ``held`` is the sum of what each holds, and past its first
    ALWAYS_TAKEN bytes a request never took bytes that would pass the limit."""
    limit = 2 * ALWAYS_TAKEN
    budget = BodyBudget(limit=limit)
    holds = [0, 0, 0, 0]
    for who, size in chunks:
        before = budget.held
        if budget.take(holds[who], size):
            assert holds[who] + size <= ALWAYS_TAKEN or before + size <= limit
            holds[who] += size
        else:
            assert budget.held == before
        assert budget.held == sum(holds)
    for held in holds:
        budget.give(held)
    assert budget.held == 0
