"""`attnseq data get` against a local server that serves copies of the official files, and the
`data:` paths recipes use."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import threading
import zipfile
from pathlib import Path

import pytest

from attnseq import catalogue
from attnseq.cli import main
from attnseq.errors import AttnseqError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def server(tmp_path):
    """An HTTP server on a loopback port serving tmp_path/www."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def fake_set(monkeypatch):
    """A data set of one zip member and one gzip file, registered under the name 'toy'."""
    texts = {"a.txt": b"good\t1\nbad\t0\n", "b.txt.gz": b"line one\nline two\n"}
    sha = {name: hashlib.sha256(data).hexdigest() for name, data in texts.items()}
    toy = catalogue.DataSet("toy", "a toy set", "https://example.org/toy", "CC0", (
        catalogue.Source("https://example.org/files/toy.zip", "a.txt", sha["a.txt"], member="toy/a.txt"),
        catalogue.Source("https://example.org/files/b.txt.gz", "b.txt.gz", sha["b.txt.gz"]),
    ))  # fmt: skip
    monkeypatch.setitem(catalogue.DATASETS, "toy", toy)
    return texts


def publish(www: Path, texts: dict[str, bytes]) -> None:
    with zipfile.ZipFile(www / "toy.zip", "w") as z:
        z.writestr("toy/a.txt", texts["a.txt"])
    (www / "b.txt.gz").write_bytes(gzip.compress(texts["b.txt.gz"]))


def test_get_downloads_verifies_and_keeps_intact_files(server, fake_set, tmp_path, capsys):
    www, url = server
    publish(www, fake_set)
    assert main(["data", "get", "toy", "--dir", str(tmp_path / "d"), "--mirror", url]) == 0
    assert (tmp_path / "d" / "toy" / "a.txt").read_bytes() == fake_set["a.txt"]
    assert gzip.decompress((tmp_path / "d" / "toy" / "b.txt.gz").read_bytes()) == fake_set["b.txt.gz"]
    assert "written, checksum ok" in capsys.readouterr().out
    (www / "toy.zip").unlink()  # a second run needs no download
    assert main(["data", "get", "toy", "--dir", str(tmp_path / "d"), "--mirror", url]) == 0
    assert capsys.readouterr().out.count("present, checksum ok") == 2


def test_a_changed_file_is_refused_and_nothing_is_written(server, fake_set, tmp_path, capsys):
    www, url = server
    publish(www, {**fake_set, "a.txt": b"good\t0\n"})
    assert main(["data", "get", "toy", "--dir", str(tmp_path / "d"), "--mirror", url]) == 2
    assert "checksum mismatch for a.txt" in capsys.readouterr().err
    assert list((tmp_path / "d" / "toy").iterdir()) == []


