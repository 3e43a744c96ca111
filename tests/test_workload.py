"""The real-model measurements behind the serving simulations: the bundled answers are the model's own (some are
regenerated here), step times come from a real batched cache, and parallel samples are seeded and measured."""

from engine.serving.kv_cache import kv_bytes_per_token, live_element_size, live_spec
from engine.tokens.tokenizers import ask, chat_prompt
from engine.tokens.offsets import token_ids
from engine.serving.workload import (ANSWER_CAP, SERVING_PROMPTS, answers_toml, load_answers, measure_step_times,
                             sample_in_parallel)


def test_bundled_answers_are_the_models_own(lm):
    answers = load_answers()
    assert [a.prompt for a in answers.answers] == list(SERVING_PROMPTS)
    assert answers.max_new_tokens == ANSWER_CAP and answers.model == lm.card.name
    for a in answers.answers:
        assert a.prompt_tokens == len(token_ids(lm, chat_prompt(lm, a.prompt)))
        assert 1 <= a.output_tokens <= ANSWER_CAP
        assert a.stopped or a.output_tokens == ANSWER_CAP
    lengths = sorted({a.output_tokens for a in answers.answers})
    assert len(lengths) > 10 and lengths[-1] > 4 * lengths[0]   # real traffic: lengths spread widely
    # The two shortest answers, generated again now, greedily, in the chat template.
    for a in sorted(answers.answers, key=lambda a: a.output_tokens)[:2]:
        reply = ask(lm, a.prompt, ANSWER_CAP)
        assert (len(reply.new_ids), reply.answer, reply.stopped) == (a.output_tokens, a.answer, a.stopped)


def test_answers_file_round_trips(tmp_path):
    answers = load_answers()
    path = tmp_path / "a.toml"
    path.write_text(answers_toml(answers.model, answers.max_new_tokens, answers.measured, list(answers.answers)))
    assert load_answers(path) == answers


def test_step_times_come_from_a_real_batched_cache(lm):
    ids = token_ids(lm, "The quick brown fox jumps over the lazy dog.")
    times = measure_step_times(lm, ids, batch_sizes=(1, 4), repeats=2)
    assert times.batch_sizes == (1, 4) and all(t > 0 for t in times.decode_s) and times.prefill_s > 0
    assert times.context_tokens == 64 and times.cache_tokens == 4 * 64
    assert times.kv_bytes_per_token == kv_bytes_per_token(live_spec(lm), live_element_size(lm))
    # Interpolation between the measured sizes, extension beyond them.
    t1, t4 = times.decode_s
    assert times.decode_step_s(1) == t1 and times.decode_step_s(4) == t4
    assert times.decode_step_s(2) == t1 + (t4 - t1) / 3
    assert times.decode_step_s(8) >= t4
    assert times.prefill_time_s(128) == 2 * times.prefill_s


def test_parallel_samples_are_seeded_and_measured(lm):
    ids = token_ids(lm, chat_prompt(lm, "Name a colour."))
    a = sample_in_parallel(lm, ids, 3, 12, temperature=0.8, seed=5)
    b = sample_in_parallel(lm, ids, 3, 12, temperature=0.8, seed=5)
    assert a.output_tokens == b.output_tokens and a.texts == b.texts
    assert len(a.output_tokens) == 3 and all(1 <= n <= 12 for n in a.output_tokens)
    steps = max(a.output_tokens)
    spec = live_spec(lm)
    assert a.cache_shape == (3, spec.kv_heads, len(ids) + steps - 1, spec.head_dim)
    assert a.cache_bytes == 3 * (len(ids) + steps - 1) * kv_bytes_per_token(spec, live_element_size(lm))
    for n, stopped in zip(a.output_tokens, a.stopped):
        assert stopped or n == 12
    # At temperature ~0 every row is the greedy answer.
    greedy = sample_in_parallel(lm, ids, 2, 12, temperature=0.0, seed=1)
    reply = ask(lm, "Name a colour.", 12)
    assert greedy.output_tokens == (len(reply.new_ids),) * 2 and greedy.texts == (reply.answer,) * 2


def test_prose_figures(lm):
    """paged-attention.md: 46,080 bytes per cached token in float32, so a 16-token page holds 720 KiB."""
    per_token = kv_bytes_per_token(live_spec(lm), live_element_size(lm))
    assert per_token == 46_080 and 16 * per_token == 720 * 1024
