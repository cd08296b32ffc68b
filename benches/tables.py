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
    print(f"\nWindow {r['window_seconds']:.0f} s, {r['clock_ticks_per_second']} ticks a second. "
          f"SIGINT to exit while holding: {stops}. {r['nginx_version'] or r['nginx_note']}. "
          f"Machine: {machine_line(r['machine'])}.")


if __name__ == "__main__":
    for title, f in [("bench", bench_rows), ("ramp", ramp), ("rounds", rounds), ("servers", servers), ("idle", idle)]:
        print(f"\n## {title}\n")
        f()
