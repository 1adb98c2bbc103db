"""The README's commands stay runnable: every `bert3d ...` and `python -m training.* ...` line of its bash blocks
parses with the real argument parsers, every file of the repository it names exists, and every other
command is one the walk-through explains (make, source, docker, tensorboard)."""
import os
import re
import shlex

import pytest

from keras_bert3d.cli import COMMANDS as BERT3D_COMMANDS, parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OTHER = {"make", "source", "docker", "tensorboard"}


def readme_commands():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)  # line continuations
        for line in joined.splitlines():
            line = line.split(" #")[0].strip()
            line = re.sub(r"^([A-Z_][A-Z0-9_]*=\S+\s+)+", "", line)  # environment variables (TF_CONFIG=...)
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


COMMANDS = readme_commands()


def test_readme_walks_through_every_step():
    firsts = [shlex.split(c)[:3] for c in COMMANDS]
    subcommands = {f[1] for f in firsts if f[0] == "bert3d"}
    scripts = {f[2] for f in firsts if f[:2] == ["python", "-m"]}
    assert {"convert", "synth", "index", "train", "evaluate", "tune", "export", "predict"} <= subcommands
    assert not scripts - {"training.demo"}, scripts  # the walk-through uses the installed commands
    assert any("--explain" in c for c in COMMANDS) and any("tensorflow/serving" in c for c in COMMANDS)
    assert any("http://" in c for c in COMMANDS) and any("grpc://" in c for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_parses(command):
    words = shlex.split(command)
    if words[0] == "bert3d":
        parse(words[1:])  # SystemExit (a failed test) on an unknown flag or value
    elif words[:2] == ["python", "-m"] and words[2].startswith("training."):  # a clone's driver of a command
        name = words[2].split(".", 1)[1]
        assert name in BERT3D_COMMANDS or name == "demo", command
        if name in BERT3D_COMMANDS:
            parse([name, *words[3:]])
    else:
        assert words[0] in OTHER, command
        if words[0] == "make":
            with open(os.path.join(ROOT, "Makefile")) as f:
                assert re.search(rf"^{words[1]}:", f.read(), flags=re.M), command
    for word in words:  # repository files it names (configs, ...) exist
        if word.startswith(("training/", "keras_bert3d/", "bench/")):
            assert os.path.exists(os.path.join(ROOT, word)), word
