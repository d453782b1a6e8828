#!/usr/bin/env python3
"""File churn for bench/churn.sh: `churn.py DIR SECONDS [THREADS]`.

THREADS workers (8 by default) change six files in DIR for SECONDS seconds, each step one of:
rewrite a file whole (10 B to 1.5 MB), read it whole, append a line, cut it to a random size,
replace it by renaming a freshly written temporary file over it, change 100 bytes in place
(with fsync three times in ten), read a page at random, or write a scratch file that was
deleted right after it was opened (as `tmpfile()` does). Files that vanish under a step
are skipped. Prints one line: `ops N errors E` (an error is any other failure; the first few
are printed to stderr).
"""

import os
import random
import sys
import threading
import time

SIZES = [10, 4096, 50_000, 200_000, 1_500_000]


def main():
    base, seconds = sys.argv[1], float(sys.argv[2])
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    names = [os.path.join(base, f"churn{i}") for i in range(6)]
    stop = time.time() + seconds
    lock = threading.Lock()
    counts = {"ops": 0, "errors": 0}

    def step(r, seed, path, op):
        if op == 0:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, os.urandom(r.choice(SIZES)))
            os.close(fd)
        elif op == 1:
            fd = os.open(path, os.O_RDONLY)
            while os.read(fd, 1 << 17):
                pass
            os.close(fd)
        elif op == 2:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            os.write(fd, b"line\n")
            os.close(fd)
        elif op == 3:
            os.truncate(path, r.randrange(0, 300_000))
        elif op == 4:
            tmp = f"{path}.tmp{seed}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, os.urandom(3000))
            os.close(fd)
            os.rename(tmp, path)
        elif op == 5:
            fd = os.open(path, os.O_RDWR)
            os.pwrite(fd, b"x" * 100, r.randrange(0, 100_000))
            if r.random() < 0.3:
                os.fsync(fd)
            os.close(fd)
        elif op == 6:
            fd = os.open(path, os.O_RDONLY)
            size = os.fstat(fd).st_size
            if size:
                os.pread(fd, 4096, r.randrange(0, size))
            os.close(fd)
        else:
            scratch = f"{path}.scratch{seed}"
            fd = os.open(scratch, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            os.unlink(scratch)
            os.write(fd, os.urandom(r.choice(SIZES)))
            os.close(fd)

    def worker(seed):
        r = random.Random(seed)
        ops = errors = 0
        while time.time() < stop:
            path = r.choice(names)
            op = r.randrange(8)
            try:
                step(r, seed, path, op)
            except FileNotFoundError:
                pass
            except OSError as e:
                errors += 1
                if errors <= 3:
                    print(f"op {op} on {path}: {e}", file=sys.stderr)
            ops += 1
        with lock:
            counts["ops"] += ops
            counts["errors"] += errors

    workers = [threading.Thread(target=worker, args=(s,)) for s in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(f"ops {counts['ops']} errors {counts['errors']}")


if __name__ == "__main__":
    main()
