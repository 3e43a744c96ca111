"""`make bench-load`: many readers at once on the real app, over Streamlit's websocket. Prints; asserts nothing.

    python -m tests.bench.load                                   # start the app here, run every scenario
    python -m tests.bench.load --scenario fresh --readers 3 --runs 2
    python -m tests.bench.load --url http://127.0.0.1:8080 --pid 1234 --pid 1240   # an app already running

Every reader is a tests.bench.st_client session, so each run is a real script run on the server, as a
browser's would be. The server's CPU-seconds (its process and children) and resident memory (sampled every
0.2 s) are measured when its pid is known: always when this module starts the app, with --pid otherwise.

Two ways a reader moves between runs (--mode):
  tabs      every run opens the page's share link in a new tab: a new session, the text in the URL (default)
  navigate  one session per reader: runs move by page link, and fresh text is typed into the page's field
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from concepts import load_catalogue  # noqa: E402
from tests.bench.st_client import PageRun, Reader, close_all, open_idle_sessions  # noqa: E402
from tests.bench.timing import p50_p95_ms  # noqa: E402

SCENARIOS = ("tour", "fresh", "default", "idle+active", "soak")
# Hard limits per scenario (seconds): every scenario stops by itself, finished or not.
TIME_LIMITS = {"tour": 900, "fresh": 1200, "default": 900, "idle+active": 1500, "soak": 3 * 3600}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MiB = 2**20


# ---------------------------------------------------------------------- measuring the server

class ServerMeter:
    """CPU-seconds and resident memory of the server's processes and their children.

    A thread samples memory every `every_s` so a short peak between two scenario steps is not missed.
    """

    def __init__(self, pids: list[int], every_s: float = 0.2) -> None:
        self.procs = [psutil.Process(pid) for pid in pids]
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(every_s,), daemon=True, name="rss-sampler")
        if self.procs:
            self.peak = self.rss() or 0
            self._thread.start()

    @property
    def measured(self) -> bool:
        return bool(self.procs)

    def _family(self) -> list[psutil.Process]:
        family = []
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                family += [proc, *proc.children(recursive=True)]
        return family

    def _summed(self, measure) -> float | None:
        """`measure(proc)` added up over the servers and their children (None when no server is known)."""
        if not self.procs:
            return None
        total = 0
        for proc in self._family():
            with contextlib.suppress(psutil.Error):
                total += measure(proc)
        return total

    def cpu_seconds(self) -> float | None:
        def cpu(proc: psutil.Process) -> float:
            times = proc.cpu_times()
            # children_*: children that already exited and were waited for (a pip download, say)
            waited = times.children_user + times.children_system if proc in self.procs else 0.0
            return times.user + times.system + waited

        return self._summed(cpu)

    def rss(self) -> int | None:
        return self._summed(lambda proc: proc.memory_info().rss)

    def _sample(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self.peak = max(self.peak, self.rss() or 0)

    def reset_peak(self) -> None:
        self.peak = self.rss() or 0

    def stop(self) -> None:
        self._stop.set()


def mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / MiB:,.0f} MiB"


# ---------------------------------------------------------------------- what readers type

ADJECTIVES = ["quiet", "orange", "sleepy", "curious", "ancient", "tiny", "brave", "silver", "noisy", "patient",
              "crooked", "gentle", "restless", "golden", "muddy", "polite"]
NOUNS = ["lighthouse keeper", "otter", "librarian", "glacier", "tram driver", "beekeeper", "violin", "harbour",
         "comet", "baker", "fox", "market", "windmill", "astronomer", "kettle", "ferry"]
VERBS = ["counts", "paints", "follows", "repairs", "questions", "carries", "ignores", "measures", "greets",
         "borrows", "describes", "forgets"]
PLACES = ["near the old stone bridge", "behind the railway station", "on the northern island",
          "under a lemon tree", "beside the frozen lake", "at the edge of town", "inside the museum"]
TIMES = ["before sunrise", "every second Tuesday", "during the long storm", "after the concert", "in early spring"]


def reader_text(reader: int, run: int, seed: int) -> str:
    """A sentence of about 28 words, distinct for every reader and run (so no cache can answer it)."""
    pick = random.Random(f"{seed}/{reader}/{run}").choice
    return (f"Reader {reader} on run {run} writes that the {pick(ADJECTIVES)} {pick(NOUNS)} {pick(VERBS)} the "
            f"{pick(ADJECTIVES)} {pick(NOUNS)} {pick(PLACES)}, while a {pick(ADJECTIVES)} {pick(NOUNS)} "
            f"{pick(VERBS)} it {pick(TIMES)}.")


def fit(text: str, max_chars: int) -> str:
    """Cut at a word boundary to a field's character limit (0: none), as a reader would shorten it."""
    if not max_chars or len(text) <= max_chars:
        return text
    return text[:max_chars].rsplit(" ", 1)[0]


