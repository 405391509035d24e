#!/usr/bin/python3
"""Scrapes a Prometheus endpoint and checks its text strictly (format 0.0.4).

  prom_check.py scrape URL OUT.json   GET URL, check the headers and the text,
                                      save {series: value} to OUT.json
  prom_check.py get FILE NAME [k=v..] print one series' value from a saved scrape
  prom_check.py status URL [METHOD]   print the HTTP status code of a request

What `scrape` refuses (exit 1, saying where): a status other than 200 or a
Content-Type other than text/plain; version=0.0.4; a comment other than
# HELP / # TYPE, either of them twice for a name or TYPE after its samples;
a sample with no TYPE, or whose family is not contiguous; a bad metric name,
label name, label escape or value; a series twice; a counter not named
*_total or negative; a histogram series whose buckets are not increasing in
le, not cumulative, not ending in le="+Inf", or without _sum and _count
(= the +Inf bucket); a metric not named portalbd_*; no trailing newline.
"""
import json
import math
import re
import sys
import urllib.error
import urllib.request

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


class Bad(Exception):
    pass


def parse_value(text, where):
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    if text == "NaN":
        return math.nan
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text):
        raise Bad(f"{where}: bad value {text!r}")
    return float(text)


def parse_labels(text, i, where):
    """Parses labels from text[i] == '{'; returns (labels, index after '}')."""
    labels = {}
    i += 1
    while True:
        if text[i] == "}":
            return labels, i + 1
        m = LABEL.match(text, i)
        if not m:
            raise Bad(f"{where}: bad label name at column {i}")
        name = m.group(0)
        if name.startswith("__"):
            raise Bad(f"{where}: reserved label name {name}")
        i = m.end()
        if text[i : i + 2] != '="':
            raise Bad(f"{where}: expected =\" after label {name}")
        i += 2
        value = []
        while True:
            if i >= len(text):
                raise Bad(f"{where}: unterminated label value")
            c = text[i]
            if c == "\\":
                nxt = text[i + 1 : i + 2]
                if nxt not in ("\\", '"', "n"):
                    raise Bad(f"{where}: bad escape \\{nxt} in a label value")
                value.append("\n" if nxt == "n" else nxt)
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == "\n":
                raise Bad(f"{where}: raw newline in a label value")
            else:
                value.append(c)
                i += 1
        if name in labels:
            raise Bad(f"{where}: label {name} twice")
        labels[name] = "".join(value)
        if text[i] == ",":
            i += 1
        elif text[i] != "}":
            raise Bad(f"{where}: expected , or }} after label {name}")


def series_key(name, labels):
    return name + "{" + ",".join(f'{k}="{labels[k]}"' for k in sorted(labels)) + "}"


def family_of(sample, types):
    if sample in types:
        return sample
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample[: -len(suffix)]
        if sample.endswith(suffix) and types.get(base) in ("histogram", "summary"):
            return base
    return None


