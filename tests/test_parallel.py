"""fivesigma.core.parallel: one-thread worker processes for independent trainings."""

from __future__ import annotations

import math

import pytest
import torch

from fivesigma.core.parallel import map_processes


def _threads(_: int) -> int:
    return torch.get_num_threads()


def test_results_come_back_in_order_with_progress_for_each():
    seen = []
    out = map_processes(
        math.sqrt, [16.0, 1.0, 9.0, 4.0], jobs=2, on_result=lambda i, r: seen.append(i)
    )
    assert out == [4.0, 1.0, 3.0, 2.0]
    assert sorted(seen) == [0, 1, 2, 3]


@pytest.mark.parametrize("jobs", [1, 2])
def test_every_item_runs_on_one_thread_and_the_caller_keeps_its_own(jobs):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert map_processes(_threads, [0] * jobs, jobs=jobs) == [1] * jobs
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_an_item_that_fails_raises_its_own_error_here():
    with pytest.raises(ValueError, match="math domain error"):
        map_processes(math.sqrt, [1.0, -1.0, 4.0], jobs=2)