@dataclass(frozen=True)
class TextField:
    key: str
    max_chars: int


def main_text_field(run: PageRun) -> TextField | None:
    """The field a reader writes their own text in: the largest text area, else the largest text input."""
    fields = sorted(run.text_widgets.items(), key=lambda item: (item[1].kind == "text_area",
                                                               item[1].max_chars or 10**9), reverse=True)
    return TextField(fields[0][0], fields[0][1].max_chars) if fields else None


# ---------------------------------------------------------------------- a scenario's tally

@dataclass
class Tally:
    runs: list[PageRun] = field(default_factory=list)
    pages: Counter = field(default_factory=Counter)
    unfinished: int = 0   # runs not made because the scenario hit its time limit
    stopped: tuple[float, float | None] | None = None   # (clock, server CPU) when the runs ended, if before
                                                        # the scenario did (the soak then waits, idle)

    def stop_clock(self, meter: ServerMeter) -> None:
        self.stopped = (time.perf_counter(), meter.cpu_seconds())

    def add(self, run: PageRun) -> None:
        self.runs.append(run)
        self.pages[run.slug or "(home)"] += 1


def report(tally: Tally, started: float, meter: ServerMeter, cpu_start: float | None, rss_start: int | None,
           client_cpu_s: float) -> None:
    runs = tally.runs
    ended, cpu_end = tally.stopped or (time.perf_counter(), meter.cpu_seconds())
    wall_s = ended - started
    failed = [r for r in runs if not r.ok]
    print(f"  pages used: {', '.join(f'{slug} x{n}' for slug, n in sorted(tally.pages.items()))}")
    if not runs:
        print("  no run finished")
        return
    print(f"  runs {len(runs)} in {wall_s:.1f} s: {len(runs) / wall_s:.2f} runs/s; run time "
          f"{p50_p95_ms([r.seconds for r in runs])}, max {max(r.seconds for r in runs):.1f} s")
    if tally.unfinished:
        print(f"  stopped at the scenario's time limit: {tally.unfinished} runs not made")
    waited = sum(r.waited_at_gate for r in runs)
    print(f"  errors {len(failed)}" + (f"; readers told to wait at the CPU gate in {waited} runs" if waited else ""))
    for (slug, message), count in Counter((r.slug, r.error) for r in failed).most_common(5):
        print(f"    {count} x {slug or '(home)'}: {message[:150]}")
    by_page = {}
    for r in runs:
        by_page.setdefault(r.slug or "(home)", []).append(r.seconds)
    slowest = sorted(by_page.items(), key=lambda item: -statistics.median(item[1]))[:3]
    print("  slowest pages (p50): " + ", ".join(f"{slug} {statistics.median(t):.2f} s" for slug, t in slowest))
    if meter.measured:
        cpu = cpu_end - cpu_start
        print(f"  server CPU {cpu:.1f} s: {cpu / len(runs):.3f} CPU-s per run "
              f"({cpu / wall_s:.2f} of the machine's {psutil.cpu_count()} cores busy on average)")
        print(f"  server RSS start {mib(rss_start)}, peak {mib(meter.peak)}, end {mib(meter.rss())}")
    else:
        print("  server CPU and memory: not measured (give --pid)")
    print(f"  this load generator's own CPU: {client_cpu_s:.1f} s")


# ---------------------------------------------------------------------- readers

