"""A Streamlit reader without a browser: the websocket protocol a browser tab speaks, for load tests.

What a browser does when it opens a share link `BASE/<slug>?<query>`, and what this client repeats:

1. GET the page itself. Any path answers with the app's HTML; a proxy in front may set an affinity cookie
   here (nginx's "stroute"), which every later request, the websocket included, must carry.
2. GET /_stcore/health and /_stcore/host-config. The health answer sets the XSRF cookie `_streamlit_xsrf`.
3. Open a websocket on /_stcore/stream with the cookies, an Origin header, and the subprotocols
   ["streamlit", <the XSRF cookie value>]: Streamlit repurposes that header to carry tokens, and answers
   with the "streamlit" subprotocol. The server makes a session; nothing runs yet.
4. Send BackMsg.rerun_script with a ClientState: the query string, the page (on a first load `page_name` is
   the URL path, which is how st.navigation picks the page; later navigation names the page by the
   `page_script_hash` the server listed), no widget states (the widgets bound to the URL read their values
   from the query string) and the browser's context (timezone, locale, URL, colour scheme).
5. Read ForwardMsgs until the run ends: new_session (a run starts; `metadata.run.fragment_ids` tells a
   fragment's run from a full one), session_status_changed, page_config_changed, navigation (the pages and
   their hashes), page_not_found, delta (elements and blocks at `metadata.delta_path`; a later delta at the
   same path replaces the earlier one), page_info_changed (the query string the widgets wrote back),
   auto_rerun / stop_auto_rerun (a fragment that polls itself, like a job's progress) and script_finished.
6. Later: typing into a field is another rerun_script whose widget_states carry that field's new value
   (Reader.type_text); a polling fragment's timer is a rerun_script naming the fragment (is_auto_rerun).

A run counts as done when the last full run finished successfully and, if the page polls a job, when the
polling has stopped (the reader has the job's result), as a reader would see it. Only the websockets
library that Streamlit itself depends on is used (Streamlit 1.67 serves with uvicorn, not tornado).
"""
from __future__ import annotations

import asyncio
import http.client
import http.cookiejar
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

DEMO_PROBLEM = "This demo hit a problem"
WIDGET_ID_PREFIX = "$$ID-"
XSRF_COOKIE = "_streamlit_xsrf"
NO_XSRF_TOKEN = "PLACEHOLDER_AUTH_TOKEN"   # what the browser offers when it has no XSRF cookie
CHART_TYPES = frozenset({"plotly_chart", "vega_lite_chart", "deck_gl_json_chart", "graphviz_chart", "echarts_chart"})
TEXT_WIDGET_TYPES = frozenset({"text_input", "text_area"})
# The app caps a message at 8 MB (server.maxMessageSize); anything larger would be a failure anyway.
MAX_FRAME_BYTES = 64 * 2**20
USER_AGENT = "llm-handbook-load/1"
CONTEXT = dict(timezone="UTC", timezone_offset=0, locale="en-US", is_embedded=False, color_scheme="light")


@dataclass(frozen=True)
class TextWidget:
    id: str            # the element id a browser names in its widget states
    kind: str          # "text_input" or "text_area"
    value: str         # the text the reader sees in it
    max_chars: int     # 0: no limit
    bound: bool        # bound to the URL: its key is a query parameter of the share link


@dataclass
class PageRun:
    ok: bool
    seconds: float
    error: str | None = None
    texts: list[str] = field(default_factory=list)           # markdown, captions, alerts, headings, text, code
    widget_keys: list[str] = field(default_factory=list)     # user keys of the widgets on the page
    text_widget_keys: list[str] = field(default_factory=list)
    charts: int = 0
    slug: str = ""
    text_widgets: dict[str, TextWidget] = field(default_factory=dict)
    alerts_seen: list[str] = field(default_factory=list)     # every alert shown during the run, even if replaced
    script_runs: int = 0        # runs the server made for this open: more than 1 when a page reruns or polls
    connect_seconds: float = 0.0

    def shows(self, needle: str) -> bool:
        """Whether the page shows `needle`, in its text or in one of its text fields."""
        return any(needle in t for t in self.texts) or any(needle in w.value for w in self.text_widgets.values())

    @property
    def waited_at_gate(self) -> bool:
        return any("ahead of you" in a for a in self.alerts_seen)


