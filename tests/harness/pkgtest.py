# SPDX-License-Identifier: Apache-2.0
"""Helpers for the test of the installed Debian package
(tests/integration/package_install.py): the README's quick-start blocks,
the installed systemd units' commands as systemd would run them, the
package's dependency closure, and a private network and mount namespace
in which throwaway servers listen where Debian's own would (PostgreSQL on
5432 with its socket in /run/postgresql, RabbitMQ on 5672 as the node
rabbit@HOST with the cookie in /var/lib/rabbitmq), so that the README's
commands reach them unchanged and the machine's own servers, if any, are
neither used nor disturbed."""
import os
import re
import shlex
import signal
import socket
import subprocess
import sys

NS_ENV = "ONCETEST_PKG_NAMESPACE"
MARK = "<!-- quickstart -->"
UNIT_DIR = "/lib/systemd/system"


# --- namespaces

def enter_namespaces():
    """Re-run this test in a new network and mount namespace (root only);
    returns in the child, with loopback up. Exits with the child's status
    in the parent."""
    if os.environ.get(NS_ENV):
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        return
    env = dict(os.environ, **{NS_ENV: "1"})
    argv = ["unshare", "--net", "--mount", "--propagation", "private", "--",
            sys.executable] + sys.argv
    sys.stdout.flush()
    raise SystemExit(subprocess.run(argv, env=env).returncode)


def bind_mount(src, dst):
    """Mount src over dst in this (private) mount namespace."""
    subprocess.run(["mount", "--bind", src, dst], check=True)


def namespace_leftovers():
    """Processes in this network namespace other than this one: what the
    servers left running (Erlang's epmd)."""
    mine = os.readlink("/proc/self/ns/net")
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == os.getpid():
            continue
        try:
            if os.readlink("/proc/%s/ns/net" % p) == mine:
                pids.append(int(p))
        except OSError:
            pass
    return pids


def kill_leftovers():
    for pid in namespace_leftovers():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def rabbit_node_name():
    """The node rabbitmqctl talks to by default: rabbit@ the short host
    name (which must resolve, as for Debian's own node)."""
    host = socket.gethostname().split(".")[0]
    try:
        socket.gethostbyname(host)
    except OSError:
        return None
    return "rabbit@" + host


# --- the README

def quickstart_blocks(readme_path):
    """The indented command blocks that follow a line <!-- quickstart -->
    in the README: a list of lists of command lines."""
    with open(readme_path) as f:
        lines = f.read().splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != MARK:
            i += 1
            continue
        i += 1
        while i < len(lines) and not lines[i].strip():
            i += 1
        block = []
        while i < len(lines) and lines[i].startswith("    "):
            block.append(lines[i][4:])
            i += 1
        blocks.append(block)
    return blocks


SYSTEMCTL_START = re.compile(r"^systemctl start (\S+)$")


def systemctl_start_unit(line):
    """The unit of a line "systemctl start UNIT", else None."""
    m = SYSTEMCTL_START.match(line.strip())
    return m.group(1) if m else None


# --- systemd units, run as systemd would without systemd

class Unit:
    """The service lines of an installed unit file, for instance name
    (None for a plain unit): User, Group, ExecStartPre, ExecStart, with
    the specifiers %i and %I expanded."""

    def __init__(self, name):
        base, instance = name, None
        if not base.endswith(".service"):
            base += ".service"
        if "@" in base:
            prefix, rest = base.split("@", 1)
            instance = rest[:-len(".service")]
            base = prefix + "@.service"
        self.path = os.path.join(UNIT_DIR, base)
        self.instance = instance
        self.keys = {}
        with open(self.path) as f:
            for line in f:
                line = line.strip()
                if not line or line[0] in "#;[" or "=" not in line:
                    continue
                k, v = line.split("=", 1)
                if instance is not None:
                    v = v.replace("%i", instance).replace("%I", instance)
                self.keys.setdefault(k, []).append(v)

    def get(self, key, default=None):
        v = self.keys.get(key)
        return v[-1] if v else default

    def commands(self, key):
        """argv lists of key (ExecStartPre, ExecStart), prefixes - @ + !
        removed."""
        out = []
        for v in self.keys.get(key, []):
            out.append(shlex.split(v.lstrip("-@+!:")))
        return out

    def as_user(self, argv):
        user = self.get("User", "root")
        group = self.get("Group", user)
        return ["setpriv", "--reuid=" + user, "--regid=" + group, "--init-groups", "--"] + argv

    @staticmethod
    def environment():
        """What systemd gives a service: no inherited environment."""
        return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


# --- Depends

def _query(fmt, *pkgs):
    out = subprocess.run(["dpkg-query", "-W", "-f=" + fmt] + list(pkgs), capture_output=True, text=True)
    return out.stdout


def depends_closure(pkg, leave_out=()):
    """Installed packages a machine must have with only pkg's Depends (and
    Pre-Depends) installed, transitively, plus the Essential ones. A
    package in leave_out is treated as not depended on."""
    installed, provides, deps = set(), {}, {}
    essential = set()
    fmt = "${Package}\t${Status}\t${Essential}\t${Provides}\t${Depends}, ${Pre-Depends}\n"
    for line in _query(fmt).splitlines():
        name, status, ess, prov, dep = (line.split("\t") + [""] * 4)[:5]
        if not status.endswith(" installed"):
            continue
        installed.add(name)
        deps[name] = dep
        if ess == "yes":
            essential.add(name)
        for p in prov.split(","):
            p = p.strip().split(" ")[0]
            if p:
                provides.setdefault(p, []).append(name)
    seen = set()
    todo = [pkg] + sorted(essential)
    while todo:
        p = todo.pop()
        if p in seen or p in leave_out:
            continue
        seen.add(p)
        for alt in deps.get(p, "").split(","):
            for choice in alt.split("|"):
                name = choice.strip().split(" ")[0].split(":")[0]
                if not name:
                    continue
                cands = [name] if name in installed else provides.get(name, [])
                cands = [c for c in cands if c not in leave_out]
                if cands:
                    todo.append(cands[0])
                    break
    return seen


def owner(path):
    """The installed package that ships path (or its /usr twin)."""
    for p in (path, "/usr" + path if not path.startswith("/usr/") else path[4:]):
        out = subprocess.run(["dpkg-query", "-S", p], capture_output=True, text=True)
        if out.returncode == 0:
            return out.stdout.split(":")[0].split(",")[0].strip()
    return None


def path_of(packages, bindir):
    """Make bindir a directory of links to every program in /bin, /sbin,
    /usr/bin and /usr/sbin that packages ship: a PATH with nothing else."""
    os.makedirs(bindir, exist_ok=True)
    for line in _query("${db-fsys:Files}\n", *sorted(packages)).splitlines():
        f = line.strip()
        if os.path.dirname(f) in ("/bin", "/sbin", "/usr/bin", "/usr/sbin") and \
                os.path.isfile(f) and os.access(f, os.X_OK):
            link = os.path.join(bindir, os.path.basename(f))
            if not os.path.lexists(link):
                os.symlink(f, link)
    return bindir
