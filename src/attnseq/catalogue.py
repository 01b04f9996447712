"""The public data sets the recipes train on: where each comes from, its checksums, and where it lives.

A config names a data set file as `data:NAME/FILE` (e.g. `data:multi30k/train.en.gz`). It is read
from the first data directory that holds it: $ATTNSEQ_DATA, then ./data, then ../shared/data.
`attnseq data get NAME` downloads the official files into ./data/NAME (or $ATTNSEQ_DATA/NAME),
verifies each against the checksum of the copy the recipes were checked with, and writes it
atomically, so an interrupted download leaves nothing half-written.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from attnseq.errors import AttnseqError

PREFIX = "data:"


@dataclass(frozen=True)
class Source:
    url: str  # the official download
    target: str  # file name under data/NAME/
    sha256: str  # of the file as recipes read it; for .gz files, of the decompressed text
    member: str = ""  # the file inside a zip archive at `url`
    compress: bool = False  # the official file is plain text: written gzip-compressed as `target` (a .gz name)


@dataclass(frozen=True)
class Folder:
    """A folder of many files taken from an archive, verified as a whole (`tree_digest`)."""

    url: str  # the official archive (.zip or .tar.gz)
    target: str  # folder name under data/NAME/
    prefix: str  # the members' folder inside the archive
    suffix: str  # which of its files (e.g. ".wav")
    count: int  # how many there are
    sha256: str  # tree_digest of the folder as recipes read it


@dataclass(frozen=True)
class Corpus:
    """A speech corpus in SphinxTrain's layout (wav/FILEID.wav, etc/DB_{train,test}.{fileids,transcription}),
    converted from its archive: each listed recording as audio/FILEID.flac, the etc/ lists and LICENSE as
    they are, and transcripts.tsv (utt_id, split, file, speaker, text) with ESPnet's ids and split. Checked
    by what recipes read, so not by the FLAC encoder's bytes."""

    url: str  # the official archive (.zip)
    prefix: str  # its top folder
    db: str  # the etc/ files' stem
    count: int  # how many recordings
    dev: int  # the first DEV training utterances by sorted utt_id are train_dev, the rest train_nodev
    samples: str  # tree_digest of "audio/FILEID.flac" -> its decoded samples (int16, little-endian)
    transcripts: str  # sha256 of transcripts.tsv
    texts: str  # tree_digest of the etc/ lists and LICENSE
    rate: int = 16000  # the recordings' sample rate (mono, 16-bit)

    def text_files(self) -> list[str]:
        return ["LICENSE", *(f"etc/{self.db}_{s}.{k}" for s in ("train", "test") for k in ("fileids", "transcription"))]


@dataclass(frozen=True)
class DataSet:
    name: str
    title: str
    home: str
    licence: str
    files: tuple[Source | Folder | Corpus, ...]


