"""Data-parallel training across processes, as `torchrun` starts them.

`torchrun --nproc-per-node N -m attnseq train CONFIG --out DIR` starts N copies of the command with
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT set (and `--nnodes` / `--rdzv-endpoint`
for several machines); `Group.from_env` joins them into one process group (gloo on CPUs, nccl on
GPUs). A plain `attnseq train` is a group of one, whose operations do nothing, so the trainer has
one code path.

What the trainer does with a group (`attnseq.trainer`):
- every rank builds the same length-bucketed batches of an epoch from the same seed and takes its
  own share of each update's `world * train.accumulate` consecutive batches, so every rank runs
  the same number of updates and the union of an update's batches is what one process with
  `train.accumulate = world * accumulate` would train on;
- the loss is divided by the update's global unit count (target tokens, examples), summed over
  the ranks, so the gradient is the one of that union;
- rank 0 validates, saves and logs; the others wait for its verdict;
- stopping (budgets, early stopping) is decided together, and a checkpoint holds every rank's RNG
  state, so `--resume` under the same world size continues exactly.
"""

from __future__ import annotations

import contextlib
import gc
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from attnseq.errors import AttnseqError

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass
class Group:
    """The processes training one model together; rank 0 is the one that validates and saves."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @classmethod
    def from_env(cls, device: str = "cpu") -> Group:
        """The group torchrun's environment describes (a group of one without torchrun).

        Raises:
            AttnseqError: when the environment is incomplete or the group cannot form.
        """
        if "WORLD_SIZE" not in os.environ and "RANK" not in os.environ:
            return cls()
        missing = [k for k in ENV_KEYS if k not in os.environ]
        if missing:
            raise AttnseqError(
                f"environment: {', '.join(missing)} not set; start distributed training with "
                "`torchrun --nproc-per-node N -m attnseq train ...` (it sets them all)"
            )
        try:
            rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
        except ValueError:
            raise AttnseqError("environment: RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers") from None
        if world == 1:
            return cls()
        cuda = str(device).startswith("cuda")
        if cuda:
            torch.cuda.set_device(local)
        if not dist.is_initialized():
            try:
                dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
            except (RuntimeError, ValueError) as exc:
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise AttnseqError(f"distributed training: the process group did not form ({msg})") from None
        return cls(rank=rank, world=world, local_rank=local)

    def device(self, device: torch.device) -> torch.device:
        """The device of this rank: its own GPU (LOCAL_RANK) under a CUDA group."""
        if self.active and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    # ------------------------------------------------------------------ collectives (no-ops for one process)
    def plan_update(self, train, indices: list, *, stop: bool, snapshot: bool, device: torch.device):
        """(batches, units over all ranks, stop, snapshot) of an update: under torchrun the update's
        batches collated from `train`, with its units summed and rank 0's `stop` / `snapshot`
        decisions (its clock decides for every rank) in one exchange. Alone, the batches are
        collated later, after the snapshot (None here), in the order runs have always drawn them."""
        if not self.active:
            return None, 0, stop, snapshot
        batches = [train.collate(index) for index in indices]
        units = sum(b.units for b in batches)
        total, stop_n, snap_n = self.sum([units, stop and self.main, snapshot and self.main], device)
        return batches, int(total), stop_n > 0, snap_n > 0

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Each value summed over the ranks (float64, so unit counts stay exact)."""
        if not self.active:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        with self._peers():
            dist.all_reduce(t)
        return t.tolist()

    def broadcast(self, obj):
        """Rank 0's `obj`, on every rank."""
        if not self.active:
            return obj
        box = [obj]
        with self._peers():
            dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> list:
        """Every rank's `obj`, in rank order, on every rank."""
        if not self.active:
            return [obj]
        out = [None] * self.world
        with self._peers():
            dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.active:
            with self._peers():
                dist.barrier()

    @contextlib.contextmanager
    def _peers(self):
        """A process that left the group (its own error, a kill) ends the others with one line."""
        try:
            yield
        except RuntimeError as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise AttnseqError(
                f"rank {self.rank}: another process of the group stopped ({msg[:120]}); its own message says why"
            ) from None

    def close(self, together: bool = True) -> None:
        """Leave the group. `together` (every rank finished its work): wait for the others first, so
        no rank tears its connections down while a peer still reports. Either way, what still holds
        the process group is freed first: DistributedDataParallel sits in reference cycles, and
        its reducer, left to the interpreter's exit, aborts the process (SIGABRT, "terminate called
        without an active exception") when gloo's threads still hold its work."""
        if not (self.active and dist.is_initialized()):
            return
        if together:
            self.barrier()
        gc.collect()
        dist.destroy_process_group()


def shared_task_data(group: Group, task, cfg, *, saved: Path | None):
    """`task.data(cfg, saved=saved)` on rank 0; the other ranks read the same data with the assets
    (vocabularies, tokenizers) rank 0 made, so every rank encodes alike."""
    data = task.data(cfg, saved=saved) if group.main else None
    files = group.broadcast(data.assets.files() if group.main else None)
    if group.main:
        return data
    with tempfile.TemporaryDirectory(prefix="attnseq-rank-") as tmp:
        for name, content in files.items():
            (Path(tmp) / name).write_bytes(content)
        return task.data(cfg, saved=Path(tmp))


def rank_updates(batches: list, group: Group, *, accumulate: int) -> list[list]:
    """An epoch's updates, for each this rank's batches. Every rank cuts the same seeded batches;
    update k is batches [k P, (k + 1) P) with P = processes x accumulate, and rank r takes its
    `accumulate` of them. A remainder of fewer than P batches is left out of the epoch (it changes
    each epoch with the shuffle), so every rank runs the same number of updates."""
    a, per = accumulate, group.world * accumulate
    return [batches[k * per + group.rank * a : k * per + (group.rank + 1) * a] for k in range(len(batches) // per)]