class Readers:
    """Opens pages for simulated readers, in the chosen mode (see the module docstring)."""

    def __init__(self, base_url: str, mode: str, run_timeout: float, fields: dict[str, TextField | None]):
        self.base_url, self.mode, self.run_timeout, self.fields = base_url, mode, run_timeout, fields
        self.sessions: dict[int, Reader] = {}

    async def open(self, reader: int, slug: str, text: str | None = None) -> PageRun:
        """Reader `reader` opens `slug`, with `text` in its main text field when given."""
        text_field = self.fields.get(slug)
        entry = {text_field.key: fit(text, text_field.max_chars)} if text and text_field else None
        if self.mode == "tabs":   # the text travels in the share link
            async with Reader(self.base_url, timeout=self.run_timeout) as tab:
                run = await tab.run(slug, entry)
        else:                     # the reader clicks to the page, then types
            session = self.sessions.get(reader)
            if session is None or not session.connected:
                session = self.sessions[reader] = Reader(self.base_url, timeout=self.run_timeout)
            run = await session.run(slug)
            if entry and run.ok:
                arrived = run
                run = await session.type_text(entry)
                run.seconds += arrived.seconds
                run.script_runs += arrived.script_runs
        if entry and run.ok:   # in tabs mode the server itself put the link's text into the field
            (key, wanted), = entry.items()
            shown = run.text_widgets.get(key)
            if shown is None or shown.value != wanted:
                run.ok = False
                run.error = (f"the reader's text did not reach {slug}: its field shows "
                             f"{shown.value[:60] if shown else None!r}")
        return run

    async def leave(self, reader: int) -> None:
        if session := self.sessions.pop(reader, None):
            await session.close()

    async def close(self) -> None:
        await close_all(list(self.sessions.values()))
        self.sessions.clear()


@dataclass
class Context:
    name: str
    base_url: str
    meter: ServerMeter
    live: list[str]
    fields: dict[str, TextField | None]
    args: argparse.Namespace

    def readers(self) -> Readers:
        return Readers(self.base_url, self.args.mode, self.args.run_timeout, self.fields)

    def page_for(self, reader: int, run: int) -> str:
        """A random live page, the same for this reader and run whatever the order the readers ran in."""
        return random.Random(f"{self.args.seed}/{self.name}/{reader}/{run}").choice(self.live)


async def crowd(ctx: Context, tally: Tally, readers: int, runs: int, plan, time_limit: float,
                on_run=None, session_runs: int = 0) -> None:
    """`readers` readers at once, each making `runs` runs in turn; plan(reader, run) -> (slug, text or None).

    With `session_runs`, a navigating reader leaves after that many runs and a new one takes their place.
    """
    pages = ctx.readers()
    deadline = time.monotonic() + time_limit

    async def one(reader: int) -> None:
        for n in range(runs):
            if time.monotonic() >= deadline:
                tally.unfinished += runs - n
                return
            slug, text = plan(reader, n)
            tally.add(await pages.open(reader, slug, text))
            if on_run:
                on_run(reader, n)
            if session_runs and (n + 1) % session_runs == 0:
                await pages.leave(reader)

    tasks = [asyncio.create_task(one(i)) for i in range(readers)]
    try:
        done, pending = await asyncio.wait(tasks, timeout=time_limit + ctx.args.run_timeout)
        for task in pending:   # a run stuck past every bound: count its reader's remaining runs as not made
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()   # a bug in this module should be seen, not swallowed
    finally:
        await pages.close()


def fresh_plan(ctx: Context, runs_with_text=lambda reader, n: True):
    seed = ctx.args.seed

    def plan(reader: int, n: int):
        slug = ctx.page_for(reader, n)
        return slug, reader_text(reader, n, seed) if runs_with_text(reader, n) and ctx.fields.get(slug) else None
    return plan


# ---------------------------------------------------------------------- the scenarios

async def tour(ctx: Context, tally: Tally) -> None:
    """One reader over every live page, twice: the first open computes, the second finds the caches."""
    pages = ctx.readers()
    rows = {}
    deadline = time.monotonic() + ctx.args.time_limit("tour")
    try:
        for pass_name in ("first", "again"):
            for slug in ctx.live:
                if time.monotonic() >= deadline:
                    tally.unfinished += 1
                    continue
                cpu = ctx.meter.cpu_seconds()
                run = await pages.open(0, slug)
                spent = None if cpu is None else ctx.meter.cpu_seconds() - cpu
                rows.setdefault(slug, {})[pass_name] = (run, spent)
                tally.add(run)
    finally:
        await pages.close()
    if ctx.args.url:
        print("  (a server already running may have these pages cached: 'first open' is then not a cold one)")
    print(f"  {'page':<22} {'first open':>12} {'server CPU':>11} {'again':>9} {'server CPU':>11}  charts")
    for slug, passes in rows.items():
        cells = []
        for pass_name in ("first", "again"):
            run, spent = passes.get(pass_name, (None, None))
            cells.append(f"{run.seconds:>10.2f} s" if run else f"{'-':>12}")
            cells.append(f"{spent:>9.2f} s" if spent is not None else f"{'n/a':>11}")
        first = passes["first"][0]
        flag = "" if all(p[0].ok for p in passes.values()) else "  FAILED: " + next(
            p[0].error for p in passes.values() if not p[0].ok)[:90]
        print(f"  {slug:<22} {cells[0]:>12} {cells[1]:>11} {cells[2]:>9} {cells[3]:>11}  {first.charts}{flag}")


