"""Speech engines and the audio cache, measured with sox as the reference tool."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import urllib.parse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from echolab.prompts.audio import AudioFormat, decode, rms_dbfs
from echolab.prompts.cache import AudioCache
from echolab.prompts.errors import SpeechError, SpeechUnavailableError
from echolab.prompts.speech import EspeakEngine, GttsEngine, RecordedEngine, get_engine, manifest_rows, slugify
from echolab.prompts.synth import synthesize_texts

TEXTS = ("Alexa, who is Ada Lovelace?", "Alexa, what is the weather in Golden?", "Alexa, give me a quote.")


def sox_stat(path: Path) -> dict[str, float]:
    """``sox FILE -n stat``: length, RMS amplitude, maximum amplitude..."""
    out = subprocess.run(["sox", str(path), "-n", "stat"], capture_output=True, text=True, check=True).stderr
    stats = {}
    for line in out.splitlines():
        name, _, value = line.partition(":")
        try:
            stats[" ".join(name.split())] = float(value)
        except ValueError:
            pass
    return stats


def soxi(path: Path, flag: str) -> str:
    return subprocess.run(["soxi", flag, str(path)], capture_output=True, text=True, check=True).stdout.strip()


def audio_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix != ".lock")


@pytest.fixture
def cache(tmp_path: Path) -> AudioCache:
    return AudioCache(tmp_path / "audio")


def test_espeak_prompts_are_real_speech(cache: AudioCache) -> None:
    engine = get_engine("espeak")
    for text in TEXTS:
        clip, made = cache.ensure(engine, text)
        assert made
        stat = sox_stat(clip.path)
        assert stat["Length (seconds)"] == pytest.approx(clip.duration_s, abs=1e-3)
        assert 1.0 < clip.duration_s < 6.0
        assert soxi(clip.path, "-r") == "22050" and soxi(clip.path, "-c") == "1"
        assert stat["RMS amplitude"] > 0.05  # about -20 dBFS, far from silence
        assert stat["Maximum amplitude"] <= 10 ** (-1 / 20) + 1e-3  # the -1 dBFS peak ceiling
        samples = clip.samples()
        assert samples.dtype == np.float32 and len(samples) / clip.sample_rate == pytest.approx(clip.duration_s, abs=1e-5)
        assert not samples[: int(0.25 * 22050)].any()  # the lead-in is silence
    longer = cache.get_or_synthesize(engine, "Alexa, play me a sample of Bridge over Troubled Water by Simon and Garfunkel.")
    assert longer.duration_s > cache.get_or_synthesize(engine, TEXTS[2]).duration_s


def test_second_request_is_cached_and_damage_is_redone(cache: AudioCache) -> None:
    engine = get_engine("espeak")
    first, made = cache.ensure(engine, TEXTS[0])
    assert made
    again, made = cache.ensure(engine, TEXTS[0])
    assert not made and again == first
    data = first.path.read_bytes()
    first.path.write_bytes(data[: len(data) // 2])  # a truncated file
    repaired, made = cache.ensure(engine, TEXTS[0])
    assert made and repaired.path.read_bytes() == data
    first.path.with_suffix(".json").unlink()  # a WAV without its sidecar is unfinished
    assert cache.lookup(engine, TEXTS[0]) is None
    assert cache.ensure(engine, TEXTS[0])[1]
    sidecar = json.loads(first.path.with_suffix(".json").read_text())
    assert sidecar["text"] == TEXTS[0] and sidecar["engine"] == "espeak" and sidecar["sample_rate"] == 22050
    assert [p.name for p in audio_files(cache.root)] == sorted([first.path.name, first.path.with_suffix(".json").name])


def test_cache_key_follows_voice_and_format(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path / "audio")
    us = cache.get_or_synthesize(get_engine("espeak", voice="en-us"), TEXTS[0])
    gb = cache.get_or_synthesize(get_engine("espeak", voice="en-gb"), TEXTS[0])
    assert us.path != gb.path and us.sha256 != gb.sha256
    other = AudioCache(tmp_path / "audio", AudioFormat(sample_rate=16000, lead_in_s=0.5))
    clip, made = other.ensure(get_engine("espeak", voice="en-us"), TEXTS[0])
    assert made and soxi(clip.path, "-r") == "16000"
    assert clip.duration_s == pytest.approx(us.duration_s + 0.25, abs=0.05)


def _ensure_all(root: str) -> int:
    cache = AudioCache(Path(root))
    return sum(cache.ensure(EspeakEngine(), text)[1] for text in TEXTS)


def test_concurrent_runs_synthesize_each_prompt_once(tmp_path: Path) -> None:
    # spawned, not forked: earlier tests of this process may have started JAX's threads
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        made = list(pool.map(_ensure_all, [str(tmp_path / "audio")] * 2))
    assert sum(made) == len(TEXTS)
    cache = AudioCache(tmp_path / "audio")
    assert all(cache.lookup(EspeakEngine(), text) for text in TEXTS)
    assert not [p for p in audio_files(cache.root) if p.suffix == ".tmp"]


def test_recorded_voice_is_resampled_to_mono_at_the_target_loudness(tmp_path: Path) -> None:
    folder = tmp_path / "recordings"
    folder.mkdir()
    tone = folder / (slugify(TEXTS[0]) + ".wav")
    assert tone.name == "alexa-who-is-ada-lovelace.wav"
    subprocess.run(["sox", "-n", "-r", "44100", "-c", "2", str(tone), "synth", "1.0", "sine", "440", "vol", "0.05"], check=True)
    cache = AudioCache(tmp_path / "audio", AudioFormat(sample_rate=16000, target_dbfs=-20, lead_in_s=0.5, tail_s=0.0))
    engine = RecordedEngine(folder)
    clip, made = cache.ensure(engine, TEXTS[0])
    assert made and soxi(clip.path, "-r") == "16000" and soxi(clip.path, "-c") == "1"
    stat = sox_stat(clip.path)
    assert stat["Length (seconds)"] == pytest.approx(1.5, abs=0.01)
    # -20 dBFS over the tone, diluted by 0.5 s of lead-in over 1.5 s in all
    assert 20 * np.log10(stat["RMS amplitude"]) == pytest.approx(-20 + 10 * np.log10(1.0 / 1.5), abs=0.2)
    # a new recording of the same prompt is a new cache entry
    subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", str(tone), "synth", "0.5", "sine", "300"], check=True)
    renewed, made = cache.ensure(engine, TEXTS[0])
    assert made and renewed.path != clip.path and renewed.duration_s == pytest.approx(1.0, abs=0.01)


def test_recorded_manifest_and_missing_recordings(tmp_path: Path) -> None:
    folder = tmp_path / "voice"
    folder.mkdir()
    subprocess.run(["sox", "-n", "-r", "16000", str(folder / "take1.wav"), "synth", "0.3", "sine", "500"], check=True)
    (folder / "manifest.csv").write_text(f"text,file\n\"{TEXTS[1]}\",take1.wav\n")
    engine = get_engine("recorded", folder=folder)
    assert engine.recording(TEXTS[1]) == folder / "take1.wav"
    with pytest.raises(SpeechError, match=r"no recording of 'Alexa, give me a quote\.' in .*: expected alexa-give-me-a-quote\.wav"):
        engine.recording(TEXTS[2])
    assert manifest_rows([TEXTS[2], TEXTS[2]]) == [{"text": TEXTS[2], "file": "alexa-give-me-a-quote.wav"}]
    report = synthesize_texts(AudioCache(tmp_path / "audio"), engine, TEXTS)
    assert (report.synthesized, report.cached, sorted(report.failed)) == (1, 0, sorted([TEXTS[0], TEXTS[2]]))
    with pytest.raises(SpeechUnavailableError, match="recordings folder .* does not exist"):
        get_engine("recorded", folder=tmp_path / "nosuch")


def test_engine_choice_errors() -> None:
    with pytest.raises(SpeechError, match="unknown speech engine 'festival'; choose one of espeak, gtts, recorded"):
        get_engine("festival")
    with pytest.raises(SpeechUnavailableError, match="espeak-ng has no voice 'xx-nosuch'"):
        get_engine("espeak", voice="xx-nosuch").synthesize("hello")
    with pytest.raises(SpeechError, match="gTTS has no language 'xx'"):
        get_engine("gtts", lang="xx")


def test_gtts_request_carries_text_language_and_accent() -> None:
    engine = GttsEngine(lang="fr", tld="co.uk", slow=True)
    assert engine.voice == "fr-co.uk-slow"
    requests = engine.request("Alexa, quelle heure est-il ?")._prepare_requests()
    assert len(requests) == 1
    assert requests[0].url.startswith("https://translate.google.co.uk/")
    body = json.loads(json.loads(urllib.parse.unquote(requests[0].body.removeprefix("f.req=").rstrip("&")))[0][0][1])
    assert body[0] == "Alexa, quelle heure est-il ?" and body[1] == "fr"


def test_gtts_without_network_fails_in_one_line_and_writes_nothing(cache: AudioCache, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # the discard port: nothing listens, so no network
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(SpeechUnavailableError) as info:
        cache.ensure(GttsEngine(timeout=5), TEXTS[0])
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("gTTS cannot reach translate.google.com (") and message.endswith("synthesize offline with --engine espeak")
    assert audio_files(cache.root) == []


def test_mp3_from_gtts_decodes_with_soundfile(tmp_path: Path) -> None:
    """gTTS answers MP3; soundfile (libsndfile >= 1.1) must decode it."""
    assert tuple(int(x) for x in sf.__libsndfile_version__.split(".")[:2]) >= (1, 1)
    samples, rate = EspeakEngine().synthesize(TEXTS[0])
    mp3 = tmp_path / "speech.mp3"
    sf.write(mp3, samples, rate, format="MP3", subtype="MPEG_LAYER_III")
    decoded, decoded_rate = decode(mp3.read_bytes())
    assert decoded_rate == rate
    assert len(decoded) / decoded_rate == pytest.approx(len(samples) / rate, abs=0.1)
    assert rms_dbfs(decoded) == pytest.approx(rms_dbfs(samples), abs=1.0)
