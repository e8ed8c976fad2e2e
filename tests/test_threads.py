"""Where torch work runs: worker threads keep their torch work to one OpenMP thread without lowering the
thread count that threads started later (the LM scheduler's) take up."""

from __future__ import annotations

import threading

import pytest
import torch

from emotional_engine import threads


def count_in_new_thread() -> int:
    out = []
    t = threading.Thread(target=lambda: out.append(torch.get_num_threads()))
    t.start()
    t.join()
    return out[0]


@pytest.fixture
def two_threads():
    """torch's process-wide count at 2 for the test (other tests' fixtures may have left it at 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


async def test_the_model_worker_is_single_threaded_and_later_threads_are_not(two_threads):
    assert count_in_new_thread() == 2
    assert await threads.run_model(torch.get_num_threads) == 1  # no OpenMP team of its own
    assert await threads.run_agent_work(torch.get_num_threads) == 1
    assert count_in_new_thread() == 2  # torch.set_num_threads(1) there made this 1: the LM decoded on one core


def test_the_thread_that_builds_the_engine_runs_its_torch_work_alone(two_threads):
    """The engine's event loop runs where it was built; its small torch work (steering biases) must
    not start a second OpenMP team beside the LM scheduler's, nor lower the count the scheduler gets."""
    from emotional_engine.engine import Engine
    from fakes import FakeGenerator

    seen = []

    def build():
        Engine(generator=FakeGenerator(), check_safety=False)
        seen.append(torch.get_num_threads())

    t = threading.Thread(target=build)
    t.start()
    t.join()
    assert seen == [1] and count_in_new_thread() == 2
