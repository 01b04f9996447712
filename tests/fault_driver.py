"""`python -m tests.fault_driver ARGS...` runs `attnseq ARGS...` and kills its whole process group
with SIGKILL at one chosen moment, for the kill tests (under torchrun too: the workers share the
group). The moment is ATTNSEQ_TEST_KILL="WHERE:N" (on rank 0 only), WHERE one of:

  step        right after the N-th update
  weights     after the N-th model.safetensors is written, before its directory is swapped in
  state       after the N-th trainer_state.pt is written, in the middle of a save
  replace     right after the N-th os.replace (e.g. between the two renames of a directory swap)
  flush       right after the N-th metrics.jsonl flush, before the checkpoint it belongs to
"""

from __future__ import annotations

import os
import signal
import sys


def _kill() -> None:
    os.killpg(os.getpgid(0), signal.SIGKILL)


def arm(where: str, n: int) -> None:
    import torch

    from attnseq import checkpoint
    from attnseq.run_dir import RunDir
    from attnseq.trainer import Trainer

    count = 0

    def counted(original):
        def call(*args, **kwargs):
            nonlocal count
            result = original(*args, **kwargs)
            count += 1
            if count == n:
                _kill()
            return result

        return call

    if where == "step":
        Trainer.train_step = counted(Trainer.train_step)
    elif where == "weights":
        checkpoint.save_file = counted(checkpoint.save_file)
    elif where == "state":
        torch.save = counted(torch.save)
    elif where == "replace":
        os.replace = counted(os.replace)
    elif where == "flush":
        RunDir.flush_log = counted(RunDir.flush_log)
    else:
        raise SystemExit(f"fault_driver: unknown moment {where!r}")


def main() -> int:
    spec = os.environ.get("ATTNSEQ_TEST_KILL", "")
    if spec and os.environ.get("RANK", "0") == "0":
        where, n = spec.split(":")
        arm(where, int(n))
    from attnseq.cli import main as attnseq

    return attnseq(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