async def fresh(ctx: Context, tally: Tally) -> None:
    a = ctx.args
    await crowd(ctx, tally, a.readers, a.runs, fresh_plan(ctx), a.time_limit("fresh"))


async def default(ctx: Context, tally: Tally) -> None:
    a = ctx.args
    await crowd(ctx, tally, a.readers, a.runs, lambda reader, n: (ctx.page_for(reader, n), None),
                a.time_limit("default"))


async def idle_active(ctx: Context, tally: Tally) -> None:
    a = ctx.args
    limit = a.time_limit("idle+active")
    rss_before = ctx.meter.rss()
    cpu_before = ctx.meter.cpu_seconds()
    started = time.perf_counter()
    idle, arrivals = await open_idle_sessions(ctx.base_url, a.idle, a.run_timeout)   # each run is bounded
    try:
        opened = sum(r.ok for r in arrivals)
        print(f"  {opened} of {a.idle} idle sessions opened the home page in {time.perf_counter() - started:.1f} s"
              + (f" (server CPU {ctx.meter.cpu_seconds() - cpu_before:.1f} s)" if ctx.meter.measured else ""))
        if ctx.meter.measured and opened:
            # Noisy: memory freed by the previous scenario can hide what the sessions take.
            grown = ctx.meter.rss() - rss_before
            print(f"  server RSS before them {mib(rss_before)}, with them connected {mib(ctx.meter.rss())} "
                  f"(a change of {grown / opened / 1024:+,.0f} KiB per idle session)")
        for run in arrivals:
            if not run.ok:
                tally.add(run)
        await crowd(ctx, tally, a.readers, a.runs, fresh_plan(ctx), limit)
        print(f"  idle sessions still connected at the end: {sum(r.connected for r in idle)} of {a.idle}")
    finally:
        await close_all(idle)


