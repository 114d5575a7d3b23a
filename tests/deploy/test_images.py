"""The Dockerfiles without a Docker engine: what they copy exists and survives .dockerignore,
the health check script answers as Docker expects, and the example handlers image's app loads."""

from __future__ import annotations

import http.server
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.compose import ROOT

DOCKERFILE = ROOT / "Dockerfile"
HEALTHCHECK = ROOT / "deploy" / "docker" / "healthcheck.py"
HANDLERS = ROOT / "deploy" / "examples" / "handlers"


def dockerignore_patterns(path: Path) -> list[tuple[bool, str]]:
    """(is_exception, pattern) in file order, cleaned as Docker cleans them."""
    patterns = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        patterns.append((negate, pattern))
    return patterns


def _matches(pattern: str, path: str) -> bool:
    """Docker's rule: a pattern matches a path or any of its parent folders."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
    regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
    return any(re.fullmatch(regex, c) for c in candidates)


def excluded(path: str, patterns: list[tuple[bool, str]]) -> bool:
    """True if the build context leaves ``path`` out (the last matching pattern wins)."""
    result = False
    for negate, pattern in patterns:
        if _matches(pattern, path):
            result = not negate
    return result


def copied_sources(dockerfile: Path) -> list[str]:
    """Sources of every COPY from the build context (not --from another stage)."""
    sources = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if not words or words[0] != "COPY" or any(w.startswith("--from") for w in words):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        sources += args[:-1]
    return sources


def test_the_dockerignore_matcher_follows_docker() -> None:
    patterns = [(False, "**"), (True, "libs"), (False, "**/__pycache__")]
    assert excluded("tests/unit/x.py", patterns)
    assert not excluded("libs/common/src/jobline/db.py", patterns)
    assert excluded("libs/common/src/jobline/__pycache__/db.pyc", patterns)


def test_everything_the_image_copies_exists_and_is_in_the_build_context() -> None:
    patterns = dockerignore_patterns(ROOT / ".dockerignore")
    sources = copied_sources(DOCKERFILE)
    assert {"constraints.txt", "libs/common", "services", "deploy/docker/healthcheck.py"} <= set(
        sources
    )
    for source in sources:
        path = ROOT / source
        assert path.exists(), source
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        kept = [f for f in files if not excluded(str(f.relative_to(ROOT)), patterns)]
        assert kept, f"{source}: .dockerignore leaves nothing of it in the context"
        if path.is_dir():
            for pyproject in path.rglob("pyproject.toml"):
                assert not excluded(str(pyproject.relative_to(ROOT)), patterns), pyproject


def test_the_context_leaves_out_secrets_state_and_tests() -> None:
    patterns = dockerignore_patterns(ROOT / ".dockerignore")
    for path in (
        ".git/config",
        ".venv/bin/python",
        ".jobline/dev-api-key",
        "deploy/compose/secrets/jobline.env",
        "tests/conftest.py",
        "libs/common/src/jobline/__pycache__/db.cpython-311.pyc",
    ):
        assert excluded(path, patterns), path


def test_the_image_installs_every_package_in_one_pip_line_and_runs_unprivileged() -> None:
    text = DOCKERFILE.read_text()
    (packages,) = re.findall(r'ARG JOBLINE_PACKAGES="([^"]+)"', text)
    services = sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml"))
    folders = [Path(p.partition("[")[0]).name for p in packages.split()]
    assert sorted(folders) == sorted(["common", *services])
    assert len(re.findall(r"pip install --no-build-isolation", text)) == 1
    assert "-c constraints.txt $JOBLINE_PACKAGES" in text
    final_stage = text.rsplit("\nFROM ", 1)[1]
    (user,) = re.findall(r"^USER (\S+)$", final_stage, re.MULTILINE)
    assert not user.startswith(("0", "root"))


@pytest.fixture
def server() -> Iterator[tuple[str, dict[str, int]]]:
    state = {"status": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(state["status"])
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/readyz", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def _probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_health_check_passes_on_2xx_and_fails_otherwise(server) -> None:
    url, state = server
    assert _probe(url).returncode == 0
    state["status"] = 503
    failed = _probe(url)
    assert failed.returncode == 1
    assert "503" in failed.stderr
    closed = url.rsplit(":", 1)[0] + ":1/readyz"
    assert _probe(closed).returncode == 1
    assert _probe().returncode == 2


def test_the_example_handlers_package_is_a_loadable_app(monkeypatch) -> None:
    from jobline_worker.registry import load_app

    monkeypatch.syspath_prepend(str(HANDLERS))
    app = load_app("acme_jobs.jobs:worker")
    assert sorted(app.queues()) == ["default", "emails"]
    requirements = (HANDLERS / "requirements.txt").read_text().splitlines()
    assert all(line.startswith("#") or not line.strip() for line in requirements)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _projects() -> dict[str, dict[str, Any]]:
    """The repository's own distributions: normalised name -> [project] table."""
    import tomllib

    found = {}
    for path in [
        *(ROOT / "libs").glob("*/pyproject.toml"),
        *(ROOT / "services").glob("*/pyproject.toml"),
    ]:
        project = tomllib.loads(path.read_text())["project"]
        found[_norm(project["name"])] = project
    return found


