#!/usr/bin/env python3
"""Measurement helper for the Kyverno peer (benches/peer/README.md); not part of the product.

Runs against the peer control plane that `hack/kyverno.sh up` starts, as its admin, with the
Python standard library only (no kubectl processes, which would cost the shared CPU more than the
requests themselves). Watches namespaces labelled tenant=true, their `default` ServiceAccounts and
the nine objects benches/peer/kyverno-policies.yaml generates; a namespace is complete when all
nine exist, its six Pod Security labels say restricted/latest and its default ServiceAccount has
automountServiceAccountToken: false.

  measure.py verify                    one namespace end to end, plus repairs and rewrites
  measure.py bulk [--namespaces 1000] [--concurrency 16] [--timeout 3600] [--stall 120]
                                       create labelled namespaces N at a time, until all complete
                                       (or nothing moved and no UpdateRequest was left for --stall s)
  measure.py reapply [--timeout 3600] [--stall 120]
                                       delete and re-create the generate policy: every labelled
                                       namespace that exists is onboarded (generateExisting)
  measure.py status                    how many labelled namespaces are complete, what is missing
  measure.py create [--namespaces 1000] [--concurrency 16]
                                       only create labelled namespaces (for reapply: apply the
                                       generate policy to namespaces that already exist)
  measure.py onboard [--samples 10]    namespaces created one at a time, creation to complete
  measure.py repair [--samples 10]     delete a namespace's default-deny NetworkPolicy, until back
  measure.py idle [--seconds 60]       Kyverno's requests in the audit log, by user, verb, resource
  measure.py rss                       VmRSS / VmHWM of both Kyverno processes

Every scenario prints what it measured and appends a JSON line to <state>/kyverno/measure.jsonl.
"""

import argparse
import collections
import concurrent.futures
import http.client
import json
import os
import pathlib
import ssl
import statistics
import subprocess
import sys
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
STATE = pathlib.Path(os.environ.get("ZT_PEER_DIR", REPO / ".controlplane-peer"))
KDIR = STATE / "kyverno"
PREFIX = "zt-restricted-tenants-"
EXPECTED = {
    ("NetworkPolicy", PREFIX + "default-deny"),
    ("NetworkPolicy", PREFIX + "allow-dns"),
    ("NetworkPolicy", PREFIX + "allow-same-namespace"),
    ("Role", PREFIX + "viewer"),
    ("Role", PREFIX + "editor"),
    ("RoleBinding", PREFIX + "viewer"),
    ("RoleBinding", PREFIX + "editor"),
    ("ResourceQuota", PREFIX + "quota"),
    ("LimitRange", PREFIX + "limits"),
}
PSA = {
    f"pod-security.kubernetes.io/{mode}{suffix}": value
    for mode in ("enforce", "audit", "warn")
    for suffix, value in (("", "restricted"), ("-version", "latest"))
}
GENERATED = {  # kind -> (group-version path, resource)
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    "ResourceQuota": ("/api/v1", "resourcequotas"),
    "LimitRange": ("/api/v1", "limitranges"),
}


def object_path(kind, ns, name):
    gv, resource = GENERATED[kind]
    return f"{gv}/namespaces/{ns}/{resource}/{name}"


KYVERNO_USERS = (
    "system:serviceaccount:kyverno:kyverno-admission-controller",
    "system:serviceaccount:kyverno:kyverno-background-controller",
)


class Api:
    """A minimal HTTPS client for the API server, one connection per thread."""

    def __init__(self):
        self.port = int((STATE / "apiserver.port").read_text())
        self.ctx = ssl.create_default_context(cafile=str(STATE / "pki/ca.crt"))
        self.ctx.load_cert_chain(str(STATE / "pki/admin.crt"), str(STATE / "pki/admin.key"))
        self.local = threading.local()

    def connect(self, timeout=60):
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=timeout)

    def call(self, method, path, body=None, content_type="application/json"):
        for attempt in range(5):
            conn = getattr(self.local, "conn", None) or self.connect()
            self.local.conn = conn
            try:
                headers = {"Accept": "application/json"}
                data = None
                if body is not None:
                    data = json.dumps(body).encode()
                    headers["Content-Type"] = content_type
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
                return resp.status, (json.loads(payload) if payload else None)
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt == 4:
                    raise
                time.sleep(0.2)

    def ok(self, method, path, body=None, content_type="application/json"):
        status, obj = self.call(method, path, body, content_type)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {obj and obj.get('message')}")
        return obj


