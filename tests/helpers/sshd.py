"""A real OpenSSH server on 127.0.0.1 for the tests that reach "other machines" over SSH.

`Sshd.start(tmp, env=...)` generates a host key and a user key, writes an sshd_config that
listens on a free loopback port, accepts only that user key, and gives every session the
environment `env` (`SetEnv`: PATH to this checkout's virtualenv, the "remote" side's
DSPY_TOP_RUNTIME_DIR), then runs Debian's sshd in the foreground (`-D -e`) until `stop()`.
`ssh_command()` is the client side: the user's own `ssh`, pointed at that server by options
only (its own known_hosts, the user key, batch mode: never a prompt), the way a user's
~/.ssh/config would. Installed by .ci/run (openssh-server, openssh-client); tests skip with
the reason when either is missing.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
SSH = shutil.which("ssh")
SSH_KEYGEN = shutil.which("ssh-keygen")
MISSING = (
    None if SSHD and SSH and SSH_KEYGEN else "OpenSSH (sshd, ssh, ssh-keygen) is not installed (.ci/run installs it)"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def keygen(path: Path) -> str:
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path.with_suffix(".pub").read_text().strip()


@dataclass
class Sshd:
    """One sshd on a loopback port and the files a client needs to reach it."""

    directory: Path
    port: int
    user: str
    user_key: Path
    known_hosts: Path
    process: subprocess.Popen | None = None
    log: Path = field(default=Path("/dev/null"))

    @classmethod
    def start(cls, directory: Path, env: dict[str, str] | None = None) -> Sshd:
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        host_key = directory / "host_ed25519"
        host_public = keygen(host_key)
        user_key = directory / "user_ed25519"
        (directory / "authorized_keys").write_text(keygen(user_key) + "\n")
        os.chmod(directory / "authorized_keys", 0o600)
        port = free_port()
        known_hosts = directory / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} {' '.join(host_public.split()[:2])}\n")
        settings = [
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {host_key}",
            f"AuthorizedKeysFile {directory / 'authorized_keys'}",
            f"PidFile {directory / 'sshd.pid'}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin prohibit-password",
            f"AllowUsers {getpass.getuser()}",
            "PrintMotd no",
            "PrintLastLog no",
            "UseDNS no",
            "LogLevel VERBOSE",
            "MaxStartups 100",
        ]
        if env:
            settings.append("SetEnv " + " ".join(f"{name}={value}" for name, value in env.items()))
        config = directory / "sshd_config"
        config.write_text("\n".join(settings) + "\n")
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
        server = cls(directory, port, getpass.getuser(), user_key, known_hosts, log=directory / "sshd.log")
        server.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(server.log, "wb"),
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"sshd ended at start: {server.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return server
            except OSError:
                time.sleep(0.05)
        server.stop()
        raise RuntimeError("sshd did not listen within 20 s")

    @property
    def host(self) -> str:
        return f"{self.user}@127.0.0.1"

    def ssh_command(self, key: Path | None = None) -> list[str]:
        """`ssh` with what a ~/.ssh/config entry for this server would say; `key` to try another one."""
        return [
            SSH,
            "-p",
            str(self.port),
            "-i",
            str(key or self.user_key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-F",
            "/dev/null",
        ]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
