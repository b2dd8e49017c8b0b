"""A JupyterHub for a class, on this machine: started, used as students use it, and stopped.

    python -m scripts.class_hub --port 8000           # `make hub`: a hub to try, until Ctrl-C

The hub is the real thing: JupyterHub with its proxy (``configurable-http-proxy``, from npm; the
Makefile installs it into ``.venv/node``), the shared-password authenticator (every student logs in
with one password), and ``SimpleLocalProcessSpawner``, which runs each student's single-user server
as a local process of this environment with its own home folder (``<work>/home/<name>``). Everything
it starts (hub, proxy, servers, kernels) carries ``VAE_CLASS_HUB=<tag>`` in its environment, so that
:meth:`ClassHub.stop` finds and stops all of it, and :func:`stray_processes` can prove that nothing
is left.

:class:`Student` does what a student's browser does, over HTTP through the hub's proxy: log in,
start the server, open an nbgitpuller link (the page, then its event stream, as the page's script
does), save a file, and run a notebook's cells one by one in the student's own kernel over the
kernel's websocket. tests/test_hub.py and benchmarks/bench_class.py are built from these.

Not for production: every student's server runs as the same system user, without isolation.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import requests
import websocket  # websocket-client, a dependency of jupyter_server

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROXY = ROOT / ".venv" / "node" / "node_modules" / ".bin" / "configurable-http-proxy"
TAG_VARIABLE = "VAE_CLASS_HUB"
PASSWORD = "vae-course-class"  # the shared student password of the local hub (never a real one)


class HubError(RuntimeError):
    """The hub could not be started or used; the message says what to do."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_port_free(port: int, what: str) -> None:
    """Raise :class:`HubError` naming ``port`` when something on 127.0.0.1 already uses it."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as error:
            raise HubError(
                f"port {port} on 127.0.0.1 ({what}) is already in use ({error.strerror}): stop "
                f"what listens there (see `ss -ltnp 'sport = :{port}'`) or choose another port, "
                f"e.g. `make hub HUB_PORT={port + 10}`") from None


def find_proxy(proxy: Path | str | None = None) -> Path:
    """The configurable-http-proxy executable, or a :class:`HubError` saying how to install it."""
    candidate = Path(proxy) if proxy else PROXY
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    raise HubError(
        f"configurable-http-proxy (JupyterHub's proxy) was not found at {candidate}. Install it "
        "with `make hub-proxy` (runs `npm ci` on deploy/proxy/package.json into .venv/node; needs "
        "Node.js >= 20 and npm, e.g. `apt-get install nodejs npm`).")


def processes_with_tag(tag: str) -> list[int]:
    """The ids of the processes whose environment holds ``VAE_CLASS_HUB=<tag>`` (Linux /proc)."""
    needle = f"{TAG_VARIABLE}={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def stray_processes(tag: str) -> list[str]:
    """The command lines of the processes of hub ``tag`` still running (none after a stop)."""
    lines = []
    for pid in processes_with_tag(tag):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state == "Z":  # a zombie has exited: only its parent's wait is missing
                continue
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        lines.append(f"{pid}: {cmdline.decode(errors='replace').strip()}")
    return lines


def config_text(*, work: Path, port: int, hub_port: int, proxy_api_port: int, proxy: Path,
                tag: str, allow_root: bool) -> str:
    """The ``jupyterhub_config.py`` of a local class hub (see the module's docstring)."""
    args = ["--allow-root"] if allow_root else []  # root: only on test machines and containers
    return f"""# Written by scripts/class_hub.py: a local hub for the class tests (not production).
c = get_config()  # noqa
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{str(proxy)!r}]
c.ConfigurableHTTPProxy.pid_file = {str(work / "proxy.pid")!r}
c.JupyterHub.db_url = "sqlite:///" + {str(work / "jupyterhub.sqlite")!r}
c.JupyterHub.cookie_secret_file = {str(work / "jupyterhub_cookie_secret")!r}
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = {PASSWORD!r}
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {str(work / "home" / "{username}")!r}
c.Spawner.cmd = [{str(BIN / "jupyterhub-singleuser")!r}]
c.Spawner.args = {args!r}
c.Spawner.default_url = "/lab"
c.Spawner.environment = {{{TAG_VARIABLE!r}: {tag!r}}}
c.Spawner.start_timeout = 300
c.Spawner.http_timeout = 300
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True
"""


@dataclass
class ClassHub:
    """A JupyterHub on 127.0.0.1, started by :meth:`start` and stopped (everything) by :meth:`stop`.

    Use it as a context manager: ``with ClassHub(work) as hub: ...`` stops it whatever happens.
    """

    work: Path
    port: int = 0  # 0: a free port
    proxy: Path | None = None
    tag: str = field(default_factory=lambda: uuid.uuid4().hex)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def homes(self) -> Path:
        return self.work / "home"

    def start(self, timeout: float = 180) -> ClassHub:
        proxy = find_proxy(self.proxy)
        self.port = self.port or free_port()
        check_port_free(self.port, "the hub's public port")
        hub_port, proxy_api_port = free_port(), free_port()
        self.work.mkdir(parents=True, exist_ok=True)
        self.homes().mkdir(exist_ok=True)
        config = self.work / "jupyterhub_config.py"
        config.write_text(config_text(work=self.work, port=self.port, hub_port=hub_port,
                                      proxy_api_port=proxy_api_port, proxy=proxy, tag=self.tag,
                                      allow_root=os.geteuid() == 0))
        env = {**os.environ, TAG_VARIABLE: self.tag,
               "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        log = open(self.work / "jupyterhub.log", "ab")  # noqa: SIM115 (kept open for the child)
        self.process = subprocess.Popen(
            [str(BIN / "jupyterhub"), "-f", str(config)], cwd=self.work, env=env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HubError(f"JupyterHub exited at start (code {self.process.returncode}):\n"
                               + self.log_tail())
            try:
                if requests.get(f"{self.url}/hub/api/", timeout=5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise HubError(f"JupyterHub did not answer on {self.url} within {timeout:.0f} s:\n"
                       + self.log_tail())

    def log_tail(self, lines: int = 40) -> str:
        path = self.work / "jupyterhub.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 30) -> None:
        """Stop the hub (which stops the servers and the proxy), then kill whatever is left."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        for _ in range(3):  # servers, kernels, the proxy: each started in a session of its own
            pids = processes_with_tag(self.tag)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)

    def __enter__(self) -> ClassHub:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


STUDENT_REPO_FILES = ("vaelib", "pyproject.toml", "requirements.txt", "LICENSE", "LICENSE-content",
                      "LICENSE-data")  # beside student/: what the README says to hand out
STUDENT_REPO_README = ("# vae-course, student edition\n\nOpen `student/`: each chapter's exercises "
                       "are stubs for you to complete; the checks under them say how you did.\n")


def git(*args: str, cwd: Path) -> str:
    """Run git in ``cwd`` (as a fixed author) and return its output; raise if it fails."""
    command = ["git", "-c", "user.name=instructor", "-c", "user.email=instructor@example.org",
               "-c", "init.defaultBranch=main", *args]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise HubError(f"{' '.join(command)} failed in {cwd}: {done.stderr.strip()}")
    return done.stdout


def make_student_repository(where: Path, name: str = "vae-course-student",
                            chapters: Path = ROOT / "chapters") -> tuple[Path, Path]:
    """The instructor's repository of the student edition, as the README describes it:
    ``student/`` (from ``python -m scripts.make_student``) with ``vaelib/``, ``pyproject.toml``,
    ``requirements.txt`` and the licences, committed on ``main`` in ``<where>/work`` and pushed to
    the bare repository ``<where>/<name>`` that the nbgitpuller links point at.
    Returns (the bare repository, the instructor's working copy)."""
    import shutil

    work, origin = where / "work", where / name
    work.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "scripts.make_student", "--chapters", str(chapters),
                    "--out", str(work / "student")], cwd=ROOT, check=True, capture_output=True)
    for item in STUDENT_REPO_FILES:
        source = ROOT / item
        if source.is_dir():
            shutil.copytree(source, work / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, work / item)
    (work / "README.md").write_text(STUDENT_REPO_README)
    git("init", "--quiet", cwd=work)
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "The student edition", cwd=work)
    git("init", "--quiet", "--bare", str(origin), cwd=where)
    git("push", "--quiet", str(origin), "main", cwd=work)
    git("remote", "add", "origin", str(origin), cwd=work)
    return origin, work


def nbgitpuller_link(hub_url: str, repo: str, branch: str, folder: str) -> str:
    """The link the README gives, for ``repo`` (cloned into ``<home>/<folder>``):
    ``<hub>/hub/user-redirect/git-pull?repo=<URL>&branch=<branch>``
    ``&urlpath=lab/tree/<folder>/student``
    """
    query = urlencode({"repo": repo, "branch": branch, "urlpath": f"lab/tree/{folder}/student"})
    return f"{hub_url}/hub/user-redirect/git-pull?{query}"


@dataclass
class CellResult:
    """What one code cell sent back: its outputs (nbformat-like dicts) and its wall seconds."""

    outputs: list[dict]
    seconds: float

    def errors(self) -> list[str]:
        return [f"{o['ename']}: {o['evalue']}" for o in self.outputs if o["output_type"] == "error"]

    def text(self) -> str:
        return "".join(o.get("text", "") for o in self.outputs if o["output_type"] == "stream")


class Student:
    """One student's browser on the hub: a cookie jar and the requests a page makes."""

    def __init__(self, hub: ClassHub | str, name: str, timeout: float = 300):
        self.hub_url = hub if isinstance(hub, str) else hub.url
        self.name = name
        self.timeout = timeout
        self.http = requests.Session()

    def close(self) -> None:
        self.http.close()

    # --- the hub -------------------------------------------------------------------------------
    def _xsrf(self, path: str) -> str:
        for cookie in self.http.cookies:
            if cookie.name == "_xsrf" and cookie.path.rstrip("/") == path.rstrip("/"):
                return cookie.value
        raise HubError(f"{self.name}: no _xsrf cookie for {path} (was the page not loaded?)")

    def login(self) -> None:
        """The login form, filled in and posted."""
        page = self.http.get(f"{self.hub_url}/hub/login", timeout=self.timeout)
        page.raise_for_status()
        found = re.search(r'name="_xsrf"\s+value="([^"]+)"', page.text)
        data = {"username": self.name, "password": PASSWORD, "_xsrf": found and found.group(1)}
        reply = self.http.post(f"{self.hub_url}/hub/login", data=data, timeout=self.timeout,
                               allow_redirects=False)
        if reply.status_code != 302 or "login" in reply.headers.get("location", ""):
            raise HubError(f"{self.name}: login refused ({reply.status_code})")

    def hub_api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"X-XSRFToken": self._xsrf("/hub/")}
        return self.http.request(method, f"{self.hub_url}/hub/api/{path}", headers=headers,
                                 timeout=self.timeout, **kwargs)

    def start_server(self) -> float:
        """Ask the hub for the server (the Start button) and wait until it is ready: seconds."""
        start = time.perf_counter()
        self.http.get(f"{self.hub_url}/hub/home", timeout=self.timeout).raise_for_status()
        reply = self.hub_api("POST", f"users/{self.name}/server")
        if reply.status_code not in (201, 202, 400):  # 400: already running
            raise HubError(f"{self.name}: the hub refused to start the server "
                           f"({reply.status_code}: {reply.text[:300]})")
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            model = self.hub_api("GET", f"users/{self.name}").json()
            server = model.get("servers", {}).get("")
            if server and server.get("ready"):
                self.open_lab()  # where the browser lands once the server is up
                return time.perf_counter() - start
            if not model.get("pending") and not server:
                raise HubError(f"{self.name}: the server failed to start; see the hub's log")
            time.sleep(0.5)
        raise HubError(f"{self.name}: the server was not ready within {self.timeout:.0f} s")

    def page_seconds(self, path: str = "/hub/home") -> float:
        """The time the hub takes to answer a page request (the student's home page)."""
        start = time.perf_counter()
        self.http.get(f"{self.hub_url}{path}", timeout=self.timeout).raise_for_status()
        return time.perf_counter() - start

    # --- the student's server, through the proxy -----------------------------------------------
    @property
    def server(self) -> str:
        return f"{self.hub_url}/user/{self.name}/"

    def open_lab(self) -> None:
        """Load JupyterLab's page (logging in to the server through the hub's OAuth on the way)."""
        page = self.http.get(f"{self.server}lab", timeout=self.timeout)
        page.raise_for_status()
        if not urlsplit(page.url).path.startswith(f"/user/{self.name}/lab"):
            raise HubError(f"{self.name}: opening JupyterLab led to {page.url}")

    def server_api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"X-XSRFToken": self._xsrf(f"/user/{self.name}/")}
        reply = self.http.request(method, f"{self.server}api/{path}", headers=headers,
                                  timeout=self.timeout, **kwargs)
        if reply.status_code >= 400:
            raise HubError(f"{self.name}: {method} api/{path}: {reply.status_code} "
                           f"{reply.text[:300]}")
        return reply

    def open_nbgitpuller_link(self, link: str) -> list[str]:
        """Open the link as the browser does: the hub redirects to the server's git-pull page
        (logging in to the server on the way), whose script then follows the pull's event stream.
        Returns the pull's output lines; raises :class:`HubError` if the pull failed."""
        page = self.http.get(link, timeout=self.timeout)
        page.raise_for_status()
        where = urlsplit(page.url)
        if not where.path.startswith(f"/user/{self.name}/git-pull"):
            raise HubError(f"{self.name}: the link led to {page.url}, not the git-pull page")
        query = dict(parse_qsl(where.query))
        params = {"_xsrf": self._xsrf(f"/user/{self.name}/"), "repo": query["repo"],
                  "targetpath": query["repo"].rstrip("/").split("/")[-1]}
        if "branch" in query:
            params["branch"] = query["branch"]
        lines = []
        with self.http.get(f"{self.server}git-pull/api", params=params, stream=True,
                           timeout=self.timeout) as stream:
            stream.raise_for_status()
            for raw in stream.iter_lines(decode_unicode=True):
                if not raw or not raw.startswith("data: "):
                    continue
                event = json.loads(raw.removeprefix("data: "))
                if event.get("output"):
                    lines.append(event["output"].rstrip())
                if event.get("phase") == "error":
                    raise HubError(f"{self.name}: nbgitpuller failed: {event.get('message')}\n"
                                   + "\n".join(lines))
                if event.get("phase") == "finished":
                    return lines
        raise HubError(f"{self.name}: the pull's event stream ended without finishing")

    def read_file(self, path: str) -> dict:
        """The contents API's model of ``path`` (relative to the student's home), with content."""
        return self.server_api("GET", f"contents/{quote(path)}?content=1").json()

    def save_file(self, path: str, model: dict) -> None:
        """Save ``model`` (``type``, ``format``, ``content``) as the editor's Save does."""
        self.server_api("PUT", f"contents/{quote(path)}", json=model)

    def run_notebook(self, path: str, cell_timeout: float = 900,
                     extra_cells: tuple[str, ...] = ()) -> list[CellResult]:
        """Run the notebook ``path`` (home-relative) top to bottom in a new kernel of the student's
        server, over the kernel's websocket, as Run All does; then shut the kernel down.
        ``extra_cells`` run after the notebook's own cells (e.g. a report of peak memory)."""
        notebook = self.read_file(path)["content"]
        sources = ["".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
                   for cell in notebook["cells"] if cell["cell_type"] == "code"]
        session = self.server_api("POST", "sessions", json={
            "path": path, "name": Path(path).name, "type": "notebook",
            "kernel": {"name": "python3"}}).json()
        kernel = Kernel(self, session["kernel"]["id"], cell_timeout)
        try:
            return [kernel.execute(source) for source in [*sources, *extra_cells]]
        finally:
            kernel.close()
            self.server_api("DELETE", f"sessions/{session['id']}")