class Tracker:
    """Watches everything that decides whether a namespace is complete, with arrival times."""

    def __init__(self, api):
        self.api = api
        self.lock = threading.Condition()
        self.objects = collections.defaultdict(dict)  # ns -> (kind, name) -> uid
        self.psa_ok = {}
        self.sa_ok = {}
        self.completed = {}  # ns -> monotonic time it was first seen complete
        self.events = []  # (time, type, kind, ns, name, uid) for generated objects
        self.synced = set()
        watches = {kind: f"{gv}/{resource}?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dkyverno"
                   for kind, (gv, resource) in GENERATED.items()}
        watches["Namespace"] = "/api/v1/namespaces?labelSelector=tenant%3Dtrue"
        watches["ServiceAccount"] = "/api/v1/serviceaccounts?fieldSelector=metadata.name%3Ddefault"
        for kind, path in watches.items():
            threading.Thread(target=self.watch, args=(kind, path), daemon=True).start()
        deadline = time.monotonic() + 60
        with self.lock:
            while len(self.synced) < len(watches):
                if not self.lock.wait(timeout=max(0, deadline - time.monotonic())):
                    sys.exit(f"watches not synced: {sorted(set(watches) - self.synced)}")

    def watch(self, kind, path):
        while True:
            # List, then watch from the list's resourceVersion: the list is the initial state.
            status, lst = self.api.call("GET", path)
            if status != 200:
                time.sleep(1)
                continue
            now = time.monotonic()
            with self.lock:
                for obj in lst["items"]:
                    self.apply(kind, "ADDED", obj, now)
                self.synced.add(kind)
                self.lock.notify_all()
            rv = lst["metadata"]["resourceVersion"]
            conn = self.api.connect(timeout=None)
            try:
                conn.request("GET", f"{path}&watch=1&allowWatchBookmarks=true&resourceVersion={rv}",
                             headers={"Accept": "application/json"})
                resp = conn.getresponse()
                while True:
                    line = resp.readline()
                    if not line:
                        break
                    ev = json.loads(line)
                    if ev["type"] in ("BOOKMARK", "ERROR"):
                        continue
                    with self.lock:
                        self.apply(kind, ev["type"], ev["object"], time.monotonic())
                        self.lock.notify_all()
            except (OSError, http.client.HTTPException, ValueError):
                pass
            finally:
                conn.close()

    def apply(self, kind, typ, obj, now):
        meta = obj["metadata"]
        ns, name = meta.get("namespace"), meta["name"]
        if kind == "Namespace":
            labels = meta.get("labels") or {}
            self.psa_ok[name] = typ != "DELETED" and all(labels.get(k) == v for k, v in PSA.items())
            ns = name
        elif kind == "ServiceAccount":
            self.sa_ok[ns] = typ != "DELETED" and obj.get("automountServiceAccountToken") is False
        else:
            if (kind, name) not in EXPECTED:
                return
            if typ == "DELETED":
                self.objects[ns].pop((kind, name), None)
            else:
                self.objects[ns][(kind, name)] = meta["uid"]
            self.events.append((now, typ, kind, ns, name, meta["uid"]))
        if ns not in self.completed and self.complete(ns):
            self.completed[ns] = now

    def complete(self, ns):
        return self.psa_ok.get(ns) and self.sa_ok.get(ns) and len(self.objects.get(ns, {})) == len(EXPECTED)

    def missing(self, ns):
        out = sorted(f"{k}/{n}" for k, n in EXPECTED - set(self.objects.get(ns, {})))
        if not self.psa_ok.get(ns):
            out.append("psa-labels")
        if not self.sa_ok.get(ns):
            out.append("default-sa-automount")
        return out

    def wait(self, predicate, timeout):
        deadline = time.monotonic() + timeout
        with self.lock:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.lock.wait(timeout=min(left, 1.0))
            return True


def create_namespace(api, name):
    api.ok("POST", "/api/v1/namespaces",
           {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"tenant": "true"}}})


