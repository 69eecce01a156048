"""Two training processes exchange gradients once per optimizer step, whatever the number of micro-batches
(training.train.accumulating), and still end with the gradient of the whole step averaged over the processes;
they go by one clock (training.train.main_process_clock), so they stop, save and anneal at the same step."""

import socket

import pytest
import torch
import torch.multiprocessing as mp

from training.train import accumulating, main_process_clock

PROCESSES, MICRO_BATCHES = 2, 3


def _data(rank: int, micro: int):
    g = torch.Generator().manual_seed(100 * rank + micro)
    return torch.randn(5, 4, generator=g), torch.randn(5, 1, generator=g)


def _loss(model, rank, micro):
    x, y = _data(rank, micro)
    return ((model(x) - y) ** 2).mean() / MICRO_BATCHES


def _accelerator(rank: int, port: int):
    import os

    from accelerate import Accelerator

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(PROCESSES), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    return Accelerator(cpu=True)


def _worker(rank: int, port: int, skip_sync: bool, results):
    accelerator = _accelerator(rank, port)
    torch.manual_seed(0)
    plain = torch.nn.Linear(4, 1)
    model = accelerator.prepare(torch.nn.Linear(4, 1))
    accelerator.unwrap_model(model).load_state_dict(plain.state_dict())
    exchanges = []

    def counting_allreduce(state, bucket):
        exchanges.append(1)
        tensor = bucket.buffer().div_(PROCESSES)
        return torch.distributed.all_reduce(tensor, async_op=True).get_future().then(lambda f: f.value()[0])

    model.register_comm_hook(None, counting_allreduce)
    for micro in range(MICRO_BATCHES):
        last = micro == MICRO_BATCHES - 1
        with accumulating(accelerator, [model], skip_sync and not last):
            accelerator.backward(_loss(model, rank, micro))
    expected = sum(_loss(plain, r, m) for r in range(PROCESSES) for m in range(MICRO_BATCHES)) / PROCESSES
    expected.backward()
    results[rank] = {"exchanges": len(exchanges),
                     "error": max(float((p.grad - q.grad).abs().max())
                                  for p, q in zip(accelerator.unwrap_model(model).parameters(), plain.parameters()))}
    torch.distributed.destroy_process_group()


def _clock_worker(rank: int, port: int, results):
    accelerator = _accelerator(rank, port)
    # each process's own clock differs: one over the time budget (say 100.0 s), one just under it
    results[rank] = main_process_clock(accelerator, 99.5 + rank, 0.25 * rank)
    torch.distributed.destroy_process_group()


def _run(worker=_worker, *args) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(worker, args=(port, *args, results), nprocs=PROCESSES)
    return dict(results)


@pytest.mark.parametrize("skip_sync, exchanges", [(True, 1), (False, MICRO_BATCHES)])
def test_gradients_are_exchanged_once_a_step_and_averaged_over_the_processes(skip_sync, exchanges):
    results = _run(_worker, skip_sync)
    assert sorted(results) == list(range(PROCESSES))
    for rank, r in results.items():
        assert r["exchanges"] == exchanges, (rank, r)
        assert r["error"] < 1e-6, (rank, r)


def test_every_process_reads_the_main_processs_clock():
    results = _run(_clock_worker)
    assert results == {0: [99.5, 0.0], 1: [99.5, 0.0]}


def test_one_process_needs_no_exchange():
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(torch.nn.Linear(4, 1))
    with accumulating(accelerator, [model], True):
        accelerator.backward(_loss(model, 0, 0))
    assert model.weight.grad is not None
    assert main_process_clock(accelerator, 12.5, 3.0) == [12.5, 3.0]
