"""Long messages (torch's errors in an unreadable saved value's reason) are cut at a sentence or a
word, never mid-word, and say they were shortened."""

from __future__ import annotations

import torch

from gradsight._capture.text import SHORTENED, shorten


def inplace_error() -> str:
    x = torch.ones(5, 8, requires_grad=True)
    h = torch.sigmoid(x)
    h += 0.1
    try:
        h.sum().backward()
    except RuntimeError as e:
        return str(e)
    raise AssertionError("torch no longer refuses this")


def test_torchs_in_place_error_is_cut_after_a_sentence() -> None:
    message = "unreadable: " + inplace_error()
    assert len(message) > 300
    short = shorten(message, 300)
    assert short.endswith("expected version 0 instead." + SHORTENED), short
    assert message.startswith(short.removesuffix(SHORTENED))


def test_without_a_sentence_end_it_cuts_at_a_word() -> None:
    words = " ".join(f"word{i}" for i in range(100))
    short = shorten(words, 50).removesuffix(SHORTENED)
    assert len(short) <= 50 and words.startswith(short) and words[len(short)] == " "


def test_what_fits_stays_whole_and_one_long_word_is_cut_to_fit_with_the_mark() -> None:
    assert shorten("a" * 300, 300) == "a" * 300
    assert shorten("a" * 400, 300) == "a" * (300 - len(SHORTENED)) + SHORTENED


def test_the_result_fits_the_limit_mark_included() -> None:
    texts = ["Expected size torch.Size([2, 3]). Got torch.Size([4]) " + "because it was resized in place " * 9,
             "value 3.5 is bad " * 30, "/very/long/path/" * 40, "é" * 400, "Hello. Another sentence."]  # fmt: skip
    for text in texts:
        for limit in (10, 40, 120, 300):
            short = shorten(text, limit)
            assert len(short) <= limit, (limit, short)
            assert text.startswith(short.removesuffix(SHORTENED).removesuffix("…"))


def test_e_g_and_i_e_end_no_sentence() -> None:
    text = "Trying to backward a second time (freed), e.g. when you call backward twice. " + "x" * 200
    short = shorten(text, 120)
    assert short == "Trying to backward a second time (freed), e.g. when you call backward twice." + SHORTENED
    text = "A" + " word" * 14 + ", i.e. this goes on " + "and on " * 30
    assert not shorten(text, 120).endswith("i.e." + SHORTENED)


def test_an_unreadable_saved_value_in_a_graph_keeps_whole_sentences() -> None:
    import gradsight as gs
    from gradsight.graph import Unavailable

    x = torch.ones(5, 8, requires_grad=True)
    h = torch.sigmoid(x)
    h += 0.1  # SigmoidBackward0's saved result is now a newer version: reading it raises
    dbg = gs.debugger(h.sum())
    try:
        [node] = [n for n in dbg.graph.nodes if n.name == "SigmoidBackward0"]
        reason = node.saved["_saved_result"]
        assert isinstance(reason, Unavailable)
        assert reason.reason.startswith("unreadable: ") and reason.reason.endswith(SHORTENED), reason
        assert reason.reason.removesuffix(SHORTENED).endswith("instead."), reason
    finally:
        dbg.close()
