"""Bench: one full evaluation of every preset Kubernetes assertion on a large cluster.

A fixture cluster of 2,000 namespaces, 10,000 workloads (8,000 Deployments, 2,000
StatefulSets) and 20,000 pods, plus their PDBs, HPAs, NetworkPolicies, quotas, Services,
DestinationRules, PeerAuthentications, RBAC and Helm/TLS Secrets, is generated in memory
by a child process that serves it with the fake API server on a loopback port. The
parent runs the 20 checks of the qbitel-production preset (cluster-wide scope, Secrets
reading on) concurrently through the real kubernetes-asyncio client, and prints wall
time, API requests made against kinds x pages, and the parent's peak RSS.

    .venv/bin/python bench/kubernetes.py [--namespaces 2000] [--page-size 500]

`--mode serve` runs the checks in cycles as the daemon does (the watch cache on) and
prints, per cycle, wall time, LIST pages and WATCH requests made, and resident memory:
cycle 1 is the first sync, later cycles the steady state (issue 16's 50,000 workloads /
100,000 pods are `--namespaces 10000`):

    .venv/bin/python bench/kubernetes.py --mode serve --namespaces 10000 --cycles 4
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import datetime as dt
import gc
import multiprocessing as mp
import os
import pstats
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

# the repository root instead of bench/ (whose modules would shadow the stdlib: http.py)
sys.path[0] = str(Path(__file__).resolve().parents[1])

from exporter import config  # noqa: E402
from exporter.model import Status  # noqa: E402
from exporter.probes.kubernetes.connection import KubernetesConnection  # noqa: E402
from exporter.probes.kubernetes.probe import evaluate  # noqa: E402
from exporter.probes.kubernetes.snapshot import Cluster  # noqa: E402
from exporter.probes.kubernetes.spec import KubernetesCheck, applies_to  # noqa: E402
from tests.probes.k8s_apiserver import FakeApiServer, write_kubeconfig  # noqa: E402
from tests.support.servers import free_port  # noqa: E402

TOKEN = "bench-token"


def _meta(name: str, ns: str | None = None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "uid": f"{ns}-{name}",
        "resourceVersion": "1",
        "creationTimestamp": "2026-10-01T09:00:00Z",
        **extra,
    }
    if ns:
        meta["namespace"] = ns
    return meta


def _container(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "image": f"registry.example/{name}:1.0",
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
        "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "PORT", "value": "8080"}],
        "resources": {
            "requests": {"cpu": "500m", "memory": "512Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": 8080, "scheme": "HTTP"},
            "periodSeconds": 10,
            "timeoutSeconds": 1,
        },
        "volumeMounts": [
            {
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                "name": "kube-api-access",
                "readOnly": True,
            }
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }


def _tls_pem() -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "bench")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=90))
        .sign(key, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(Encoding.PEM)).decode()


def build_cluster(namespaces: int) -> list[dict[str, Any]]:
    """5 workloads (4 Deployments, 1 StatefulSet) and 10 pods per namespace, and friends."""
    objs: list[dict[str, Any]] = []
    pem = _tls_pem()
    add = objs.append
    add(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta("istiod", "istio-system"),
            "spec": {
                "replicas": 1,
                "template": {
                    "metadata": {"labels": {"app": "istiod"}},
                    "spec": {"containers": [_container("discovery")]},
                },
            },
            "status": {
                "availableReplicas": 1,
                "updatedReplicas": 1,
                "conditions": [{"type": "Available", "status": "True"}],
            },
        }
    )
    add(
        {
            "apiVersion": "security.istio.io/v1beta1",
            "kind": "PeerAuthentication",
            "metadata": _meta("default", "istio-system"),
            "spec": {"mtls": {"mode": "STRICT"}},
        }
    )
    add(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": _meta(
                "kube-apiserver-cp", "kube-system", labels={"component": "kube-apiserver"}
            ),
            "spec": {
                "containers": [
                    {
                        "name": "kube-apiserver",
                        "command": ["kube-apiserver", "--encryption-provider-config=/etc/enc.yaml"],
                    }
                ]
            },
            "status": {"phase": "Running"},
        }
    )
    for n in ("istio-system", "kube-system"):
        add(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": _meta(n),
                "status": {"phase": "Active"},
            }
        )
    add(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": _meta("secret-reader"),
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
        }
    )
    for i in range(namespaces):
        ns = f"team-{i:04d}"
        add(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": _meta(
                    ns,
                    labels={
                        "istio-injection": "enabled",
                        "pod-security.kubernetes.io/enforce": "restricted",
                    },
                ),
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            }
        )
        add(
            {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": _meta("compute", ns),
                "spec": {"hard": {"requests.cpu": "16", "limits.memory": "64Gi"}},
            }
        )
        add(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": _meta("default-deny", ns),
                "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
            }
        )
        add(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": _meta("allow-web", ns),
                "spec": {
                    "podSelector": {
                        "matchExpressions": [
                            {"key": "tier", "operator": "In", "values": ["web", "data"]}
                        ]
                    },
                    "ingress": [{"from": [{"namespaceSelector": {}}]}],
                },
            }
        )
        add(
            {
                "apiVersion": "networking.istio.io/v1beta1",
                "kind": "DestinationRule",
                "metadata": _meta("all", ns),
                "spec": {
                    "host": f"*.{ns}.svc.cluster.local",
                    "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
                },
            }
        )
        add(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": _meta("app-secrets", ns),
                "roleRef": {"kind": "ClusterRole", "name": "secret-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": ns}],
            }
        )
        add(
            {
                "apiVersion": "external-secrets.io/v1beta1",
                "kind": "ExternalSecret",
                "metadata": _meta("db", ns),
                "spec": {},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
            }
        )
        for rev, status in ((1, "superseded"), (2, "deployed")):
            add(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "type": "helm.sh/release.v1",
                    "metadata": _meta(
                        f"sh.helm.release.v1.app.v{rev}",
                        ns,
                        labels={
                            "owner": "helm",
                            "name": "app",
                            "status": status,
                            "version": str(rev),
                        },
                    ),
                    "data": {"release": "H4sI" + "A" * 2000},
                }
            )
        if i % 10 == 0:
            add(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "type": "kubernetes.io/tls",
                    "metadata": _meta("web-tls", ns),
                    "data": {"tls.crt": pem, "tls.key": "eA=="},
                }
            )
        for w in range(5):
            kind = "StatefulSet" if w == 4 else "Deployment"
            app = f"app-{w}"
            labels = {
                "app": app,
                "tier": "data" if w == 4 else "web",
                "app.kubernetes.io/component": "worker" if w == 3 else app,
            }
            template: dict[str, Any] = {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [_container(app)],
                    "serviceAccountName": "app",
                    "affinity": {
                        "podAntiAffinity": {
                            "preferredDuringSchedulingIgnoredDuringExecution": [
                                {
                                    "weight": 100,
                                    "podAffinityTerm": {
                                        "labelSelector": {"matchLabels": {"app": app}},
                                        "topologyKey": "kubernetes.io/hostname",
                                    },
                                }
                            ]
                        }
                    },
                },
            }
            add(
                {
                    "apiVersion": "apps/v1",
                    "kind": kind,
                    "metadata": _meta(app, ns, labels=labels, generation=2),
                    "spec": {
                        "replicas": 2,
                        "selector": {"matchLabels": {"app": app}},
                        "template": template,
                    },
                    "status": {
                        "observedGeneration": 2,
                        "replicas": 2,
                        "availableReplicas": 2,
                        "readyReplicas": 2,
                        "updatedReplicas": 2,
                    },
                }
            )
            add(
                {
                    "apiVersion": "autoscaling/v2",
                    "kind": "HorizontalPodAutoscaler",
                    "metadata": _meta(app, ns),
                    "spec": {
                        "minReplicas": 2,
                        "maxReplicas": 6,
                        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": app},
                    },
                }
            )
            add(
                {
                    "apiVersion": "policy/v1",
                    "kind": "PodDisruptionBudget",
                    "metadata": _meta(app, ns),
                    "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": app}}},
                }
            )
            if w < 2:
                add(
                    {
                        "apiVersion": "v1",
                        "kind": "Service",
                        "metadata": _meta(app, ns),
                        "spec": {
                            "type": "ClusterIP",
                            "selector": {"app": app},
                            "ports": [{"port": 80, "targetPort": 8080}],
                        },
                    }
                )
            for p in range(2):
                add(
                    {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": _meta(
                            f"{app}-7d9f8c-{p}",
                            ns,
                            labels=labels,
                            annotations={
                                "kubectl.kubernetes.io/restartedAt": "2026-10-01T09:00:00Z"
                            },
                            ownerReferences=[
                                {
                                    "apiVersion": "apps/v1",
                                    "kind": "ReplicaSet",
                                    "name": f"{app}-7d9f8c",
                                    "uid": "x",
                                    "controller": True,
                                }
                            ],
                        ),
                        "spec": {
                            **template["spec"],
                            "containers": [_container(app), _container("istio-proxy")],
                            "nodeName": f"node-{p}",
                            "volumes": [{"name": "kube-api-access", "projected": {"sources": []}}],
                        },
                        "status": {
                            "phase": "Running",
                            "podIP": "10.1.2.3",
                            "qosClass": "Burstable",
                            "conditions": [
                                {"type": t, "status": "True"}
                                for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
                            ],
                            "containerStatuses": [
                                {
                                    "name": app,
                                    "ready": True,
                                    "restartCount": 0,
                                    "image": "x",
                                    "imageID": "sha256:" + "0" * 64,
                                    "containerID": "containerd://" + "1" * 64,
                                    "state": {"running": {"startedAt": "2026-10-01T09:00:00Z"}},
                                }
                            ],
                        },
                    }
                )
    return objs


def _expected_pages(server: FakeApiServer, path: str, query: dict[str, str]) -> int:
    """ceil(matching items / limit) for a LIST request (0 for a GET)."""
    if "limit" not in query:
        return 0
    parts = [p for p in path.split("/") if p]
    api_version = parts[1] if parts[0] == "api" else f"{parts[1]}/{parts[2]}"
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    plural = rest[-1]
    key = (api_version, plural)
    if len(rest) == 3:
        items = server._by_ns.get(key, {}).get(rest[1], [])
    else:
        items = server._store.get(key, [])
    count = len(server._filter(items, query.get("labelSelector"), query.get("fieldSelector")))
    limit = int(query["limit"])
    return max(1, -(-count // limit))


def serve(namespaces: int, port: int, conn: Any) -> None:
    """Child process: build the cluster, serve it, answer stats requests on the pipe."""
    server = FakeApiServer(
        token=TOKEN, version={"major": "1", "minor": "30", "gitVersion": "v1.30.4"}
    )
    objects = build_cluster(namespaces)
    server.add(objects)
    server.warm()
    counts = Counter(o["kind"] for o in objects)
    del objects

    def stats() -> None:
        while True:
            message = conn.recv()
            if message == "stop":
                return
            if message == "count":  # (LIST pages, WATCH requests, all requests) so far
                conn.send((len(server.list_requests()), len(server.watch_requests()),
                           len(server.requests)))
                continue
            conn.send(
                [
                    (r.path, r.query, r.status, _expected_pages(server, r.path, r.query))
                    for r in server.requests
                ]
            )

    async def main() -> None:
        await server.start(port)
        conn.send(dict(counts))
        await asyncio.to_thread(stats)
        await server.stop()

    asyncio.run(main())


def preset_checks() -> list[KubernetesCheck]:
    """The preset's Kubernetes checks, cluster-wide (namespaces dropped), all enabled."""
    docs = [
        d
        for d in config._preset_documents("qbitel-production")
        if d[0].endswith("40-kubernetes.yaml")
    ]
    data = config._parse_yaml(docs[0][1], docs[0][0])
    checks = []
    for raw in data["checks"]:
        raw = {
            k: v for k, v in raw.items() if k not in ("namespaces", "enabled", "disabled_reason")
        }
        raw.pop("releases", None)
        if raw["assert"] in applies_to("exclude_namespaces"):
            raw["exclude_namespaces"] = [
                "kube-system",
                "kube-public",
                "kube-node-lease",
                "istio-system",
            ]
        if raw["assert"] == "namespaces_exist":
            raw["required_namespaces"] = ["team-0000", "team-0001"]
        checks.append(KubernetesCheck.model_validate(raw))
    return checks


