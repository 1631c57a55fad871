"""Pin requirements/*.in into requirements/*.txt: `.venv/bin/python requirements/pin.py`.

pip resolves each .in file from scratch (`--dry-run --ignore-installed --report`), exactly
as `make install` on a fresh machine would, and the resolved versions are written out.
dev.txt includes base.txt and lists only what the dev tools add on top of it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def resolve(infile: Path) -> dict[str, str]:
    report = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--disable-pip-version-check",
            "--report",
            "-",
            "-r",
            str(infile),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=HERE,
    ).stdout
    installs = json.loads(report)["install"]
    return {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in installs}


def write(name: str, pins: dict[str, str], head: list[str]) -> None:
    lines = [f"# Pinned from requirements/{name}.in (regenerate: see docs/DEVELOPMENT.md).", *head]
    lines += [f"{pkg}=={pins[pkg]}" for pkg in sorted(pins, key=str.lower)]
    (HERE / f"{name}.txt").write_text("\n".join(lines) + "\n")


def main() -> None:
    base = resolve(HERE / "base.in")
    dev = resolve(HERE / "dev.in")
    clash = {p for p in base if p in dev and dev[p] != base[p]}
    if clash:
        raise SystemExit(f"base and dev resolve differently for: {sorted(clash)}")
    write("base", base, [])
    write("dev", {p: v for p, v in dev.items() if p not in base}, ["-r base.txt"])
    print(f"base: {len(base)} pins, dev: {len(dev) - len(base)} more")


if __name__ == "__main__":
    main()
