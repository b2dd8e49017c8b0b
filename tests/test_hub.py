"""The instructor's path on a real JupyterHub, end to end, for several students at once.

A hub (JupyterHub 6 with configurable-http-proxy, scripts/class_hub.py) is started on 127.0.0.1. The
instructor's repository of the student edition is a local git repository made here. Each of
``STUDENTS`` students, at the same time, logs in, starts a server (a local process with its own home
folder), opens the README's nbgitpuller link, and runs ``CHAPTER`` top to bottom in their own kernel
through the hub's proxy (the REST API and the kernel's websocket, as JupyterLab does). Then the
instructor pushes a change, each student (who has saved an answer meanwhile) opens the link again,
and nbgitpuller must bring the change without overwriting the student's file. The hub, its proxy,
the servers and kernels are stopped at the end whatever happened, and no process of the hub may be
left. Chapter 1 is used: it is among the lightest (about 16 s alone on 2 cores), and its three
exercise checks must each say "not attempted yet" in the student edition.
"""

from __future__ import annotations

import json
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from scripts.class_hub import (ClassHub, HubError, Student, check_port_free, find_proxy, git,
                               make_student_repository, nbgitpuller_link, stray_processes)

ROOT = Path(__file__).resolve().parents[1]
STUDENTS = 3
CHAPTER = "01_marginal_likelihood.ipynb"
FOLDER = "vae-course-student"  # nbgitpuller clones into <home>/<the repository's name>
CHECK_CALL = re.compile(r"^check_\w+\(", re.MULTILINE)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """(the bare repository the links point at, the instructor's working copy)."""
    return make_student_repository(tmp_path_factory.mktemp("instructor"), name=FOLDER)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A running hub; stopped at the end, with every process it started."""
    class_hub = ClassHub(tmp_path_factory.mktemp("hub"))
    try:
        with class_hub:
            yield class_hub
    finally:
        left = stray_processes(class_hub.tag)
        assert not left, f"processes of the hub still running after it stopped: {left}"


@pytest.fixture(scope="module")
def students(hub):
    everyone = [Student(hub, f"student{i}") for i in range(1, STUDENTS + 1)]
    yield everyone
    for student in everyone:
        student.close()


def link(hub: ClassHub, origin: Path) -> str:
    return nbgitpuller_link(hub.url, origin.as_uri(), "main", FOLDER)


def first_session(student: Student, hub: ClassHub, origin: Path) -> dict:
    """One student's first class: log in, start, pull, run the chapter. What it saw."""
    student.login()
    student.start_server()
    pulled = student.open_nbgitpuller_link(link(hub, origin))
    cells = student.run_notebook(f"{FOLDER}/student/{CHAPTER}")
    return {"pulled": pulled, "cells": cells}


@pytest.fixture(scope="module")
def first_class(hub, course, students):
    """Every student's first session, all at once (threads, as a class does)."""
    with ThreadPoolExecutor(len(students)) as pool:
        return list(pool.map(lambda s: first_session(s, hub, course[0]), students))


def test_the_link_is_the_readme_form():
    form = ("https://<your hub>/hub/user-redirect/git-pull?repo=<repository URL>&branch=<branch>"
            "&urlpath=lab/tree/<folder>/student")
    assert form in (ROOT / "README.md").read_text()
    built = urlsplit(nbgitpuller_link("https://hub.example.org", "https://github.com/o/course",
                                      "main", "course"))
    assert built.path == "/hub/user-redirect/git-pull"
    assert parse_qsl(built.query) == [("repo", "https://github.com/o/course"), ("branch", "main"),
                                      ("urlpath", "lab/tree/course/student")]


def test_each_student_gets_the_student_edition_in_their_home(hub, course, first_class):
    edition = sorted(p.name for p in (course[1] / "student").glob("*.ipynb"))
    assert CHAPTER in edition and len(edition) >= 10
    for i in range(1, STUDENTS + 1):
        clone = hub.homes() / f"student{i}" / FOLDER
        assert sorted(p.name for p in (clone / "student").glob("*.ipynb")) == edition
        assert (clone / "vaelib" / "__init__.py").is_file()
        assert git("rev-parse", "HEAD", cwd=clone) == git("rev-parse", "HEAD", cwd=course[1])