class RunFailed(Exception):
    """A run that cannot go on: the socket closed, the page was not found, the script failed to compile."""


def widget_key(element_id: str) -> str | None:
    """The user key inside a widget id "$$ID-<hash>-<key>" (None for a widget made without a key)."""
    if not element_id.startswith(WIDGET_ID_PREFIX):
        return None
    key = element_id[len(WIDGET_ID_PREFIX):].split("-", 1)[-1]   # keys may contain "-", hashes do not
    return None if key == "None" else key


def _element_text(kind: str, proto) -> str | None:
    if kind in ("markdown", "alert", "heading", "text"):
        return proto.body
    if kind == "code":
        return proto.code_text
    if kind == "metric":
        return f"{proto.label}: {proto.body}"
    if kind == "exception":
        return f"{proto.type}: {proto.message}"
    return None


class _View:
    """The elements of the page as the browser would hold them, keyed by their delta path.

    Only a small summary of each element is kept (a chart's figure can be megabytes).
    """

    def __init__(self, typed: dict[str, str] | None = None) -> None:
        self.items: dict[tuple[int, ...], tuple[str, object]] = {}
        self.alerts_seen: list[str] = []
        self.typed = typed if typed is not None else {}   # widget id -> what the reader typed into it

    def apply(self, msg: ForwardMsg) -> None:
        path = tuple(msg.metadata.delta_path)
        kind = msg.delta.WhichOneof("type")
        if kind == "add_block":
            self._put(path, ("block", None))
        elif kind == "new_element":
            element = msg.delta.new_element
            etype = element.WhichOneof("type") or "empty"
            self._put(path, (etype, self._summary(etype, getattr(element, etype))))
        # new_transient (spinners, toasts) never stays on the page

    def _summary(self, etype: str, proto) -> object:
        text = _element_text(etype, proto)
        if etype == "alert" and text not in self.alerts_seen:
            self.alerts_seen.append(text)
        if etype in TEXT_WIDGET_TYPES:
            # The server marks a value it set (from the URL or a callback) with set_value. Otherwise the browser
            # shows what the reader typed there, which the server never echoes, else the default.
            if proto.set_value:
                self.typed[proto.id] = proto.value
            value = self.typed.get(proto.id, proto.default)
            return proto.id, TextWidget(proto.id, etype, value, proto.max_chars, bool(proto.query_param_key))
        if etype in CHART_TYPES:
            return None
        element_id = getattr(proto, "id", "") if "id" in proto.DESCRIPTOR.fields_by_name else ""
        return element_id if element_id.startswith(WIDGET_ID_PREFIX) else text

    def _put(self, path: tuple[int, ...], item: tuple[str, object]) -> None:
        if path in self.items:   # a replaced block takes its children with it
            for stale in [p for p in self.items if len(p) > len(path) and p[:len(path)] == path]:
                del self.items[stale]
        self.items[path] = item

    def result(self, slug: str, seconds: float, error: str | None, script_runs: int) -> PageRun:
        run = PageRun(ok=error is None, seconds=seconds, error=error, slug=slug,
                      alerts_seen=list(self.alerts_seen), script_runs=script_runs)
        for path in sorted(self.items):
            etype, summary = self.items[path]
            if etype in CHART_TYPES:
                run.charts += 1
            elif etype in TEXT_WIDGET_TYPES:
                element_id, widget = summary
                key = widget_key(element_id)
                if key:
                    run.widget_keys.append(key)
                    run.text_widget_keys.append(key)
                    run.text_widgets[key] = widget
            elif isinstance(summary, str) and summary.startswith(WIDGET_ID_PREFIX):
                if key := widget_key(summary):
                    run.widget_keys.append(key)
            elif isinstance(summary, str):
                run.texts.append(summary)
        problems = [t for t in run.texts if DEMO_PROBLEM in t]
        exceptions = [summary for etype, summary in self.items.values() if etype == "exception"]
        if run.ok and (exceptions or problems):
            run.ok, run.error = False, (exceptions or problems)[0][:300]
        return run