def tree_digest(files: dict[str, bytes]) -> str:
    """One checksum of a folder: sha256 over "NAME SHA256" lines of its files, sorted by name."""
    lines = "".join(f"{name} {hashlib.sha256(data).hexdigest()}\n" for name, data in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def _members(data: bytes, url: str, prefix: str, suffix: str) -> dict[str, bytes]:
    """The files of an archive under `prefix` ending in `suffix`, by name relative to the prefix."""
    out: dict[str, bytes] = {}
    try:
        if url.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for name in archive.namelist():
                    if name.startswith(prefix) and name.endswith(suffix) and "/" not in name[len(prefix) :]:
                        out[name[len(prefix) :]] = archive.read(name)
        else:
            import tarfile

            with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
                for member in archive.getmembers():
                    name = member.name.removeprefix("./")
                    if member.isfile() and name.startswith(prefix) and name.endswith(suffix) \
                            and "/" not in name[len(prefix) :]:  # fmt: skip
                        out[name[len(prefix) :]] = archive.extractfile(member).read()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise AttnseqError(f"{url}: not a readable archive ({exc}); nothing was written") from None
    return out


_MGO = "6229ca6e9d6d63af0a5c1dcf0d3fd9bdbe0580c6"  # a mirror holding the first 9,999 lines of the v3 file
_UCI = "https://archive.ics.uci.edu/static/public/331/sentiment+labelled+sentences.zip"
_M30K = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/"
_M30K_SHA = {
    "train.en.gz": "460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6",
    "train.de.gz": "2c2b73fd2b548fbcde3a875e0a78d6ee94d498bfdee6bd3eae3945779e9ddf72",
    "train.fr.gz": "5925a3c18f1587b6b54b87743106e6e8ab93618edb6f65d19eac0621f853a10d",
    "val.en.gz": "1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227",
    "val.de.gz": "660e09eb7e1da2f856ea13ee5ad3cf6d36b3d5b0b733c857e94c5747a3dfc660",
    "val.fr.gz": "5304e444d842e962b2dda4d816b70b22a1765b15401642b7ca37a67477e708dc",
    "test_2016_flickr.en.gz": "399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182",
    "test_2016_flickr.de.gz": "4be6b5b3236b79c25475c6bb829800a7ce559e9ba7a1f6c2394fe4d40be46d16",
    "test_2016_flickr.fr.gz": "cb3160d69b002bb638e66cc7612fcd56cb0af82eadc9c142dedc438afb885ef6",
}

_FSDD = "26eb9aaf76e81b692f806f9140c2d2777410d7a1"  # the commit the recipe was checked with
_AN4 = "b567d132f43304e70a2b2eca6077f22255311812"  # likewise

DATASETS: dict[str, DataSet] = {
    d.name: d
    for d in (
        DataSet(
            "sentiment-uci",
            "Sentiment Labelled Sentences (Kotzias et al., KDD 2015): 3 x 1,000 sentences, 0/1",
            "https://archive.ics.uci.edu/dataset/331/sentiment+labelled+sentences",
            "CC BY 4.0",
            tuple(
                Source(_UCI, f"{stem}_labelled.txt", sha, member=f"sentiment labelled sentences/{stem}_labelled.txt")
                for stem, sha in (
                    ("amazon_cells", "47003fc0a0d4840b00e96e715b6189bad09e7443a3da41c4cbe12ffc79f86ae3"),
                    ("imdb", "aef2e49e3da25714d61175e3a6e68eeef74a20a2f914318dc3be9947ea86512d"),
                    ("yelp", "c76468b7b5c6e56a0804d728345c5f84aa2142ddb214420f61cc9cfd4c00d2ea"),
                )
            ),
        ),
        DataSet(
            "chatbot-ko",
            "Korean chatbot Q/A pairs with topic labels (songys/Chatbot_data): 11,823 pairs",
            "https://github.com/songys/Chatbot_data",
            "MIT",
            (
                Source(
                    "https://raw.githubusercontent.com/songys/Chatbot_data/master/ChatbotData.csv",
                    "ChatbotData.csv",
                    "287eb129695b577321c80ad397bb3c2279164d4ca577874d129fd3db5b30afe2",
                ),
            ),
        ),
        DataSet(
            "news-headlines-huffpost",
            "News Category Dataset v3 (Misra 2022, HuffPost): its first 9,999 records (headline, short_description)",
            "https://www.kaggle.com/datasets/rmisra/news-category-dataset",
            "CC BY 4.0 (cite Misra 2022, arXiv:2209.11429)",
            (
                Source(
                    f"https://raw.githubusercontent.com/Limpery/MGO/{_MGO}/News_Category_Dataset_v3.json",
                    "News_Category_Dataset_v3.head10k.jsonl.gz",
                    "2ccd587afdd6cb7bcf2c1dfbd04199278c0405fbda4ac57bec170403a8f12073",
                    compress=True,
                ),
            ),
        ),
        DataSet(
            "fsdd",
            "Free Spoken Digit Dataset (Jackson et al.): 3,000 clips, 6 speakers x 10 digits x 50, 8 kHz",
            "https://github.com/Jakobovski/free-spoken-digit-dataset",
            "CC BY-SA 4.0",
            (
                Folder(
                    f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/{_FSDD}.zip",
                    "recordings",
                    f"free-spoken-digit-dataset-{_FSDD}/recordings/",
                    ".wav",
                    3000,
                    "dbd573d7cafe79c4b49f65718115e1304e24e067fa39eff18a660dc6cb9c360f",
                ),
            ),
        ),
        DataSet(
            "yesno",
            "Kaldi yes/no corpus (OpenSLR SLR1): 60 recordings of 8 words, 8 kHz",
            "https://www.openslr.org/1/",
            "CC BY 4.0",
            (
                Folder(
                    "https://www.openslr.org/resources/1/waves_yesno.tar.gz",
                    "waves_yesno",
                    "waves_yesno/",
                    ".wav",
                    60,
                    "0032ed8b3aaeddf0c7451e136e7c5dae6a58415b1bd3fa7bbe2b49873564cb6a",
                ),
            ),
        ),
        DataSet(
            "an4",
            "CMU AN4 (census) speech: 1,078 utterances of spelled words and numbers, 16 kHz",
            "https://github.com/cmusphinx/an4",
            "CMU AN4 licence (BSD-style)",
            (
                Corpus(
                    f"https://github.com/cmusphinx/an4/archive/{_AN4}.zip",
                    f"an4-{_AN4}/",
                    "an4",
                    1078,
                    100,
                    "c597f2e76dd0b6a89fdeae560179b0f99ebfaa5e113c59b72ec01d4afa6d20d6",
                    "dc045e4706215288ae4b671ee66618f3b91a14665cf0b744b0815bb3de27bcf4",
                    "f8650355eee93997d8618e1d7510851fbc4280a56f0d0bd8ee07ea7c75e2e6be",
                ),
            ),
        ),
        DataSet(
            "multi30k",
            "Multi30k task 1 (Elliott et al. 2016): En/De/Fr image captions, 29,000 / 1,014 / 1,000",
            "https://github.com/multi30k/dataset",
            "research use (Flickr30k terms for the English captions)",
            tuple(Source(_M30K + name, name, sha) for name, sha in _M30K_SHA.items()),
        ),
    )
}


def data_roots() -> list[Path]:
    """Where `data:` paths are looked up, in order."""
    roots = [Path(os.environ["ATTNSEQ_DATA"])] if os.environ.get("ATTNSEQ_DATA") else []
    return [*roots, Path("data"), Path("..") / "shared" / "data"]


def resolve(path: str | Path) -> Path:
    """A config path as a file path: `data:NAME/FILE` becomes the first existing ROOT/NAME/FILE
    (`data_roots`), other paths are returned as they are.

    Raises:
        AttnseqError: a `data:` file that no data directory holds, with the command that fetches it.
    """
    text = str(path)
    if not text.startswith(PREFIX):
        return Path(path)
    rel = text[len(PREFIX) :].lstrip("/")
    for root in data_roots():
        if (root / rel).exists():
            return root / rel
    name = rel.split("/", 1)[0]
    fetch = (f"fetch it with `attnseq data get {name}`" if name in DATASETS
             else f"put it in one of them (data sets attnseq can fetch: {', '.join(DATASETS)})")  # fmt: skip
    roots = ", ".join(str(r) for r in data_roots())
    raise AttnseqError(f"{text}: not found in the data directories ({roots}); {fetch}")


def _digest(data: bytes, target: str) -> str:
    return hashlib.sha256(gzip.decompress(data) if target.endswith(".gz") else data).hexdigest()


def _download(url: str, *, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (https / a given mirror)
            return response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AttnseqError(f"{url}: download failed ({reason}); check the network, or give --mirror URL") from None


def _folder_digest(folder: Path, suffix: str) -> str | None:
    if not folder.is_dir():
        return None
    return tree_digest({p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name.endswith(suffix)})


def _get_folder(src: Folder, folder: Path, url: str, archives: dict[str, bytes], timeout: float, log) -> None:
    target = folder / src.target
    if _folder_digest(target, src.suffix) == src.sha256:
        log(f"{target}/: present, checksum ok")
        return
    if url not in archives:
        log(f"downloading {url}")
        archives[url] = _download(url, timeout=timeout)
    files = _members(archives[url], url, src.prefix, src.suffix)
    digest = tree_digest(files)
    if len(files) != src.count or digest != src.sha256:
        raise AttnseqError(
            f"{url}: {len(files)} {src.suffix} files under {src.prefix} (expected {src.count}), checksum "
            f"{digest[:16]}... (expected {src.sha256[:16]}...): not the files the recipes were checked with; "
            "nothing was written"
        )
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=f".{src.target}.", suffix=".tmp"))
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"{target}/: {len(files)} files written, checksum ok")


