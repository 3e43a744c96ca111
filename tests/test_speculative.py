"""Speculative decoding: the drafts, the acceptance rule, and an output equal to plain greedy decoding."""
import pytest

from engine.decoding.generation import generate
from engine.decoding.speculative import EARLY_EXIT, LOOKUP, accepted_prefix, compare, first_round, lookup_draft, speculative_generate
from engine.tokens.offsets import token_ids

PROMPT = "The cat sat on the mat. The dog sat on the log. The cat"


def test_lookup_copies_what_followed_the_most_recent_earlier_ngram():
    assert lookup_draft([1, 2, 3, 9, 1, 2, 4, 5, 1, 2], 2, 3) == [4, 5, 1]   # the later [1, 2], not the first
    assert lookup_draft([7, 8, 9, 5, 8], 2, 2) == [9, 5]                      # no [9, 5, 8]... falls back to [8]
    assert lookup_draft([1, 2, 3], 2, 4) == []                                # nothing recurs
    assert lookup_draft([4, 4], 1, 3) == [4]                                  # never proposes past the end
    assert lookup_draft([1, 2, 1], 3, 0) == []


def test_acceptance_is_the_longest_matching_prefix():
    assert accepted_prefix([5, 6, 7], [5, 6, 8, 1]) == 2
    assert accepted_prefix([5, 6, 7], [4, 6, 7, 1]) == 0
    assert accepted_prefix([5, 6], [5, 6, 3]) == 2
    assert accepted_prefix([], [3]) == 0


def test_lookup_decoding_equals_greedy_and_counts_add_up(lm):
    ids = token_ids(lm, PROMPT)
    run = speculative_generate(lm, ids, 16, drafter=LOOKUP, k=4, ngram=2)
    assert list(run.new_ids) == generate(lm, PROMPT, 16, temperature=0.0).new_ids
    first = run.rounds[0]
    assert first.drafted == tuple(lookup_draft(ids, 2, 4)) and first.accepted == 3   # " sat on the" kept, not " mat"
    assert sum(len(r.new_ids) for r in run.rounds) == len(run.new_ids)
    assert run.proposed == sum(len(r.drafted) for r in run.rounds) and 0 < run.accepted <= run.proposed
    assert run.acceptance_rate == run.accepted / run.proposed
    assert run.full_model_passes < len(run.new_ids)   # the copy saved passes
    assert all(r.draft_s >= 0 and r.verify_s > 0 for r in run.rounds)


@pytest.mark.parametrize("drafter", [LOOKUP, EARLY_EXIT])
def test_first_round_checked_at_once_is_the_runs_first_round(lm, drafter):
    ids = token_ids(lm, PROMPT)
    preview = first_round(lm, ids, drafter, 4, 2, 27)
    run = speculative_generate(lm, ids, 8, drafter=drafter, k=4, ngram=2, exit_layer=27)
    assert preview.drafted == run.rounds[0].drafted and preview.accepted == run.rounds[0].accepted
    assert preview.targets[:preview.accepted + 1] == tuple(run.new_ids[:preview.accepted + 1])[:len(preview.targets)]
    assert all(0 < p <= 1 for p in preview.draft_probs)


def test_early_exit_decoding_equals_greedy_and_stops_when_asked(lm):
    ids = token_ids(lm, PROMPT)
    run = speculative_generate(lm, ids, 6, drafter=EARLY_EXIT, k=2, exit_layer=28)
    assert list(run.new_ids) == generate(lm, PROMPT, 6, temperature=0.0).new_ids
    assert all(r.proposed == min(2, 6 - sum(len(p.new_ids) for p in run.rounds[:i]) - 1)
               for i, r in enumerate(run.rounds))
    stopped = speculative_generate(lm, ids, 6, should_stop=lambda: True)
    assert stopped.stopped_early and not stopped.new_ids
    with pytest.raises(ValueError):
        speculative_generate(lm, [], 4)


def test_compare_times_both_runs(lm):
    result = compare(lm, PROMPT, 8, drafter=LOOKUP, k=3)
    assert result.identical and result.first_difference is None
    assert result.greedy_s > 0 and result.speedup == pytest.approx(result.greedy_s / result.speculative.total_s)
