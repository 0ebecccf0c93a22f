"""Audio effects: each filter's measured response is its design, dynamics follow their static curves, any block size gives
the whole file's samples (delay, reverb and the live pitch shift included), and a bad preset is one error naming the effect and field."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.signal import sosfreqz
from aiplatform.core import ValidationError
from aiplatform.ml.voice.effects import Chain, biquad, process_file, static_curve

RATE = 48_000

def db_at(sos, freq):
    _, h = sosfreqz(sos[None], worN=[freq], fs=RATE)
    return float(20 * np.log10(abs(h[0])))

@pytest.mark.parametrize("kind,freq,q,gain,at,want", [
    ("lowpass", 1000, 0.7071, 0, 1000, -3.0103), ("lowpass", 1000, 0.7071, 0, 20, 0.0), ("highpass", 300, 0.7071, 0, 300, -3.0103),
    ("highpass", 300, 0.7071, 0, 15_000, 0.0), ("peaking", 2500, 2.0, -9, 2500, -9.0), ("peaking", 2500, 2.0, -9, 40, 0.0),
    ("lowshelf", 200, 0.7071, 6, 10, 6.0), ("lowshelf", 200, 0.7071, 6, 200, 3.0), ("highshelf", 5000, 0.7071, -6, 23_000, -6.0),
    ("highshelf", 5000, 0.7071, -6, 5000, -3.0)])
def test_each_filter_measures_as_designed(kind, freq, q, gain, at, want):
    assert db_at(biquad(kind, freq, RATE, q, gain), at) == pytest.approx(want, abs=0.05)

def test_the_lowpass_falls_12_db_an_octave():
    sos = biquad("lowpass", 250, RATE)  # an octave well below Nyquist, where the bilinear transform steepens it
    assert db_at(sos, 2000) - db_at(sos, 4000) == pytest.approx(12, abs=0.5)

PRESET = [{"type": "gate", "threshold_db": -60}, {"type": "filter", "kind": "highpass", "freq": 100},
          {"type": "filter", "kind": "highshelf", "freq": 6000, "gain_db": 3}, {"type": "compressor", "threshold_db": -30, "ratio": 6},
          {"type": "gain", "db": 6}, {"type": "pitch", "semitones": 3}, {"type": "delay", "ms": 7, "feedback": 0.6},
          {"type": "reverb", "room": 0.9}, {"type": "limiter", "threshold_db": -0.5}]

@settings(max_examples=25, deadline=None)
@given(block=st.integers(1, 3000), seed=st.integers(0, 2**16))
def test_any_block_size_gives_the_whole_files_samples(block, seed):
    audio = np.random.default_rng(seed).normal(0, 0.3, 6000) * np.linspace(0, 1, 6000)
    np.testing.assert_allclose(process_file(PRESET, audio, RATE, block), process_file(PRESET, audio, RATE), atol=1e-12)

@pytest.mark.parametrize("knee", [0, 10])
def test_the_compressor_follows_its_static_curve(knee):
    t = np.arange(RATE) / RATE
    for peak_db in (-40, -24, -18, -10, -3):
        sine = 10 ** (peak_db / 20) * np.sin(2 * np.pi * 1000 * t)
        y = process_file([{"type": "compressor", "threshold_db": -20, "ratio": 4, "knee_db": knee, "attack_ms": 0.5, "release_ms": 500}], sine, RATE)
        out_db = 20 * np.log10(np.abs(y[-4800:]).max())
        assert out_db == pytest.approx(float(static_curve(peak_db, -20, 4, knee)), abs=0.3), peak_db

def test_the_limiter_holds_the_ceiling_and_the_gate_shuts_the_quiet():
    t = np.arange(RATE) / RATE
    loud = np.sin(2 * np.pi * 440 * t)
    y = process_file([{"type": "limiter", "threshold_db": -6}], loud, RATE)
    assert 20 * np.log10(np.abs(y[RATE // 10:]).max()) < -5.9
    hiss = 10 ** (-70 / 20) * np.sin(2 * np.pi * 3000 * t)
    assert np.abs(process_file([{"type": "gate", "threshold_db": -50, "floor_db": -80}], hiss, RATE)[RATE // 2:]).max() < 10 ** (-145 / 20)

def test_the_delay_repeats_at_its_feedback_and_the_reverb_tail_decays():
    impulse = np.zeros(RATE); impulse[0] = 1
    echo = process_file([{"type": "delay", "ms": 50, "feedback": 0.5, "mix": 0.8}], impulse, RATE)
    assert np.flatnonzero(echo).tolist() == [0, 2400, 4800, 7200, 9600, 12000, 14400, 16800, 19200, 21600, 24000, 26400, 28800,
                                             31200, 33600, 36000, 38400, 40800, 43200, 45600]
    np.testing.assert_allclose(echo[[2400, 4800, 7200]], [0.8, 0.4, 0.2])
    tail = process_file([{"type": "reverb", "room": 0.5, "damping": 0.5, "mix": 1}], impulse, RATE) ** 2
    tenths = [tail[i:i + RATE // 10].sum() for i in range(0, RATE, RATE // 10)]
    assert all(b < a for a, b in zip(tenths[1:], tenths[2:])), tenths  # after the first echoes build up, each tenth quieter
    dry = process_file([{"type": "reverb", "mix": 0}], impulse, RATE)
    np.testing.assert_array_equal(dry, impulse)

@pytest.mark.parametrize("semitones,freq", [(12, 200), (-12, 400), (7, 300), (-5, 250)])
def test_the_live_pitch_shift_moves_a_tone_by_its_ratio(semitones, freq):
    t = np.arange(RATE * 2) / RATE
    y = process_file([{"type": "pitch", "semitones": semitones, "window_ms": 40}], np.sin(2 * np.pi * freq * t), RATE)[RATE // 2:]
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    peak = np.fft.rfftfreq(len(y), 1 / RATE)[spectrum.argmax()]
    assert peak == pytest.approx(freq * 2 ** (semitones / 12), abs=1000 / 40 + 1)  # within the crossfade's sidebands

@pytest.mark.parametrize("preset,rate,words", [
    ([{"type": "filter", "kind": "peaking", "freq": 5}], RATE, "preset[0].freq 5: expected a frequency from 10 Hz to 24 kHz"),
    ([{"type": "gain", "db": 1}, {"type": "reverse"}], RATE, "preset[1]: expected an effect with a type of gain, filter"),
    ([{"type": "compressor", "ratio": 0.5}], RATE, "preset[0].ratio 0.5: expected a ratio from 1 to 100"),
    ([{"type": "gain"}], RATE, "preset[0].db: required"),
    ([{"type": "gain", "db": 0, "volume": 3}], RATE, "preset[0].volume: unknown field of a gain effect"),
    ([{"type": "filter", "kind": "lowpass", "freq": 9000}], 16_000, "preset[0].freq 9000: must be below half the sample rate (8000 Hz)"),
    ([], 4_000, "rate 4000: expected a sample rate from 8,000 to 192,000 Hz"),
    ([{"type": "pitch", "semitones": 13}], RATE, "preset[0].semitones 13: expected a shift from -12 to +12 semitones"),
    ([{"type": "delay", "feedback": 1.0}], RATE, "preset[0].feedback 1.0: expected a feedback from 0 to 0.95"),
    ("gain", RATE, "preset: expected a list of at most 32 effects")])
def test_a_bad_preset_is_one_error_naming_the_field(preset, rate, words):
    with pytest.raises(ValidationError) as e: Chain(preset, rate)
    assert str(e.value).startswith(words)

def test_a_block_must_be_mono():
    with pytest.raises(ValidationError, match=r"block: expected mono samples \(one dimension\), got shape \(10, 2\)"):
        Chain([{"type": "gain", "db": 0}]).process(np.zeros((10, 2)))

def test_the_filters_give_scipys_sosfilt_samples():
    from scipy.signal import sosfilt
    bands = [{"type": "filter", "kind": "highpass", "freq": 80}, {"type": "filter", "kind": "peaking", "freq": 2000, "q": 2, "gain_db": 5},
             {"type": "filter", "kind": "highshelf", "freq": 8000, "gain_db": -4}]
    audio = np.random.default_rng(3).normal(0, 0.3, 20_000)
    sos = np.stack([biquad(b["kind"], b["freq"], RATE, b.get("q", 0.7071), b.get("gain_db", 0)) for b in bands])
    np.testing.assert_allclose(process_file(bands, audio, RATE, 777), sosfilt(sos, audio), atol=1e-12)