class _ResponseHeaders:
    """Lets CookieJar read the Set-Cookie headers of the websocket handshake's answer."""

    def __init__(self, headers) -> None:
        self._message = http.client.HTTPMessage()
        for name, value in headers.raw_items():
            self._message[name] = value

    def info(self):
        return self._message


class Reader:
    """One browser tab: one websocket session that can open several pages in turn (a reader navigating).

    Use it inside `async with Reader(base_url) as reader:`; `await reader.run(slug, query)` opens a page
    (connecting on the first call, like a browser opening that link) and returns its PageRun.
    """

    def __init__(self, base_url: str, *, timeout: float = 120, follow_jobs: bool = True) -> None:
        self.base_url = base_url.rstrip("/")
        parts = urllib.parse.urlsplit(self.base_url)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        scheme = "wss" if parts.scheme == "https" else "ws"
        self.stream_url = f"{scheme}://{parts.netloc}{parts.path}/_stcore/stream"
        self.timeout = timeout
        self.follow_jobs = follow_jobs
        self.cookies = http.cookiejar.CookieJar()
        # Never through a proxy named in the environment: this traffic is for the server at base_url only.
        self._http = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                 urllib.request.HTTPCookieProcessor(self.cookies))
        self._ws = None
        self._receiver: asyncio.Task | None = None
        self._inbox: asyncio.Queue[ForwardMsg | None] = asyncio.Queue()
        self._collecting = False
        self._closed_reason: str | None = None
        self.pages: dict[str, str] = {}      # url path -> page_script_hash, from the navigation message
        self.page_hash = ""                  # the page this session shows now
        self.query_string = ""
        self.session_id = ""
        self.bytes_received = 0
        self.last: PageRun | None = None      # the page shown now
        self.typed: dict[str, str] = {}      # widget id -> text in it, as the browser's widget manager keeps

    async def __aenter__(self) -> Reader:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._ws is not None and self._closed_reason is None

    def page_url(self, slug: str, query: dict[str, str] | None = None) -> str:
        query_string = urllib.parse.urlencode(query or {})
        return f"{self.base_url}/{slug}" + (f"?{query_string}" if query_string else "")

    # ------------------------------------------------------------------ the handshake

    def _get(self, url: str, timeout: float) -> None:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        with self._http.open(request, timeout=max(1.0, timeout)) as response:
            response.read()

    async def connect(self, slug: str = "", query: dict[str, str] | None = None,
                      timeout: float | None = None) -> None:
        """Everything a browser does before its first run: the page, the health check, the websocket."""
        deadline = time.monotonic() + (timeout or self.timeout)

        def left() -> float:
            return deadline - time.monotonic()

        try:
            await asyncio.to_thread(self._get, self.page_url(slug, query), left())
            await asyncio.to_thread(self._get, f"{self.base_url}/_stcore/health", left())
            await asyncio.to_thread(self._get, f"{self.base_url}/_stcore/host-config", left())
        except urllib.error.HTTPError as err:
            raise RunFailed(f"HTTP {err.code} on {err.url[:120]}") from None
        except (OSError, http.client.HTTPException) as err:
            raise RunFailed(f"HTTP request failed: {type(err).__name__}: {err}") from None
        http_equivalent = urllib.request.Request(self.stream_url.replace("ws", "http", 1))
        self.cookies.add_cookie_header(http_equivalent)
        headers = {"Cookie": http_equivalent.get_header("Cookie")} if http_equivalent.has_header("Cookie") else {}
        xsrf = next((c.value for c in self.cookies if c.name == XSRF_COOKIE), None)
        try:
            self._ws = await connect(self.stream_url, subprotocols=["streamlit", xsrf or NO_XSRF_TOKEN],
                                     origin=self.origin, additional_headers=headers, user_agent_header=USER_AGENT,
                                     proxy=None, max_size=MAX_FRAME_BYTES, ping_interval=None,
                                     open_timeout=max(1.0, left()), close_timeout=5)
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as err:
            raise RunFailed(f"websocket refused: {type(err).__name__}: {err}") from None
        # A proxy may set its affinity cookie on the upgrade answer too; keep it as a browser would.
        self.cookies.extract_cookies(_ResponseHeaders(self._ws.response.headers), http_equivalent)
        self._receiver = asyncio.create_task(self._receive(), name="st-client-receive")

    async def _receive(self) -> None:
        """Read every message, always: a session that stops reading stalls, and its pings go unanswered."""
        try:
            async for data in self._ws:
                if isinstance(data, str):
                    raise RunFailed("the server sent a text frame; Streamlit sends binary protobufs")
                self.bytes_received += len(data)
                msg = ForwardMsg()
                msg.ParseFromString(data)
                self._note(msg)
                self.on_message(msg)
                if self._collecting:
                    self._inbox.put_nowait(msg)
            self._closed_reason = f"closed by the server (code {self._ws.close_code}, {self._ws.close_reason!r})"
        except ConnectionClosed as err:
            self._closed_reason = f"connection closed: {err}"
        except Exception as err:  # a broken frame must end this session, not the whole load run
            self._closed_reason = f"receive failed: {type(err).__name__}: {err}"
        finally:
            self._inbox.put_nowait(None)   # wakes a run waiting for messages

    def _note(self, msg: ForwardMsg) -> None:
        """Session facts a browser keeps whatever it is doing: the pages, the session id, the URL."""
        kind = msg.WhichOneof("type")
        if kind == "navigation":
            self.pages = {p.url_pathname: p.page_script_hash for p in msg.navigation.app_pages}
            self.page_hash = msg.navigation.page_script_hash
        elif kind == "new_session" and msg.new_session.initialize.session_id:
            self.session_id = msg.new_session.initialize.session_id
        elif kind == "page_info_changed":
            self.query_string = msg.page_info_changed.query_string

    def on_message(self, msg: ForwardMsg) -> None:
        """Called with every message the server sends, run or no run: a hook for subclasses (downloads...)."""

    async def send(self, msg: BackMsg) -> None:
        """Send any BackMsg on this session's websocket (a download click, say); connect first with run()."""
        if not self.connected:
            raise RunFailed(self._closed_reason or "not connected")
        await self._ws.send(msg.SerializeToString())

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._receiver is not None:
            self._receiver.cancel()
            await asyncio.gather(self._receiver, return_exceptions=True)

    # ------------------------------------------------------------------ a run

    def _rerun_message(self, slug: str | None, query_string: str, fragment_id: str = "",
                       typed: dict[str, str] | None = None) -> BackMsg:
        msg = BackMsg()
        state = msg.rerun_script
        state.query_string = query_string
        if fragment_id:   # a fragment's timer firing: same page, same URL
            state.page_script_hash = self.page_hash
            state.fragment_id = fragment_id
            state.is_auto_rerun = True
        elif typed is not None:    # the reader edited fields of the page shown
            state.page_script_hash = self.page_hash
        elif slug in self.pages:   # navigating, as a click on a page link does
            state.page_script_hash = self.pages[slug]
        else:                      # a first load: the server picks the page from the URL path
            state.page_name = slug or ""
        state.widget_states.SetInParent()
        for widget_id, value in (typed or {}).items():
            state.widget_states.widgets.add(id=widget_id, string_value=value)
        for name, value in CONTEXT.items():
            setattr(state.context_info, name, value)
        state.context_info.url = f"{self.base_url}/{slug or ''}" + (f"?{query_string}" if query_string else "")
        return msg

    async def run(self, slug: str, query: dict[str, str] | None = None, timeout: float | None = None) -> PageRun:
        """Open `slug` and wait until the page has settled.

        The first run of a session opens the share link `slug?query`: the widgets bound to the URL take
        their values from `query`. A later run navigates inside the session, as a page link does; the URL
        then carries `query`, but Streamlit drops the parameters whose keys belonged to widgets of the page
        left behind (next-token and temperature both have "prompt"), so to put text into a page the reader
        is already on, use `type_text`.
        """
        return await self._timed(slug, query, None, timeout)

    async def type_text(self, values: dict[str, str], timeout: float | None = None) -> PageRun:
        """Type `values` (user key -> text) into the text fields of the page shown, as a reader does.

        The browser sends the new value in the rerun's widget states; the fields' ids come from the last run.
        """
        fields = self.last.text_widgets if self.last else {}
        unknown = [key for key in values if key not in fields]
        if unknown or not self.connected:
            slug = self.last.slug if self.last else ""
            return PageRun(ok=False, seconds=0.0, slug=slug, error=f"no text field {unknown} on {slug!r}"
                           if unknown else "not connected")
        typed = {fields[k].id: v for k, v in values.items()}
        self.typed.update(typed)
        # The browser writes a bound field's new value into its address bar itself; the server does not.
        query = dict(urllib.parse.parse_qsl(self.query_string))
        query.update({k: v for k, v in values.items() if fields[k].bound})
        self.query_string = urllib.parse.urlencode(query)
        return await self._timed(self.last.slug, None, typed, timeout)

    async def _timed(self, slug: str, query: dict[str, str] | None, typed: dict[str, str] | None,
                     timeout: float | None) -> PageRun:
        timeout = timeout or self.timeout
        started = time.perf_counter()
        deadline = time.monotonic() + timeout
        connect_seconds = 0.0
        try:
            if self._ws is None:
                await self.connect(slug, query, timeout)
                connect_seconds = time.perf_counter() - started
            if self._closed_reason:
                raise RunFailed(self._closed_reason)
            if typed is None:
                if self.last is None or slug != self.last.slug:
                    self.typed.clear()   # the fields typed into were on the page left behind
                self.query_string = urllib.parse.urlencode(query or {})
                first = self._rerun_message(slug, self.query_string)
            else:
                first = self._rerun_message(slug, self.query_string, typed=typed)
            view, runs = await self._one_run(slug, first, deadline)
            error = None
        except ConnectionClosed as err:   # while sending
            view, runs, error = _View(self.typed), 0, f"connection closed: {err}"
        except RunFailed as err:
            view, runs, error = getattr(err, "view", None) or _View(self.typed), getattr(err, "runs", 0), str(err)
        run = view.result(slug, time.perf_counter() - started, error, runs)
        run.connect_seconds = connect_seconds
        self.last = run
        return run

    async def _next(self, deadline: float, run: _RunState) -> ForwardMsg | None:
        """The next message, or None when `deadline` passes; a closed socket ends the run."""
        try:
            msg = await asyncio.wait_for(self._inbox.get(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return None
        if msg is None:
            raise run.failed(self._closed_reason or "connection closed")
        return msg

    async def _one_run(self, slug: str, first: BackMsg, deadline: float) -> tuple[_View, int]:
        run = _RunState(self.typed)
        while not self._inbox.empty():   # left over from an earlier run: not ours
            self._inbox.get_nowait()
        if self._closed_reason:          # closed while no run was listening
            raise RunFailed(self._closed_reason)
        self._collecting = True
        try:
            await self._ws.send(first.SerializeToString())
            while not (run.settled and (not run.polling or not self.follow_jobs)):
                if run.settled:   # the page polls a job: fire its fragment's timer, as the browser does
                    msg = await self._next(min(deadline, time.monotonic() + min(run.polling.values())), run)
                    if msg is None:
                        if time.monotonic() >= deadline:
                            raise run.failed("timed out while the page was still polling a job")
                        poll = self._rerun_message(slug, self.query_string, fragment_id=next(iter(run.polling)))
                        await self._ws.send(poll.SerializeToString())
                        run.settled = False
                        continue
                else:
                    msg = await self._next(deadline, run)
                    if msg is None:
                        raise run.failed("timed out: the script " + ("was still running" if run.started
                                                                     else "never started"))
                run.take(msg)
        finally:
            self._collecting = False
        if run.not_found:
            raise run.failed(f"page not found: {slug!r} (the server showed its default page)")
        return run.view, run.runs


class _RunState:
    """Where one open of a page stands, updated message by message."""

    def __init__(self, typed: dict[str, str]) -> None:
        self.typed = typed
        self.view = _View(typed)
        self.runs = 0
        self.started = False    # a run of ours has begun (messages before it belong to an earlier run)
        self.settled = False    # the last run ended successfully
        self.not_found = False
        self.polling: dict[str, float] = {}   # fragment id -> seconds between its reruns (a job's progress)

    def take(self, msg: ForwardMsg) -> None:
        kind = msg.WhichOneof("type")
        if kind == "new_session":
            fragment_run = bool(msg.metadata.run.fragment_ids)
            if fragment_run and not self.started:
                return   # a poll sent before an earlier open timed out; ours starts with a full run
            self.started, self.settled, self.runs = True, False, self.runs + 1
            if not fragment_run:   # a full run redraws the whole page
                self.view = _View(self.typed)
                self.polling.clear()
        elif not self.started:
            return
        elif kind == "delta":
            self.view.apply(msg)
        elif kind == "auto_rerun":
            self.polling[msg.auto_rerun.fragment_id] = max(0.1, msg.auto_rerun.interval)
        elif kind == "stop_auto_rerun":
            for fragment in msg.stop_auto_rerun.fragment_ids:
                self.polling.pop(fragment, None)
        elif kind == "page_not_found":
            self.not_found = True
        elif kind == "session_event" and msg.session_event.HasField("script_compilation_exception"):
            raise self.failed("the script failed to compile: "
                              f"{msg.session_event.script_compilation_exception.message[:200]}")
        elif kind == "script_finished":
            if msg.script_finished in (ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY):
                self.settled = True
            elif msg.script_finished == ForwardMsg.FINISHED_WITH_COMPILE_ERROR:
                raise self.failed("the script failed to compile")
            # FINISHED_EARLY_FOR_RERUN: a rerun was asked for (by the script or by us); the next run follows

    def failed(self, message: str) -> RunFailed:
        err = RunFailed(message)
        err.view, err.runs = self.view, self.runs
        return err


# ---------------------------------------------------------------------- one-shot and idle sessions

async def run_page_async(base_url: str, slug: str, query: dict[str, str] | None = None,
                         timeout: float = 120, follow_jobs: bool = True) -> PageRun:
    """A new browser tab opening `base_url/slug?query`: connect, run the page to its end, close."""
    async with Reader(base_url, timeout=timeout, follow_jobs=follow_jobs) as reader:
        try:   # a last bound on everything, closing included
            return await asyncio.wait_for(reader.run(slug, query, timeout), timeout + 5)
        except TimeoutError:
            return PageRun(ok=False, seconds=timeout, error="timed out", slug=slug)


def run_page(base_url: str, slug: str, query: dict[str, str] | None = None, timeout: float = 120,
             follow_jobs: bool = True) -> PageRun:
    """Blocking form of run_page_async, for tests and scripts (not from inside a running event loop)."""
    return asyncio.run(run_page_async(base_url, slug, query, timeout, follow_jobs))


async def open_idle_sessions(base_url: str, count: int, timeout: float = 120,
                             at_once: int = 8) -> tuple[list[Reader], list[PageRun]]:
    """`count` readers who open the home page once and then stay connected doing nothing.

    Their sessions keep answering the server (their messages are read and dropped) until closed with
    close_all(readers). At most `at_once` of them open at the same time, as arrivals would be spread.
    """
    gate = asyncio.Semaphore(at_once)
    readers = [Reader(base_url, timeout=timeout) for _ in range(count)]

    async def arrive(reader: Reader) -> PageRun:
        async with gate:
            return await reader.run("", None, timeout)

    runs = await asyncio.gather(*(arrive(r) for r in readers))
    return readers, list(runs)


async def close_all(readers: list[Reader]) -> None:
    await asyncio.gather(*(r.close() for r in readers), return_exceptions=True)
