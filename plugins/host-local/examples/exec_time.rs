//! Times CNI calls the way a runtime makes them: spawn the plugin with the
//! configuration on stdin, wait for it. Used by `scripts/bench/host-local.sh`,
//! which passes the `CNI_*` variables in the environment.
//!
//!     exec_time RUNS TIMED_VERB RESTORING_VERB PLUGIN CONF
//!
//! Before each timed call, RESTORING_VERB runs untimed (a DEL before each
//! timed ADD, an ADD before each timed DEL), so every call sees the same
//! state. Prints the median time of the timed calls in milliseconds and the
//! largest peak RSS of a timed call in KiB, separated by a space.

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, runs, timed, restoring, plugin, conf] = args.as_slice() else {
        eprintln!("usage: exec_time RUNS TIMED_VERB RESTORING_VERB PLUGIN CONF");
        std::process::exit(2);
    };
    let runs: usize = runs.parse().expect("RUNS is a number");
    let mut times = Vec::with_capacity(runs);
    let mut peak_kib = 0;
    for _ in 0..runs + 3 {
        call(plugin, restoring, conf);
        let (took, kib) = call(plugin, timed, conf);
        times.push(took);
        peak_kib = peak_kib.max(kib);
    }
    // The first three are warm-up.
    let mut times = times.split_off(3);
    times.sort();
    let median = times[times.len() / 2];
    println!("{:.3} {peak_kib}", median.as_secs_f64() * 1000.0);
}

/// One call: its wall time and its peak RSS in KiB. Exits on failure.
fn call(plugin: &str, verb: &str, conf: &str) -> (Duration, i64) {
    let stdin = File::open(conf).unwrap_or_else(|e| panic!("open {conf}: {e}"));
    let start = Instant::now();
    // Reaped below with wait4(2), which also reports the child's peak RSS.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(plugin)
        .env("CNI_COMMAND", verb)
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {plugin}: {e}"));
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, with valid pointers to locals.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let took = start.elapsed();
    assert_eq!(pid, child.id() as i32, "wait4 failed");
    if !ExitStatus::from_raw(status).success() {
        eprintln!("exec_time: {plugin} {verb} failed ({status:#x})");
        std::process::exit(1);
    }
    (took, usage.ru_maxrss)
}
