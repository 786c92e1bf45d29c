#!/usr/bin/env python3
"""Checks a `ferry-bench compare` results.json: every broker ran every cell of the matrix with
both clients, moved every message, and reported no error. The test suite runs a --quick
comparison and then this, so the harness is exercised against RabbitMQ and the Proton C
broker on every CI run (figures are reported, never asserted: they depend on the machine)."""
import json
import sys

path = sys.argv[1] if len(sys.argv) > 1 else "target/bench-report/results.json"
with open(path) as f:
    d = json.load(f)

want_brokers = {"ferry", "rabbitmq", "proton"}
want_clients = {"ferry-bench", "proton"}
problems = []
started = {b["broker"] for b in d["brokers"]}
if started != want_brokers:
    problems.append(f"brokers started: {sorted(started)}, expected {sorted(want_brokers)}")
clients = set()
for cell in d["cells"]:
    clients.add(cell["client"])
    for broker in want_brokers:
        runs = cell["brokers"].get(broker, {}).get("runs", [])
        if not runs:
            problems.append(f"{cell['client']} {cell['cell']}: no run on {broker}")
        for run in runs:
            r = run.get("report") or {}
            if r.get("error") or run.get("error"):
                problems.append(f"{cell['client']} {cell['cell']} {broker}: {r.get('error') or run.get('error')}")
            elif not run.get("capped") and r.get("received", 0) < cell["count"]:
                problems.append(
                    f"{cell['client']} {cell['cell']} {broker}: received {r.get('received')} of {cell['count']}"
                )
if not want_clients <= clients:
    problems.append(f"clients: {sorted(clients)}, expected {sorted(want_clients)}")
if len(d["cells"]) < 24:
    problems.append(f"{len(d['cells'])} cells, expected 24")
for idle in d.get("idle") or []:
    if idle.get("report", idle).get("opened", 0) == 0:
        problems.append(f"idle connections on {idle.get('broker')}: none opened")

for p in problems:
    print("check-report:", p)
print(f"check-report: {len(d['cells'])} cells, brokers {sorted(started)}: "
      + ("OK" if not problems else f"{len(problems)} problem(s)"))
sys.exit(1 if problems else 0)