def update_requests(api):
    status, lst = api.call("GET", "/apis/kyverno.io/v2/namespaces/kyverno/updaterequests?limit=1")
    if status != 200:
        return None
    return len(lst["items"]) + (lst["metadata"].get("remainingItemCount") or 0)


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(p / 100 * len(values)) - 1))]


def summary(ms):
    return {"n": len(ms), "p50_ms": round(pct(ms, 50), 1), "p99_ms": round(pct(ms, 99), 1),
            "max_ms": round(max(ms), 1), "mean_ms": round(statistics.mean(ms), 1)}


def record(result):
    KDIR.mkdir(parents=True, exist_ok=True)
    result["at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result["loadavg"] = [round(x, 2) for x in os.getloadavg()]  # the machine is shared
    with open(KDIR / "measure.jsonl", "a") as f:
        f.write(json.dumps(result) + "\n")
    print(json.dumps(result, indent=2))


def fresh_name(api, prefix):
    return f"{prefix}-{int(time.time() * 1000) % 100000000}"


# --- scenarios ------------------------------------------------------------------------------------

def verify(api, args):
    tr = Tracker(api)
    ns = fresh_name(api, "peer-verify")
    t0 = time.monotonic()
    create_namespace(api, ns)
    ok = tr.wait(lambda: ns in tr.completed, 120)
    result = {"scenario": "verify", "namespace": ns, "complete": bool(ok), "missing": tr.missing(ns)}
    if ok:
        result["onboarding_ms"] = round((tr.completed[ns] - t0) * 1000, 1)
    checks = {}
    # A deleted generated object comes back (one of each kind).
    for kind, name in sorted({min((k, n) for k, n in EXPECTED if k == kind) for kind in GENERATED}):
        old = tr.objects[ns].get((kind, name))
        t = time.monotonic()
        api.ok("DELETE", object_path(kind, ns, name))
        back = tr.wait(lambda: tr.objects[ns].get((kind, name)) not in (None, old), 60)
        checks[f"delete {kind}/{name}"] = f"regenerated in {round((time.monotonic() - t) * 1000)} ms" if back else "NOT regenerated in 60 s"
    # A changed generated object is put back (synchronize): an allow-all ingress rule on the deny.
    path = object_path("NetworkPolicy", ns, PREFIX + "default-deny")
    api.ok("PATCH", path, {"spec": {"ingress": [{}]}}, "application/merge-patch+json")
    t = time.monotonic()
    reverted = False
    while time.monotonic() - t < 60:
        if not (api.ok("GET", path)["spec"].get("ingress")):
            reverted = True
            break
        time.sleep(0.1)
    checks["allow-all ingress added to default-deny"] = f"reverted in about {round((time.monotonic() - t) * 1000)} ms" if reverted else "NOT reverted in 60 s"
    # Weakening edits at admission: the mutate rules rewrite them in the same request.
    ns_obj = api.ok("PATCH", f"/api/v1/namespaces/{ns}",
                    {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}},
                    "application/merge-patch+json")
    checks["set enforce=privileged"] = "label after the PATCH: " + ns_obj["metadata"]["labels"].get("pod-security.kubernetes.io/enforce", "<none>")
    sa = api.ok("PATCH", f"/api/v1/namespaces/{ns}/serviceaccounts/default",
                {"automountServiceAccountToken": True}, "application/merge-patch+json")
    checks["set automountServiceAccountToken=true"] = f"value after the PATCH: {sa.get('automountServiceAccountToken')}"
    # PodSecurity admission enforces the labels: a privileged pod is refused.
    status, body = api.call("POST", f"/api/v1/namespaces/{ns}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "privileged"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}]}})
    checks["privileged pod"] = f"HTTP {status}: {(body or {}).get('message', '')[:120]}"
    result["checks"] = checks
    record(result)


def bulk(api, args):
    tr = Tracker(api)
    prefix = fresh_name(api, "peer-bulk")
    names = [f"{prefix}-{i:05d}" for i in range(args.namespaces)]
    created = {}
    t0 = time.monotonic()

    def create(name):
        create_namespace(api, name)
        created[name] = time.monotonic()

    stop = threading.Event()

    def progress():
        while not stop.wait(10):
            with tr.lock:
                done = sum(1 for n in names if n in tr.completed)
            print(f"  {time.monotonic() - t0:7.1f} s: created {len(created)}, complete {done}, "
                  f"updaterequests {update_requests(api)}", flush=True)

    threading.Thread(target=progress, daemon=True).start()
    with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
        list(pool.map(create, names))
    t_created = time.monotonic()
    ok = wait_converged(api, tr, names, args.timeout, args.stall)
    stop.set()
    t_end = time.monotonic()
    with tr.lock:
        done = [n for n in names if n in tr.completed]
        lat = [(tr.completed[n] - created[n]) * 1000 for n in done]
        missing = collections.Counter(m for n in names if n not in tr.completed for m in tr.missing(n))
    result = {
        "scenario": "bulk", "namespaces": args.namespaces, "concurrency": args.concurrency,
        "all_complete": bool(ok), "complete": len(done),
        "create_seconds": round(t_created - t0, 1),
        "convergence_seconds": round((max(tr.completed[n] for n in done) if ok else t_end) - t0, 1),
        "per_namespace_creation_to_complete": summary(lat) if lat else None,
        "missing_when_stopped": dict(missing),
        "updaterequests_left": update_requests(api),
    }
    record(result)


def create(api, args):
    prefix = fresh_name(api, "peer-existing")
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
        list(pool.map(lambda i: create_namespace(api, f"{prefix}-{i:05d}"), range(args.namespaces)))
    record({"scenario": "create", "namespaces": args.namespaces, "concurrency": args.concurrency,
            "seconds": round(time.monotonic() - t0, 1)})


def wait_converged(api, tr, names, timeout, stall):
    """Until every namespace is complete; gives up after `timeout`, or once nothing has completed
    for `stall` seconds while no UpdateRequest is left (Kyverno has nothing more in hand)."""
    deadline = time.monotonic() + timeout
    last, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        if tr.wait(lambda: all(n in tr.completed for n in names), 5):
            return True
        with tr.lock:
            done = sum(1 for n in names if n in tr.completed)
        if done != last:
            last, last_change = done, time.monotonic()
        elif time.monotonic() - last_change > stall and update_requests(api) == 0:
            return False
    return False


def status(api, args):
    tr = Tracker(api)
    with tr.lock:
        names = sorted(tr.psa_ok)
        done = [n for n in names if n in tr.completed]
        missing = collections.Counter(m for n in names if n not in tr.completed for m in tr.missing(n))
    record({"scenario": "status", "labelled_namespaces": len(names), "complete": len(done),
            "missing": dict(missing), "updaterequests": update_requests(api)})


def reapply(api, args):
    tr = Tracker(api)
    policies = str(REPO / "benches/peer/kyverno-policies.yaml")
    kubectl = [str(STATE / "kubectl"), "--kubeconfig", str(STATE / "kubeconfig")]
    subprocess.run(kubectl + ["delete", "clusterpolicy", "zt-restricted-tenants-generate", "--ignore-not-found",
                              "--wait=true", "--timeout=600s"], check=True)
    # synchronize: true deletes what the policy generated when the policy goes; wait for that.
    tr.wait(lambda: not any(tr.objects.values()), 600)
    with tr.lock:
        names = sorted(tr.psa_ok)
        left = sum(len(v) for v in tr.objects.values())
    t0 = time.monotonic()
    subprocess.run(kubectl + ["apply", "-f", policies], check=True, stderr=subprocess.DEVNULL)
    stop = threading.Event()

    def progress():
        while not stop.wait(10):
            with tr.lock:
                done = sum(1 for n in names if n in tr.completed and tr.completed[n] > t0)
            print(f"  {time.monotonic() - t0:7.1f} s: complete {done}/{len(names)}, "
                  f"updaterequests {update_requests(api)}", flush=True)

    with tr.lock:
        tr.completed.clear()  # every namespace lost its objects; count completion anew
    threading.Thread(target=progress, daemon=True).start()
    ok = wait_converged(api, tr, names, args.timeout, args.stall)
    stop.set()
    with tr.lock:
        done = [n for n in names if n in tr.completed]
        missing = collections.Counter(m for n in names if n not in tr.completed for m in tr.missing(n))
    record({"scenario": "reapply", "namespaces": len(names), "objects_left_after_delete": left,
            "all_complete": bool(ok), "complete": len(done),
            "convergence_seconds": round((max(tr.completed[n] for n in done) if done else time.monotonic()) - t0, 1),
            "missing_when_stopped": dict(missing), "updaterequests_left": update_requests(api)})


def onboard(api, args):
    tr = Tracker(api)
    lat, incomplete = [], []
    for i in range(args.samples):
        ns = fresh_name(api, "peer-onboard")
        t = time.monotonic()
        create_namespace(api, ns)
        if tr.wait(lambda: ns in tr.completed, 120):
            lat.append((tr.completed[ns] - t) * 1000)
        else:
            incomplete.append({ns: tr.missing(ns)})
        time.sleep(args.pause)
    record({"scenario": "onboard", "latency": summary(lat) if lat else None, "samples_ms": [round(x) for x in lat],
            "incomplete": incomplete})


def repair(api, args):
    tr = Tracker(api)
    with tr.lock:
        done = sorted(tr.completed)
    if not done:
        sys.exit("no complete namespace to repair; run verify, onboard or bulk first")
    lat, failed = [], []
    for i in range(args.samples):
        ns = done[i % len(done)]
        key = ("NetworkPolicy", PREFIX + "default-deny")
        old = tr.objects[ns].get(key)
        t = time.monotonic()
        api.ok("DELETE", object_path(key[0], ns, key[1]))
        if tr.wait(lambda: tr.objects[ns].get(key) not in (None, old), 120):
            back = next(e[0] for e in reversed(tr.events) if e[3] == ns and (e[2], e[4]) == key and e[1] == "ADDED")
            lat.append((back - t) * 1000)
        else:
            failed.append(ns)
        time.sleep(args.pause)
    record({"scenario": "repair", "what": "DELETE default-deny NetworkPolicy -> recreated",
            "latency": summary(lat) if lat else None, "samples_ms": [round(x) for x in lat], "not_repaired": failed})


def idle(api, args):
    log = STATE / "audit.log"
    start = log.stat().st_size
    time.sleep(args.seconds)
    counts = collections.Counter()
    with open(log, "rb") as f:
        f.seek(start)
        for line in f:
            ev = json.loads(line)
            user = ev["user"]["username"]
            if user not in KYVERNO_USERS:
                continue
            ref = ev.get("objectRef") or {}
            what = ref.get("resource", ev.get("requestURI", ""))
            if ref.get("subresource"):
                what += "/" + ref["subresource"]
            counts[(user.rsplit(":", 1)[1], ev["verb"], what)] += 1
    by = [{"user": u, "verb": v, "resource": r, "count": c} for (u, v, r), c in sorted(counts.items())]
    writes = sum(c for (u, v, r), c in counts.items() if v in ("create", "update", "patch", "delete", "deletecollection"))
    record({"scenario": "idle", "seconds": args.seconds, "total": sum(counts.values()), "writes": writes, "requests": by})


def rss(api, args):
    out = {"scenario": "rss"}
    for name in ("admission", "background"):
        pid = (KDIR / f"{name}.pid").read_text().strip()
        status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status") if ":" in line)
        out[name] = {k: status[k].strip() for k in ("VmRSS", "VmHWM")}
    record(out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("verify")
    b = sub.add_parser("bulk")
    b.add_argument("--namespaces", type=int, default=1000)
    b.add_argument("--concurrency", type=int, default=16)
    b.add_argument("--timeout", type=float, default=3600)
    b.add_argument("--stall", type=float, default=120)
    r = sub.add_parser("reapply")
    r.add_argument("--timeout", type=float, default=3600)
    r.add_argument("--stall", type=float, default=120)
    sub.add_parser("status")
    c = sub.add_parser("create")
    c.add_argument("--namespaces", type=int, default=1000)
    c.add_argument("--concurrency", type=int, default=16)
    for name in ("onboard", "repair"):
        s = sub.add_parser(name)
        s.add_argument("--samples", type=int, default=10)
        s.add_argument("--pause", type=float, default=1.0)
    i = sub.add_parser("idle")
    i.add_argument("--seconds", type=float, default=60)
    sub.add_parser("rss")
    args = p.parse_args()
    api = Api()
    {"verify": verify, "bulk": bulk, "reapply": reapply, "status": status, "create": create, "onboard": onboard,
     "repair": repair, "idle": idle, "rss": rss}[args.cmd](api, args)


if __name__ == "__main__":
    main()
