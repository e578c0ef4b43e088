#!/usr/bin/env python3
"""README.md's commands run as written.

Runs every shell block of README.md that follows a `<!-- doctest -->` line, as a user would paste
it: with the programs on PATH, in a fresh temporary directory (with `examples/` at hand), with
`set -e`, under a timeout. Each block runs in a private network namespace (`unshare`), so that
the default ports 5557-5560 are free and no farm of this machine is touched; the block's
background processes are stopped afterwards. Exit status: 0 when every block succeeded, 1 when
one failed (its first line and output are printed), 77 (skipped) when no network namespace can
be made here.

Usage: readme_test.py --readme README.md --bin build/bin --source . [--timeout S] [--list]
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

MARKER = "<!-- doctest -->"


def blocks(readme_text):
    """Returns: (line number, code) of every ```sh block right after a doctest marker."""
    lines = readme_text.splitlines()
    out = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == MARKER and i + 1 < len(lines) and re.match(r"^```(sh|bash)\s*$", lines[i + 1]):
            start = i + 2
            end = start
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            out.append((start + 1, "\n".join(lines[start:end]) + "\n"))
            i = end
        i += 1
    return out


def namespace_prefix():
    """Returns: the command prefix that runs a command in a private network namespace, or None."""
    for prefix in (["unshare", "--net"], ["unshare", "--map-root-user", "--net"]):
        try:
            if subprocess.run(prefix + ["true"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=10).returncode == 0:
                return prefix
        except (OSError, subprocess.TimeoutExpired):
            pass
    return None


def stop_group(pgid):
    """Stops what a block left running (its background daemons), politely first."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def run_block(line, code, args, prefix):
    work = tempfile.mkdtemp(prefix="taskfarm-readme-")
    try:
        os.symlink(os.path.join(os.path.abspath(args.source), "examples"), os.path.join(work, "examples"))
        script = os.path.join(work, "block.sh")
        with open(script, "w") as f:
            f.write("set -euo pipefail\nip link set lo up 2>/dev/null || true\n" + code)
        env = dict(os.environ, PATH=os.path.abspath(args.bin) + os.pathsep + os.environ["PATH"])
        # Output to a file, not a pipe: the block's daemons keep a pipe open after it ends.
        log_path = os.path.join(work, "output.log")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(prefix + ["bash", script], cwd=work, env=env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            status = proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            status = "timeout after %d s" % args.timeout
        stop_group(proc.pid)
        proc.wait()
        with open(log_path, "rb") as log:
            text = log.read().decode(errors="replace")
        first = code.strip().splitlines()[0]
        if status != 0:
            print("README.md:%d: block failed (%s): %s\n%s" % (line, status, first, text))
            return False
        print("README.md:%d: ok: %s" % (line, first))
        return True
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", required=True)
    parser.add_argument("--bin", required=True, help="folder with the taskfarm programs")
    parser.add_argument("--source", required=True, help="the source tree (for examples/)")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per block")
    parser.add_argument("--list", action="store_true", help="print the blocks and exit")
    args = parser.parse_args()
    with open(args.readme) as f:
        found = blocks(f.read())
    if args.list:
        for line, code in found:
            print("--- README.md:%d\n%s" % (line, code))
        return 0
    if not found:
        print("no %s blocks in %s" % (MARKER, args.readme))
        return 1
    prefix = namespace_prefix()
    if prefix is None:
        print("skipped: cannot make a private network namespace here (unshare), and the README's "
              "commands use the default ports of this machine")
        return 77
    ok = all([run_block(line, code, args, prefix) for line, code in found])
    print("%d README blocks run" % len(found))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