async def soak(ctx: Context, tally: Tally) -> None:
    """Many runs by few readers, half of them with fresh text; memory watched from start to end."""
    a = ctx.args
    per_reader = max(1, a.soak_runs // a.soak_readers)
    total = per_reader * a.soak_readers
    marks = {max(1, round(total * k / 10)) for k in range(1, 11)}
    trend = [(0, ctx.meter.rss())]

    def on_run(reader: int, n: int) -> None:
        if len(tally.runs) in marks:
            trend.append((len(tally.runs), ctx.meter.rss()))

    # Readers come and go: in navigate mode a reader leaves after 25 runs and a new one arrives (in tabs mode
    # every run is a new session anyway), so sessions being torn down is part of what memory must survive.
    plan = fresh_plan(ctx, runs_with_text=lambda reader, n: n % 2 == 0)
    await crowd(ctx, tally, a.soak_readers, per_reader, plan, a.time_limit("soak"), on_run, session_runs=25)
    tally.stop_clock(ctx.meter)
    if ctx.meter.measured:
        print("  RSS by runs done: " + ", ".join(f"{n}: {mib(rss)}" for n, rss in trend))
        await asyncio.sleep(10)
        print(f"  RSS after 10 s idle at the end: {mib(ctx.meter.rss())}")


RUNNERS = {"tour": tour, "fresh": fresh, "default": default, "idle+active": idle_active, "soak": soak}


def describe(name: str, a: argparse.Namespace) -> str:
    return {"tour": "1 reader over every live page (default state), then again (cached)",
            "fresh": f"{a.readers} readers x {a.runs} runs: a random live page with the reader's own text",
            "default": f"{a.readers} readers x {a.runs} runs: a random live page in its default state",
            "idle+active": f"{a.idle} idle sessions connected, plus {a.readers} readers x {a.runs} fresh runs",
            "soak": f"{a.soak_runs} runs by {a.soak_readers} readers, every other run with fresh text",
            }[name] + f" [{a.mode}]"


# ---------------------------------------------------------------------- the command

async def discover_fields(base_url: str, live: list[str], timeout: float) -> dict[str, TextField | None]:
    """Each page's main text field, read from one default-state run of it (these runs are not counted)."""
    fields = {}
    for slug in live:
        async with Reader(base_url, timeout=timeout) as tab:
            run = await tab.run(slug)
        fields[slug] = main_text_field(run)
        note = "" if run.ok else f"  (the run failed: {run.error[:100]})"
        print(f"  {slug:<22} text field: {fields[slug].key if fields[slug] else '-'}{note}")
    return fields


async def run_scenarios(base_url: str, meter: ServerMeter, args: argparse.Namespace) -> None:
    live = [c.slug for c in load_catalogue().live]
    me = psutil.Process()
    print(f"server {base_url}; live pages: {', '.join(live)}")
    started = time.perf_counter()
    async with Reader(base_url, timeout=args.run_timeout) as first:
        home = await first.run("")
    print(f"warm-up: home page opened in {home.seconds:.1f} s" + ("" if home.ok else f" (FAILED: {home.error})")
          + (f"; server RSS {mib(meter.rss())}" if meter.measured else ""))
    fields: dict[str, TextField | None] = {}
    for name in args.scenario:
        if name != "tour" and not fields:   # after the tour, whose first pass must find the caches empty
            print("text fields (one default run per page):")
            fields = await discover_fields(base_url, live, args.run_timeout)
            print(f"set-up took {time.perf_counter() - started:.1f} s\n")
        ctx = Context(name, base_url, meter, live, fields, args)
        print(f"== {name}: {describe(name, args)}", flush=True)
        tally = Tally()
        cpu_start, rss_start, client_start = meter.cpu_seconds(), meter.rss(), sum(me.cpu_times()[:2])
        meter.reset_peak()
        started = time.perf_counter()
        try:
            await asyncio.wait_for(RUNNERS[name](ctx, tally), args.time_limit(name) + 2 * args.run_timeout)
        except TimeoutError:
            print("  the scenario passed its hard time limit and was stopped")
        report(tally, started, meter, cpu_start, rss_start,
               sum(me.cpu_times()[:2]) - client_start)
        print(flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.bench.load", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="drive this running app (loopback only) instead of starting one")
    p.add_argument("--pid", type=int, action="append", default=[],
                   help="with --url: a server process to measure (repeat for replicas)")
    p.add_argument("--scenario", action="append", choices=SCENARIOS,
                   help="run only this scenario (repeatable); default: all, in order")
    p.add_argument("--readers", type=int, default=20, help="readers at once in fresh, default, idle+active")
    p.add_argument("--runs", type=int, default=3, help="runs per reader in fresh, default, idle+active")
    p.add_argument("--idle", type=int, default=50, help="idle sessions in idle+active")
    p.add_argument("--soak-runs", type=int, default=2000, help="total runs in soak")
    p.add_argument("--soak-readers", type=int, default=10, help="readers in soak")
    p.add_argument("--mode", choices=("tabs", "navigate"), default="tabs", help="how readers move (see above)")
    p.add_argument("--run-timeout", type=float, default=180, help="seconds one run may take")
    p.add_argument("--time-limit", type=float, help="hard seconds per scenario (default: per scenario)")
    p.add_argument("--seed", type=int, default=1, help="seeds the page choices and the readers' texts")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="environment for the server this starts, e.g. LLM_HANDBOOK_TORCH_THREADS=1")
    p.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                   help="extra `streamlit run` argument, e.g. --server-arg=--runner.postScriptGC=true")
    args = p.parse_args(argv)
    args.scenario = args.scenario or list(SCENARIOS)
    if args.url and urllib.parse.urlsplit(args.url).hostname not in LOOPBACK:
        p.error("--url must be a loopback address: this tool only sends traffic to this machine")
    if args.pid and not args.url:
        p.error("--pid goes with --url (without --url the started server is measured)")
    if any(n < 1 for n in (args.readers, args.runs, args.soak_runs, args.soak_readers)) or args.idle < 0:
        p.error("readers and runs must be at least 1")
    args.time_limit = lambda name, fixed=args.time_limit: fixed or TIME_LIMITS[name]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.url:
        meter = ServerMeter(args.pid)
        try:
            asyncio.run(run_scenarios(args.url.rstrip("/"), meter, args))
        finally:
            meter.stop()
        return
    from tests.browser import streamlit_process

    env = dict(item.split("=", 1) for item in args.env)
    with streamlit_process(env=env, extra_args=args.server_arg, timeout_s=300) as (base_url, server):
        meter = ServerMeter([server.pid])
        try:
            asyncio.run(run_scenarios(base_url, meter, args))
        finally:
            meter.stop()


if __name__ == "__main__":
    main()
