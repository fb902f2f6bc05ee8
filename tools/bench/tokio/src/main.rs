// tokio_bench: tokio's side of weft's scheduler benchmarks, same shapes:
//
//   spawn     one task spawns --tasks tasks that each add 1 to an atomic and
//             count down; it waits until all have run (2 workers). Prints
//             ns per task and the process's peak RSS.
//   yield     4 tasks per worker, --yields yield_now() each (2 workers).
//             Prints ns per yield per worker.
//   pingpong  two tasks bounce a value through two capacity-1 mpsc
//             channels --rounds times, on --workers workers (placement
//             left to tokio). Prints ns per round trip.
//
// Usage: tokio_bench MODE [--workers N] [--tasks N] [--yields N] [--rounds N]
// Output: one line, "tokio MODE <value> <unit> [peak_rss_kib <n>]".
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

fn flag(args: &[String], name: &str, default: u64) -> u64 {
    let key = format!("--{}", name);
    for (i, a) in args.iter().enumerate() {
        if *a == key {
            if let Some(v) = args.get(i + 1) {
                return v.parse().unwrap_or_else(|_| panic!("--{} wants a number, got '{}'", name, v));
            }
        }
        if let Some(v) = a.strip_prefix(&format!("{}=", key)) {
            return v.parse().unwrap_or_else(|_| panic!("--{} wants a number, got '{}'", name, v));
        }
    }
    default
}

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .build()
        .expect("tokio runtime")
}

// Peak resident set of this process, from /proc/self/status (VmHWM), KiB.
fn peak_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

// A counter on a cache line of its own, as weft's spawn_benchmark has its
// counter and wait group (two small Arcs could share one).
#[repr(align(64))]
struct Padded(AtomicU64);

impl std::ops::Deref for Padded {
    type Target = AtomicU64;
    fn deref(&self) -> &AtomicU64 {
        &self.0
    }
}

fn spawn_bench(tasks: u64) {
    let rt = runtime(2);
    let sum = Arc::new(Padded(AtomicU64::new(0)));
    let left = Arc::new(Padded(AtomicU64::new(tasks)));
    let done = Arc::new(tokio::sync::Notify::new());
    let (s, l, d) = (sum.clone(), left.clone(), done.clone());
    let ns = rt.block_on(async move {
        tokio::spawn(async move {
            let t0 = Instant::now();
            for _ in 0..tasks {
                let (s, l, d) = (s.clone(), l.clone(), d.clone());
                tokio::spawn(async move {
                    s.fetch_add(1, Ordering::Relaxed);
                    if l.fetch_sub(1, Ordering::AcqRel) == 1 {
                        d.notify_one();
                    }
                });
            }
            while l.load(Ordering::Acquire) != 0 {
                d.notified().await;
            }
            t0.elapsed().as_nanos() as f64
        })
        .await
        .expect("spawner")
    });
    assert_eq!(sum.load(Ordering::Relaxed), tasks, "tokio spawn: a task did not run");
    println!("tokio spawn {:.1} ns/task peak_rss_kib {}", ns / tasks as f64, peak_rss_kib());
}

fn yield_bench(yields: u64) {
    let workers = 2usize;
    let per_worker = 4usize;
    let rt = runtime(workers);
    let ns = rt.block_on(async move {
        let t0 = Instant::now();
        let mut hs = Vec::new();
        for _ in 0..workers * per_worker {
            hs.push(tokio::spawn(async move {
                for _ in 0..yields {
                    tokio::task::yield_now().await;
                }
            }));
        }
        for h in hs {
            h.await.expect("yielder");
        }
        t0.elapsed().as_nanos() as f64
    });
    let total = (yields as f64) * (workers * per_worker) as f64;
    println!("tokio yield {:.1} ns/yield/worker", ns * workers as f64 / total);
}

fn pingpong_bench(rounds: u64, workers: usize) {
    let rt = runtime(workers);
    let ns = rt.block_on(async move {
        let (ping_tx, mut ping_rx) = tokio::sync::mpsc::channel::<u64>(1);
        let (pong_tx, mut pong_rx) = tokio::sync::mpsc::channel::<u64>(1);
        let t0 = Instant::now();
        let a = tokio::spawn(async move {
            for i in 0..rounds {
                ping_tx.send(i).await.expect("ping");
                pong_rx.recv().await.expect("pong");
            }
        });
        let b = tokio::spawn(async move {
            for _ in 0..rounds {
                let v = ping_rx.recv().await.expect("ping");
                pong_tx.send(v).await.expect("pong");
            }
        });
        a.await.expect("a");
        b.await.expect("b");
        t0.elapsed().as_nanos() as f64
    });
    println!("tokio pingpong{} {:.1} ns/round_trip", workers, ns / rounds as f64);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("");
    match mode {
        "spawn" => spawn_bench(flag(&args, "tasks", 1_000_000)),
        "yield" => yield_bench(flag(&args, "yields", 1_000_000)),
        "pingpong" => pingpong_bench(flag(&args, "rounds", 1_000_000), flag(&args, "workers", 1) as usize),
        _ => {
            eprintln!("usage: tokio_bench spawn|yield|pingpong [--tasks N] [--yields N] [--rounds N] [--workers N]");
            std::process::exit(2);
        }
    }
}
