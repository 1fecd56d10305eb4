"""How much a busy core beside it slows `namesmith classify` (tests/scoring/test_classify_tables.py checks the one
thread).

With a torch thread per core, OpenMP's threads spin-wait for the one that shares the busy core: classifying
one name took 66-80 s instead of 6. The CLI classifies on one thread; this times 1,000 names alone and beside
a busy core in turn (8 rounds, so the machine's own load weighs on both alike) and prints the medians.

    python benchmarks/bench_busy_core.py            # a conditional n-gram of 720 synthetic labelled names

Target: beside < 2 x alone. Writes benchmarks/results/busy_core.json.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENDINGS = {("F", "north"): "a", ("F", "south"): "ette", ("F", "east"): "ine",
           ("M", "north"): "o", ("M", "south"): "son", ("M", "east"): "ek"}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rng = random.Random(3)
        lines = ["name\tsex\tregion\tcount"]
        for (sex, region), ending in ENDINGS.items():
            for _ in range(120):
                stem = "".join(rng.choice("bdklmnrstv") + rng.choice("aeiou") for _ in range(rng.randint(1, 3)))
                lines.append(f"{stem}{ending}\t{sex}\t{region}\t{rng.randint(1, 50)}")
        table = Path(tmp) / "names.tsv"
        table.write_text("\n".join(lines) + "\n")
        out = Path(tmp) / "model"
        subprocess.run([sys.executable, "-m", "namesmith", "train", "--data", str(table), "--model", "ngram",
                        "--order", "4", "--out", str(out), "-q", "--samples", "0"], check=True)

        import torch

        from namesmith.cli.common import load_model

        model = load_model(type("Args", (), {"model_dir": str(out), "device": "cpu"})())  # as `classify` loads it
        names = ["davina", "marek", "kolette", "tosino"] * 250
        model.classify(names)
        alone, beside = [], []
        for round_ in range(8):
            # in a session of its own, as a program in another terminal (Linux shares CPU between sessions first)
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True) \
                if round_ % 2 else None
            time.sleep(0.2)
            start = time.perf_counter()
            for _ in range(3):
                model.classify(names)
            (beside if busy else alone).append(time.perf_counter() - start)
            if busy:
                busy.kill()
                busy.wait()
    result = {"threads": torch.get_num_threads(), "alone_s": round(statistics.median(alone), 3),
              "beside_a_busy_core_s": round(statistics.median(beside), 3),
              "note": "medians of 4 rounds each (3 x 1,000 names); the machine was shared with other work"}
    print(json.dumps(result))
    path = ROOT / "benchmarks" / "results" / "busy_core.json"
    path.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