class Kernel:
    """A kernel's websocket (Jupyter's JSON messages, one channel field each)."""

    def __init__(self, student: Student, kernel_id: str, cell_timeout: float):
        self.session_id = uuid.uuid4().hex
        self.kernel_id = kernel_id
        ws_url = student.server.replace("http://", "ws://", 1)
        path = f"/user/{student.name}/"  # the cookies a browser sends to the server's URLs
        cookies = "; ".join(f"{c.name}={c.value}" for c in student.http.cookies
                            if path.startswith(c.path.rstrip("/") + "/"))
        self.ws = websocket.create_connection(
            f"{ws_url}api/kernels/{kernel_id}/channels?session_id={self.session_id}",
            cookie=cookies, timeout=cell_timeout)
        self.username = student.name

    def execute(self, code: str) -> CellResult:
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": self.username,
                       "session": self.session_id, "version": "5.3",
                       "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
        start = time.perf_counter()
        outputs, replied, idle = [], False, False
        while not (replied and idle):
            msg = self._decode(self.ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if msg.get("channel") == "shell" and kind == "execute_reply":
                replied = True
            elif kind == "status" and content.get("execution_state") == "idle":
                idle = True
            elif kind in ("stream", "display_data", "execute_result", "error"):
                outputs.append({"output_type": kind, **content})
        return CellResult(outputs, time.perf_counter() - start)

    @staticmethod
    def _decode(frame: str | bytes) -> dict:
        """A message from a text frame (JSON), or from a binary one (a message with buffers, e.g.
        a widget's): uint32 count n, n uint32 offsets, then the JSON at the first offset."""
        if isinstance(frame, str):
            return json.loads(frame)
        count = struct.unpack("!I", frame[:4])[0]
        offsets = [*struct.unpack(f"!{count}I", frame[4:4 + 4 * count]), len(frame)]
        return json.loads(frame[offsets[0]:offsets[1]])

    def close(self) -> None:
        self.ws.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Start a local class hub until Ctrl-C.")
    parser.add_argument("--port", type=int, default=8000, help="the hub's port on 127.0.0.1")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "hub",
                        help="the hub's folder (database, log, students' homes)")
    args = parser.parse_args(argv)
    hub = ClassHub(args.work, port=args.port)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops it all, as Ctrl-C
    try:
        with hub:
            print(f"JupyterHub is running at {hub.url}/ : log in with any student name and the "
                  f"password {PASSWORD!r}.\nStudents' homes: {hub.homes()}\nLog: "
                  f"{args.work / 'jupyterhub.log'}\nCtrl-C stops the hub, its servers and kernels.",
                  flush=True)
            while hub.process.poll() is None:
                time.sleep(1)
            print("JupyterHub exited:\n" + hub.log_tail(), file=sys.stderr)
    except HubError as error:
        sys.exit(f"error: {error}")
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)


if __name__ == "__main__":
    main()
