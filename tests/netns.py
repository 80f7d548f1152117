"""Separate hosts on one machine: a network namespace per host, each joined by a veth link to a bridge in a
"switch" namespace, on an address range this module owns (10.213.0.0/24). The test's own process takes
10.213.0.1 on one more link (it drives the clients and runs the mock upstream there). No namespace gets a
default route: nothing inside can reach anything but the others.

A partition is either a link going down at the switch (:meth:`Net.cut`: the host is alone) or ``iptables``
DROP rules inside a host's namespace (:meth:`Net.block`: it loses some peers, keeps the rest).
Everything is removed by :meth:`Net.close` (processes stopped by PID first), and leftovers of a run that
died are removed before a new one starts; one run at a time holds a lock (the address range is shared).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess

PREFIX = "srnet"  # every namespace and root link this module makes starts with it
SUBNET = "10.213.0"
LOCK = "/tmp/subrelay-netns.lock"
ROOT_ADDRESS = f"{SUBNET}.1"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def unavailable() -> str | None:
    """Why namespaces cannot be made here (None when they can): a loud skip reason for the tests."""
    if shutil.which("ip") is None:
        return "iproute2 is not installed (apt-get install iproute2; .ci/run does it)"
    if shutil.which("iptables") is None:
        return "iptables is not installed (apt-get install iptables; .ci/run does it)"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN)"
    probe = f"{PREFIX}-probe{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()[:200]}"
    try:
        rule = subprocess.run(["ip", "netns", "exec", probe, "iptables", "-A", "OUTPUT", "-d", ROOT_ADDRESS, "-j",
                               "DROP"], capture_output=True, text=True, timeout=20)
        if rule.returncode != 0:
            return f"iptables does not work inside a namespace: {rule.stderr.strip()[:200]}"
    finally:
        _ip("netns", "del", probe, check=False)
    return None


def _remove_leftovers() -> None:
    for line in _ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(PREFIX + "-"):
            for pid in _ip("netns", "pids", name, check=False).stdout.split():
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            _ip("netns", "del", name, check=False)
    _ip("link", "del", f"{PREFIX}-root", check=False)


class Net:
    """The switch and the hosts added with :meth:`host` (name -> address)."""

    def __init__(self) -> None:
        self._lock = open(LOCK, "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)  # another run on this machine waits for this one
        _remove_leftovers()
        self.switch = f"{PREFIX}-sw"
        self.hosts: dict[str, str] = {}  # name -> address
        self._ports: dict[str, str] = {}  # name -> its link's switch end
        _ip("netns", "add", self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        _ip("link", "add", f"{PREFIX}-root", "type", "veth", "peer", "name", f"{PREFIX}-rp")
        _ip("link", "set", f"{PREFIX}-rp", "netns", self.switch)
        _ip("-n", self.switch, "link", "set", f"{PREFIX}-rp", "master", "br0", "up")
        _ip("addr", "add", f"{ROOT_ADDRESS}/24", "dev", f"{PREFIX}-root")
        _ip("link", "set", f"{PREFIX}-root", "up")

    def ns(self, name: str) -> str:
        return f"{PREFIX}-{name}"

    def host(self, name: str, number: int) -> str:
        """A namespace ``name`` with address 10.213.0.``number`` on its own link to the switch."""
        address, ns, port = f"{SUBNET}.{number}", self.ns(name), f"{PREFIX}p{number}"
        _ip("netns", "add", ns)
        _ip("link", "add", f"{PREFIX}h{number}", "type", "veth", "peer", "name", port)
        _ip("link", "set", f"{PREFIX}h{number}", "netns", ns)
        _ip("-n", ns, "link", "set", f"{PREFIX}h{number}", "name", "eth0")
        _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "set", port, "netns", self.switch)
        _ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        self.hosts[name], self._ports[name] = address, port
        return address

    def cut(self, name: str) -> None:
        """``name``'s link goes down at the switch: it reaches no one and no one reaches it."""
        _ip("-n", self.switch, "link", "set", self._ports[name], "down")

    def heal(self, name: str) -> None:
        _ip("-n", self.switch, "link", "set", self._ports[name], "up")
        self.iptables(name, "-F", "INPUT")
        self.iptables(name, "-F", "OUTPUT")

    def block(self, name: str, peers: list[str]) -> None:
        """Inside ``name``: DROP every packet to or from ``peers`` (hosts): silence, not a refusal."""
        for peer in peers:
            self.iptables(name, "-A", "OUTPUT", "-d", self.hosts[peer], "-j", "DROP")
            self.iptables(name, "-A", "INPUT", "-s", self.hosts[peer], "-j", "DROP")

    def iptables(self, name: str, *rule: str) -> None:
        subprocess.run(["ip", "netns", "exec", self.ns(name), "iptables", *rule], check=True, capture_output=True,
                       timeout=20)

    def run(self, name: str, *command: str) -> list[str]:
        """``command`` as run inside ``name`` (for Popen)."""
        return ["ip", "netns", "exec", self.ns(name), *command]

    def close(self) -> None:
        try:
            _remove_leftovers()
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
