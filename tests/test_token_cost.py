"""Cost arithmetic, dollar formats, densities and token chunks; the charts draw what they are given."""
import numpy as np
import pytest

from charts.token_cost import chunk_bars, cost_bars, density_heatmap
from engine.tokens.token_cost import Price, chunk_tokens, cost, density, reply_tokens, usd
from engine.tokens.tokenizers import TokenPiece


def test_cost_is_tokens_times_price_per_million_times_requests():
    c = cost(1500, 300, Price(0.15, 0.60), requests=10_000)      # the worked example of the concept page
    assert c.input_usd == pytest.approx(2.25) and c.output_usd == pytest.approx(1.80)
    assert c.total_usd == pytest.approx(4.05) and c.per_request_usd == pytest.approx(4.05e-4)
    assert cost(10, 10, Price(0, 0), 5).total_usd == 0 and cost(10, 0, Price(1, 1), 0).per_request_usd == 0
    assert reply_tokens(401, 0.25) == 100 and reply_tokens(10, -1) == 0


@pytest.mark.parametrize("amount, shown", [(0, "$0"), (4.51e-5, "$0.0000451"), (0.0123, "$0.0123"), (0.5, "$0.500"),
                                           (1.234, "$1.23"), (1234.5, "$1,234.50")])
def test_dollars_keep_three_significant_digits_below_one(amount, shown):
    assert usd(amount) == shown


def test_density_per_character_and_word():
    d = density("ab cd ef gh", 5)
    assert d.per_100_characters == pytest.approx(100 * 5 / 11) and d.per_word == pytest.approx(5 / 4)
    assert density("", 0).per_word == 0 and density("", 0).per_100_characters == 0


def pieces(n):
    return [TokenPiece(i, "x", b"x", i, i + 1, "text") for i in range(n)]


@pytest.mark.parametrize("n, size, overlap", [(10, 4, 0), (10, 4, 1), (10, 4, 3), (4, 4, 0), (3, 8, 2), (1, 1, 0)])
def test_chunks_cover_every_token_with_the_given_stride(n, size, overlap):
    chunks = chunk_tokens(pieces(n), size, overlap)
    assert chunks[0].first == 0 and chunks[-1].last == n
    assert all(c.tokens <= size for c in chunks)
    assert all(b.first - a.first == size - overlap for a, b in zip(chunks, chunks[1:]))
    assert [c.index for c in chunks] == list(range(1, len(chunks) + 1))
    assert chunk_tokens([], 4) == [] and len(chunk_tokens(pieces(10), 4, 99)) == 7   # overlap capped at size - 1


def test_charts_carry_their_numbers():
    fig = cost_bars(["a", "b"], [1.0, 2.0], [0.5, 0.25], ["$1.50", "$2.25"])
    assert list(fig.data[0].x) == [1.0, 2.0] and list(fig.data[1].x) == [0.5, 0.25]
    heat = density_heatmap(np.array([[1.0, 2.0]]), ["s"], ["t1", "t2"], ".1f", "tokens")
    assert heat.data[0].z.tolist() == [[1.0, 2.0]]
    assert list(chunk_bars([4, 4, 2], 4, 0).data[0].y) == [4, 4, 2]


def test_the_prose_claim_o200k_is_about_twice_cl100k():
    from engine.tokens.tokenizers import vocabulary_size     # token-cost.md: "a vocabulary about twice as large"
    ratio = vocabulary_size("o200k").total / vocabulary_size("cl100k").total
    assert 1.9 < ratio < 2.1
