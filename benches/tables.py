#!/usr/bin/env python3
"""Prints the tables of docs/benchmarks.md from the JSON under docs/bench/."""
import json
import pathlib

BENCH = pathlib.Path(__file__).resolve().parent.parent / "docs" / "bench"


def load(name):
    path = BENCH / name
    return json.loads(path.read_text()) if path.exists() else None


def g(n):
    return f"{int(round(n)):,}"


def machine_line(m):
    gib = m["mem_total_bytes"] / 2**30
    return (f"{m['cpu_model']}, {m['cpus']} CPUs, {gib:.1f} GiB, kernel {m['kernel']}, "
            f"RLIMIT_NOFILE {m['nofile_soft']:,}, commit {m['commit']}, {m['date']}")


def bench_rows():
    print("| target | held | predicted | ramp s | conn/s | kernel B/conn | user B/conn | rtt p50 us | rtt p99 us | rtt p999 us | teardown s | shards (srv+cli) | first limit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    machine = None
    for c in ["10k", "100k", "500k", "1M", "2M"]:
        r = load(f"bench_{c}.json")
        if r is None:
            continue
        machine = r["machine"]
        fl = r["first_limit"]
        limit = "none" if fl is None else f"{fl['name']} ({fl['kind']})"
        rtt = r["ping_rtt_us"]
        print(f"| {g(r['target'])} | {g(r['held'])} | {g(r['predicted'] or 0)} | {r['ramp_seconds']:.1f} | "
              f"{g(r['connect_rate_per_s'])} | {g(r['kernel_bytes_per_connection'])} "
              f"(slab {g(r['kernel_slab_bytes_per_connection'])}) | {r['user_bytes_per_connection']:.1f} | "
              f"{g(rtt['p50'])} | {g(rtt['p99'])} | {g(rtt['p999'])} | {r['teardown_seconds']:.1f} | "
              f"{r['shards']['server']}+{r['shards']['client']} | {limit} |")
    if machine:
        print(f"\nMachine: {machine_line(machine)}.")


def ramp():
    print("| run | connections | ramp s | conn/s | tcpmax's rate / this | teardown s | user B/conn | kernel CPU share |")
    print("|---|---|---|---|---|---|---|---|")
    machine = None
    for name in ["ramp_1m.json", "ramp_2m.json"]:
        r = load(name)
        if r is None:
            continue
        machine = r["machine"]
        s = r["summary"]
        k = r["kernel_baseline"]
        b = r.get("kernel_baseline_accept_only")
        if b:
            print(f"| C baseline, accept only | {g(b['established'])} | {b['ramp_seconds']:.1f} | {g(b['rate_per_s'])} | "
                  f"{s['tcpmax_rate_vs_kernel_accept_only']:.2f} | {b['teardown_seconds']:.1f} | - | "
                  f"{b['kernel_cpu_share'] * 100:.0f}% |")
        print(f"| C baseline, accept + epoll watch | {g(k['established'])} | {k['ramp_seconds']:.1f} | "
              f"{g(k['rate_per_s'])} | {s['tcpmax_rate_vs_kernel']:.2f} | {k['teardown_seconds']:.1f} | - | "
              f"{k['kernel_cpu_share'] * 100:.0f}% |")
        print(f"| tcpmax load -> serve | {g(s['tcpmax_held'])} | {s['tcpmax_ramp_seconds']:.1f} | "
              f"{g(s['tcpmax_rate_per_s'])} | 1.00 | {s['tcpmax_teardown_seconds']:.1f} | "
              f"{s['user_bytes_per_connection_both_ends']:.1f} (client {s['client_rss_anon_bytes_per_connection']:.1f}"
              f" + server {s['server_rss_anon_bytes_per_connection']:.1f}) | - |")
    if machine:
        print(f"\nMachine: {machine_line(machine)}.")


def rounds():
    print("| connections | rounds | C baseline rates /s | tcpmax rates /s | median C | median tcpmax | tcpmax / C |")
    print("|---|---|---|---|---|---|---|")
    machine = None
    for name in ["ramp_rounds_1m.json", "ramp_rounds_2m.json"]:
        r = load(name)
        if r is None:
            continue
        machine = r["machine"]
        ks = ", ".join(g(x["kernel_rate_per_s"]) for x in r["rounds"])
        ts = ", ".join(g(x["tcpmax_rate_per_s"]) for x in r["rounds"])
        print(f"| {g(r['count'])} | {len(r['rounds'])} | {ks} | {ts} | {g(r['kernel_median_rate_per_s'])} | "
              f"{g(r['tcpmax_median_rate_per_s'])} | {r['tcpmax_vs_kernel_medians']:.2f} |")
    if machine:
        print(f"\nMachine: {machine_line(machine)}.")


def servers():
    r = load("servers_500k.json")
    if r is None:
        return
    print(f"| server | processes or shards | held | accept rate /s | anon RSS idle | anon RSS at peak | user B/conn | growth B/conn |")
    print("|---|---|---|---|---|---|---|---|")
    for key in ["tcpmax", "nginx"]:
        s = r[key]
        print(f"| {s['server']} | {s['processes_or_shards']} | {g(s['held'])} | {g(s['accept_rate_per_s'])} | "
              f"{g(s['rss_anon_idle_bytes'])} B | {g(s['rss_anon_peak_bytes'])} B | {s['user_bytes_per_connection']:.1f} | "
              f"{s['user_growth_bytes_per_connection']:.1f} |")
    print(f"\n{r['nginx_version']}. Machine: {machine_line(r['machine'])}.")


def rehearsal():
    r = load("rehearsal_400k.json")
    if r is None:
        return
    print("| agent | share | held at end | failed | ramp s | ramp start after --start-at, ms | start skew ms | connect p99 us |")
    print("|---|---|---|---|---|---|---|---|")
    for a in r["agent_rows"]:
        print(f"| {a['index']} | {g(a['share'])} | {g(a['held_at_end'])} | {g(a['failed'])} | {a['ramp_seconds']:.1f} | "
              f"{a['late_ms']} | {a['start_skew_ms']} | {g(a['connect_p99_us'])} |")
    c = r["connect_latency_us"]
    print(f"| merged | {g(r['count'])} | {g(r['held_at_end'])} | {g(r['failed'])} | - | - | {r['start_skew_ms']} | "
          f"{g(c['p99'])} |")
    print(f"\nMerged connect latency over {g(c['count'])} connects: p50 {g(c['p50'])} us, p99 {g(c['p99'])} us, "
          f"p99.9 {g(c['p999'])} us, max {g(c['max'])} us; equal to the four agents' histograms added by the "
          f"benchmark itself: {str(r['percentiles_equal_added_histograms']).lower()}. The server's status line showed "
          f"{g(r['server_peak'])} at once; the merged timeline peaks at {g(r['peak_established'])}.")
    print(f"\nMachine: {machine_line(r['machine'])}.")
def mib(b):
    return f"{b / 2**20:.1f} MiB" if b < 2**30 else f"{b / 2**30:.1f} GiB"


def cluster():
    for name in ["cluster_50k.json", "cluster_kill_50k.json"]:
        r = load(name)
        if r is None:
            continue
        print(f"\n{name}: {g(r['total_held'])} of {g(r['target'])} held end to end, ramp {r['ramp_seconds']:.1f} s, "
              f"hold {r['hold_seconds']:.1f} s; {r['lb']['processes']} HAProxy processes (maxconn {g(r['lb']['maxconn_per_process'])}), "
              f"descriptors {' / '.join(g(d) for d in r['lb']['descriptors'])}\n")
        print("| backend | budget | held at the end | peak held | drained at | peak memory | refused | agent | HAProxy saw |")
        print("|---|---|---|---|---|---|---|---|---|")
        for b in r["backends"]:
            drained = "-" if b["drained_at_s"] is None else (
                f"{b['drained_at_s']:.0f} s, {g(b['drained_at_held'])} held, {mib(b['drained_at_bytes'])} "
                f"({b['drained_at_bytes'] * 100 / b['budget_bytes']:.0f}%)")
            agent = ", ".join(f"{c['state']} @{c['t']:.0f}s" for c in b["agent"])
            view = ", ".join(f"{c['state']} @{c['t']:.0f}s" for c in b["lb_view"])
            killed = " (killed)" if b["killed"] else ""
            print(f"| {b['name']}{killed} | {mib(b['budget_bytes'])} | {g(b['held'])} | {g(b['peak_held'])} | {drained} | "
                  f"{mib(b['peak_bytes'])} ({b['peak_bytes'] * 100 / b['budget_bytes']:.0f}%) | {g(b['refused'])} | {agent} | {view} |")
        k = r["kill"]
        if k:
            ov = ", ".join(f"{h['host']} {h['listen_overflows']}" for h in k["overflows"])
            took = "-" if k["seconds_to_come_back"] is None else f"{k['seconds_to_come_back']:.1f} s"
            print(f"\nKilled {k['backend']} at {k['at_s']:.0f} s holding {g(k['held_at_kill'])}: {g(k['came_back'])} came back "
                  f"through the load balancer in {took}; the client went from {g(k['client_before'])} to "
                  f"{g(k['client_lowest'])} at the lowest and made {g(r['client']['reconnects'])} reconnects; "
                  f"ListenOverflows after the kill: {ov}.")
        print(f"\nMachine: {machine_line(r['machine'])}.")


def idle():
    r = load("idle.json")
    if r is None:
        return
    print("| run | threads | connections held (never accepted) | CPU ticks | share of one core | CPU time (schedstat) | context switches |")
    print("|---|---|---|---|---|---|---|")
    for x in r["runs"]:
        held = g(x.get("held_by_server", x["connections"]))
        stuck = x.get("established_but_never_accepted")
        if stuck:
            held += f" ({g(stuck)})"
        print(f"| {x['name']} | {x['threads_max']} | {held} | {x['cpu_ticks']} | {x['cpu_share_of_one_core'] * 100:.3f}% | "
              f"{x['cpu_ns_schedstat'] / 1e6:.1f} ms | {g(x['context_switches'])} |")
    stops = ", ".join(f"{s['signal_to_exit_seconds']:.1f} s" for s in r["serve_stop_holding"])
    nginx = r.get("nginx_stop_holding")
    nginx_stop = f"; nginx, SIGTERM: {nginx['signal_to_exit_seconds']:.1f} s" if nginx else ""
    print(f"\nWindow {r['window_seconds']:.0f} s, {r['clock_ticks_per_second']} ticks a second. "
          f"Signal to exit while holding: serve, SIGINT: {stops}{nginx_stop}. {r['nginx_version'] or r['nginx_note']}. "
          f"Machine: {machine_line(r['machine'])}.")


if __name__ == "__main__":
    for title, f in [("bench", bench_rows), ("ramp", ramp), ("rounds", rounds), ("servers", servers),
                     ("rehearsal", rehearsal), ("cluster", cluster), ("idle", idle)]:
        print(f"\n## {title}\n")
        f()
