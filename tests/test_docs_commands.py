"""Every command in README.md and docs/*.md works as typed on a fresh clone after the two set-up
commands: the shell lines of their code blocks and the commands quoted inline are extracted, and
each must name an existing entry point whose argument parser accepts the whole line (parsed, never
run). Programs are written the way a fresh clone has them (`.venv/bin/python`, `.venv/bin/accelerate`)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import importlib.metadata
import re
import shlex
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PROGRAMS = {"python", "python3", "bash", "curl", "accelerate", "tensorboard", "hf", "pip", "sudo", "apt-get"}


ENV_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=\S*")  # `NAME=value program ...`: an environment variable for one command


def without_env(text: str) -> str:
    """The command after any leading ``NAME=value`` assignments."""
    words = text.split()
    while words and ENV_ASSIGNMENT.fullmatch(words[0]):
        words = words[1:]
    return " ".join(words)


def is_command(text: str) -> bool:
    """Text that starts with a program (a bare one, or one from the project's .venv), maybe after
    environment assignments."""
    rest = without_env(text)
    first = rest.split(maxsplit=1)[0] if rest.strip() else ""
    return first.startswith(".venv/bin/") or first in PROGRAMS


def project_reads(name: str) -> bool:
    """An environment variable the project's code reads (named in launch.py, app/ or engine/)."""
    files = [ROOT / "launch.py", *(ROOT / "app").glob("*.py"), *(ROOT / "engine").rglob("*.py")]
    return any(f'"{name}"' in f.read_text(encoding="utf-8") for f in files)


class Parsed(Exception):
    """Raised by the patched parse_args once a command line has been parsed successfully."""


def doc_commands(path: Path) -> list[tuple[int, str]]:
    """(line number, command) for each shell command in ``path``: the lines of bash / sh / unlabelled
    code blocks that start with a program, joined over trailing backslashes, and inline code spans
    that start with a program."""
    out: list[tuple[int, str]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    fence: str | None = None
    pending: tuple[int, str] | None = None
    for no, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else (stripped[3:].strip() or "plain")
            continue
        if fence is None:
            for span in re.findall(r"`([^`]+)`", line):
                if is_command(span) and " " in span:
                    out.append((no, span))
            continue
        if fence not in ("bash", "sh", "plain"):
            continue
        if pending is not None:
            start, text = pending
            text += " " + stripped.rstrip("\\")
            pending = (start, text) if stripped.endswith("\\") else None
            if pending is None:
                out.append((start, text))
            continue
        if not is_command(stripped):
            assert fence != "bash" or not stripped or stripped.startswith("#"), f"{path.name}:{no}: not a command: {stripped!r}"
            continue
        if stripped.endswith("\\"):
            pending = (no, stripped.rstrip("\\"))
        else:
            out.append((no, stripped))
    return out


ALL = [(p.relative_to(ROOT).as_posix(), no, cmd) for p in DOCS for no, cmd in doc_commands(p)]


def parse_only(main, argv: list[str], monkeypatch) -> None:
    """Run a CLI ``main(argv)`` up to its argument parsing: Parsed when the line is accepted."""
    original = argparse.ArgumentParser.parse_args

    def parse_and_stop(self, args=None, namespace=None):
        original(self, args, namespace)
        raise Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_and_stop)
    try:
        main(argv)
    except Parsed:
        pass
    except SystemExit as exc:  # --help: printed and accepted
        assert exc.code == 0, f"the parser refused {argv}"
    else:
        raise AssertionError(f"{argv} ran without parsing its arguments")
    finally:
        monkeypatch.setattr(argparse.ArgumentParser, "parse_args", original)


def check_engine(argv: list[str], monkeypatch) -> None:
    from engine.cli import COMMANDS

    assert argv and argv[0] in COMMANDS, f"no such command: python -m engine {argv[:1]}"
    module = importlib.import_module(f"engine.cli.{argv[0].replace('-', '_')}")
    parse_only(module.main, argv[1:], monkeypatch)


def console_scripts() -> set[str]:
    return {ep.name for ep in importlib.metadata.entry_points(group="console_scripts")}


def check(cmd: str, monkeypatch) -> None:
    tokens = shlex.split(cmd, comments=True)
    while tokens and ENV_ASSIGNMENT.fullmatch(tokens[0]):
        name = tokens.pop(0).split("=", 1)[0]
        assert project_reads(name), f"{name} is not an environment variable the project reads"
    program, args = tokens[0], tokens[1:]
    assert program not in ("python", "python3", "pip", "accelerate", "tensorboard", "hf"), \
        f"write .venv/bin/{program}: a fresh clone's system {program} lacks the project's packages"
    if program == ".venv/bin/python":
        if args[:1] == ["launch.py"]:
            import launch

            try:
                launch.build_parser().parse_args(args[1:])
            except SystemExit as exc:
                raise AssertionError(f"launch.py refused {args[1:]}") from exc
        elif args[:2] == ["-m", "engine"]:
            check_engine(args[2:], monkeypatch)
        elif args[:2] == ["-m", "pytest"]:
            paths = [a for a in args[2:] if a.startswith("tests")]
            for a in paths:
                assert list(ROOT.glob(a.split("::")[0])), f"no test file {a}"
        elif args[:1] and args[0].startswith("scripts/") and args[0].endswith(".py"):
            script = ROOT / args[0]
            assert script.is_file(), f"no script {args[0]}"
            spec = importlib.util.spec_from_file_location(script.stem, script)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            parse_only(module.main, args[1:], monkeypatch)
        else:
            raise AssertionError(f"unknown python entry point in {cmd!r}")
    elif program == ".venv/bin/accelerate":
        assert args[0] == "launch" and "accelerate" in console_scripts() | {"accelerate"}
        i = args.index("-m")
        assert args[i + 1] == "engine", cmd
        for flag in (a for a in args[1:i] if a.startswith("--")):
            assert flag in ACCELERATE_FLAGS, f"accelerate launch has no {flag}"
        config = [args[j + 1] for j in range(i) if args[j] == "--config_file"]
        assert all((ROOT / c).is_file() for c in config), config
        check_engine(args[i + 2:], monkeypatch)
    elif program == ".venv/bin/pip":
        extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
        for a in args:
            m = re.fullmatch(r"\.\[(.+)\]", a)
            if m:
                assert set(m.group(1).split(",")) <= set(extras), f"no extra {m.group(1)}"
    elif program in (".venv/bin/tensorboard", ".venv/bin/hf"):
        name = program.rsplit("/", 1)[1]
        assert name in console_scripts(), f"{name} is not installed by the project's dependencies"
    elif program == "bash":
        script = ROOT / args[0]
        assert script.is_file(), f"no script {args[0]}"
        text = script.read_text()
        for flag in (a for a in args[1:] if a.startswith("--")):
            assert re.search(rf"^\s*{re.escape(flag)}\)", text, re.M), f"{args[0]} has no {flag} option"
    elif program in ("sudo", "apt-get"):  # system packages: only `[sudo] apt-get install PACKAGE ...`
        words = args[1:] if program == "sudo" else args
        assert (program != "sudo" or args[:1] == ["apt-get"]) and words[:1] == ["install"] and len(words) > 1, cmd
    elif program == "curl":
        from app.openai_api import SpeechApi, build_router

        routes = {r.path for r in build_router(SpeechApi(None)).routes}
        urls = [a for a in args if a.startswith("http")]
        assert urls, cmd
        for url in urls:
            path = "/" + url.split("/", 3)[3] if url.count("/") >= 3 else "/"
            assert path in routes, f"the server has no route {path}"
    else:
        raise AssertionError(f"unknown program {program!r} in {cmd!r}")


ACCELERATE_FLAGS = {"--multi_gpu", "--num_processes", "--num_machines", "--machine_rank", "--main_process_ip",
                    "--main_process_port", "--config_file", "--mixed_precision"}


def test_docs_have_commands():
    files = {f for f, _, _ in ALL}
    assert {"README.md", "docs/ui.md", "docs/training.md", "docs/evaluation.md"} <= files
    assert len(ALL) > 40


@pytest.mark.parametrize("where, line, cmd", ALL, ids=[f"{f}:{n}" for f, n, _ in ALL])
def test_command_works_as_typed(where, line, cmd, monkeypatch):
    check(cmd, monkeypatch)


@pytest.mark.parametrize("cmd", [
    ".venv/bin/python -m engine tts --text x --voice v --out o.wav --bogus 1",  # a flag the command lacks
    "python -m engine info",  # the system python
    ".venv/bin/python launch.py --nope",
    ".venv/bin/python -m engine nosuch",
    "bash scripts/install.sh --gpu",
    ".venv/bin/pip install -e '.[nope]'",
    "curl http://127.0.0.1:7860/v1/audio/nothing",
    "SPEECHGPT_NO_SUCH_VARIABLE=1 .venv/bin/python launch.py",  # an environment variable nothing reads
    ".venv/bin/python -m engine vc --source a.wav --voice b --out c.wav --chain implicit]",  # usage brackets typed literally
])
def test_the_check_refuses_commands_that_would_fail(cmd, monkeypatch):
    with pytest.raises(AssertionError):
        check(cmd, monkeypatch)
