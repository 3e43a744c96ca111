"""The roofline: the machine's two ceilings as measured, the model's work counted from its modules (and checked
against torch's own FLOP counter), and the measured prefill and decode passes."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from engine.serving.roofline import (MachinePeaks, better_of, PrefillPoint, DecodePoint, machine_peaks, measure_machine,
                             measure_passes, prefill_lengths, read_rates, matmul_rates, work_profile)
from engine.tokens.offsets import token_ids


def test_micro_benchmarks_report_their_best_runs():
    rates = matmul_rates(size=128, seconds=0.0, min_runs=3)
    assert len(rates) >= 3 and all(r > 0 for r in rates)
    size, reads = read_rates(megabytes=8, runs=2)
    assert size == 8 * 2**20 and len(reads) == 2 and all(r > 0 for r in reads)
    peaks = measure_machine(size=128, megabytes=8)
    assert peaks.flops_per_s == max(peaks.matmul_rates) and peaks.bytes_per_s == max(peaks.read_rates)
    assert peaks.threads == torch.get_num_threads() and peaks.read_bytes == 8 * 2**20


def test_the_roofline_is_the_lower_of_its_two_roofs():
    peaks = MachinePeaks(flops_per_s=80e9, bytes_per_s=10e9, threads=1, matmul_size=1, matmul_rates=(80e9,),
                         read_bytes=1, read_rates=(10e9,), seconds=0.1, measured_at=0.0)
    assert peaks.ridge == 8.0
    assert peaks.attainable(0.5) == 5e9          # memory-bound: bandwidth x intensity
    assert peaks.attainable(8.0) == 80e9         # the ridge: both roofs meet
    assert peaks.attainable(100.0) == 80e9       # compute-bound: the flat roof


def test_the_machine_is_measured_once_per_process_unless_asked_again():
    first = machine_peaks()
    assert machine_peaks() is first
    again = machine_peaks(refresh=True)
    assert again is not first and machine_peaks() is again and again.measured_at >= first.measured_at
    assert again.flops_per_s >= first.flops_per_s and again.bytes_per_s >= first.bytes_per_s   # ceilings only rise
    assert 0 < again.seconds < 30 and again.ridge == again.flops_per_s / again.bytes_per_s


def test_measuring_again_keeps_the_better_reading_of_each_ceiling():
    def peaks(flops, reads, at):
        return MachinePeaks(flops_per_s=flops, bytes_per_s=reads, threads=1, matmul_size=64, matmul_rates=(flops,),
                            read_bytes=8, read_rates=(reads,), seconds=0.5, measured_at=at)
    best = better_of(peaks(50e9, 12e9, 1.0), peaks(80e9, 9e9, 2.0))
    assert (best.flops_per_s, best.matmul_rates, best.bytes_per_s, best.read_rates) == (80e9, (80e9,), 12e9, (12e9,))
    assert best.measured_at == 2.0


def test_work_profile_is_counted_from_the_live_model(lm):
    work = work_profile(lm)
    d, kv, ffn, layers = 576, 3 * 64, 1536, 30
    assert work.block_matmul_params == layers * (2 * d * d + 2 * d * kv + 3 * d * ffn) == 106_168_320
    assert work.head_params == 49_152 * d
    assert work.weight_bytes == lm.card.parameters * 4 == 538_060_032
    assert work.kv_bytes_per_token == 46_080
    # Decode reads every weight (4 bytes) to do 2 FLOPs with it: half a FLOP per byte.
    assert work.intensity(1, 64) == pytest.approx(0.5, abs=0.01)
    # Batching B sequences multiplies the FLOPs by B but reads the weights once.
    assert work.flops(1, 64, sequences=16) == pytest.approx(16 * work.flops(1, 64))
    assert work.bytes_moved(1, 64, sequences=16) == work.weight_bytes + 16 * 46_080 * 65
    assert 14 * work.intensity(1, 64) < work.intensity(1, 64, sequences=16) < 16 * work.intensity(1, 64)
    # Prefill: 2 x 106M FLOPs per prompt token, the same weights read once.
    assert work.intensity(256) == pytest.approx(work.flops(256) / (work.weight_bytes + 46_080 * 256))
    assert work.flops(256) > 2 * 256 * work.block_matmul_params


def test_flops_agree_with_torch_s_own_counter(lm):
    """torch's FlopCounterMode counts the matrix products (and attention) of a real pass; the profile's count
    (logits for the last position only, causal attention) must match it up to attention's small share."""
    work = work_profile(lm)
    ids = token_ids(lm, "The printing press changed Europe in a single lifetime.")
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        lm.model(torch.tensor([ids]), use_cache=False, logits_to_keep=1)
    counted = counter.get_total_flops()
    assert counted == pytest.approx(work.flops(len(ids)), rel=0.01)


def test_prefill_lengths():
    assert prefill_lengths(256) == [1, 4, 16, 64, 256]
    assert prefill_lengths(100) == [1, 4, 16, 64, 100]
    assert prefill_lengths(1) == [1]
    assert prefill_lengths(0) == [1]
    assert prefill_lengths(10 ** 9) == [1, 4, 16, 64, 256, 512]


def test_points_are_medians():
    p = PrefillPoint(64, (0.3, 0.1, 0.2))
    assert p.seconds == 0.2 and p.tokens_per_s == pytest.approx(320)
    d = DecodePoint(4, 32, (0.05, 0.04, 0.09, 0.05))
    assert d.seconds == 0.05 and d.tokens_per_s == pytest.approx(80) and d.mid_context == 33.5


def test_measured_passes_have_the_asked_shape_and_stop_on_request(lm):
    ids = token_ids(lm, "Once upon a time")
    seen = []
    timings = measure_passes(lm, ids, [1, 8], context=8, decode_steps=3, batches=(1, 2), repeats=2,
                             on_progress=lambda f, m: seen.append(f))
    assert [p.tokens for p in timings.prefill] == [1, 8] and all(len(p.runs) == 2 for p in timings.prefill)
    assert [(d.batch, d.context, len(d.runs)) for d in timings.decode] == [(1, 8, 3), (2, 8, 3)]
    assert timings.single_decode.batch == 1 and not timings.stopped_early
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    stopped = measure_passes(lm, ids, [1, 8], context=8, should_stop=lambda: True)
    assert stopped.stopped_early and not stopped.prefill and not stopped.decode
    with pytest.raises(ValueError):
        measure_passes(lm, [], [1], context=1)