def _image_roots() -> list[str]:
    """What the Dockerfile installs, as requirement strings (``./libs/common[cli]`` ->
    ``jobline[cli]``)."""
    import tomllib

    (packages,) = re.findall(r'ARG JOBLINE_PACKAGES="([^"]+)"', DOCKERFILE.read_text())
    roots = []
    for spec in packages.split():
        folder, _, extras = spec.partition("[")
        name = tomllib.loads((ROOT / folder / "pyproject.toml").read_text())["project"]["name"]
        roots.append(name + ("[" + extras if extras else ""))
    return roots


def _closure(roots: list[str]) -> set[str]:
    """Every distribution installing ``roots`` brings, with the extras they ask for."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    projects = _projects()
    names: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = [Requirement(r) for r in roots]
    while pending:
        requirement = pending.pop()
        name, extras = _norm(requirement.name), frozenset(requirement.extras)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        names.add(name)
        if name in projects:
            project = projects[name]
            deps = list(project.get("dependencies", []))
            for extra in extras:
                deps += project.get("optional-dependencies", {}).get(extra, [])
        else:
            try:
                deps = md.requires(name) or []
            except md.PackageNotFoundError:
                continue
        for dep in map(Requirement, deps):
            wanted = sorted(extras) or [""]
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in wanted):
                pending.append(dep)
    return names


def _imports(path: Path) -> set[str]:
    """Top-level modules ``path`` imports, lazy (in-function) imports included."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_image_installs_every_package_the_code_imports() -> None:
    """The image installs JOBLINE_PACKAGES (with their extras), not requirements-dev.txt: an
    import of a distribution they do not declare works in the developer's .venv and crashes
    the container at start."""
    import importlib.metadata as md

    providers = {_norm(k): [_norm(d) for d in v] for k, v in md.packages_distributions().items()}
    first_party = {"jobline"} | {
        p.name for s in (ROOT / "services").glob("*/src") for p in s.iterdir() if p.is_dir()
    }
    roots = _image_roots()
    available = _closure(roots)
    # `jobline dev` (the embedded servers) is not part of the image: its modules may use the
    # `embedded` extra.
    with_embedded = _closure([*roots, "jobline[embedded]"])
    missing: dict[str, list[str]] = {}
    sources = [*(ROOT / "libs").glob("*/src/**/*.py"), *(ROOT / "services").glob("*/src/**/*.py")]
    for path in sources:
        allowed = with_embedded if "/dev/" in str(path) else available
        for module in _imports(path) - first_party - set(sys.stdlib_module_names):
            distributions = providers.get(_norm(module), [])  # [] when nothing installed has it
            if not set(distributions) & allowed:
                missing.setdefault(module, []).append(str(path.relative_to(ROOT)))
    assert missing == {}, f"imported, but the image does not install it: {missing}"
