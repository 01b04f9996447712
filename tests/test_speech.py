"""Speech-to-text (SPEC 6.4): the audio front end against librosa, the pyramidal listener's lengths,
masks and padding invariance, and a tiny Listen-Attend-Spell run on generated tones spelling
their pitch names."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from attnseq.audio import FeatureStats, Frontend, read_wav, spec_augment
from attnseq.audio.features import mel_filterbank
from attnseq.errors import AttnseqError
from attnseq.modules.listener import PyramidalListener, stack_frames

RATE = 8000
PITCHES = {"C": 261.63, "D": 293.66, "E": 329.63, "F": 349.23, "G": 392.00, "A": 440.00, "B": 493.88}
SHARED_FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd" / "transcripts.tsv"


def tone(freq: float, seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * freq * t) * np.hanning(len(t))).astype(np.float32)


def write_tone_corpus(root: Path, *, n_train: int = 240, n_test: int = 40, seed: int = 0) -> dict[str, Path]:
    """Recordings of 1-3 notes (0.12-0.2 s each, short silences between) and manifests whose
    transcripts are the pitch names ("C E G")."""
    rng = np.random.default_rng(seed)
    names = list(PITCHES)
    root.mkdir(parents=True, exist_ok=True)
    manifests = {}
    for split, count in (("train", n_train), ("valid", n_test), ("test", n_test)):
        rows = ["file\ttext"]
        for i in range(count):
            notes = [names[k] for k in rng.integers(0, len(names), size=int(rng.integers(1, 4)))]
            parts = [np.zeros(int(rng.uniform(0.02, 0.08) * RATE), np.float32)]
            for note in notes:
                parts += [
                    tone(PITCHES[note], rng.uniform(0.12, 0.2)),
                    np.zeros(int(rng.uniform(0.03, 0.1) * RATE), np.float32),
                ]
            wave = np.concatenate(parts) + rng.normal(0, 0.003, size=sum(len(p) for p in parts)).astype(np.float32)
            name = f"{split}_{i:03d}.wav"
            soundfile.write(root / name, wave, RATE, subtype="PCM_16")
            rows.append(f"{name}\t{' '.join(notes)}")
        manifests[split] = root / f"{split}.tsv"
        manifests[split].write_text("\n".join(rows) + "\n", encoding="utf-8")
    return manifests


# ------------------------------------------------------------------------------------ front end
def test_mel_filterbank_equals_librosa():
    librosa = pytest.importorskip("librosa")
    for rate, n_fft, n_mels in ((8000, 256, 40), (16000, 512, 80)):
        ours = mel_filterbank(rate, n_fft, n_mels).numpy()
        theirs = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels)
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-7)


def test_log_mel_matches_librosa_melspectrogram_on_a_tone():
    librosa = pytest.importorskip("librosa")
    front = Frontend(sample_rate=RATE, n_mels=40, win_ms=25, hop_ms=10)
    wave = tone(440.0, 0.5) + tone(1250.0, 0.5)
    ours = front.mel_power(wave).numpy()  # (frames, mels)
    theirs = librosa.feature.melspectrogram(
        y=wave, sr=RATE, n_fft=front.n_fft, hop_length=front.hop_length, win_length=front.win_length,
        window="hann", center=True, pad_mode="constant", power=2.0, n_mels=40,
    ).T  # fmt: skip
    assert ours.shape == theirs.shape == (51, 40)
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-6 * theirs.max())
    # the band holding 440 Hz is the loudest of the log-mel frame in the middle of the tone
    log_mel = front.log_mel(tone(440.0, 0.5)).numpy()
    centres = librosa.mel_frequencies(n_mels=42, fmax=RATE / 2)[1:-1]
    assert abs(centres[log_mel[25].argmax()] - 440.0) < 60


def test_preemphasis_and_fmin_take_out_low_rumble():
    librosa = pytest.importorskip("librosa")
    plain = Frontend(sample_rate=RATE, n_mels=40, win_ms=25, hop_ms=10)
    front = Frontend(sample_rate=RATE, n_mels=40, win_ms=25, hop_ms=10, preemphasis=0.97)
    wave = 0.3 * tone(30.0, 0.5) + 0.1 * tone(1000.0, 0.5)  # a low rumble under a tone
    theirs = librosa.feature.melspectrogram(
        y=librosa.effects.preemphasis(wave, coef=0.97, zi=0.0), sr=RATE, n_fft=front.n_fft,
        hop_length=front.hop_length, win_length=front.win_length, window="hann", center=True,
        pad_mode="constant", power=2.0, n_mels=40,
    ).T  # fmt: skip
    ours = front.mel_power(wave).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-6 * theirs.max())

    def rumble_to_tone_db(f: Frontend) -> float:  # the rumble's mel power against the tone's
        rumble, tone_only = f.mel_power(0.3 * tone(30.0, 0.5)), f.mel_power(0.1 * tone(1000.0, 0.5))
        return 10 * np.log10(rumble.sum().item() / tone_only.sum().item())

    assert rumble_to_tone_db(plain) - rumble_to_tone_db(front) > 20  # the rumble falls by more than 20 dB
    # data.fmin leaves the bands under it out: the rumble's band goes, the tone's stays
    high = Frontend(sample_rate=RATE, n_mels=40, win_ms=25, hop_ms=10, fmin=125.0)
    assert rumble_to_tone_db(plain) - rumble_to_tone_db(high) > 20
    expected = librosa.filters.mel(sr=RATE, n_fft=high.n_fft, n_mels=40, fmin=125.0)
    np.testing.assert_allclose(high.filters.numpy(), expected, rtol=1e-4, atol=1e-7)

    from attnseq.config import load_config
    from attnseq.errors import AttnseqError

    # the config's keys reach the front end a model builds
    args = ["task=speech", "data.train=x", "data.valid=x", f"data.sample_rate={RATE}", "data.n_mels=40"]
    both = Frontend.from_config(load_config(None, [*args, "data.preemphasis=0.97", "data.fmin=125"]).data)
    assert both.preemphasis == 0.97 and torch.equal(both.filters, high.filters)
    assert torch.equal(Frontend.from_config(load_config(None, args).data).mel_power(wave), plain.mel_power(wave))
    for bad in ("1.0", "-0.1"):
        with pytest.raises(AttnseqError, match=r"data.preemphasis.*in \[0, 1\)"):
            load_config(None, [*args, f"data.preemphasis={bad}"])
    with pytest.raises(AttnseqError, match=r"data.fmin.*below half the sample rate"):
        load_config(None, [*args, "data.fmin=4000"])


def test_read_wav_mixes_to_mono_resamples_and_names_bad_files(tmp_path):
    stereo = np.stack([tone(440.0, 0.5, 16000), tone(440.0, 0.5, 16000)], axis=1)
    soundfile.write(tmp_path / "s.wav", stereo, 16000)
    wave = read_wav(tmp_path / "s.wav", RATE)
    assert wave.dtype == np.float32 and wave.ndim == 1 and abs(len(wave) - 4000) <= 2
    assert read_wav((tmp_path / "s.wav").read_bytes(), RATE).shape == wave.shape  # the bytes of a file
    (tmp_path / "bad.wav").write_text("not audio")
    with pytest.raises(AttnseqError, match=r"bad\.wav: not a readable audio file"):
        read_wav(tmp_path / "bad.wav", RATE)
    with pytest.raises(AttnseqError, match=r"missing\.wav: audio file not found"):
        read_wav(tmp_path / "missing.wav", RATE)


def test_spec_augment_masks_within_bounds_and_is_seeded():
    x = torch.randn(3, 50, 20) + 5
    lengths = torch.tensor([50, 30, 10])
    kw = dict(freq_masks=2, freq_width=4, time_masks=2, time_width=0.2)
    a = spec_augment(x, lengths, **kw, generator=torch.Generator().manual_seed(0))
    b = spec_augment(x, lengths, **kw, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and not torch.equal(a, x)
    for row, length in enumerate(lengths.tolist()):
        zero_bins = (a[row] == 0).all(0).sum().item()
        zero_frames = (a[row, :length] == 0).all(1).sum().item()
        assert zero_bins <= 2 * 4 and zero_frames <= 2 * int(0.2 * length)
    assert torch.equal(a[1, 30:][a[1, 30:] != 0], x[1, 30:][a[1, 30:] != 0])  # nothing but zeros is written


def test_feature_stats_round_trip_and_bad_file():
    stats = FeatureStats.fit([torch.randn(20, 4), torch.randn(5, 4)])
    again = FeatureStats.from_bytes(stats.to_bytes(), "features.json")
    assert again == stats
    with pytest.raises(AttnseqError, match="features.json: not a feature statistics file"):
        FeatureStats.from_bytes(b"[1, 2]", "features.json")


# ------------------------------------------------------------------------------------ listener
@pytest.mark.parametrize("frame_stack", [1, 3])
def test_pyramid_lengths_and_masks_for_odd_lengths(frame_stack):
    torch.manual_seed(0)
    listener = PyramidalListener(6, hidden_size=8, layers=3, frame_stack=frame_stack).eval()
    lengths = torch.tensor([1, 7, 8, 13, 29])
    memory = listener(torch.randn(5, 29, 6), lengths)
    expected = lengths.clone()
    expected = (expected + frame_stack - 1) // frame_stack
    for _ in range(2):
        expected = (expected + 1) // 2  # an odd length keeps its last frame (joined with zeros)
    assert torch.equal(listener.reduced_lengths(lengths), expected)
    assert torch.equal(memory.src_mask.sum(1), expected)
    assert memory.outputs.shape == (5, int(expected.max()), 8)
    assert (memory.outputs[~memory.src_mask] == 0).all()
    assert memory.final[0].shape == (1, 5, 8)


def test_stack_frames_joins_neighbours_in_order():
    x = torch.arange(10.0).view(1, 5, 2)
    joined, lengths = stack_frames(x, torch.tensor([5]), 2)
    assert joined.tolist() == [[[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 0]]] and lengths.tolist() == [3]


def test_listener_is_padding_invariant():
    torch.manual_seed(0)
    listener = PyramidalListener(5, hidden_size=12, layers=3, frame_stack=2).eval()
    alone = torch.randn(1, 11, 5)
    batch = torch.randn(3, 40, 5) * 10  # padding full of noise
    batch[1, :11] = alone[0]
    lengths = torch.tensor([40, 11, 23])
    one = listener(alone, torch.tensor([11]))
    many = listener(batch, lengths)
    n = int(one.src_mask.sum())
    torch.testing.assert_close(many.outputs[1, :n], one.outputs[0, :n], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(many.final[0][:, 1], one.final[0][:, 0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(many.final[1][:, 1], one.final[1][:, 0], atol=1e-6, rtol=1e-5)
    assert int(many.src_mask[1].sum()) == n


# ------------------------------------------------------------------------------------ a tiny run
TONE_SETTINGS = [
    "data.corpus=tsv", "data.sample_rate=8000", "data.n_mels=24", "data.tokenizer=word",
    "model.enc_hidden_size=64", "model.dec_hidden_size=64", "model.emb_size=16", "model.enc_layers=2",
    "model.frame_stack=2", "model.dropout=0.0", "train.batch_size=16", "train.lr=0.004", "train.max_epochs=20",
    "train.patience=0", "decode.max_len_a=0", "decode.max_len_b=6", "train.log_every=10",
]  # fmt: skip


@pytest.fixture(scope="module")
def tone_run(tmp_path_factory):
    """A speech model trained a few epochs on generated tones (about 30 s on 2 cores)."""
    root = tmp_path_factory.mktemp("tones")
    manifests = write_tone_corpus(root / "data")
    sets = [*TONE_SETTINGS, f"data.train={manifests['train']}", f"data.valid={manifests['valid']}",
            f"data.test={manifests['test']}"]  # fmt: skip
    cfg = root / "speech.yaml"
    cfg.write_text("task: speech\n", encoding="utf-8")
    args = [sys.executable, "-m", "attnseq", "train", str(cfg), "--out", str(root / "run")]
    for s in sets:
        args += ["--set", s]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return root, manifests, done.stdout


def test_a_tiny_run_spells_pitch_names(tone_run):
    root, manifests, stdout = tone_run
    report = json.loads((root / "run" / "test_report.json").read_text())
    assert report["n"] == 40
    # fp32 training (CPUs without native bf16) lands at 90-92% exact / WER 4-7% on this corpus and
    # bf16 at 97% / 1.4%; the bar leaves room for both (a model that learned nothing scores ~0%)
    assert report["exact"] >= 0.85 and report["wer"] <= 0.10, stdout
    assert "held-out: WER" in stdout


def test_transcribe_cli_json_and_plain(tone_run):
    import attnseq

    root, manifests, _ = tone_run
    files = [str(root / "data" / f"test_{i:03d}.wav") for i in range(3)]
    done = subprocess.run([sys.executable, "-m", "attnseq", "transcribe", "--model", str(root / "run"), *files,
                           "--json", "--beam-size", "3", "--n-best", "2"], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["input"] for r in records] == files
    transcriber = attnseq.load(root / "run")
    expected = transcriber.transcribe(files, beam_size=3, n_best=2)
    for record, p in zip(records, expected):
        assert record["output"] == p.output and len(record["alternatives"]) == 2
        attention = np.array(record["attention"])
        assert attention.shape == (len(record["output_tokens"]), len(record["input_tokens"]))
        np.testing.assert_allclose(attention.sum(1), 1.0, atol=1e-3)
    plain = subprocess.run([sys.executable, "-m", "attnseq", "transcribe", "--model", str(root / "run"), files[0]],
                           capture_output=True, text=True)  # fmt: skip
    assert plain.stdout == f"{files[0]}\t{expected[0].output}\n"


def test_evaluate_json_and_plot(tone_run, tmp_path):
    root, manifests, _ = tone_run
    done = subprocess.run([sys.executable, "-m", "attnseq", "evaluate", "--model", str(root / "run"), "--json"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    for key in ("wer", "cer", "exact"):
        assert 0.0 <= report[key] <= 1.0
    assert report == {**report, **json.loads((root / "run" / "test_report.json").read_text()),
                      "beam_size": 1, "precision": report["precision"]}  # fmt: skip
    out = tmp_path / "align.png"
    wav = str(root / "data" / "test_000.wav")
    done = subprocess.run([sys.executable, "-m", "attnseq", "plot", "--model", str(root / "run"), wav,
                           "--out", str(out)], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_transcriber_save_load_identity_and_argument_checks(tone_run):
    import attnseq
    from attnseq.tasks.speech import Transcriber

    root, manifests, _ = tone_run
    a, b = attnseq.load(root / "run"), Transcriber.from_pretrained(root / "run" / "best")
    wave = read_wav(root / "data" / "test_001.wav", RATE)
    pa, pb = a.transcribe([wave])[0], b.transcribe([wave])[0]
    assert pa.output == pb.output and pa.score == pb.score and np.array_equal(pa.attention, pb.attention)
    with pytest.raises(AttnseqError, match="a list of recordings"):
        a.transcribe(str(root / "data" / "test_001.wav"))
    with pytest.raises(AttnseqError, match=r"audio\[0\]"):
        a.transcribe([3])
    with pytest.raises(AttnseqError, match="longer than data.max_seconds"):
        a.transcribe([np.zeros(int(31 * RATE), np.float32)])


def test_manifest_errors_name_the_file_and_line(tmp_path):
    from attnseq.audio.corpus import read_split
    from attnseq.config import load_config

    (tmp_path / "m.tsv").write_text("path\ttext\na.wav\tC\n")
    cfg = load_config(None, ["task=speech", f"data.train={tmp_path / 'm.tsv'}", f"data.valid={tmp_path / 'm.tsv'}"])
    with pytest.raises(AttnseqError, match=r"m\.tsv:1: the header has no column 'file'"):
        read_split(cfg.data, "train")
    (tmp_path / "m.tsv").write_text("file\ttext\na.wav\tC\n")
    with pytest.raises(AttnseqError, match=r"m\.tsv:2: .*a\.wav: audio file not found"):
        read_split(cfg.data, "train")


@pytest.mark.skipif(not SHARED_FSDD.is_file(), reason="the FSDD recordings are not on this machine")
def test_fsdd_strings_are_deterministic_and_keep_splits_apart():
    from attnseq.audio.corpus import fsdd_clips, read_split
    from attnseq.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "fsdd_digits.yaml",
                      ["data.train_strings=20", "data.valid_strings=5", "data.test_strings=5",
                       f"data.manifest={SHARED_FSDD}", "data.audio_dir=recordings"])  # fmt: skip
    d = cfg.data
    one, two = read_split(d, "test"), read_split(d, "test")
    assert [u.text for u in one] == [u.text for u in two] and all(
        np.array_equal(a.wave, b.wave) for a, b in zip(one, two)
    )
    test_clips = {Path(u.name).stem for u in fsdd_clips(d, "test")}
    train_clips = {Path(u.name).stem for u in fsdd_clips(d, "train")}
    assert len(test_clips) == 300 and not test_clips & train_clips
    for u in one:
        assert set(u.name.split("+")) <= test_clips and 1 <= len(u.text.split()) <= 7


@pytest.mark.skipif(not SHARED_FSDD.is_file(), reason="the FSDD recordings are not on this machine")
def test_fsdd_recordings_folder_gives_the_rows_of_its_transcripts():
    import dataclasses

    from attnseq.audio.corpus import fsdd_rows
    from attnseq.config import load_config

    d = load_config(Path(__file__).resolve().parents[1] / "configs" / "fsdd_digits.yaml",
                    [f"data.manifest={SHARED_FSDD}", "data.audio_dir=recordings"]).data  # fmt: skip
    _, from_tsv = fsdd_rows(d)
    _, from_folder = fsdd_rows(dataclasses.replace(d, manifest=str(SHARED_FSDD.parent / "recordings")))

    def key(r):
        return Path(r["file"]).name, r["digit"], r["speaker"], r["index"], r["split"]

    assert sorted(map(key, from_tsv)) == sorted(map(key, from_folder)) and len(from_tsv) == 3000


def test_server_transcribes_base64_audio_and_names_the_wrong_field(tone_run):
    import base64

    import httpx

    from attnseq.serve import create_app, load_models
    from tests.serving import live_server

    root, manifests, _ = tone_run
    models = load_models([f"tones={root / 'run'}"])
    path = root / "data" / "test_002.wav"
    expected = models["tones"].predictor.transcribe([str(path)])[0]
    with live_server(create_app(models)) as url:
        listed = httpx.get(f"{url}/v1/models").json()["models"][0]
        assert listed["task"] == "speech" and listed["input"] == "audio"
        encoded = base64.b64encode(path.read_bytes()).decode()
        r = httpx.post(f"{url}/v1/predict", json={"model": "tones", "audio": [encoded, encoded]}, timeout=30)
        assert r.status_code == 200, r.text
        got = r.json()["predictions"]
        assert [p["output"] for p in got] == [expected.output] * 2
        assert np.array(got[0]["attention"]).shape == expected.attention.shape
        r = httpx.post(f"{url}/v1/predict", json={"model": "tones", "inputs": ["C D"]})
        assert r.status_code == 422 and "inputs" in r.json()["error"]["message"]  # the schema has no 'inputs' here
        r = httpx.post(f"{url}/v1/predict", json={"audio": [base64.b64encode(b"not audio").decode()]})
        assert r.status_code == 400 and "not a readable audio file" in r.json()["error"]["message"]


SHARED_YESNO = SHARED_FSDD.parents[1] / "yesno" / "transcripts.tsv"


@pytest.mark.skipif(not SHARED_YESNO.is_file(), reason="the yesno recordings are not on this machine")
def test_yesno_split_is_kaldis_and_the_folder_gives_the_transcripts():
    from attnseq.audio.corpus import read_split, yesno_rows
    from attnseq.config import load_config

    cfg_path = Path(__file__).resolve().parents[1] / "configs" / "yesno.yaml"
    folder = load_config(cfg_path, [f"data.manifest={SHARED_YESNO.parent / 'waves_yesno'}"]).data
    table = load_config(cfg_path, [f"data.manifest={SHARED_YESNO}", "data.audio_dir=waves_yesno"]).data
    a, b = yesno_rows(folder)[1], yesno_rows(table)[1]
    assert sorted((Path(r["file"]).name, r["transcript"]) for r in a) == sorted((r["file"], r["transcript"]) for r in b)
    import dataclasses

    splits = {s: read_split(dataclasses.replace(folder, train_strings=0), s) for s in ("train", "valid", "test")}
    assert [len(v) for v in splits.values()] == [27, 4, 29]
    cut = read_split(dataclasses.replace(folder, train_strings=10), "train")  # + strings of cut training words
    assert len(cut) == 37 and all(4 <= len(u.text.split()) <= 10 for u in cut[27:])
    assert {n.split("#")[0] for u in cut[27:] for n in u.name.split("+")} <= {
        Path(u.name).stem for u in splits["train"]
    }
    assert sum(len(u.text.split()) for u in splits["test"]) == 232
    names = sorted(Path(r["file"]).name for r in a)
    assert [Path(u.name).name for u in splits["train"] + splits["valid"]] == names[:31]
    assert {Path(u.name).name for u in splits["test"]} == set(names[31:])


def test_split_words_cuts_at_the_pauses_or_declines():
    from attnseq.audio.corpus import split_words

    rng = np.random.default_rng(0)
    pause = lambda s: rng.normal(0, 0.002, int(s * RATE)).astype(np.float32)  # noqa: E731
    notes = [tone(f, 0.3) for f in (300, 400, 500)]
    wave = np.concatenate([pause(0.8), notes[0], pause(0.25), notes[1], pause(0.3), notes[2], pause(0.5)])
    segments, lead = split_words(wave, 3, RATE)
    assert len(segments) == 3 and 0.6 < len(lead) / RATE < 0.8
    for segment in segments:
        assert 0.2 < len(segment) / RATE < 0.4
    assert split_words(wave, 4, RATE) is None  # three words heard, four said: not cut


def test_a_click_is_not_a_word_and_every_recording_lends_its_opening(tmp_path):
    import soundfile as sf

    from attnseq.audio.corpus import lead_in, read_split, split_words
    from attnseq.config import load_config

    rng = np.random.default_rng(1)
    pause = lambda s: rng.normal(0, 0.002, int(s * RATE)).astype(np.float32)  # noqa: E731
    click = np.zeros(int(0.02 * RATE), np.float32)
    click[:8] = 0.9
    words = [tone(300, 0.3), tone(500, 0.3)]
    plain = np.concatenate([pause(0.6), words[0], pause(0.3), words[1], pause(0.4)])
    clicked = np.concatenate([click, pause(0.6), words[0], words[1], pause(0.4)])  # words run together
    assert 0.55 < len(lead_in(clicked, RATE)) / RATE < 0.62  # the click opens it: it is not a word
    assert np.abs(lead_in(clicked, RATE)[:8]).max() == pytest.approx(0.9)
    assert split_words(plain, 2, RATE) is not None and split_words(clicked, 2, RATE) is None
    folder = tmp_path / "waves_yesno"
    folder.mkdir()
    for name, wave in (("0_0", plain), ("0_1", clicked), ("1_0", plain), ("1_1", plain)):
        sf.write(folder / f"{name}.wav", wave, RATE)
    d = load_config(None, ["task=speech", "data.corpus=yesno", f"data.manifest={folder}", "data.sample_rate=8000",
                           "data.train_count=4", "data.valid_count=1", "data.train_strings=60",
                           "data.edge_ms=[500, 600]"]).data  # fmt: skip
    strings = read_split(d, "train")[3:]  # after the recordings 0_0, 0_1 and 1_0
    # 0_1 cannot be cut into words but lends its opening: about a third of the strings open with its
    # click, whatever words follow (words of 0_0 and 1_0 only)
    opens_with_click = [np.abs(u.wave[:8]).max() > 0.8 for u in strings]
    assert len(strings) == 60 and 5 < sum(opens_with_click) < 40
    assert {u.text for u, c in zip(strings, opens_with_click) if c} & {"NO YES", "YES NO", "YES YES"}


def test_clip_strings_fill_pauses_with_the_background_and_are_seeded():
    from attnseq.audio.corpus import Utterance, clip_strings
    from attnseq.config import load_config

    d = load_config(None, ["task=speech", "data.train=x", "data.valid=x", "data.sample_rate=8000",
                           "data.min_clips=2", "data.max_clips=3", "data.edge_ms=[100, 200]"]).data  # fmt: skip
    clips = [Utterance(f"c{i}", str(i), tone(300 + 100 * i, 0.2)) for i in range(4)]
    background = np.full(100, 0.5, np.float32)
    a = clip_strings(clips, d, 5, 1, background=background)
    b = clip_strings(clips, d, 5, 1, background=background)
    assert [u.text for u in a] == [u.text for u in b] and all(np.array_equal(x.wave, y.wave) for x, y in zip(a, b))
    for u in a:
        assert 2 <= len(u.text.split()) <= 3 and u.name.count("+") == len(u.text.split()) - 1
        assert np.all(u.wave[: int(0.1 * RATE)] == 0.5)  # the lead silence is background, not zeros
    zeros = clip_strings(clips, d, 2, 1)
    assert np.all(zeros[0].wave[: int(0.1 * RATE)] == 0)


def test_speed_perturbation_plays_a_clip_faster_and_higher_and_leaves_other_strings_alone():
    from attnseq.audio.corpus import Utterance, clip_strings
    from attnseq.audio.features import played_at
    from attnseq.config import load_config
    from attnseq.errors import AttnseqError

    fast = played_at(tone(400, 1.0), 1.25, RATE)
    assert abs(len(fast) - RATE / 1.25) <= 2  # 0.8 s
    spectrum = np.abs(np.fft.rfft(fast[200:-200] * np.hanning(len(fast) - 400)))
    assert abs(spectrum.argmax() * RATE / (len(fast) - 400) - 500) < 5  # 400 Hz played at 1.25x: 500 Hz

    args = ["task=speech", "data.train=x", "data.valid=x", "data.sample_rate=8000", "data.min_clips=1",
            "data.max_clips=1", "data.edge_ms=[0, 0]"]  # fmt: skip
    d = load_config(None, args).data
    clips = [Utterance("c0", "0", tone(300, 0.5))]
    plain = clip_strings(clips, d, 20, 1)
    perturbed = clip_strings(clips, replace(d, speed_perturb=[0.8, 1.25]), 20, 1, training=True)
    assert [len(u.wave) for u in clip_strings(clips, replace(d, speed_perturb=[0.8, 1.25]), 20, 1)] == [4000] * 20
    assert {len(u.wave) for u in plain} == {int(0.5 * RATE)}
    lengths = [len(u.wave) for u in perturbed]
    assert min(lengths) >= 0.5 * RATE / 1.25 - 2 and max(lengths) <= 0.5 * RATE / 0.8 + 2
    assert len(set(lengths)) > 10  # a speed drawn per clip
    assert lengths == [
        len(u.wave) for u in clip_strings(clips, replace(d, speed_perturb=[0.8, 1.25]), 20, 1, training=True)
    ]  # seeded
    # bare edges: about that share of training strings starts (and, apart, ends) with the clip itself
    bare = replace(d, edge_ms=[100.0, 200.0], bare_edge=0.5)
    framed = clip_strings(clips, bare, 200, 1, training=True)
    starts_bare = [np.array_equal(u.wave[:50], clips[0].wave[:50]) for u in framed]
    ends_bare = [np.array_equal(u.wave[-50:], clips[0].wave[-50:]) for u in framed]
    assert 70 < sum(starts_bare) < 130 and 70 < sum(ends_bare) < 130 and starts_bare != ends_bare
    assert not any(np.array_equal(u.wave[:50], clips[0].wave[:50]) for u in clip_strings(clips, bare, 50, 1))
    with pytest.raises(AttnseqError, match=r"data.speed_perturb.*0 < min <= max"):
        load_config(None, [*args, "data.speed_perturb=[1.1, 0.9]"])
    # a corpus of recordings as they are makes no strings: the options would do nothing, so they are refused
    with pytest.raises(AttnseqError, match=r"data.speed_perturb and data.bare_edge shape generated .*corpus tsv"):
        load_config(None, [*args, "data.speed_perturb=[0.9, 1.1]", "data.bare_edge=0.5"])
    with pytest.raises(AttnseqError, match=r"data.bare_edge shapes generated .*yesno with data.train_strings = 0"):
        load_config(None, [*args, "data.corpus=yesno", "data.manifest=x", "data.train_strings=0", "data.bare_edge=0.5"])


@pytest.mark.skipif(not SHARED_FSDD.is_file(), reason="the FSDD recordings are not on this machine")
def test_a_held_out_speaker_is_kept_out_of_training_or_named_when_unknown():
    from attnseq.audio.corpus import fsdd_clips
    from attnseq.config import load_config

    cfg_path = Path(__file__).resolve().parents[1] / "configs" / "fsdd_digits.yaml"
    d = load_config(
        cfg_path, [f"data.manifest={SHARED_FSDD}", "data.audio_dir=recordings", "data.held_out_speaker=theo"]
    ).data
    test, train = fsdd_clips(d, "test"), fsdd_clips(d, "train") + fsdd_clips(d, "valid")
    assert len(test) == 500 and {u.speaker for u in test} == {"theo"} and "theo" not in {u.speaker for u in train}
    d = load_config(
        cfg_path, [f"data.manifest={SHARED_FSDD}", "data.audio_dir=recordings", "data.held_out_speaker=nobody"]
    ).data
    with pytest.raises(AttnseqError, match="'nobody' is not a speaker of .*george"):
        fsdd_clips(d, "train")


def test_a_server_of_text_and_speech_models_says_which_field_each_reads(tone_run, model_dirs):
    import base64

    import httpx

    from attnseq.serve import create_app, load_models
    from tests.serving import live_server

    root, _, _ = tone_run
    models = load_models([f"tones={root / 'run'}", f"dates={model_dirs['dates']}"])
    encoded = base64.b64encode((root / "data" / "test_000.wav").read_bytes()).decode()
    with live_server(create_app(models)) as url:
        r = httpx.post(f"{url}/v1/predict", json={"model": "tones", "inputs": ["C D"]})
        assert r.status_code == 422 and "reads audio: give 'audio', not 'inputs'" in r.json()["error"]["message"]
        r = httpx.post(f"{url}/v1/predict", json={"model": "dates", "audio": [encoded]})
        assert r.status_code == 422 and "reads text: give 'inputs', not 'audio'" in r.json()["error"]["message"]
        ok = httpx.post(f"{url}/v1/predict", json={"model": "tones", "audio": [encoded]}, timeout=30)
        assert ok.status_code == 200
        ok = httpx.post(f"{url}/v1/predict", json={"model": "dates", "inputs": ["Mar 3, 2021"]}, timeout=30)
        assert ok.status_code == 200


def test_the_page_transcribes_an_uploaded_recording_in_chromium(tone_run, tmp_path):
    import base64

    import httpx

    from attnseq.serve import create_app, load_models
    from tests.serving import chromium_path, live_server

    chromium = chromium_path()
    if chromium is None:
        pytest.skip("no Chromium (scripts/debian-package.sh could not install it; or set ATTNSEQ_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    root, _, _ = tone_run
    wav = root / "data" / "test_003.wav"
    with live_server(create_app(load_models([f"tones={root / 'run'}"]))) as url:
        expected = httpx.post(f"{url}/v1/predict", json={"audio": [base64.b64encode(wav.read_bytes()).decode()]},
                              timeout=30).json()["predictions"][0]  # fmt: skip
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.goto(url + "/")
            page.wait_for_selector("#model option[value='tones']", state="attached")
            assert page.is_hidden("#text-input") and page.is_visible("#audio")
            page.set_input_files("#audio", str(wav))
            page.click("#submit")
            page.wait_for_selector("#heatmap td.cell")
            assert page.text_content("#output") == expected["output"]
            weights = page.eval_on_selector_all(
                "#heatmap tbody tr",
                "rows => rows.map(r => [...r.querySelectorAll('td.cell')].map(c => Number(c.dataset.weight)))",
            )
            assert weights == expected["attention"]
            page.screenshot(path=str(tmp_path / "speech_page.png"))
            browser.close()


def test_opening_bursts_add_noise_before_the_first_word_only_and_leave_the_strings_as_drawn():
    from attnseq.audio.corpus import Utterance, add_burst, clip_strings
    from attnseq.config import load_config
    from attnseq.errors import AttnseqError

    args = ["task=speech", "data.train=x", "data.valid=x", "data.sample_rate=8000", "data.min_clips=1",
            "data.max_clips=2", "data.edge_ms=[200, 300]"]  # fmt: skip
    d = load_config(None, args).data
    clips = [Utterance(f"c{i}", str(i), tone(300 + 100 * i, 0.3)) for i in range(3)]
    plain = clip_strings(clips, d, 100, 1, training=True)
    bursts = clip_strings(clips, replace(d, opening_burst=0.5), 100, 1, training=True)
    assert [u.text for u in bursts] == [u.text for u in plain]  # the bursts draw from their own stream
    assert [len(u.wave) for u in bursts] == [len(u.wave) for u in plain]
    changed = [i for i, (a, b) in enumerate(zip(bursts, plain)) if not np.array_equal(a.wave, b.wave)]
    assert 30 < len(changed) < 70  # about half
    for i in changed:
        frames = plain[i].wave[: len(plain[i].wave) // 80 * 80].reshape(-1, 80)
        loudest = float(np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)).max())  # the loudest 10 ms
        added = bursts[i].wave - plain[i].wave
        where = np.nonzero(added)[0]
        assert where.max() < int(0.2 * RATE)  # within the opening silence (at least 200 ms): no word touched
        assert where.min() <= int(0.03 * RATE) and int(0.02 * RATE) - 2 <= len(where) <= int(0.15 * RATE)
        assert 0.02 * loudest < added[where].std() < 0.2 * loudest
    # valid and test strings never carry one; a string without room before its first word neither
    assert all(np.array_equal(a.wave, b.wave) for a, b in zip(
        clip_strings(clips, replace(d, opening_burst=1.0), 20, 1), clip_strings(clips, d, 20, 1)))  # fmt: skip
    wave = tone(300, 0.2)
    assert np.array_equal(add_burst(wave, 0, RATE, np.random.default_rng(0), [wave]), wave)
    with pytest.raises(AttnseqError, match=r"data.opening_burst.*from 0 to 1"):
        load_config(None, [*args, "data.opening_burst=2"])
    with pytest.raises(AttnseqError, match=r"data.opening_burst shapes generated .*corpus tsv"):
        load_config(None, [*args, "data.opening_burst=0.5"])
