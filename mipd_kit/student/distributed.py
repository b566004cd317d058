"""The student's ``torch.distributed`` plumbing: the process group from torchrun's environment (gloo on the CPU, NCCL
on CUDA), this process's rank and the world size, and the SUM all-reduce of the gradients.

DDP: each optimisation step draws one *global* batch from a seeded permutation; rank ``r`` takes every
``world_size``-th element; every loss is a sum of per-sample terms over the *global* batch size
(:mod:`mipd_kit.student.losses`), gradients are all-reduced by SUM, so two processes give one process's result up to
float tolerance.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from ..machine import resolve_device


def rank_and_size() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 without a process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: str = "auto") -> bool:
    """Initialise the process group from torchrun's environment; True when distributed.

    With ``device`` resolving to CUDA (``auto`` on a GPU machine, ``cuda``) each rank takes GPU ``LOCAL_RANK`` and the
    backend is NCCL; on the CPU it is gloo.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        cuda = resolve_device(device).type == "cuda"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
    return rank_and_size()[1] > 1


def allreduce_grads(model: torch.nn.Module) -> None:
    """Sum every parameter's gradient over the processes (a missing gradient counts as zeros)."""
    _, ws = rank_and_size()
    if ws == 1:
        return
    for p in model.parameters():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)