def parse(text):
    if not text.endswith("\n"):
        raise Bad("the text does not end with a newline")
    types, helps, seen_samples, series = {}, set(), set(), {}
    current = None  # the family whose samples are being read
    histos = {}  # (family, labels without le) -> {"buckets": [(le, v)], "sum": v, "count": v}
    for n, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {n}"
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) < 3 or parts[0] != "#" or parts[1] not in ("HELP", "TYPE"):
                raise Bad(f"{where}: a comment that is not # HELP or # TYPE: {line!r}")
            kind, name = parts[1], parts[2]
            if not NAME.fullmatch(name):
                raise Bad(f"{where}: bad metric name {name!r}")
            if kind == "HELP":
                if name in helps:
                    raise Bad(f"{where}: HELP twice for {name}")
                helps.add(name)
                text_part = parts[3] if len(parts) > 3 else ""
                if re.search(r"\\[^\\n]", text_part.replace("\\\\", "")):
                    raise Bad(f"{where}: bad escape in HELP")
            else:
                t = parts[3] if len(parts) > 3 else ""
                if t not in TYPES:
                    raise Bad(f"{where}: unknown type {t!r}")
                if name in types:
                    raise Bad(f"{where}: TYPE twice for {name}")
                if name in seen_samples:
                    raise Bad(f"{where}: TYPE for {name} after its samples")
                types[name] = t
            continue
        if not line:
            raise Bad(f"{where}: empty line")
        m = NAME.match(line)
        if not m:
            raise Bad(f"{where}: bad metric name in {line!r}")
        name = m.group(0)
        i = m.end()
        labels = {}
        if i < len(line) and line[i] == "{":
            labels, i = parse_labels(line, i, where)
        rest = line[i:]
        if not rest.startswith(" "):
            raise Bad(f"{where}: expected a space before the value")
        fields = rest[1:].split(" ")
        if len(fields) not in (1, 2) or (len(fields) == 2 and not re.fullmatch(r"-?\d+", fields[1])):
            raise Bad(f"{where}: expected 'value [timestamp]', got {rest[1:]!r}")
        value = parse_value(fields[0], where)
        fam = family_of(name, types)
        if fam is None:
            raise Bad(f"{where}: sample {name} has no # TYPE")
        if not fam.startswith("portalbd_"):
            raise Bad(f"{where}: {fam} is not named portalbd_*")
        if fam != current:
            if fam in seen_samples:
                raise Bad(f"{where}: samples of {fam} are not together")
            seen_samples.add(fam)
            current = fam
        key = series_key(name, labels)
        if key in series:
            raise Bad(f"{where}: series {key} twice")
        series[key] = value
        t = types[fam]
        if t == "counter":
            if not fam.endswith("_total"):
                raise Bad(f"{where}: counter {fam} is not named *_total")
            if not value >= 0:
                raise Bad(f"{where}: counter {key} is {value}")
        if t == "histogram":
            base = {k: v for k, v in labels.items() if k != "le"}
            h = histos.setdefault((fam, series_key("", base)), {"buckets": [], "sum": None, "count": None})
            if name == fam + "_bucket":
                if "le" not in labels:
                    raise Bad(f"{where}: bucket without le")
                h["buckets"].append((parse_value(labels["le"], where), value))
            elif name == fam + "_sum":
                h["sum"] = value
            elif name == fam + "_count":
                h["count"] = value
            else:
                raise Bad(f"{where}: plain sample {name} in histogram {fam}")
    for (fam, labels), h in histos.items():
        where = f"histogram {fam}{labels}"
        b = h["buckets"]
        if not b or b[-1][0] != math.inf:
            raise Bad(f"{where}: buckets do not end in le=\"+Inf\"")
        for (le0, v0), (le1, v1) in zip(b, b[1:]):
            if not le1 > le0:
                raise Bad(f"{where}: le {le1} after {le0}")
            if v1 < v0:
                raise Bad(f"{where}: bucket le={le1} holds {v1} < {v0} of le={le0}: not cumulative")
        if h["sum"] is None or h["count"] is None:
            raise Bad(f"{where}: _sum or _count missing")
        if h["count"] != b[-1][1]:
            raise Bad(f"{where}: _count {h['count']} != +Inf bucket {b[-1][1]}")
    for fam in types:
        if fam not in helps:
            raise Bad(f"{fam} has no # HELP")
    return types, series


def scrape(url, out):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            status, ctype, body = r.status, r.headers.get("Content-Type", ""), r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        raise Bad(f"GET {url}: HTTP {e.code}")
    if status != 200:
        raise Bad(f"GET {url}: HTTP {status}")
    if not ctype.startswith("text/plain; version=0.0.4"):
        raise Bad(f"GET {url}: Content-Type {ctype!r}")
    types, series = parse(body)
    with open(out, "w") as f:
        json.dump({"types": types, "series": {k: (v if math.isfinite(v) else str(v)) for k, v in series.items()}}, f)
    print(f"{len(types)} families, {len(series)} series")


def get(path, name, pairs):
    with open(path) as f:
        series = json.load(f)["series"]
    labels = dict(p.split("=", 1) for p in pairs)
    key = series_key(name, labels)
    if key not in series:
        sys.exit(f"no series {key} in {path}")
    v = series[key]
    print(int(v) if isinstance(v, float) and v.is_integer() else v)


def status(url, method="GET"):
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            print(r.status)
    except urllib.error.HTTPError as e:
        print(e.code)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    try:
        if cmd == "scrape":
            scrape(*args)
        elif cmd == "get":
            get(args[0], args[1], args[2:])
        elif cmd == "status":
            status(*args)
        elif cmd == "parse":  # a file, for the self-check below
            with open(args[0]) as f:
                parse(f.read())
            print("ok")
        else:
            sys.exit(f"unknown command {cmd}")
    except Bad as e:
        sys.exit(f"bad exposition: {e}")


if __name__ == "__main__":
    main()