def _transcripts(src: Corpus, texts: dict[str, bytes], url: str) -> tuple[str, list[str]]:
    """transcripts.tsv made from the etc/ lists (a line `<s> YES </s> (an251-fash-b)` is utterance
    fash-an251-b, text YES; training sorted by utt_id, then the test set), and the recordings' file ids."""
    rows: dict[str, list[tuple[str, str, str, str]]] = {"train": [], "test": []}
    for split, out in rows.items():
        name = f"etc/{src.db}_{split}"
        ids, lines = texts[f"{name}.fileids"].decode().split(), texts[f"{name}.transcription"].decode().splitlines()
        for n, (fileid, line) in enumerate(zip(ids, lines, strict=False), 1):
            m = re.fullmatch(r"(.*) \((\w+)-(\w+)-(\w+)\)", line.strip())
            if not m or fileid.rsplit("/", 1)[-1] != f"{m[2]}-{m[3]}-{m[4]}":
                raise AttnseqError(f"{url}: {name}.transcription line {n}: {line!r} is not the transcript of "
                                   f"{fileid}; nothing was written")  # fmt: skip
            text = " ".join(w for w in m[1].split() if w not in ("<s>", "</s>"))
            out.append((f"{m[3]}-{m[2]}-{m[4]}", m[3], fileid, text))
        if len(ids) != len(lines):
            raise AttnseqError(f"{url}: {name}: {len(ids)} file ids, {len(lines)} transcripts; nothing was written")
        out.sort()
    train, test = rows["train"], rows["test"]
    splits = ["train_dev"] * src.dev + ["train_nodev"] * (len(train) - src.dev) + ["test"] * len(test)
    lines = [f"{u}\t{s}\taudio/{f}.flac\t{spk}\t{t}\n" for (u, spk, f, t), s in zip(train + test, splits, strict=True)]
    return "utt_id\tsplit\tfile\tspeaker\ttext\n" + "".join(lines), [f for _, _, f, _ in train + test]


