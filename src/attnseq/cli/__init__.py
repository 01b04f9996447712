"""The `attnseq` command: train | translate | chat | classify | transcribe | evaluate | ablate | plot |
serve | demo | dates | data. `parser` holds the options, `commands` and `demo` what each command does."""

from __future__ import annotations

import os
import sys

from attnseq.cli.commands import (
    cmd_ablate,
    cmd_chat,
    cmd_classify,
    cmd_data,
    cmd_evaluate,
    cmd_plot,
    cmd_serve,
    cmd_train,
    cmd_transcribe,
    cmd_translate,
)
from attnseq.cli.common import NOTICES, Interrupted, show_notices
from attnseq.cli.demo import cmd_dates, cmd_demo
from attnseq.cli.parser import build_parser
from attnseq.errors import AttnseqError
from attnseq.runtime import tune_process

COMMANDS = {
    "train": cmd_train,
    "translate": cmd_translate,
    "classify": cmd_classify,
    "transcribe": cmd_transcribe,
    "chat": cmd_chat,
    "evaluate": cmd_evaluate,
    "ablate": cmd_ablate,
    "serve": cmd_serve,
    "plot": cmd_plot,
    "demo": cmd_demo,
    "dates": cmd_dates,
    "data": cmd_data,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_process()  # the process-wide settings, in one place (attnseq.runtime)
    try:
        code = COMMANDS[args.command](args)
        show_notices()
        return code
    except AttnseqError as exc:
        NOTICES.clear()
        print(f"attnseq: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `attnseq translate ... | head -1`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except OSError as exc:  # the file system refused: permissions, a directory where a file goes, disk full
        name = exc.filename2 or exc.filename  # os.replace(tmp, target) names the target second
        where = f"{name}: " if name else ""
        print(f"attnseq: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(
            f"attnseq: interrupted {exc}" if isinstance(exc, Interrupted) else "attnseq: interrupted", file=sys.stderr
        )
        return 130
