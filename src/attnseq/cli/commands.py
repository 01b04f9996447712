"""The `attnseq` commands: each takes the parsed arguments and returns the exit status. What is
particular to a task (its scores, report lines, pictures, ablation) is the task's (`attnseq.tasks`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from attnseq.cli.common import held_out, load_predictor, read_sentences, show_notices, train_and_report
from attnseq.errors import AttnseqError


def cmd_train(args) -> int:
    from attnseq.config import load_config
    from attnseq.distributed import Group
    from attnseq.trainer import Trainer

    cfg = load_config(args.config, args.overrides)
    group = Group.from_env(cfg.train.device)  # torchrun's processes train together; alone, a group of one
    finished = False
    try:
        out = _fit(Trainer(cfg, args.out, resume=args.resume, group=group))
        finished = True
    finally:
        group.close(together=finished)  # the trainer let go of its DDP wrapper when fit ended
    if group.main:  # rank 0 reports
        held_out(out)
    return 0


def _fit(trainer) -> Path:
    """Train (rank 0 prints as it goes) and return the run directory; the trainer ends with the call,
    so nothing holds it (and the process group) when the group closes."""
    if trainer.group.main:
        train_and_report(trainer)
    else:
        trainer.fit()
    return trainer.out


def cmd_translate(args) -> int:
    from attnseq.cli import lines
    from attnseq.tasks.translation import Translator

    translator, _ = load_predictor(args, expect=Translator, what="a translation model")
    dec = translator.config.decode
    lines.check_input(args.input)

    def write(sentences: list[str], first: int) -> bool:
        """Translate and print `sentences` (numbered from `first`); a line over decode.max_src_tokens is
        named on stderr and left empty (the others are translated). Returns whether one was."""
        show_notices()  # once, when the first batch was read: a bad input stays one line
        refused = {
            i: n for i, s in enumerate(sentences) if (n := len(translator.src_tok.tokenize(s))) > dec.max_src_tokens
        }
        done = iter(translator.translate([s for i, s in enumerate(sentences) if i not in refused], copies=args.json))
        for i, sentence in enumerate(sentences):
            line = first + i
            if i in refused:
                why = f"{refused[i]:,} tokens, more than decode.max_src_tokens = {dec.max_src_tokens:,}"
                print(f"attnseq: line {line}: {why}; left empty (split it, or --set decode.max_src_tokens=N)",
                      file=sys.stderr)  # fmt: skip
                if args.json:
                    print(json.dumps({"input": sentence, "error": why}, ensure_ascii=False))
                elif dec.n_best == 1:
                    print()
                continue
            tr = next(done)
            if args.json:
                print(json.dumps(tr.to_dict(), ensure_ascii=False))
            elif dec.n_best > 1:
                for hyp in tr.n_best:
                    print(f"{line} ||| {hyp.text} ||| {hyp.rank_score:.4f}")
            else:
                print(tr.text)
        return bool(refused)

    if args.input is None and sys.stdin.isatty():
        return lines.prompt(write, what="translate")
    return 1 if lines.stream(args.input, 4 * dec.batch_size, write, what="translate") else 0


def cmd_evaluate(args) -> int:
    """The model's test report (its task's scores, on its test split or the files given)."""
    from attnseq.fileio import atomic_write_text

    predictor, task = load_predictor(args)
    outputs: list[str] = []
    report = task.test_report(predictor, data=args.data, src=args.src, ref=args.ref, outputs=outputs)
    if report is None:
        raise AttnseqError(f"evaluate: {args.model}: its config has no test split; give --data FILE")
    if args.output:
        atomic_write_text(Path(args.output), "".join(o + "\n" for o in outputs))
    print(
        json.dumps(report, ensure_ascii=False) if args.json else "\n".join(task.report_lines(report, predictor.config))
    )
    return 0


def cmd_chat(args) -> int:
    from attnseq.cli import chat
    from attnseq.tasks.chatbot import Chatbot

    bot, _ = load_predictor(args, expect=Chatbot, what="a chatbot (task: chat)")
    show_notices()
    if args.input is None and sys.stdin.isatty():
        return chat.interactive(bot, args)
    chat.batch(bot, args, read_sentences(args.input))
    return 0


def cmd_transcribe(args) -> int:
    from attnseq.cli.lines import Progress
    from attnseq.tasks.speech import Transcriber

    transcriber, _ = load_predictor(args, expect=Transcriber, what="a speech model")
    size, progress = transcriber.config.decode.batch_size, Progress("transcribe")
    try:
        for start in range(0, len(args.audio), size):  # each batch's transcripts as soon as it is done
            files = args.audio[start : start + size]
            found = transcriber.transcribe(files)
            show_notices()  # once the first batch was read: a bad file stays one line
            for p in found:
                print(json.dumps(p.to_dict(), ensure_ascii=False) if args.json else f"{p.input}\t{p.output}")
            sys.stdout.flush()
            progress.add(len(files))
    finally:
        progress.close()
    return 0


def cmd_classify(args) -> int:
    from attnseq.cli import lines
    from attnseq.tasks.classify import Classifier

    classifier, _ = load_predictor(args, expect=Classifier, what="a classifier")
    colour = args.explain and (args.color == "always" or (args.color == "auto" and sys.stdout.isatty()))

    def write(texts: list[str], first: int) -> bool:
        for p in classifier.predict(texts):
            if not p.input_tokens and not args.json:
                print()  # an empty line in, an empty line out: output stays line-aligned
            elif args.json:
                record = p.to_dict()
                record["probabilities"] = {a.output: round(a.score, 6) for a in p.alternatives}
                record.pop("alternatives", None)
                print(json.dumps(record, ensure_ascii=False))
            elif args.explain:
                print(f"{p.output}\t{p.score:.4f}\t{_explain(p, colour=colour)}")
            else:
                print(f"{p.output}\t{p.score:.4f}")
        return False

    if args.input is None and sys.stdin.isatty():
        return lines.prompt(write, what="classify")
    lines.stream(args.input, 4 * classifier.config.decode.batch_size, write, what="classify")
    return 0


def _explain(p, *, colour: bool) -> str:
    """The tokens with their pooling weights: on a terminal each token's background is shaded by
    its weight (relative to the text's largest), else `token(0.12)`."""
    if p.attention is None:
        return " ".join(p.input_tokens) + "  (this pooling has no weights)"
    weights = p.attention[0]
    if not colour:
        return " ".join(f"{t}({w:.2f})" for t, w in zip(p.input_tokens, weights))
    top = max(float(weights.max()), 1e-9)
    shades = (236, 238, 240, 94, 130, 166, 202, 208, 214, 220)  # grey (little weight) -> amber (most)
    cells = []
    for t, w in zip(p.input_tokens, weights):
        shade = shades[min(int(w / top * len(shades)), len(shades) - 1)]
        cells.append(f"\x1b[48;5;{shade}m\x1b[38;5;231m{t}\x1b[0m")
    return " ".join(cells)


def cmd_ablate(args) -> int:
    from attnseq.ablate import ablate

    only = [v.strip() for v in args.only.split(",") if v.strip()] if args.only else None
    ablate(args.config, args.out, args.overrides, only=only, log=lambda m: print(m, flush=True))
    out = Path(args.out)
    print((out / "ablation.md").read_text(encoding="utf-8"))
    print(f"wrote {out / 'ablation.md'}, {out / 'ablation.png'}, {out / 'ablation.json'}")
    return 0


def cmd_plot(args) -> int:
    """The picture the model's task draws of one input (attention, pooling weights, an alignment)."""
    from attnseq.predict import load_with_task, set_decode

    out = Path(args.out)
    if not args.sentence.strip():
        raise AttnseqError("plot: the input is empty; give a sentence (for a speech model, an audio file)")
    if not out.parent.is_dir():
        raise AttnseqError(f"plot: --out {out}: the folder {out.parent} does not exist; create it first")
    predictor, task = load_with_task(args.model)
    set_decode(predictor, task, args.overrides, where="plot")
    try:
        output, path = task.plot(predictor, args.sentence, out)
    except AttnseqError as exc:
        raise AttnseqError(f"{args.model}: {exc}") from None
    print(f"{output}\nwrote {path}")
    return 0


def cmd_data(args) -> int:
    from attnseq import catalogue

    if args.action == "list":
        for d in catalogue.DATASETS.values():
            try:
                where = str(catalogue.resolve(f"{catalogue.PREFIX}{d.name}"))
            except AttnseqError:
                where = "not here: attnseq data get " + d.name
            print(f"{d.name:<14} {d.title}\n{'':<14} {d.home} ({d.licence}); {where}")
        return 0
    if not args.name:
        raise AttnseqError(f"data get: name a data set ({', '.join(catalogue.DATASETS)})")
    catalogue.get(args.name, out=Path(args.dir) if args.dir else None, mirror=args.mirror,
                 log=lambda m: print(m, flush=True))  # fmt: skip
    return 0


def check_port(host: str, port: int) -> None:
    """--host / --port can be listened on: the port in range, the address known, nothing listening there."""
    import socket

    if not 0 <= port <= 65535:
        raise AttnseqError(f"--port {port}: a port is a number from 0 to 65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise AttnseqError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            raise AttnseqError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror}); stop what "
                               "listens there or choose another --port") from None  # fmt: skip


def cmd_serve(args) -> int:
    from attnseq.serve import load_models, run
    from attnseq.serve.settings import Batching, Limits

    check_port(args.host, args.port)  # before the models load: a busy port is said at once
    for flag in ("port", "threads", "max_batch", "max_chars", "max_inputs", "max_body_bytes", "max_queue"):
        low = 0 if flag in ("port", "threads") else 1
        if getattr(args, flag) < low:
            raise AttnseqError(f"--{flag.replace('_', '-')} must be at least {low}")
    if args.max_wait_ms < 0 or args.timeout <= 0:
        raise AttnseqError("--max-wait-ms must be at least 0 and --timeout more than 0")
    limits = Limits(max_chars=args.max_chars, max_inputs=args.max_inputs, max_body_bytes=args.max_body_bytes,
                    timeout_s=args.timeout, max_queue=args.max_queue)  # fmt: skip
    batching = Batching(enabled=not args.no_batching, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)
    models = load_models(args.model, device=args.device, threads=args.threads, overrides=args.overrides)
    for name, served in models.items():
        print(f"attnseq serve: model {name!r} ({served.task}) from {served.directory}", file=sys.stderr)
    run(models, host=args.host, port=args.port, access_log=not args.no_access_log, limits=limits, batching=batching)
    return 0