def test_an_unreachable_source_is_one_clear_line(fake_set, tmp_path, capsys):
    assert main(["data", "get", "toy", "--dir", str(tmp_path), "--mirror", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "download failed" in err and "Traceback" not in err


def test_data_paths_resolve_in_order_and_say_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ATTNSEQ_DATA", str(tmp_path / "env"))
    (tmp_path / "data" / "toy").mkdir(parents=True)
    (tmp_path / "data" / "toy" / "x.txt").write_text("x")
    assert catalogue.resolve("data:toy/x.txt") == Path("data/toy/x.txt")
    (tmp_path / "env" / "toy").mkdir(parents=True)
    (tmp_path / "env" / "toy" / "x.txt").write_text("y")
    assert catalogue.resolve("data:toy/x.txt") == tmp_path / "env" / "toy" / "x.txt"
    with pytest.raises(AttnseqError, match=r"data:multi30k/nope.gz: not found .*attnseq data get multi30k"):
        catalogue.resolve("data:multi30k/nope.gz")
    assert catalogue.resolve("plain/path.txt") == Path("plain/path.txt")


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not here")
@pytest.mark.parametrize("name", sorted(catalogue.DATASETS))
def test_the_registered_checksums_match_the_copies_the_recipes_use(name):
    for src in catalogue.DATASETS[name].files:
        if isinstance(src, catalogue.Corpus):
            assert catalogue._corpus_digests(src, SHARED / name) == (src.samples, src.transcripts, src.texts)
            continue
        if isinstance(src, catalogue.Folder):
            assert catalogue._folder_digest(SHARED / name / src.target, src.suffix) == src.sha256, src.target
            continue
        data = (SHARED / name / src.target).read_bytes()
        assert catalogue._digest(data, src.target) == src.sha256, src.target


@pytest.mark.skipif(not (SHARED / "sentiment-uci").is_dir(), reason="../shared/data/sentiment-uci is not here")
def test_get_sentiment_from_a_server_holding_the_official_archive(server, tmp_path):
    """The real registry entry: the UCI zip layout, rebuilt from the copies here, served locally."""
    www, url = server
    with zipfile.ZipFile(www / "sentiment+labelled+sentences.zip", "w") as z:
        for src in catalogue.DATASETS["sentiment-uci"].files:
            z.writestr(src.member, (SHARED / "sentiment-uci" / src.target).read_bytes())
    folder = catalogue.get("sentiment-uci", out=tmp_path / "d", mirror=url, log=lambda m: None)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        s.target for s in catalogue.DATASETS["sentiment-uci"].files
    )


NEWS = SHARED / "news-headlines-huffpost"


@pytest.mark.skipif(not NEWS.is_dir(), reason="../shared/data/news-headlines-huffpost is not here")
def test_get_headlines_compresses_the_plain_official_file(server, tmp_path):
    """The mirror serves plain JSON Lines; the recipe reads it gzipped, checked by its text."""
    www, url = server
    (src,) = catalogue.DATASETS["news-headlines-huffpost"].files
    (www / "News_Category_Dataset_v3.json").write_bytes(gzip.decompress((NEWS / src.target).read_bytes()))
    folder = catalogue.get("news-headlines-huffpost", out=tmp_path / "d", mirror=url, log=lambda m: None)
    written = (folder / src.target).read_bytes()
    assert written[:2] == b"\x1f\x8b" and catalogue._digest(written, src.target) == src.sha256


@pytest.mark.parametrize("archive", ["zip", "tar.gz"])
def test_a_folder_comes_out_of_an_archive_checked_as_a_whole(server, tmp_path, monkeypatch, archive):
    import io
    import tarfile

    www, url = server
    files = {f"{i}_x.wav": bytes([i]) * 10 for i in range(3)}
    folder = catalogue.Folder(f"https://example.org/clips.{archive}", "clips", "top/clips/", ".wav", 3,
                             catalogue.tree_digest(files))  # fmt: skip
    monkeypatch.setitem(catalogue.DATASETS, "clips", catalogue.DataSet("clips", "clips", "", "CC0", (folder,)))

    def publish(content: dict[str, bytes]) -> None:
        if archive == "zip":
            with zipfile.ZipFile(www / "clips.zip", "w") as z:
                for name, data in content.items():
                    z.writestr(f"top/clips/{name}", data)
                z.writestr("top/README.md", "not a clip")
            return
        with tarfile.open(www / "clips.tar.gz", "w:gz") as t:
            for name, data in content.items():
                info = tarfile.TarInfo(f"top/clips/{name}")
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))

    publish({**files, "1_x.wav": b"changed"})
    with pytest.raises(AttnseqError, match="not the files the recipes were checked with; nothing was written"):
        catalogue.get("clips", out=tmp_path / "d", mirror=url, log=lambda m: None)
    assert not (tmp_path / "d" / "clips" / "clips").exists()
    assert not [p for p in (tmp_path / "d" / "clips").iterdir()]  # no temporary folder left
    publish(files)
    got = catalogue.get("clips", out=tmp_path / "d", mirror=url, log=lambda m: None)
    assert {p.name: p.read_bytes() for p in (got / "clips").iterdir()} == files
    (www / f"clips.{archive}").unlink()  # present and intact: nothing downloaded
    lines = []
    catalogue.get("clips", out=tmp_path / "d", mirror=url, log=lines.append)
    assert "present, checksum ok" in lines[0]