async def evaluate_all(kubeconfig: Path, page_size: int) -> tuple[float, dict[str, Any]]:
    cluster = Cluster(
        KubernetesConnection(
            kind="kubernetes",
            kubeconfig=kubeconfig,
            page_size=page_size,
            secrets="data",
            request_timeout=60,
        )
    )
    checks = preset_checks()
    start = time.perf_counter()
    try:
        outcomes = await asyncio.gather(*(evaluate(c, cluster, time.time()) for c in checks))
    finally:
        await cluster.close()
    wall = time.perf_counter() - start
    return wall, {c.id: o for c, o in zip(checks, outcomes, strict=True)}


def _rss_mib() -> float:
    """The current resident set of this process (VmRSS), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def serve_cycles(kubeconfig: Path, page_size: int, cycles: int, pause: float,
                       ask: Any, profile: int = 0) -> list[dict[str, Any]]:
    """`serve` as the daemon runs it: the preset's checks every cycle on one `Cluster`
    (watch on, `repeating` as the daemon's runtime sets it). Cycle 1 LISTs every collection
    (the first sync) and starts one WATCH per collection from that LIST's
    resourceVersion; later cycles are steady state. Returns one row per cycle."""
    ttl = max(0.0, pause - 1.0)  # a cycle's checks share one snapshot; the next does not
    collections: list[tuple[int, float]] = []  # (generation, seconds) of each collection
    began: list[float] = []

    def timed_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began.append(time.perf_counter())
        elif began:
            collections.append((info["generation"], time.perf_counter() - began.pop()))

    gc.callbacks.append(timed_gc)
    cluster = Cluster(KubernetesConnection(kind="kubernetes", kubeconfig=kubeconfig,
                                           page_size=page_size, secrets="data",
                                           request_timeout=60, snapshot_ttl=ttl))
    cluster.repeating = True  # a running serve (`ctx.repeats`)
    checks = preset_checks()
    rows: list[dict[str, Any]] = []
    try:
        for number in range(1, cycles + 1):
            lists0, watches0, _ = await asyncio.to_thread(ask)
            profiler = cProfile.Profile() if number == profile else None
            if profiler is not None:
                profiler.enable()
            collections.clear()
            started, cpu0 = time.perf_counter(), time.process_time()
            outcomes = await asyncio.gather(*(evaluate(c, cluster, time.time())
                                              for c in checks))
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
            statuses = Counter(o.status.value for o in outcomes)
            if profiler is not None:
                profiler.disable()
                print(f"profile of cycle {number} (cumulative, top 30):")
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
            await asyncio.sleep(pause)  # watches connect; the snapshot TTL passes
            lists1, watches1, _ = await asyncio.to_thread(ask)
            in_cycle = list(collections)
            rows.append({"cycle": number, "wall": wall, "cpu": cpu, "lists": lists1 - lists0,
                         "gc": sum(s for _, s in in_cycle),
                         "gc2": sum(1 for g, _ in in_cycle if g == 2),
                         "watches": watches1 - watches0, "rss": _rss_mib(),
                         "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                         "statuses": statuses,
                         # not the outcomes: their measurements (a gauge per workload)
                         # would stay referenced and be counted in the next cycle's RSS
                         "not_passing": [(c.id, o.status.value, o.message[:110])
                                         for c, o in zip(checks, outcomes, strict=True)
                                         if o.status is not Status.PASS],
                         "watched": len(cluster.watched())})
    finally:
        gc.callbacks.remove(timed_gc)
        await cluster.close()
    return rows


def main_serve(args: argparse.Namespace, parent: Any, counts: dict[str, int]) -> None:
    def ask() -> tuple[int, int, int]:
        parent.send("count")
        answer: tuple[int, int, int] = parent.recv()
        return answer

    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = write_kubeconfig(Path(tmp) / "kubeconfig",
                                      f"http://127.0.0.1:{args.port}", TOKEN)
        rss_before = _rss_mib()
        rows = asyncio.run(serve_cycles(kubeconfig, args.page_size, args.cycles,
                                        args.pause, ask, args.profile))
    print(f"cluster: {args.namespaces} namespaces, "
          f"{counts.get('Deployment', 0) + counts.get('StatefulSet', 0)} workloads, "
          f"{counts.get('Pod', 0)} pods, {sum(counts.values())} objects")
    print(f"serve mode: {len(preset_checks())} preset checks per cycle, page size "
          f"{args.page_size}, {args.pause:g} s between cycles; RSS before: "
          f"{rss_before:.0f} MiB")
    print("cycle  wall s  CPU s  GC s (full)  LIST pages  WATCH requests  watched  RSS MiB  "
          "peak MiB  statuses")
    for row in rows:
        statuses = " ".join(f"{k}={v}" for k, v in sorted(row["statuses"].items()))
        print(f"{row['cycle']:>5}  {row['wall']:>6.2f}  {row['cpu']:>5.2f}  "
              f"{row['gc']:>4.2f} ({row['gc2']:>2})  {row['lists']:>10}  "
              f"{row['watches']:>14}  {row['watched']:>7}  {row['rss']:>7.0f}  "
              f"{row['peak']:>8.0f}  {statuses}")
    print("checks not passing in the last cycle:")
    for check_id, status, message in rows[-1]["not_passing"]:
        print(f"  {check_id:<18} {status:<7} {message}")
    print(f"first sync (cycle 1, every collection LISTed and every check judged): "
          f"{rows[0]['wall']:.2f} s; steady-state LIST pages per cycle: "
          f"{[r['lists'] for r in rows[2:]]}")
    print(f"load average {Path('/proc/loadavg').read_text().split()[0]} on "
          f"{os.cpu_count()} CPUs (the stand-in shares them)")
    print(f"reproduce: .venv/bin/python bench/kubernetes.py --mode serve --namespaces "
          f"{args.namespaces} --page-size {args.page_size} --cycles {args.cycles} "
          f"--pause {args.pause:g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=2000)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--mode", choices=("check", "serve"), default="check",
                        help="check: one evaluation (LIST); serve: cycles with the watch "
                        "cache")
    parser.add_argument("--cycles", type=int, default=4, help="serve mode: cycles to run")
    parser.add_argument("--pause", type=float, default=31.0,
                        help="serve mode: seconds between cycles (the snapshot TTL is one "
                        "second less)")
    parser.add_argument("--profile", type=int, default=0, metavar="CYCLE",
                        help="serve mode: print a cProfile of this cycle's evaluation")
    args = parser.parse_args()
    port = args.port = free_port()
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=serve, args=(args.namespaces, port, child))
    proc.start()
    counts = parent.recv()
    if args.mode == "serve":
        try:
            main_serve(args, parent, counts)
        finally:
            parent.send("stop")
            proc.join(timeout=30)
        return
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = write_kubeconfig(Path(tmp) / "kubeconfig", f"http://127.0.0.1:{port}", TOKEN)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        usage = resource.getrusage(resource.RUSAGE_SELF)
        wall, outcomes = asyncio.run(evaluate_all(kubeconfig, args.page_size))
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = after.ru_utime - usage.ru_utime + after.ru_stime - usage.ru_stime
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    parent.send("stats")
    requests = parent.recv()
    parent.send("stop")
    proc.join(timeout=30)

    def collection(path: str, query: dict[str, str]) -> str:
        return path + "".join(
            f" {k}={v}" for k, v in sorted(query.items()) if k in ("labelSelector", "fieldSelector")
        )

    lists = Counter(collection(p, q) for p, q, _, _ in requests if "limit" in q)
    expected = {collection(p, q): e for p, q, _, e in requests if "limit" in q}
    others = [p for p, q, _, _ in requests if "limit" not in q]
    kinds = len(lists)
    print(
        f"cluster: {args.namespaces} namespaces, "
        f"{counts.get('Deployment', 0) + counts.get('StatefulSet', 0)} workloads "
        f"({counts.get('Deployment', 0)} Deployments, {counts.get('StatefulSet', 0)} "
        f"StatefulSets), {counts.get('Pod', 0)} pods, {sum(counts.values())} objects"
    )
    print(f"checks evaluated: {len(outcomes)} (page size {args.page_size})")
    for check_id, outcome in outcomes.items():
        print(f"  {check_id:<18} {outcome.status.value:<7} {outcome.message[:90]}")
    print(
        f"wall time, one full evaluation: {wall:.2f} s (CPU of the evaluating process: "
        f"{cpu:.2f} s; load average {Path('/proc/loadavg').read_text().split()[0]} on "
        f"{os.cpu_count()} CPUs, the fake server shares them)"
    )
    print(
        f"API requests: {len(requests)} = {sum(lists.values())} LIST pages over {kinds} "
        f"collections + {len(others)} GETs ({', '.join(sorted(set(others)))})"
    )
    for path, pages in sorted(lists.items()):
        print(f"  {path:<72} {pages:>3} pages (expected {expected[path]})")
    exact = all(lists[c] == expected[c] for c in lists)
    print(
        f"LIST requests = sum over collections of ceil(items / page size): "
        f"{sum(lists.values())} = {sum(expected.values())} -> "
        f"{'OK' if exact else 'MISMATCH'}"
    )
    print(
        f"peak RSS of the evaluating process: {peak_kib / 1024:.0f} MiB "
        f"(before the evaluation: {rss_before / 1024:.0f} MiB)"
    )
    errors = [o for o in outcomes.values() if o.status is Status.ERROR]
    print(f"errors: {len(errors)}")
    print(
        "reproduce: .venv/bin/python bench/kubernetes.py --namespaces "
        f"{args.namespaces} --page-size {args.page_size}"
    )


if __name__ == "__main__":
    main()
