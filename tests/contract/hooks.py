"""Rules of georouter's console API that a JSON schema cannot state, for schemathesis
(tests/tests/api_contract.rs). Bodies generated as valid are made to follow them before
they are sent (schemathesis validates a changed body again, so a body that still breaks
the schema stays a negative case); nothing here loosens a check.

The rules: a task's regions differ, its DR primary is one of them, a DR task is one-way
without rename, tags or SQL, a rename holds {topic} and is one-way, a topic glob and a
group glob compile, a SQL filter parses, a start is earliest, latest or a time; a
principal's actions mean something on its resource's kind; a PUT's body names what its
path names; a change of an existing record names its version (If-Match)."""

import os
import re
from urllib.parse import quote, unquote

import requests
import schemathesis

SQL = ["a = '1'", "region IN ('eu', 'us') AND amount > 10", "TAGS IS NOT NULL", "x BETWEEN 1 AND 5"]
ACTIONS = {
    "topic": ["produce", "consume", "create", "delete", "describe"],
    "group": ["consume", "commit", "read", "change"],
    "task": ["read", "change", "failover"],
    "cluster": ["admin"],
}


def _glob_ok(text):
    if not isinstance(text, str) or not text.strip():
        return False
    # The server uses Rust's glob crate: brackets must close and not be empty.
    i = 0
    while i < len(text):
        c = text[i]
        if c == "[":
            close = text.find("]", i + 2)
            if close < 0:
                return False
            i = close
        elif c == "]":
            pass
        i += 1
    return "**" not in text.replace("/**", "")


def _task(body, path_name=None):
    if path_name is not None:
        body["name"] = path_name
    sources = list(dict.fromkeys(body.get("sources") or []))
    targets = list(dict.fromkeys(body.get("targets") or []))
    regions = sorted(set(sources + targets))
    if sources == targets and len(sources) == 1:
        # A task needs a target other than its source.
        others = [r for r in os.environ["GEOROUTER_CONTRACT_REGIONS"].split(",") if r != sources[0]]
        targets = others[:1]
    regions = sorted(set(sources + targets))
    body["sources"], body["targets"] = sources, targets
    if not _glob_ok(body.get("topics", "")):
        body["topics"] = "orders*"
    if body.get("groups") is not None and not _glob_ok(body["groups"]):
        body["groups"] = "billing*"
    if body.get("sql") is not None:
        body["sql"] = SQL[len(body["sql"]) % len(SQL)]
    if isinstance(body.get("start"), str):
        body["start"] = "earliest" if len(body["start"]) % 2 else "latest"
    if body.get("dr") is not None:
        dr = body["dr"]
        if dr.get("primary") not in regions:
            dr["primary"] = regions[0]
        if dr.get("promoting") is not None and dr["promoting"] not in regions:
            del dr["promoting"]
        body["direction"] = "one-way"
        for field in ("rename", "tags", "sql"):
            body.pop(field, None)
    if body.get("rename") is not None:
        if body.get("direction") == "two-way":
            del body["rename"]
        else:
            body["rename"] = "mirror.{topic}"
    return body


def _principal(body, path_name=None):
    if path_name is not None:
        body["name"] = path_name
    for grant in body.get("grants") or []:
        if not isinstance(grant, dict) or not isinstance(grant.get("actions"), list):
            continue
        kind = grant.get("resource", "").split(":", 1)[0]
        allowed = ACTIONS.get(kind, [])
        actions = [a for a in grant.get("actions") or [] if a in allowed]
        grant["actions"] = actions or allowed[:1]
        if ":" in grant.get("resource", "") and not _glob_ok(grant["resource"].split(":", 1)[1].strip()):
            grant["resource"] = kind + ":*"
    return body


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    path = case.operation.path
    method = case.method.lower()
    name = (case.path_parameters or {}).get("name")
    body = case.body if isinstance(case.body, dict) else None
    meta = getattr(case, "_meta", None)
    # Only a body generated to break the schema is left alone (a case may break it in a
    # header or the query only).
    negative = meta is not None and any(
        str(location).lower().endswith("body") and str(info.mode) == "negative"
        for location, info in (meta.components or {}).items()
    )
    scenario = getattr(getattr(getattr(meta, "phase", None), "data", None), "scenario", None)
    if scenario is not None and "missing" in str(scenario).lower():
        # A case about a missing parameter (the credentials, If-Match) stays as it is.
        return
    if name is not None:
        name = unquote(name)
    if body is not None and not negative:
        if path == "/api/v1/tasks" and method == "post":
            _task(body)
        elif path == "/api/v1/principals" and method == "post":
            _principal(body)
        elif method == "put" and name is not None:
            if path == "/api/v1/tasks/{name}":
                _task(body, name)
            elif path == "/api/v1/groups/{name}":
                body["name"] = name
            elif path == "/api/v1/principals/{name}":
                _principal(body, name)
    if method in ("put", "delete", "post") and name is not None and re.match(r"^/api/v1/(tasks|groups|principals)/\{name\}(/pause|/resume)?$", path):
        # The version of an existing record, read as a client would; a generated If-Match
        # that is not a version at all is left for the server to refuse.
        given = (case.headers or {}).get("If-Match")
        if given is not None and not re.match(r'^(W/)?"?[0-9]{1,19}"?$', given):
            return
        collection = path.split("/")[3]
        read = requests.get(
            f"{os.environ['GEOROUTER_CONTRACT_BASE']}/api/v1/{collection}/{quote(name, safe='')}",
            headers={"Authorization": f"Bearer {os.environ['GEOROUTER_CONTRACT_TOKEN']}"},
            timeout=10,
        )
        if read.status_code == 200:
            case.headers = dict(case.headers or {})
            case.headers["If-Match"] = read.headers.get("ETag", "")
