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
class DataSet:
    name: str
    title: str
    home: str
    licence: str
    files: tuple[Source | Folder, ...]


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
        if isinstance(src, Folder):
            url = mirror.rstrip("/") + "/" + src.url.rsplit("/", 1)[1] if mirror else src.url
            _get_folder(src, folder, url, archives, timeout, log)
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