def test_each_student_runs_the_chapter_without_error_and_the_checks_wait(course, first_class):
    notebook = json.loads((course[1] / "student" / CHAPTER).read_text())
    sources = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
    checks = [i for i, source in enumerate(sources) if CHECK_CALL.search(source)]
    assert len(checks) == 3  # chapter 1 has three exercises
    for session in first_class:
        cells = session["cells"]
        assert len(cells) == len(sources)
        assert [error for cell in cells for error in cell.errors()] == []
        for i in checks:
            text = cells[i].text()
            assert text.count("not attempted yet") == len(CHECK_CALL.findall(sources[i])), text
            assert "✅" not in text and "❌" not in text
        # the figures came back through the proxy too
        assert any(o["output_type"] == "display_data" and "image/png" in o["data"]
                   for cell in cells for o in cell.outputs)


def test_a_pushed_change_merges_without_overwriting_the_students_work(hub, course, students,
                                                                      first_class):
    origin, work = course
    path = f"{FOLDER}/student/{CHAPTER}"
    answers = {}
    for student in students:  # each saves an answer in the first exercise cell
        model = student.read_file(path)
        cell = next(c for c in model["content"]["cells"] if "exercise" in c["metadata"].get(
            "tags", []))
        answers[student.name] = f"# {student.name}'s answer\nmy_answer = 42\n"
        cell["source"] = answers[student.name]
        student.save_file(path, {"type": "notebook", "format": "json",
                                 "content": model["content"]})

    # The instructor: a fix in that same exercise cell, a new note, a change to another chapter.
    notebook = json.loads((work / "student" / CHAPTER).read_text())
    cell = next(c for c in notebook["cells"] if "exercise" in c["metadata"].get("tags", []))
    cell["source"] = ["# (instructor) a clearer instruction\n"] + cell["source"]
    (work / "student" / CHAPTER).write_text(json.dumps(notebook, indent=1) + "\n")
    (work / "student" / "NOTES.md").write_text("Chapter 2 is next week.\n")
    readme = (work / "README.md").read_text() + "\nUpdated by the instructor.\n"
    (work / "README.md").write_text(readme)
    git("commit", "--quiet", "-am", "Week 2", cwd=work)
    git("add", "student/NOTES.md", cwd=work)
    git("commit", "--quiet", "-m", "A note", cwd=work)
    git("push", "--quiet", "origin", "main", cwd=work)

    with ThreadPoolExecutor(len(students)) as pool:
        list(pool.map(lambda s: s.open_nbgitpuller_link(link(hub, origin)), students))
    for student in students:
        clone = hub.homes() / student.name / FOLDER
        assert (clone / "student" / "NOTES.md").read_text() == "Chapter 2 is next week.\n"
        assert (clone / "README.md").read_text() == readme
        mine = json.loads((clone / "student" / CHAPTER).read_text())
        exercise = next(c for c in mine["cells"] if "exercise" in c["metadata"].get("tags", []))
        assert "".join(exercise["source"]) == answers[student.name]  # the student's work stays


# --- bad input: clear messages -------------------------------------------------------------------

def test_a_port_in_use_is_named(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(HubError, match=f"port {port} on 127.0.0.1 .* is already in use"):
            check_port_free(port, "the hub's public port")
        hub = ClassHub(tmp_path, port=port)
        with pytest.raises(HubError, match=f"port {port}"):
            hub.start()
        hub.stop()
        assert hub.process is None  # nothing was started
        assert not stray_processes(hub.tag)


def test_a_missing_proxy_says_how_to_install_it(tmp_path):
    with pytest.raises(HubError, match="configurable-http-proxy .* not found at .*make hub-proxy"):
        find_proxy(tmp_path / "nowhere" / "configurable-http-proxy")
    with pytest.raises(HubError, match="npm"):
        ClassHub(tmp_path, proxy=tmp_path / "configurable-http-proxy").start()


def test_a_hub_that_fails_to_start_says_why_and_leaves_nothing(tmp_path):
    broken = tmp_path / "configurable-http-proxy"  # a "proxy" that exits at once
    broken.write_text("#!/bin/sh\necho 'no proxy here' >&2\nexit 1\n")
    broken.chmod(0o755)
    hub = ClassHub(tmp_path / "hub", proxy=broken)
    with pytest.raises(HubError, match="JupyterHub exited at start"):
        with hub:
            pass
    assert hub.process.poll() is not None
    assert not stray_processes(hub.tag)