def _corpus_digests(src: Corpus, folder: Path) -> tuple[str, str, str] | None:
    """(samples, transcripts, texts) of a converted corpus in `folder`, as `Corpus` registers them."""
    import soundfile

    try:
        samples = {p.relative_to(folder).as_posix(): soundfile.read(p, dtype="int16")[0].astype("<i2").tobytes()
                   for p in (folder / "audio").rglob("*.flac")}  # fmt: skip
        texts = {name: (folder / name).read_bytes() for name in src.text_files()}
        tsv = (folder / "transcripts.tsv").read_bytes()
    except (OSError, RuntimeError):  # a file missing or unreadable: not intact
        return None
    return tree_digest(samples), hashlib.sha256(tsv).hexdigest(), tree_digest(texts)


def _get_corpus(src: Corpus, folder: Path, url: str, archives: dict[str, bytes], timeout: float, log) -> None:
    import soundfile

    if _corpus_digests(src, folder) == (src.samples, src.transcripts, src.texts):
        log(f"{folder}/: {src.count} recordings, transcripts.tsv, etc/ and LICENSE present, checksums ok")
        return
    if url not in archives:
        log(f"downloading {url}")
        archives[url] = _download(url, timeout=timeout)
    audio = {}
    try:
        with zipfile.ZipFile(io.BytesIO(archives[url])) as archive:
            texts = {name: archive.read(src.prefix + name) for name in src.text_files()}
            tsv, fileids = _transcripts(src, texts, url)
            for fileid in fileids:
                with soundfile.SoundFile(io.BytesIO(archive.read(f"{src.prefix}wav/{fileid}.wav"))) as wav:
                    if (wav.samplerate, wav.channels, wav.subtype) != (src.rate, 1, "PCM_16"):
                        raise RuntimeError(f"wav/{fileid}.wav is {wav.samplerate} Hz x {wav.channels} {wav.subtype}")
                    audio[f"audio/{fileid}.flac"] = wav.read(dtype="int16")
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, RuntimeError, UnicodeDecodeError) as exc:
        raise AttnseqError(f"{url}: not the expected archive ({exc}); nothing was written") from None
    got = (tree_digest({name: a.astype("<i2").tobytes() for name, a in audio.items()}),
           hashlib.sha256(tsv.encode()).hexdigest(), tree_digest(texts))  # fmt: skip
    if len(audio) != src.count or got != (src.samples, src.transcripts, src.texts):
        raise AttnseqError(
            f"{url}: {len(audio)} recordings (expected {src.count}), checksums of the samples, transcripts.tsv and "
            f"texts {', '.join(g[:16] + '...' for g in got)} (expected {src.samples[:16]}..., {src.transcripts[:16]}"
            f"..., {src.texts[:16]}...): not the files the recipes were checked with; nothing was written"
        )
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".corpus.", suffix=".tmp"))
    try:
        for name, samples in audio.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(tmp / name, samples, src.rate, format="FLAC", subtype="PCM_16")
        for name, data in {**texts, "transcripts.tsv": tsv.encode()}.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        for entry in sorted(p.name for p in tmp.iterdir()):  # audio, etc, LICENSE, transcripts.tsv
            if (folder / entry).is_dir():
                shutil.rmtree(folder / entry)
            os.replace(tmp / entry, folder / entry)
        tmp.rmdir()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"{folder}/: {len(audio)} recordings converted to FLAC; transcripts.tsv, etc/, LICENSE written; checksums ok")


