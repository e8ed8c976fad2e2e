"""Where torch work runs: worker threads keep their torch work to one OpenMP thread without lowering the
thread count that threads started later (the LM scheduler's) take up."""

from __future__ import annotations

import threading

import torch

from emotional_engine import threads


def count_in_new_thread() -> int:
    out = []
    t = threading.Thread(target=lambda: out.append(torch.get_num_threads()))
    t.start()
    t.join()
    return out[0]


async def test_the_model_worker_is_single_threaded_and_later_threads_are_not():
    before = count_in_new_thread()
    assert before > 1, "this test needs torch to use two or more threads"
    assert await threads.run_model(torch.get_num_threads) == 1  # no OpenMP team of its own
    assert await threads.run_agent_work(torch.get_num_threads) == 1
    assert count_in_new_thread() == before  # torch.set_num_threads(1) there made this 1: the LM decoded on one core
    assert torch.get_num_threads() == before
