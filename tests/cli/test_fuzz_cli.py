"""Issue #5, fuzzing: random-bytes files fed to `namesmith train` exit 0 or 1, never with a traceback.

Most cases run `cli.main` in-process (fast); a few run the real command in a subprocess.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from namesmith import cli


def random_bytes(rng: random.Random) -> bytes:
    return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 600)))


def random_bytes_without_nul(rng: random.Random) -> bytes:
    return bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 600)))


def random_text(rng: random.Random) -> bytes:
    """Valid UTF-8: code points from anywhere (no surrogates), lines ended every which way."""
    def char() -> str:
        c = rng.choice([rng.randrange(0x20, 0x7F), rng.randrange(0x80, 0x800), rng.randrange(0x800, 0xD800),
                        rng.randrange(0xE000, 0x110000), rng.randrange(1, 0x20)])
        return chr(c)
    lines = ["".join(char() for _ in range(rng.randrange(0, 15))) for _ in range(rng.randrange(1, 30))]
    return "".join(line + rng.choice(["\n", "\r\n", "\r", "\t\n", ""]) for line in lines).encode("utf-8")


def damaged_names(rng: random.Random) -> bytes:
    """A plausible word list with random bytes spliced in."""
    words = ["anna", "bob", "Zoë", "jean-luc", "o'brien", "李", "st. john", "  eve  ", "", "x" * 80]
    data = bytearray("\n".join(rng.choice(words) for _ in range(rng.randrange(1, 40))).encode())
    for _ in range(rng.randrange(0, 4)):
        data[rng.randrange(len(data) + 1):0] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4)))
    return bytes(data)


GENERATORS = [random_bytes, random_bytes_without_nul, random_text, damaged_names]
CASES = [(gen, seed) for gen in GENERATORS for seed in range(8)]


pytestmark = pytest.mark.usefixtures("one_thread")


def check(rc: int, err: str, path: Path) -> None:
    assert rc in (0, cli.EXIT_ERROR), err
    assert "Traceback" not in err, err
    if rc == cli.EXIT_ERROR:
        errors = [line for line in err.splitlines() if line.startswith("namesmith: error:")]
        assert len(errors) == 1, err
        assert str(path) in errors[0] or "words" in errors[0], err


@pytest.mark.parametrize("gen, seed", CASES, ids=[f"{g.__name__}-{s}" for g, s in CASES])
def test_random_file_in_process(tmp_path, capsys, gen, seed):
    rng = random.Random(f"{gen.__name__}-{seed}")
    path = tmp_path / "fuzz.txt"
    path.write_bytes(gen(rng))
    model = ["--model", "bigram-counts"] if seed % 2 == 0 else ["--model", "bigram", "--max-steps", "5"]
    extra = rng.choice([[], ["--dedupe"], ["--lowercase"], ["--encoding", "latin-1"], ["--max-line-length", "3"]])
    rc = cli.main(["-q", "train", *model, "--data", str(path), "--out", str(tmp_path / "m"), "--samples", "5",
                   "--seed", str(seed), "--device", "cpu", *extra])
    out, err = capsys.readouterr()
    check(rc, err, path)
    if rc == 0:  # and the saved model samples
        rc = cli.main(["sample", "-m", str(tmp_path / "m"), "-n", "5", "--seed", "1"])
        check(rc, capsys.readouterr().err, path)


@pytest.mark.slow  # a process each; test_random_file_in_process runs the same inputs fast
@pytest.mark.parametrize("gen, seed", [(random_bytes, 100), (random_text, 101)])
def test_random_file_subprocess(tmp_path, gen, seed):
    path = tmp_path / "fuzz.txt"
    path.write_bytes(gen(random.Random(seed)))
    proc = subprocess.run([sys.executable, "-m", "namesmith.cli", "train", "--model", "bigram-counts", "--data",
                           str(path), "--out", str(tmp_path / "m"), "--samples", "3", "--device", "cpu"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    check(proc.returncode, proc.stderr, path)
