"""Conformance cross-check for the benchmark peers (stdlib only).

POSTs 36 AdmissionReviews (every workload kind x ok / bad container / bad
initContainer / bad ephemeralContainer, multiple violations, DELETE, CONNECT,
an unrelated kind) to each URL given and checks that every peer echoes the
uid, answers apiVersion admission.k8s.io/v1 kind AdmissionReview, and that all
peers agree on allowed / status code / reason / message. TLS is not verified.

    python3 crosscheck.py https://127.0.0.1:18443/validate https://127.0.0.1:18444/validate
"""
import json, ssl, sys, urllib.request
ctx = ssl._create_unverified_context()
def pod(containers=None, init=None, eph=None):
    s = {"containers": containers or [{"name": "app", "image": "msalinasc_app:1"}]}
    if init: s["initContainers"] = init
    if eph: s["ephemeralContainers"] = eph
    return s
def wrap(group, kind, spec):
    tmpl = {"metadata": {}, "spec": spec}
    if kind == "Pod": o = {"spec": spec}
    elif kind == "CronJob": o = {"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": tmpl}}}}
    elif kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"): o = {"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": tmpl}}
    else: o = {"spec": {"template": tmpl}}
    o["apiVersion"] = (group + "/v1") if group else "v1"; o["kind"] = kind; o["metadata"] = {"name": "x"}
    return o
bad = [{"name": "c1", "image": "nginx:1.25"}]
cases = []
for g, k in [("", "Pod"), ("apps", "Deployment"), ("apps", "ReplicaSet"), ("apps", "StatefulSet"), ("apps", "DaemonSet"), ("batch", "Job"), ("", "ReplicationController"), ("batch", "CronJob")]:
    cases.append((f"{k} ok", "CREATE", g, k, wrap(g, k, pod())))
    cases.append((f"{k} bad container", "CREATE", g, k, wrap(g, k, pod(containers=bad))))
    cases.append((f"{k} bad init", "UPDATE", g, k, wrap(g, k, pod(init=[{"name": "i", "image": "registry:5000/x/busybox@sha256:" + "a"*64}]))))
    cases.append((f"{k} bad eph", "UPDATE", g, k, wrap(g, k, pod(eph=[{"name": "dbg", "image": "Busybox"}]))))
cases.append(("multi", "CREATE", "", "Pod", wrap("", "Pod", pod(containers=[{"name": "a", "image": "msalinasc_a"}, {"name": "b", "image": "quay.io/x/nginx:1"}], init=[{"name": "i", "image": ""}]))))
cases.append(("delete", "DELETE", "", "Pod", None))
cases.append(("connect", "CONNECT", "", "Pod", None))
cases.append(("configmap", "CREATE", "", "ConfigMap", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}))
results = {}
for url in sys.argv[1:]:
    for i, (name, op, g, k, obj) in enumerate(cases):
        ar = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": f"uid-{i}", "kind": {"group": g, "version": "v1", "kind": k}, "resource": {"group": g, "version": "v1", "resource": k.lower() + "s"}, "operation": op, "object": obj, "userInfo": {}}}
        r = urllib.request.Request(url, data=json.dumps(ar).encode(), headers={"Content-Type": "application/json"})
        resp = json.load(urllib.request.urlopen(r, context=ctx))
        rr = resp["response"]; st = rr.get("status") or {}
        assert resp["apiVersion"] == "admission.k8s.io/v1" and resp["kind"] == "AdmissionReview" and rr["uid"] == f"uid-{i}", (url, name, resp)
        results.setdefault(name, []).append((rr["allowed"], st.get("code") if not rr["allowed"] else None, st.get("reason") if not rr["allowed"] else None, st.get("message") if not rr["allowed"] else None))
diff = 0
for name, rs in results.items():
    same = all(r == rs[0] for r in rs)
    diff += not same
    print(("OK  " if same else "DIFF"), f"{name:32}", rs[0][0], rs[0][1], rs[0][2], (rs[0][3] or "")[:150])
    if not same:
        for r in rs: print("     ", r)
print(f"{len(results)} cases, {diff} differ across {len(sys.argv)-1} peers")
sys.exit(1 if diff else 0)
