"""`attnseq chat`: talk to a chatbot model (task: chat) at a prompt, or reply to piped lines.

At a terminal: line editing and history (readline), `/quit` or Ctrl-D to leave, Ctrl-C at the
prompt clears the line and Ctrl-C during a reply abandons that reply; `/help` lists the commands.
With stdin not a terminal, every line is a question and every output line its reply (a batch mode:
the replies are decoded together). `--show-attention` prints, under each reply, which word of the
question each reply word attended to most.
"""

from __future__ import annotations

import json

import numpy as np

from attnseq.tokenize import SPACE

PROMPT = "you> "
HELP = "/quit (or Ctrl-D) leaves; Ctrl-C abandons a reply; an empty line does nothing"


def word_groups(tokens: list[str], *, pieces: bool) -> list[tuple[str, list[int]]]:
    """Tokens joined into words: [(word, token positions)]. Subword and character tokens start a
    word with "▁" (a lone "▁" is a space, in no word); whole-word tokens are each a word. The end
    token </s> is in none."""
    words: list[tuple[str, list[int]]] = []
    for i, tok in enumerate(tokens):
        if tok == "</s>" or tok == SPACE:
            if tok == SPACE:
                words.append(("", []))  # a boundary: the next token starts a word
            continue
        starts = not pieces or tok.startswith(SPACE) or not words or not words[-1][1]
        if starts:
            words.append((tok.lstrip(SPACE) if pieces else tok, [i]))
        else:
            words[-1] = (words[-1][0] + tok, [*words[-1][1], i])
    return [(w, index) for w, index in words if index]


def attention_lines(p, *, pieces: bool) -> list[str]:
    """For each word of the reply: the question word it attended to most (attention summed over
    the question word's tokens, averaged over the reply word's)."""
    if p.attention is None or not len(p.attention):
        return ["  (this model has no attention)"]
    out_words = word_groups(p.output_tokens, pieces=pieces)
    in_words = word_groups(p.input_tokens, pieces=pieces)
    weights = np.asarray(p.attention)
    lines = []
    for word, rows in out_words:
        per_input = [weights[rows][:, cols].sum(axis=1).mean() for _, cols in in_words]
        best = int(np.argmax(per_input))
        lines.append(f"  {word} <- {in_words[best][0]} ({per_input[best]:.2f})")
    return lines


def search_options(args) -> dict:
    search = {"beam_size": args.beam_size, "n_best": 1}
    if args.sample:
        search.update(sample=True, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    return search


def batch(bot, args, lines: list[str]) -> None:
    """Piped stdin: one reply per line (an empty line gets an empty reply), or one JSON object each."""
    pieces = bot.src_tok.name != "word"
    for p in bot.reply(lines, **search_options(args)):
        if args.json:
            print(json.dumps(p.to_dict(), ensure_ascii=False))
        else:
            print(p.output)
            if args.show_attention and p.output_tokens:
                print("\n".join(attention_lines(p, pieces=pieces)))


def interactive(bot, args) -> int:
    """The prompt. Returns the exit status (0)."""
    import readline  # noqa: F401  (line editing and history for input())

    pieces = bot.src_tok.name != "word"
    how = "sampling" if args.sample else f"beam {args.beam_size or bot.config.decode.beam_size}"
    print(f"attnseq chat ({how}); {HELP}", flush=True)
    while True:
        try:
            question = input(PROMPT)
        except EOFError:  # Ctrl-D
            print()
            return 0
        except KeyboardInterrupt:  # Ctrl-C at the prompt: a fresh line
            print()
            continue
        question = question.strip()
        if not question:
            continue
        if question in ("/quit", "/exit"):
            return 0
        if question == "/help":
            print(HELP, flush=True)
            continue
        try:
            (p,) = bot.reply([question], **search_options(args))
        except KeyboardInterrupt:  # Ctrl-C during a reply: back to the prompt
            print("\n(reply interrupted)", flush=True)
            continue
        print(f"bot> {p.output}", flush=True)
        if args.show_attention:
            print("\n".join(attention_lines(p, pieces=pieces)), flush=True)
