"""CTC decoding on hand-made log-probabilities (greedy, the prefix beam search, the word LM) and WER/CER values on tiny
cases (jiwer's definitions)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tlops.asr.decode import BeamSettings, WordLM, beam_search, decode, greedy
from tlops.asr.metrics import error_rates
from tlops.asr.text import alphabet_of, ctc_slots_needed, encode, normalise, outside

ALPHA = [" ", "a", "b"]  # blank 0, " " 1, "a" 2, "b" 3


def _lp(rows) -> np.ndarray:
    """Probabilities per slot (blank, space, a, b) -> log-probabilities."""
    p = np.asarray(rows, dtype=np.float64) + 1e-12
    return np.log(p / p.sum(1, keepdims=True))


def test_greedy_merges_repeats_and_drops_blanks():
    lp = _lp([[.1, 0, .9, 0], [.1, 0, .9, 0], [.9, 0, .1, 0], [.1, 0, .9, 0], [.1, .8, .1, 0], [.1, 0, 0, .9]])
    assert greedy(lp, ALPHA) == "aa b"  # a a _ a -> "aa", then space, then b


def test_beam_search_sums_the_paths_that_collapse_to_one_text():
    # per slot: blank .4, a .35, b .25. The single best path is blank-blank ("" at .16), but "a" is reached by 3 paths
    # (a_, _a, aa: .14 + .14 + .1225 = .4025) and wins once paths are summed.
    lp = _lp([[.4, 0, .35, .25], [.4, 0, .35, .25]])
    assert greedy(lp, ALPHA) == ""
    assert beam_search(lp, ALPHA, BeamSettings(beam=8, prune=-50)) == "a"


def test_beam_search_needs_a_blank_between_repeated_characters():
    lp = _lp([[0.01, 0, .98, .01], [.98, 0, .01, .01], [0.01, 0, .98, .01]])
    assert beam_search(lp, ALPHA, BeamSettings(beam=4, prune=-50)) == "aa"
    no_blank = _lp([[0.01, 0, .98, .01], [0.01, 0, .98, .01]])
    assert beam_search(no_blank, ALPHA, BeamSettings(beam=4, prune=-50)) == "a"


def test_the_word_lm_turns_an_ambiguous_word_into_one_it_knows():
    lm = WordLM.fit(["ab ab", "ab", "ab ab ab"])
    assert lm.log_prob("ab", ()) > lm.log_prob("bb", ())  # an unseen word keeps a small, finite probability
    assert math.isfinite(lm.log_prob("bb", ("ab",)))
    # slot 1: a .45 / b .55 (greedy writes "bb"), then b
    lp = _lp([[.0001, 0, .45, .55], [.0001, 0, .0001, .9998], [.9, 0, .05, .05]])
    assert greedy(lp, ALPHA) == "b"  # b b merged
    assert beam_search(lp, ALPHA, BeamSettings(beam=8, prune=-50)) == "b"
    assert beam_search(lp, ALPHA, BeamSettings(beam=8, alpha=1.0, prune=-50), lm) == "ab"
    assert decode(lp, ALPHA, {"kind": "beam", "beam": 8, "alpha": 1.0, "beta": 0.0}, lm) == "ab"
    again = WordLM.from_json(lm.to_json())
    assert again.log_prob("ab", ("ab",)) == pytest.approx(lm.log_prob("ab", ("ab",)))


def test_the_lm_probabilities_sum_to_one_over_the_vocabulary_and_the_unknown_word():
    lm = WordLM.fit(["one two", "two two three", "one"])
    for ctx in ((), ("one",), ("two",), ("never",)):
        seen = sum(math.exp(lm.log_prob(w, ctx)) for w in [*lm.vocab, "</s>"])
        unknown = math.exp(lm.log_prob("unseen-word", ctx))
        assert seen + unknown == pytest.approx(1.0, abs=1e-9), ctx


def test_error_rates_are_jiwers_corpus_rates():
    assert error_rates(["one two three"], ["one two three"]) == {"wer": 0.0, "cer": 0.0}
    r = error_rates(["one two three", "four"], ["one too three", ""])  # 1 substitution + 1 deletion over 4 words
    assert r["wer"] == pytest.approx(2 / 4)
    assert error_rates(["ab"], ["abc"])["cer"] == pytest.approx(1 / 2)  # one insertion over 2 characters
    assert error_rates(["a"], ["a b c"])["wer"] == pytest.approx(2.0)  # insertions can take WER above 1
    with pytest.raises(ValueError):
        error_rates(["a"], [])


def test_normalisation_alphabet_and_ctc_length():
    assert normalise("  Four\tONE\n seven ") == "four one seven"
    assert normalise("Cafe\u0301") == "caf\u00e9"  # NFC
    assert alphabet_of(["ab a", "ba"]) == [" ", "a", "b"]
    assert encode("ab a", [" ", "a", "b"]) == [2, 3, 1, 2]
    assert outside("a-b!", [" ", "a", "b"]) == ["-", "!"]
    assert ctc_slots_needed("three") == 6 and ctc_slots_needed("abc") == 3 and ctc_slots_needed("aaa") == 5


def test_a_lexicon_keeps_only_words_of_the_vocabulary():
    lm = WordLM.fit(["ab ba", "ba"])
    # b, blank, then b .6 / a .39: greedy and the plain beam spell "bb" (not a word); with the lexicon "ba" wins
    lp = _lp([[.05, 0, .05, .9], [.9, 0, .05, .05], [.01, 0, .39, .6]])
    assert greedy(lp, ALPHA) == "bb"
    assert beam_search(lp, ALPHA, BeamSettings(beam=8, prune=-50)) == "bb"
    assert beam_search(lp, ALPHA, BeamSettings(beam=8, prune=-50, lexicon=True), lm) == "ba"
    assert decode(lp, ALPHA, {"kind": "beam", "beam": 8, "alpha": 0.0, "beta": 0.0, "lexicon": True}, lm) == "ba"


def test_a_lexicon_that_refuses_every_character_still_returns_a_transcript():
    lm = WordLM.fit(["ab"])
    lp = _lp([[1e-9, 0, 1e-9, 1.0], [1e-9, 0, 1e-9, 1.0]])  # only "b" is likely (and "b" starts no word), blank below prune
    out = beam_search(lp, ALPHA, BeamSettings(beam=4, prune=-5, lexicon=True), lm)
    assert out == ""  # nothing of the vocabulary was said; no crash, no non-word


def test_the_chosen_decoders_val_row_is_the_one_with_exactly_its_settings():
    from tlops.asr.model import DECODERS, chosen_row

    tried = [{**d, "wer": float(i), "cer": float(i)} for i, d in enumerate(DECODERS)]
    for i, d in enumerate(DECODERS):  # a lexicon decoder and the plain beam with the same weights are told apart
        assert chosen_row(dict(d), tried)["wer"] == i


def test_word_timings_come_from_the_ctc_alignment():
    from tlops.asr.decode import align, word_timings

    # slots: a a _ _ b _ (space) b a _  -> "ab ba" with the space at slot 6
    rows = [[.01, 0, .98, .01], [.01, 0, .98, .01], [.98, 0, .01, .01], [.98, 0, .01, .01], [.01, 0, .01, .98], [.98, 0, .01, .01],
            [.01, .98, .005, .005], [.01, 0, .01, .98], [.01, 0, .98, .01], [.98, 0, .01, .01]]
    lp = _lp(rows)
    assert align(lp, "ab ba", ALPHA) == [0, 0, -1, -1, 1, -1, 2, 3, 4, -1]
    assert word_timings(lp, "ab ba", ALPHA, 0.02) == [{"word": "ab", "start": 0.0, "end": 0.1}, {"word": "ba", "start": 0.14, "end": 0.18}]
    with pytest.raises(ValueError):
        align(lp[:3], "ab ba", ALPHA)


def test_transcripts_and_timings_have_no_stray_spaces():
    # slots: a b (space) _ : greedy reads "ab " (a trailing space); the transcript is "ab", and timings skip the space
    lp = _lp([[.01, 0, .98, .01], [.01, 0, .01, .98], [.01, .98, .005, .005], [.98, 0, .01, .01]])
    assert greedy(lp, ALPHA) == "ab " and decode(lp, ALPHA) == "ab"
    from tlops.asr.decode import word_timings

    assert word_timings(lp, "ab ", ALPHA, 0.02) == [{"word": "ab", "start": 0.0, "end": 0.04}]


def test_the_timings_param_gives_each_clips_words_at_the_frame_windows_centre():
    """The pyfunc's `timings` (SpeechRecognition.predict_with) on hand-made log-probabilities: 80 ms frames of 4 slots
    (20 ms each), each word's times shifted to the centre of the frame's 775 ms window (+0.3475 s)."""
    from types import SimpleNamespace

    from tlops.asr.model import Transcriber
    from tlops.task_types import task_type

    # 2 frames = 8 slots: a a _ (space) b b _ _  -> "a b"
    lp = _lp([[.01, 0, .98, .01], [.01, 0, .98, .01], [.98, 0, .01, .01], [.01, .98, .005, .005],
              [.01, 0, .01, .98], [.01, 0, .01, .98], [.98, 0, .01, .01], [.98, 0, .01, .01]])
    t = Transcriber(SimpleNamespace(frame_hop=0.08, frame_window=0.775), None, None, ALPHA, 4, {"kind": "greedy"})
    t.log_probs = lambda paths: [lp for _ in paths]
    predictor = SimpleNamespace(_asr=SimpleNamespace(transcriber=t), _inputs=list)
    asr = task_type("speech_recognition")
    assert asr.predict_with(predictor, ["x.wav"], {"timings": False}) is None  # the plain transcripts then
    (words,) = asr.predict_with(predictor, ["x.wav"], {"timings": True})
    assert words == [{"word": "a", "start": 0.348, "end": 0.388}, {"word": "b", "start": 0.428, "end": 0.468}], words
    assert asr.predict(predictor, ["x.wav"]) == ["a b"] and asr.prediction_column == "transcript"
    t.backbone.lead_seconds = 0.4  # centred frames (0.4 s of silence first): times from the clip's own start, never below 0
    (words,) = asr.predict_with(predictor, ["x.wav"], {"timings": True})
    assert words == [{"word": "a", "start": 0.0, "end": 0.0}, {"word": "b", "start": 0.028, "end": 0.068}], words
