"""The distillation loss against torch's kl_div, the T^2 factor, and the tiny student and its trainer."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers.masking_utils import create_causal_mask

import engine.training.distillation as distil
from engine.training.distillation import (RemoveLayers, Setup, TransferSet, compare_students, default_position,
                                 distillation_loss, gradient_size, gradient_sizes, log_soft, middle_block, reverse_kl,
                                 soft_loss, soft_targets, train_student)
from engine.model.forward import forward
from engine.tokens.offsets import token_ids
from engine.model.traced import Interventions, trace


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.5, 10.0])
def test_loss_is_torchs_kl_div_teacher_first_with_every_term(temperature):
    rng = np.random.default_rng(0)
    z, s = rng.normal(0, 4, 500), rng.normal(0, 1, 500)     # a sharp teacher, a flat student
    loss = distillation_loss(z, s, temperature)
    zt, st = torch.tensor(z), torch.tensor(s)
    expected = F.kl_div(F.log_softmax(st / temperature, -1), F.softmax(zt / temperature, -1), reduction="sum")
    assert loss.kl == pytest.approx(float(expected), rel=1e-9)
    assert loss.scaled == pytest.approx(temperature ** 2 * float(expected), rel=1e-9)
    assert loss.terms.sum() == pytest.approx(loss.kl, rel=1e-12)
    np.testing.assert_allclose(loss.teacher, soft_targets(z, temperature), rtol=1e-12)
    np.testing.assert_allclose(loss.terms, loss.teacher * np.log(loss.teacher / loss.student), rtol=1e-9)
    backwards = F.kl_div(F.log_softmax(zt / temperature, -1), F.softmax(st / temperature, -1), reduction="sum")
    assert reverse_kl(loss) == pytest.approx(float(backwards), rel=1e-9)


def test_identical_logits_cost_nothing_and_loss_is_never_negative():
    z = np.array([3.0, -1.0, 0.5, 0.0])
    assert distillation_loss(z, z, 2.0).kl == pytest.approx(0.0, abs=1e-15)
    sharp = distillation_loss(np.array([5.0, 0, 0, 0]), np.zeros(4), 1.0)   # a sure teacher, a uniform student
    assert sharp.kl == pytest.approx(1.267, abs=1e-3) and reverse_kl(sharp) == pytest.approx(2.384, abs=1e-3)
    rng = np.random.default_rng(1)
    assert all(distillation_loss(rng.normal(size=50), rng.normal(size=50), t).kl > 0 for t in (1, 3, 7))


def test_the_worked_example_in_the_prose():
    z, s = np.array([2.0, 1.0, 0.0]), np.array([1.0, 1.0, 0.0])
    assert [round(distillation_loss(z, s, t).kl, 4) for t in (1, 2, 4)] == [0.1196, 0.0310, 0.0075]
    assert [round(distillation_loss(z, s, t).scaled, 4) for t in (1, 2, 4)] == [0.1196, 0.1240, 0.1198]
    assert round(float(-log_soft(s, 1.0)[0]), 3) == 0.862
    assert round(0.9 * distillation_loss(z, s, 2).scaled + 0.1 * float(-log_soft(s, 1.0)[0]), 3) == 0.198


def test_batched_soft_loss_is_t_squared_times_the_mean_kl():
    rng = np.random.default_rng(2)
    z, s = rng.normal(0, 2, (6, 40)), rng.normal(0, 2, (6, 40))
    t = 3.0
    batched = soft_loss(torch.tensor(s), torch.tensor(soft_targets(z, t)), t)
    assert float(batched) == pytest.approx(np.mean([distillation_loss(a, b, t).scaled for a, b in zip(z, s)]), rel=1e-9)


def test_t_squared_keeps_the_gradient_steady_and_the_closed_form_is_autograds():
    rng = np.random.default_rng(3)
    z, s = rng.normal(0, 2, 300), rng.normal(0, 2, 300)
    temps = np.array([1.0, 2.0, 5.0, 10.0])
    without, scaled = gradient_sizes(z, s, temps)
    for t, w, sc in zip(temps, without, scaled):
        assert w == pytest.approx(gradient_size(z, s, t, scale_by_t2=False), rel=1e-9)
        assert sc == pytest.approx(gradient_size(z, s, t, scale_by_t2=True), rel=1e-9)
    assert without[-1] / without[0] < 0.05           # without T^2 the soft term fades about like 1/T^2
    assert 0.3 < scaled[-1] / scaled[0] < 3          # with it the pull stays the same order of size
    # High-T limit (Hinton et al.): T^2 times the gradient tends to (s - z) / N for zero-mean logits.
    zc, sc_ = z - z.mean(), s - s.mean()
    limit = np.linalg.norm(sc_ - zc) / len(z)
    assert gradient_sizes(zc, sc_, np.array([200.0]))[1][0] == pytest.approx(limit, rel=0.02)


def synthetic_transfer_set(n=240, k=12, seed=0) -> TransferSet:
    """A teacher that is a fixed random bigram model over k tokens; targets sampled from it."""
    rng = np.random.default_rng(seed)
    table = rng.normal(0, 2, (k + 1, k))
    prev = rng.integers(0, k, n)
    before = np.where(np.arange(n) % 10 == 0, k, rng.integers(0, k, n))
    logits = table[prev] + 0.5 * table[before]
    targets = np.array([rng.choice(k, p=soft_targets(row, 1.0)) for row in logits])
    return TransferSet(vocab=np.arange(100, 100 + k), inputs=np.stack([before, prev], 1).astype(np.int64),
                       targets=targets.astype(np.int64), teacher_logits=logits.astype(np.float32),
                       teacher_coverage=np.ones(n, np.float32), held_out=np.arange(n) % 5 == 4, paragraphs=24,
                       tokens=n + 24)


def test_training_is_deterministic_for_a_seed_and_the_seed_matters():
    ts = synthetic_transfer_set()
    setup = Setup(temperature=2.0, alpha=1.0, steps=40, seed=7)
    a, b = train_student(ts, setup, soft=True), train_student(ts, setup, soft=True)
    np.testing.assert_array_equal(a.held_loss, b.held_loss)
    assert a.final == b.final
    other = train_student(ts, Setup(temperature=2.0, alpha=1.0, steps=40, seed=8), soft=True)
    assert other.final != a.final
    assert list(a.curve_steps) == [0, 10, 20, 30, 40] and a.steps_done == 40


def test_alpha_zero_is_ordinary_training_and_soft_targets_pull_towards_the_teacher():
    ts = synthetic_transfer_set()
    hard = train_student(ts, Setup(steps=60, seed=1), soft=False)
    same = train_student(ts, Setup(alpha=0.0, steps=60, seed=1), soft=True)
    np.testing.assert_array_equal(hard.held_kl, same.held_kl)
    soft = train_student(ts, Setup(temperature=2.0, alpha=1.0, steps=200, seed=1), soft=True)
    assert soft.held_kl[-1] < 0.5 * soft.held_kl[0]              # it learned the teacher
    assert soft.train_final.kl_to_teacher < hard.train_final.kl_to_teacher


def test_a_stop_request_ends_training_early_with_what_was_done():
    ts = synthetic_transfer_set()
    calls = []
    run = train_student(ts, Setup(steps=500), soft=True, on_step=calls.append,
                        should_stop=lambda: len(calls) >= 2)
    assert run.steps_done == 20 and run.curve_steps[-1] == 20


def test_a_stopped_comparison_trains_both_students_alike():
    ts = synthetic_transfer_set(seed=5)
    steps = []
    partial = compare_students(ts, Setup(steps=400, seed=9), should_stop=lambda: len(steps) >= 3,
                               on_progress=lambda fraction, message: steps.append(message))
    assert partial.hard.steps_done == 30 and partial.soft.steps_done == 30   # the soft run matches the hard one


def test_comparison_reuses_the_hard_student_across_temperatures():
    ts = synthetic_transfer_set(seed=4)
    first = compare_students(ts, Setup(temperature=2.0, steps=30, seed=2))
    second = compare_students(ts, Setup(temperature=5.0, steps=30, seed=2))
    assert second.hard is first.hard and second.soft.final != first.soft.final
    assert first.train_positions + first.held_positions == 240 and first.vocabulary == 12
    assert first.teacher_held.kl_to_teacher == pytest.approx(0, abs=1e-6) and first.teacher_held.agreement == 1.0


def test_default_position_prefers_an_unsure_teacher_that_ranks_the_truth_high():
    confident, unsure = np.array([9.0, 0, 0, 0]), np.array([1.0, 0.9, 0.8, 0.7])
    logits = np.stack([confident, unsure, unsure, confident])
    assert default_position(logits, [0, 0, 3, 0], top=10) == 2   # row 1 is unsure and ranks token 3 in its top 10
    assert default_position(logits, [0, 0, 3, 0], top=1) == 3    # token 3 is 4th there: row 2 is the unsure one left
    assert default_position(logits, [0, 3, 3, 3], top=1) == 2    # nothing qualifies: the most unsure row


def test_transfer_set_holds_the_teachers_logits_and_survives_a_disk_round_trip(lm, tmp_path, monkeypatch):
    paragraphs = ["The cat sat on the mat.", "A dog ran in the park.", "The sun is hot."]
    ts = distil.transfer_set(lm, folder=tmp_path, paragraphs=paragraphs)
    ids = token_ids(lm, paragraphs[1])
    full = forward(lm, ids).logits[:-1]
    assert ts.teacher_logits.shape[1] == ts.size == len({t for p in paragraphs for t in token_ids(lm, p)})
    start = len(token_ids(lm, paragraphs[0])) - 1      # the second paragraph's rows follow the first's
    rows = slice(start, start + len(ids) - 1)
    np.testing.assert_allclose(ts.teacher_logits[rows], full[:, ts.vocab], rtol=1e-4, atol=1e-4)
    assert [int(ts.vocab[i]) for i in ts.targets[rows]] == ids[1:]
    assert list(ts.inputs[start]) == [ts.size, list(ts.vocab).index(ids[0])]   # the paragraph's start marker
    assert not ts.held_out.any()                                 # only every 5th paragraph is held out
    assert np.all((ts.teacher_coverage > 0) & (ts.teacher_coverage <= 1.0001))

    monkeypatch.setattr(distil, "_transfer_sets", {})
    monkeypatch.setattr(distil, "build_transfer_set", lambda *a, **k: pytest.fail("the disk cache was not used"))
    again = distil.transfer_set(lm, folder=tmp_path, paragraphs=paragraphs)
    np.testing.assert_array_equal(again.teacher_logits, ts.teacher_logits)
    np.testing.assert_array_equal(again.inputs, ts.inputs)
    assert again.tokens == ts.tokens and not again.teacher_logits.flags.writeable


def test_the_bundled_corpus_has_held_out_paragraphs():
    paragraphs = distil.corpus_paragraphs()
    assert len(paragraphs) >= 30 and not any(p.startswith("#") for p in paragraphs)
    assert len(paragraphs) // distil.HELD_OUT_EVERY >= 6


def model_logits(lm, text, removed=()):
    """The model's logits, straight from the transformers modules (not the traced forward the page uses), with
    the decoder layers in `removed` (0-based) skipped."""
    inner = lm.model.model
    with torch.inference_mode():
        h = inner.embed_tokens(torch.tensor([token_ids(lm, text)]))
        positions = torch.arange(h.shape[1])[None]
        mask = create_causal_mask(config=inner.config, inputs_embeds=h, attention_mask=None, past_key_values=None,
                                  position_ids=positions)
        rotary = inner.rotary_emb(h, position_ids=positions)
        for i, layer in enumerate(inner.layers):
            if i not in removed:
                h = layer(h, attention_mask=mask, position_embeddings=rotary, position_ids=positions)
        return lm.model.lm_head(inner.norm(h))[0].double()


def test_removing_a_middle_block_is_the_model_without_those_layers(lm):
    assert middle_block(30, 8) == frozenset(range(11, 19)) and middle_block(30, 1) == {14}
    assert middle_block(30, 99) == frozenset(range(1, 29))          # the first and last layers always stay
    weight = torch.ones(3, 3)
    remove = RemoveLayers(frozenset({4}))
    assert remove("layers.4.self_attn.o_proj", weight).abs().sum() == 0 and weight.sum() == 9   # never in place
    assert remove("layers.4.mlp.down_proj", weight).abs().sum() == 0
    assert remove("layers.4.mlp.up_proj", weight) is weight and remove("layers.5.self_attn.o_proj", weight) is weight
    text = "The cat sat on the mat and looked out of the window."
    ids = token_ids(lm, text)
    np.testing.assert_allclose(model_logits(lm, text).numpy(), forward(lm, ids).logits, atol=2e-3, rtol=1e-4)
    pruned = trace(lm, ids, interventions=Interventions(weight_transform=RemoveLayers(middle_block(30, 8)))).logits
    np.testing.assert_allclose(pruned, model_logits(lm, text, range(11, 19)).numpy(), atol=2e-3, rtol=1e-4)
    assert np.abs(pruned - forward(lm, ids).logits).max() > 1.0     # and it is a different model


def test_the_figures_the_prose_gives_for_smollm2(lm):
    """distillation.md's Intuition and quiz: after "my sister prefers", about 11% apples, 7% grapes, 5% oranges."""
    from engine.decoding.generation import next_token_distribution
    dist = next_token_distribution(lm, "My favourite fruits are apples, pears and bananas, but my sister prefers")
    shown = {t.text: round(100 * t.probability) for t in dist.top(lm, 10)}
    assert shown[" apples"] == 11 and shown[" grapes"] == 7 and shown[" oranges"] == 5
