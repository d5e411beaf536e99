"""The sandbox's walls: an unprivileged user, resource limits, a private /tmp, and a clean-up.

Everything here runs in the grader (as root) and acts on one sandbox user id:

- `command(...)`: the command line that starts a process as that user, with
  rlimits (`prlimit`), no new privileges and no groups (`setpriv`), and,
  where the kernel lets us (`unshare --mount`), its own empty /tmp, /var/tmp
  and /dev/shm, and the kit's secret folders hidden under empty mounts.
- `Watchdog`: polls the user's processes (resident memory, count) and the
  bytes under its folders, and kills them all the moment one limit is passed,
  saying which.
- `kill_all(uid)`: SIGKILL every process of the user, again until none is
  left (a process that forked, or called `setsid`, is still that user's).
- `stray_files(uid)`: files the user left in world-writable places.

Why a user id and not only a process group: a process group can be left
(`setsid`), a user id cannot; the kernel then refuses that user every file of
the grader (mode 0700), every signal to the grader, and ptrace.
"""

import dataclasses
import os
import shlex
import shutil
import subprocess
import threading
import time
from pathlib import Path

WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one graded step's sandbox may use. Each is named in the message when passed.

    Args:
        memory_mb: resident memory of all its processes together (polled), MB.
        address_space_mb: virtual memory of any one process (`RLIMIT_AS`), MB; a backstop
            between two polls. TensorFlow alone maps ~2 GB.
        processes: processes alive at once.
        threads: threads of the user in all (`RLIMIT_NPROC`), which stops a fork bomb at once.
        file_mb: size of any one file written (`RLIMIT_FSIZE`), MB.
        disk_mb: bytes written in all, in its folder, its /tmp and its log, MB.
        files: files it may create.
    """

    memory_mb: int = 3000
    address_space_mb: int = 12000
    processes: int = 32
    threads: int = 1024
    file_mb: int = 16
    disk_mb: int = 256
    files: int = 20000


def isolation_available():
    """Whether this process may make private mounts (root with CAP_SYS_ADMIN, e.g. not every container)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    return probe.returncode == 0


def command(argv, uid, limits, *, private_mounts, hide=(), keep=(), stash=None):
    """`argv` run as `uid` under `limits`; with `private_mounts`, in its own mount namespace.

    There, `hide` folders are covered by empty mounts first; then /tmp,
    /var/tmp and /dev/shm become private tmpfs, and the `keep` folders that
    lived under one of them (the Python environment, when a checkout sits in
    /tmp) are bound back in place, by way of a bind mount under `stash`.
    """
    kb = 1024 * 1024
    jailed = [
        "prlimit", f"--as={limits.address_space_mb * kb}", f"--nproc={limits.threads}",
        f"--fsize={limits.file_mb * kb}", "--core=0", "--",
        "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs",
        "--inh-caps=-all", "--", *argv,
    ]
    if not private_mounts:
        return jailed
    tops = [d for d in WORLD_WRITABLE if os.path.isdir(d)]
    kept = sorted({str(Path(k).resolve()) for k in keep
                   if any(Path(k).resolve().is_relative_to(t) for t in tops) and Path(k).is_dir()})
    q = shlex.quote
    mounts = [f"mount -t tmpfs -o size=4k,mode=000 tmpfs {q(str(h))}" for h in hide if Path(h).is_dir()]
    # --rbind keeps the `hide` mounts that lie inside a kept folder.
    mounts += [f"mkdir -p {q(f'{stash}/{i}')} && mount --rbind {q(k)} {q(f'{stash}/{i}')}" for i, k in enumerate(kept)]
    mounts += [f"mount -t tmpfs -o size={limits.disk_mb}m,mode=1777 tmpfs {d}" for d in tops]
    mounts += [f"mkdir -p {q(k)} && mount --rbind {q(f'{stash}/{i}')} {q(k)}" for i, k in enumerate(kept)]
    script = " && ".join(mounts + ['exec "$@"'])
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *jailed]


def processes_of(uid):
    """{pid: (resident KB, threads)} of the live (not zombie) processes of `uid`."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(entry.path, "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("Uid", "-1").split()[0]) != uid or fields.get("State", "").strip().startswith(("Z", "X")):
            continue
        rss = int(fields.get("VmRSS", "0 kB").split()[0])
        found[int(entry.name)] = (rss, int(fields.get("Threads", "1")))
    return found


def kill_all(uid, patience=10.0):
    """SIGKILL every process of `uid` until none is left. Returns how many rounds it took."""
    deadline = time.monotonic() + patience
    rounds = 0
    while processes_of(uid):
        rounds += 1
        # kill(-1) as the user reaches every process of the user, at once: no fork race.
        subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "kill", "-KILL", "-1"],
                       capture_output=True)
        for pid in processes_of(uid):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes of sandbox user {uid} survive SIGKILL: {sorted(processes_of(uid))}")
        time.sleep(0.05)
    return rounds


def stray_files(uid):
    """Paths owned by `uid` in the world-writable folders (outside its own folder)."""
    found = []
    for top in WORLD_WRITABLE:
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                try:
                    if os.lstat(path).st_uid == uid:
                        found.append(path)
                except OSError:
                    pass
    return found


def remove(paths):
    for path in sorted(map(str, paths), key=len, reverse=True):
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
        except OSError:
            pass


def usage(folders):
    """(bytes, files) under `folders` (symlinks not followed)."""
    total = files = 0
    for folder in folders:
        for dirpath, _, filenames in os.walk(folder):
            for name in filenames:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
                    files += 1
                except OSError:
                    pass
    return total, files


class Watchdog(threading.Thread):
    """Kills every process of `uid` as soon as it passes a limit; `broken` then names the limit."""

    def __init__(self, uid, limits, folder, log, period=0.2):
        super().__init__(daemon=True)
        self.uid, self.limits, self.folder, self.log, self.period = uid, limits, folder, Path(log), period
        self.broken = None
        self.peak_mb = 0.0
        self._stop = threading.Event()

    def check(self):
        """The limit passed right now, as a message, or None."""
        found = processes_of(self.uid)
        rss_mb = sum(rss for rss, _ in found.values()) / 1024
        self.peak_mb = max(self.peak_mb, rss_mb)
        if rss_mb > self.limits.memory_mb:
            return f"memory: {rss_mb:.0f} MB in use, over the limit of {self.limits.memory_mb} MB"
        if len(found) > self.limits.processes:
            return f"processes: {len(found)} at once, over the limit of {self.limits.processes}"
        printed = self.log.stat().st_size if self.log.exists() else 0
        if printed >= self.limits.file_mb * 2**20:
            return f"output: it printed {printed / 2**20:.0f} MB, the limit of one file"
        written, files = usage([self.folder])
        written += printed
        if written > self.limits.disk_mb * 2**20:
            return f"disk: {written / 2**20:.0f} MB written, over the limit of {self.limits.disk_mb} MB"
        if files > self.limits.files:
            return f"files: {files} files written, over the limit of {self.limits.files}"
        return None

    def run(self):
        while not self._stop.wait(self.period):
            broken = self.check()
            if broken and self.broken is None:
                self.broken = broken
                kill_all(self.uid)

    def stop(self):
        self._stop.set()