AN4 = SHARED / "an4"


@pytest.fixture(scope="module")
def an4_zip(tmp_path_factory):
    """The official archive's layout (wav/FILEID.wav, etc/, LICENSE) rebuilt from the converted copy here."""
    import io

    import soundfile

    if not AN4.is_dir():
        pytest.skip("../shared/data/an4 is not here")
    (src,) = catalogue.DATASETS["an4"].files
    path = tmp_path_factory.mktemp("an4") / src.url.rsplit("/", 1)[1]
    with zipfile.ZipFile(path, "w") as z:
        for flac in sorted((AN4 / "audio").rglob("*.flac")):
            wav = io.BytesIO()
            soundfile.write(wav, soundfile.read(flac, dtype="int16")[0], src.rate, format="WAV", subtype="PCM_16")
            z.writestr(f"{src.prefix}wav/{flac.relative_to(AN4 / 'audio').with_suffix('.wav').as_posix()}",
                       wav.getvalue())  # fmt: skip
        for name in src.text_files():
            z.writestr(src.prefix + name, (AN4 / name).read_bytes())
        z.writestr(f"{src.prefix}README.md", "not copied")
    return path


def test_get_an4_converts_the_official_archive_to_the_copy_here(server, an4_zip, tmp_path):
    import soundfile

    www, url = server
    (www / an4_zip.name).symlink_to(an4_zip)
    lines = []
    folder = catalogue.get("an4", out=tmp_path / "d", mirror=url, log=lines.append)
    assert "1078 recordings converted to FLAC" in lines[1]
    assert (folder / "transcripts.tsv").read_bytes() == (AN4 / "transcripts.tsv").read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == ["LICENSE", "audio", "etc", "transcripts.tsv"]
    for name in ("LICENSE", "etc/an4_train.transcription", "etc/an4_test.fileids"):
        assert (folder / name).read_bytes() == (AN4 / name).read_bytes(), name
    flacs = sorted((AN4 / "audio").rglob("*.flac"))
    assert len(flacs) == 1078 and len(list((folder / "audio").rglob("*.flac"))) == 1078
    for flac in flacs[::250]:
        ours, rate = soundfile.read(folder / flac.relative_to(AN4), dtype="int16")
        assert rate == 16000 and (ours == soundfile.read(flac, dtype="int16")[0]).all(), flac.name
    (www / an4_zip.name).unlink()  # present and intact: nothing downloaded
    lines.clear()
    catalogue.get("an4", out=tmp_path / "d", mirror=url, log=lines.append)
    assert "present, checksums ok" in lines[0]


def test_an4_with_one_changed_recording_is_refused_and_nothing_is_written(server, an4_zip, tmp_path):
    import io

    import numpy as np
    import soundfile

    www, url = server
    with zipfile.ZipFile(an4_zip) as old, zipfile.ZipFile(www / an4_zip.name, "w") as new:
        for info in old.infolist():
            data = old.read(info)
            if info.filename.endswith("/an406-fcaw-b.wav"):
                samples = soundfile.read(io.BytesIO(data), dtype="int16")[0]
                samples[1000] = np.int16(samples[1000] ^ 1)
                wav = io.BytesIO()
                soundfile.write(wav, samples, 16000, format="WAV", subtype="PCM_16")
                data = wav.getvalue()
            new.writestr(info, data)
    with pytest.raises(AttnseqError, match="not the files the recipes were checked with; nothing was written") as exc:
        catalogue.get("an4", out=tmp_path / "d", mirror=url, log=lambda m: None)
    assert "\n" not in str(exc.value) and "1078 recordings (expected 1078)" in str(exc.value)
    assert list((tmp_path / "d" / "an4").iterdir()) == []
