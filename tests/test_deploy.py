"""Past one machine: deploy/ is valid, and two replicas behind nginx keep each reader on their own replica.

Offline checks: every Kubernetes manifest against the API schemas (kubernetes-validate ships them, so no
cluster and no network), the manifests agree with each other, docker-compose.yml has its replicas, health
checks and limits, and the nginx config it mounts is the current rendering of the template.

Live check: two replicas of the app on loopback behind Debian's nginx, run from a temp folder (no root path)
with the same template docker compose uses. The access log names the replica of every request
($upstream_addr), which is how the test sees the pinning.
"""
from __future__ import annotations

import asyncio
import contextlib
import http.cookiejar
import importlib.util
import os
import re
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"


def _load_renderer():
    """deploy/nginx/render.py, loaded by path: deploy/ is no package, and a bare `render` must not join sys.path."""
    spec = importlib.util.spec_from_file_location("deploy_nginx_render", DEPLOY / "nginx" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nginx_render = _load_renderer()

COOKIE = "stroute"
HEALTH = "/_stcore/health"
# The oldest Kubernetes these manifests promise to work on (autoscaling/v2 and policy/v1 are GA well
# before), and the newest schemas the pinned kubernetes-validate ships.
K8S_VERSIONS = ("1.29", "latest")
NGINX = os.environ.get("NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"   # Debian's is in /usr/sbin
REPLICA_ENV = {"LLM_HANDBOOK_TORCH_THREADS": "1", "HF_HUB_OFFLINE": "1"}   # what compose and k8s set
SHARE_QUERY = {"prompt": "Un café au lait, s'il vous plaît, and the bill is", "k": "5"}


# ------------------------------------------------------------------------------------------ offline checks

def k8s_documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def by_kind() -> dict[str, dict]:
    found: dict[str, dict] = {}
    for name, doc in k8s_documents():
        assert doc["kind"] not in found, f"{name}: a second {doc['kind']}"
        found[doc["kind"]] = doc
    return found


def test_every_k8s_manifest_is_valid_against_the_api_schemas():
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install -r requirements-dev.txt")
    docs = k8s_documents()
    assert {d["kind"] for _, d in docs} >= {"Deployment", "Service", "Ingress", "HorizontalPodAutoscaler"}
    latest = kubernetes_validate.utils.latest_version()
    for version in K8S_VERSIONS:
        version = latest if version == "latest" else version
        for name, doc in docs:
            try:   # strict: a misspelt field (readinesProbe) fails instead of being ignored by the cluster
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                pytest.fail(f"{name} ({doc['kind']}) is not valid for Kubernetes {version}: "
                            f"{'.'.join(map(str, err.path))}: {err.message}")


def test_the_k8s_manifests_fit_together():
    kinds = by_kind()
    deployment, service, ingress, hpa = (kinds[k] for k in ("Deployment", "Service", "Ingress",
                                                            "HorizontalPodAutoscaler"))
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items(), "the Deployment must select its own pods"
    assert service["spec"]["selector"].items() <= labels.items(), "the Service must select the app's pods"
    assert kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"

    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port_names.get("http") == 8501
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(port_names) | set(port_names.values())
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["LLM_HANDBOOK_TORCH_THREADS"] == "1"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == HEALTH, probe
        assert container[probe]["httpGet"]["port"] in port_names, probe
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60, "time for torch and the model to load"
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]
    assert requests["cpu"] == limits["cpu"] == "2"
    assert _gib(limits["memory"]) >= _gib(requests["memory"]) >= 2.5

    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"].get("name") in {p["name"] for p in service["spec"]["ports"]}
    notes = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    assert notes[prefix + "affinity"] == "cookie"
    assert notes[prefix + "session-cookie-name"] == COOKIE
    assert int(notes[prefix + "proxy-read-timeout"]) >= 3600
    assert int(notes[prefix + "proxy-send-timeout"]) >= 3600

    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 2
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"


def _gib(quantity: str) -> float:
    units = {"Gi": 1.0, "Mi": 1 / 1024, "G": 1e9 / 2**30, "M": 1e6 / 2**30}
    for unit, scale in units.items():
        if quantity.endswith(unit):
            return float(quantity[: -len(unit)]) * scale
    return float(quantity) / 2**30


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def app_services(spec: dict) -> dict[str, dict]:
    return {name: s for name, s in spec["services"].items() if s.get("image", "").startswith("llm-handbook-live")}


def test_compose_runs_replicas_with_health_checks_limits_and_the_documented_environment():
    spec = compose()
    apps = app_services(spec)
    assert len(apps) >= 2, "two replicas at least"
    assert len({s["image"] for s in apps.values()}) == 1, "every replica runs the same image"
    builders = [s["build"] for s in apps.values() if "build" in s]
    assert builders, "one replica builds the image"
    for build in builders:
        assert (DEPLOY / build["context"] / build.get("dockerfile", "Dockerfile")).resolve() == ROOT / "Dockerfile"

    from engine.runtime.gate import THREADS_VARIABLE
    for name, service in apps.items():
        assert "ports" not in service, f"{name}: replicas are reached through nginx only"
        check = service["healthcheck"]
        assert HEALTH in " ".join(check["test"]), name
        assert check["start_period"] and check["interval"], name
        limits = service["deploy"]["resources"]["limits"]
        assert limits["memory"] and limits["cpus"], name
        assert service["environment"][THREADS_VARIABLE] == "1", name

    proxy = spec["services"]["nginx"]
    assert proxy["depends_on"] == {name: {"condition": "service_healthy"} for name in apps}
    assert any(v.startswith("./nginx/nginx.conf:/etc/nginx/nginx.conf") for v in proxy["volumes"])
    assert HEALTH in " ".join(proxy["healthcheck"]["test"])
    assert proxy["deploy"]["resources"]["limits"]["memory"]
    listen = re.search(r"^\s*listen\s+(\S+);", (DEPLOY / "nginx" / "nginx.conf").read_text(), re.M).group(1)
    assert any(p.endswith(f":{listen}") for p in proxy["ports"]), "the published port is the one nginx listens on"
    # nginx's upstream lists exactly the compose replicas, one server line each.
    servers = re.findall(r"^\s*server\s+(\S+?):8501\b", (DEPLOY / "nginx" / "nginx.conf").read_text(), re.M)
    assert sorted(servers) == sorted(apps)


def test_compose_nginx_conf_is_the_current_rendering_of_the_template():
    assert (DEPLOY / "nginx" / "nginx.conf").read_text() == nginx_render.compose_config(), \
        "run `python deploy/nginx/render.py` after editing deploy/nginx/nginx.conf.template"


def test_the_template_renderer_refuses_half_filled_configs():
    with pytest.raises(ValueError, match="NOT_GIVEN"):
        nginx_render.render({"LISTEN": "1"}, template="listen ${LISTEN}; x ${NOT_GIVEN};")
    with pytest.raises(ValueError, match="EXTRA"):
        nginx_render.render({"LISTEN": "1", "EXTRA": "2"}, template="listen ${LISTEN}; $request_id")
    assert nginx_render.render({"LISTEN": "1"}, template="listen ${LISTEN}; $request_id") == "listen 1; $request_id"


# ---------------------------------------------------------------------------------- two replicas + nginx

@dataclass
class Cluster:
    url: str                     # nginx
    replicas: list[str]          # host:port of each replica, as nginx's $upstream_addr names them
    access_log: Path
    pins: dict[str, str]         # replica -> an affinity cookie value that nginx sends there


def _opener(cookie: str | None = None, jar: http.cookiejar.CookieJar | None = None):
    """Loopback only, never through a proxy named in the environment."""
    handlers = [urllib.request.ProxyHandler({})]
    if jar is not None:
        handlers.append(urllib.request.HTTPCookieProcessor(jar))
    opener = urllib.request.build_opener(*handlers)
    if cookie:
        opener.addheaders = [("Cookie", f"{COOKIE}={cookie}")]
    return opener


def _get(url: str, cookie: str | None = None, timeout: float = 10):
    """(status, headers, body) of a GET; HTTP errors are answers too."""
    try:
        with _opener(cookie).open(url, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


LOG_LINE = re.compile(r'"(?P<method>\S+) (?P<path>\S+) [^"]*" (?P<status>\d+) \d+ route=(?P<route>\S+) '
                      r'upstream=(?P<upstream>\S+(?:, \S+)*) rt=')


def _log_entries(log: Path) -> list[dict[str, str]]:
    return [m.groupdict() for m in map(LOG_LINE.search, log.read_text().splitlines()) if m]


def _served(cluster: Cluster, route: str, path_prefix: str = "", least: int = 1, wait_s: float = 5) -> list[str]:
    """The replicas that served `route`'s requests (for paths starting with path_prefix), from the access log.

    nginx writes a line once the response is sent (for a websocket: once it closes), so give it a moment.
    """
    deadline = time.monotonic() + wait_s
    while True:
        hits = [e["upstream"] for e in _log_entries(cluster.access_log)
                if e["route"] == route and e["path"].startswith(path_prefix)]
        if len(hits) >= least or time.monotonic() > deadline:
            return hits
        time.sleep(0.1)


def _start_replicas(stack: contextlib.ExitStack, count: int) -> list[str]:
    from tests.browser import streamlit_process

    # Side by side: each start is mostly importing torch and Streamlit, one core's work.
    with ThreadPoolExecutor(count) as pool:
        started = list(pool.map(lambda _: stack.enter_context(streamlit_process(env=REPLICA_ENV)), range(count)))
    return [base.removeprefix("http://") for base, _proc in started]


def _nginx(stack: contextlib.ExitStack, folder: Path, replicas: list[str]) -> str:
    from tests.browser import free_port

    port = free_port()
    conf = folder / "nginx.conf"
    conf.write_text(nginx_render.render(nginx_render.values_for(f"127.0.0.1:{port}", replicas, str(folder))))
    base = [NGINX, "-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log")]
    checked = subprocess.run([*base, "-t", "-q"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, f"nginx -t: {checked.stderr}"
    # In the foreground, as a child of this test: its own pid file, logs and temp folders, nothing of root's.
    proc = subprocess.Popen([*base, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop() -> None:
        proc.terminate()   # SIGTERM: nginx's fast shutdown, open websockets included
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    stack.callback(stop)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited: {proc.stderr.read().decode()} {(folder / 'error.log').read_text()}")
        with contextlib.suppress(OSError):
            if _get(url + HEALTH, timeout=2)[0] == 200:
                return url
        time.sleep(0.2)
    raise TimeoutError("nginx did not answer")


def _find_pins(url: str, log: Path, replicas: list[str]) -> dict[str, str]:
    """An affinity cookie for each replica: random keys until the consistent hash has sent one to each."""
    probe = Cluster(url, replicas, log, {})
    pins: dict[str, str] = {}
    for _ in range(64):
        key = secrets.token_hex(16)
        assert _get(url + HEALTH, key)[0] == 200
        (upstream,) = _served(probe, key, HEALTH)
        pins.setdefault(upstream, key)
        if len(pins) == len(replicas):
            break
    return pins


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not Path(NGINX).exists():
        pytest.skip("nginx is not installed (Debian: apt-get install nginx)")
    pytest.importorskip("tests.bench.st_client", reason="the websocket client tests/bench/st_client.py is missing")
    folder = tmp_path_factory.mktemp("nginx")
    with contextlib.ExitStack() as stack:
        replicas = _start_replicas(stack, 2)
        url = _nginx(stack, folder, replicas)
        log = folder / "access.log"
        yield Cluster(url, replicas, log, _find_pins(url, log, replicas))


def test_health_answers_through_the_proxy(cluster):
    status, _, body = _get(cluster.url + HEALTH)
    assert (status, body) == (200, b"ok")


def test_a_first_visit_gets_an_affinity_cookie_that_keeps_it_on_the_replica_that_served_it(cluster):
    jar = http.cookiejar.CookieJar()
    browser = _opener(jar=jar)
    with browser.open(cluster.url + "/next-token", timeout=10) as response:
        assert response.status == 200 and b"<html" in response.read().lower()
        set_cookie = response.headers.get_all("Set-Cookie") or []
    mine = [c for c in set_cookie if c.startswith(f"{COOKIE}=")]
    assert len(mine) == 1, set_cookie
    assert re.fullmatch(rf"{COOKIE}=[0-9a-f]{{32}}; Path=/; HttpOnly; SameSite=Lax", mine[0])
    route = next(c.value for c in jar if c.name == COOKIE)
    # The browser's next requests carry the cookie, get no new one, and reach the same replica.
    for path in (HEALTH, "/_stcore/host-config", "/next-token"):
        with browser.open(cluster.url + path, timeout=10) as response:
            response.read()
            assert not [c for c in response.headers.get_all("Set-Cookie") or [] if c.startswith(COOKIE)], path
    served = _served(cluster, route, least=4)
    assert len(served) == 4 and len(set(served)) == 1, served
    # A mangled cookie is replaced, not trusted.
    _, headers, _ = _get(cluster.url + HEALTH, cookie="../../etc")
    assert any(c.startswith(f"{COOKIE}=") for c in headers.get_all("Set-Cookie") or [])


def test_different_cookies_reach_different_replicas_and_each_cookie_always_the_same(cluster):
    assert set(cluster.pins) == set(cluster.replicas), f"only {sorted(cluster.pins)} of {cluster.replicas} used"
    for replica, key in cluster.pins.items():
        before = len(_served(cluster, key, wait_s=0))
        for _ in range(3):
            assert _get(cluster.url + "/", key)[0] == 200
        served = _served(cluster, key, least=before + 3)
        assert len(served) == before + 3 and set(served) == {replica}, served


def _downloads_reader(base_url: str, cookie: str):
    """An st_client Reader pinned by `cookie` that can also click a download button, as a browser does.

    Streamlit 1.67 writes a download's file only on the click (the app passes a callable): the browser sends
    a backend-operation request on the websocket, the replica runs the callable, stores the file in its own
    memory and answers with its /media/... URL, which the browser then fetches over plain HTTP. This uses two
    of the Reader's internals (its message hook `_note` and its socket `_ws`); it has no public hook for them.
    """
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from tests.bench.st_client import Reader

    class DownloadsReader(Reader):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.download_ids: list[str] = []
            self.answers: dict[str, object] = {}

        def _note(self, msg) -> None:
            super()._note(msg)
            kind = msg.WhichOneof("type")
            if kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                element = msg.delta.new_element
                if element.WhichOneof("type") == "download_button":
                    button = element.download_button
                    self.download_ids.append(button.deferred_file_id or button.url)
            elif kind == "backend_operation_response":
                self.answers[msg.backend_operation_response.request_id] = msg.backend_operation_response

        async def click_download(self, file_id: str, timeout: float = 30) -> str:
            """The /media URL of a download button's file (making the file now if it is deferred)."""
            if file_id.startswith("/media/"):
                return file_id
            request = BackMsg()
            request.backend_operation_request.request_id = request_id = secrets.token_hex(8)
            request.backend_operation_request.session_id = self.session_id
            request.backend_operation_request.deferred_file.file_id = file_id
            await self._ws.send(request.SerializeToString())
            deadline = time.monotonic() + timeout
            while request_id not in self.answers:
                assert time.monotonic() < deadline, "no answer to the download click"
                await asyncio.sleep(0.05)
            answer = self.answers[request_id]
            assert not answer.error_msg, answer.error_msg
            return answer.deferred_file.url

    reader = DownloadsReader(base_url, timeout=60)
    _pin(reader.cookies, cookie)
    return reader


def _pin(jar: http.cookiejar.CookieJar, value: str) -> None:
    """Put an affinity cookie into a reader's jar, as if nginx had set it on an earlier visit."""
    jar.set_cookie(http.cookiejar.Cookie(
        version=0, name=COOKIE, value=value, port=None, port_specified=False, domain="127.0.0.1",
        domain_specified=False, domain_initial_dot=False, path="/", path_specified=True, secure=False,
        expires=None, discard=True, comment=None, comment_url=None, rest={}))


def test_a_share_link_opens_cleanly_on_either_replica_and_its_download_lives_only_there(cluster):
    async def open_link_and_download(query: dict[str, str], key: str, other_key: str):
        async with _downloads_reader(cluster.url, key) as reader:
            run = await reader.run("next-token", query)
            if not (run.ok and reader.download_ids):
                return run, None, None
            url = await reader.click_download(reader.download_ids[0])
            # Fetched while the session is open, as the browser does right after the click.
            mine = await asyncio.to_thread(_get, cluster.url + url, key)
            elsewhere = await asyncio.to_thread(_get, cluster.url + url, other_key)
            return run, mine, elsewhere

    for n, (replica, key) in enumerate(cluster.pins.items()):
        other_key = next(k for r, k in cluster.pins.items() if r != replica)
        # A prompt of its own per replica: a media file is named by a hash of its content, and the same CSV
        # made on the other replica earlier (kept there for a while after its session ends) would answer.
        query = {**SHARE_QUERY, "prompt": f"{SHARE_QUERY['prompt']} {n + 2}"}
        run, mine, elsewhere = asyncio.run(open_link_and_download(query, key, other_key))
        assert run.ok, f"{replica}: {run.error}"
        assert run.shows(query["prompt"]), f"{replica}: the link's prompt is not in the page"
        assert {"prompt", "k"} <= set(run.widget_keys) and run.charts >= 1
        # The websocket, like every other request of this reader, went to the pinned replica.
        assert set(_served(cluster, key, "/_stcore/stream")) == {replica}
        # The CSV behind the chart is in this replica's memory only: the reader's cookie finds it, the
        # other replica's cookie does not. This is why a proxy in front of replicas must be sticky.
        assert mine is not None, "the page offers the chart's numbers as a CSV download"
        status, _, body = mine
        assert status == 200 and body.startswith(b"rank,token"), (status, body[:80])
        assert elsewhere[0] == 404, elsewhere[:1]
        assert set(_served(cluster, key, "/media/")) == {replica}


def test_a_share_link_with_the_longest_text_passes_the_proxy(cluster):
    """As many emoji as the app takes (4,000) are ~48 KB of URL: past nginx's default 8 KB request line."""
    from engine.tokens.text_limits import DEFAULT_MAX_CHARS
    from tests.bench.st_client import Reader

    async def open_link():
        async with Reader(cluster.url, timeout=60) as reader:
            _pin(reader.cookies, next(iter(cluster.pins.values())))
            return await reader.run("next-token", {"prompt": "\N{STRAWBERRY}" * DEFAULT_MAX_CHARS})

    run = asyncio.run(open_link())
    assert run.ok, run.error


def test_a_small_crowd_through_the_proxy_sees_no_error(cluster):
    """4 readers at once, 2 pages each (a share link, then another page), half pinned to each replica."""
    from tests.bench.st_client import Reader

    keys = [key for key in cluster.pins.values() for _ in range(2)]
    links = [("next-token", {"prompt": f"Reader {i} asks what comes after", "k": "7"}) for i in range(len(keys))]

    async def reader_visits(key: str, link) -> list:
        async with Reader(cluster.url, timeout=60) as reader:
            _pin(reader.cookies, key)
            return [await reader.run(*link), await reader.run("tokenization")]

    async def crowd():
        return await asyncio.gather(*(reader_visits(k, link) for k, link in zip(keys, links)))

    streams_before = {key: len(_served(cluster, key, "/_stcore/stream", wait_s=0)) for key in cluster.pins.values()}
    runs = [run for visits in asyncio.run(crowd()) for run in visits]
    assert len(runs) == 8
    assert all(run.ok for run in runs), [(run.slug, run.error) for run in runs if not run.ok]
    for replica, key in cluster.pins.items():   # two readers' websockets each, all on their own replica
        served = _served(cluster, key, "/_stcore/stream", least=streams_before[key] + 2)
        assert len(served) == streams_before[key] + 2 and set(served) == {replica}, served


def test_nginx_logged_no_error_while_serving_all_this(cluster):
    """A replica that refused, dropped or timed out a proxied request (a websocket too) leaves an [error] line."""
    problems = [line for line in (cluster.access_log.parent / "error.log").read_text().splitlines()
                if re.search(r"\[(error|crit|alert|emerg)\]", line)]
    assert not problems, problems[:5]
