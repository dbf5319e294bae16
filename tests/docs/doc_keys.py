# SPDX-License-Identifier: Apache-2.0
"""Every configuration key the code knows (oncebridge --list-keys, which
walks the tables in bridge/config/settings.c and the adapters) is documented in
oncebridge.conf(5) and in the README's configuration reference (MQTT keys
in doc/mqtt.md), and neither documents a key the code does not know.
Every option "oncebridge --help" shows is in oncebridge(8)."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
import oncetest as ot  # noqa: E402

SRCDIR = os.environ.get("ONCEBRIDGE_SRCDIR",
                        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BIN = os.environ.get("ONCEBRIDGE_BIN", os.path.join(SRCDIR, "oncebridge"))

MAN = "doc/oncebridge.conf.5"
MAN8 = "doc/oncebridge.8"
README = "README.md"
MQTT = "doc/mqtt.md"

# Where each section of keys is documented: (section, file, heading,
# how a key is written there). The heading's region runs to the next
# heading of the same or a higher level.
PLACES = [
    ("main", MAN, "MAIN FILE", "{}"),
    ("broker", MAN, "BROKER FILES", "broker.{}"),
    ("broker:amqp", MAN, "AMQP broker keys", "broker.{}"),
    ("broker:mqtt", MAN, "MQTT broker keys", "broker.{}"),
    ("route", MAN, "Keys of every route", "{}"),
    ("route:amqp", MAN, "AMQP route keys", "{}"),
    ("route:mqtt", MAN, "MQTT route keys", "{}"),
    ("outbox", MAN, "OUTBOX", "outbox.{}"),
    ("main", README, "Main file", "{}"),
    ("broker", README, "Broker files", "broker.{}"),
    ("broker:amqp", README, "Broker files", "broker.{}"),
    ("route", README, "Broker files", "{}"),
    ("route:amqp", README, "Broker files", "{}"),
    ("outbox", README, "Outbox: publishing from PostgreSQL", "outbox.{}"),
    ("broker:mqtt", MQTT, "Broker keys", "{}"),
    ("route:mqtt", MQTT, "Route keys", "{}"),
]


def read(rel):
    with open(os.path.join(SRCDIR, rel), encoding="utf-8") as f:
        return f.read().splitlines()


def md_region(lines, heading):
    """Lines under the markdown heading whose text is heading."""
    for i, line in enumerate(lines):
        m = re.match(r"(#+)\s+(.*?)\s*$", line)
        if m and (m.group(2) == heading or re.sub(r"\s*\(.*\)$", "", m.group(2)) == heading):
            level = len(m.group(1))
            out = []
            for nxt in lines[i + 1:]:
                n = re.match(r"(#+)\s", nxt)
                if n and len(n.group(1)) <= level:
                    break
                out.append(nxt)
            return out
    return None


def md_terms(region):
    """Keys a markdown region documents: code spans in the first cell of
    its table rows."""
    terms = set()
    for line in region:
        if line.startswith("|") and not re.match(r"\|\s*-", line):
            first = line.split("|")[1]
            terms.update(re.findall(r"`([^`]+)`", first))
    return terms


def roff_region(lines, heading):
    """Lines under .SH/.SS heading, to the next heading of its level or higher."""
    for i, line in enumerate(lines):
        m = re.match(r"\.(SH|SS)\s+\"?(.*?)\"?\s*$", line)
        if m and m.group(2) == heading:
            out = []
            for nxt in lines[i + 1:]:
                if nxt.startswith(".SH") or (m.group(1) == "SS" and nxt.startswith(".SS")):
                    break
                out.append(nxt)
            return out
    return None


def roff_terms(region):
    """Keys a roff region documents: the first word of each .TP tag line."""
    terms = set()
    for i, line in enumerate(region[:-1]):
        if line.strip() == ".TP":
            tag = region[i + 1]
            tag = re.sub(r"^\.(B|BR|BI|I|IR|IB)\s+", "", tag)
            tag = re.sub(r"\\f[BIRP]", "", tag)
            word = tag.split()[0].strip('"').replace("\\-", "-") if tag.split() else ""
            terms.add(word)
    return terms


def main():
    t = ot.TAP()
    out = subprocess.run([BIN, "--list-keys"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        t.bail("%s --list-keys failed: %s" % (BIN, out.stderr.strip()))
    keys = {}
    for line in out.stdout.splitlines():
        section, key = line.split()
        keys.setdefault(section, []).append(key)
    t.ok(all(s in keys for s in ("main", "broker", "route", "outbox", "broker:amqp", "route:amqp",
                                 "broker:mqtt", "route:mqtt")),
         "--list-keys names every section", diag=" ".join(sorted(keys)))
    man_known = set()
    man_terms = {}
    for section, rel, heading, form in PLACES:
        lines = read(rel)
        if rel.endswith(".md"):
            region = md_region(lines, heading)
            terms = md_terms(region) if region is not None else set()
        else:
            region = roff_region(lines, heading)
            terms = roff_terms(region) if region is not None else set()
        if region is None:
            t.ok(False, "%s has a section \"%s\"" % (rel, heading))
            continue
        want = [form.format(k) for k in keys.get(section, [])]
        missing = [k for k in want if k not in terms]
        t.ok(not missing, "%s \"%s\" documents every %s key (%d)" % (rel, heading, section, len(want)),
             diag="missing: %s" % ", ".join(missing))
        if rel == MAN:
            man_known.update(want)
            man_terms[heading] = terms
    # the other way round: the man page's key sections list no key the
    # code does not know (a removed or misspelt one)
    for heading, terms in man_terms.items():
        extra = sorted(terms - man_known)
        t.ok(not extra, "%s \"%s\" lists no key the code does not know" % (MAN, heading),
             diag="unknown: %s" % ", ".join(extra))
    # options: every --long option of the help text is in oncebridge(8)
    helptext = subprocess.run([BIN, "--help"], capture_output=True, text=True, timeout=30).stdout
    page = "\n".join(read(MAN8)).replace("\\-", "-")
    options = sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", helptext)))
    missing = [o for o in options if o not in page]
    t.ok(options and not missing, "%s documents every option of --help (%d)" % (MAN8, len(options)),
         diag="missing: %s" % ", ".join(missing))
    return t.done()


if __name__ == "__main__":
    raise SystemExit(main())