def get(name: str, *, out: Path | None = None, mirror: str = "", timeout: float = 60.0, log=print) -> Path:
    """Download data set `name` into OUT/NAME (default: the first data root, $ATTNSEQ_DATA or
    ./data), checking every file's checksum; files already there and intact are kept. With
    `mirror`, each file is fetched from MIRROR/<its file name in the official URL>."""
    if name not in DATASETS:
        raise AttnseqError(f"data get: unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    dataset = DATASETS[name]
    folder = Path(out or data_roots()[0]) / name
    folder.mkdir(parents=True, exist_ok=True)
    archives: dict[str, bytes] = {}
    for src in dataset.files:
        if isinstance(src, Folder | Corpus):
            url = mirror.rstrip("/") + "/" + src.url.rsplit("/", 1)[1] if mirror else src.url
            (_get_folder if isinstance(src, Folder) else _get_corpus)(src, folder, url, archives, timeout, log)
            continue
        target = folder / src.target
        if target.is_file() and _digest(target.read_bytes(), src.target) == src.sha256:
            log(f"{target}: present, checksum ok")
            continue
        url = mirror.rstrip("/") + "/" + src.url.rsplit("/", 1)[1] if mirror else src.url
        if url not in archives:
            log(f"downloading {url}")
            archives[url] = _download(url, timeout=timeout)
        data = archives[url]
        if src.member:
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as archive:
                    data = archive.read(src.member)
            except (zipfile.BadZipFile, KeyError) as exc:
                raise AttnseqError(f"{url}: not the expected zip archive ({exc}); nothing was written") from None
        if src.compress:
            data = gzip.compress(data, mtime=0)
        try:
            digest = _digest(data, src.target)
        except (OSError, EOFError) as exc:
            raise AttnseqError(f"{url}: not a readable gzip file ({exc}); nothing was written") from None
        if digest != src.sha256:
            raise AttnseqError(
                f"{url}: checksum mismatch for {src.target} (sha256 {digest[:16]}..., expected "
                f"{src.sha256[:16]}...): the file differs from the one the recipes were checked with; "
                "nothing was written"
            )
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{src.target}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        log(f"{target}: written, checksum ok")
    log(f"{dataset.title}\n  source {dataset.home}, licence {dataset.licence}\n  in {folder}")
    return folder
