//! One flow's crypto on every worker (wireguard-go's model: parallel crypto, sequential
//! delivery). A peer's datagrams arrive on one `SO_REUSEPORT` socket and a flow's packets on one
//! TUN queue, so without this one tunnel is capped at one core.
//!
//! A worker with a full enough batch keeps the first share and offers the rest as small `Job`s
//! (`MIN_SHARE` packets) to the device's other workers (their control eventfd wakes them). It
//! seals or opens its own share meanwhile, then joins: the jobs nobody has taken yet it takes back
//! and runs itself, the ones being run (at most one per helper) it waits for. Only then do the stages after the transport (handoff, TUN write,
//! send) run, on the whole batch in its original order — so a flow stays in order, and a worker
//! never waits for a busy or stopped helper, only for work already under way.
//!
//! Only a worker that is CPU-bound shares (`Engagement`): its batches have been at least
//! `ENGAGE_BATCH` packets for `ENGAGE_AFTER` of its own CPU time without a break, so it has been
//! working through a backlog all that time, not catching up after being descheduled (counted in
//! CPU time, a worker descheduled in the middle of a catch-up does not look busier). A flow the owner keeps up with
//! (`test/net/vrouter-sites.test.ts`, 30 Mbit/s through two reloads, no loss) is not shared:
//! sharing it only adds wake-ups and, when a helper that took a job is descheduled, a wait that
//! lets the owner's queues overflow on a busy machine. A join that had to wait longer than
//! `WAIT_BACKOFF` for a helper ends the engagement too (the helpers have no core to spare).
//!
//! On by default; `CVLAN_SPREAD_CRYPTO=0` in the environment (or `set_enabled(false)`) turns it
//! off for the process.
//!
//! What moves to a helper is the packets themselves (their buffers, no copy), the wake-up's
//! time, and an `extra` list for what the transport emits; the helper counts into its own
//! counters (`crypto_packets`, `helped_packets`). Sequence numbers and counters are reserved at
//! seal time, so the shares of one batch leave at most a batch apart: the replay windows
//! (ESP 4096, WireGuard 8192) are far wider than a batch (`worker::BATCH`).

use crate::control::Control;
use crate::counters::WorkerCounters;
use crate::transport::{Ctx, Outgoing, Packet, Transport};
use arc_swap::ArcSwap;
use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU8;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// The smallest share (tuning): below it, waking another thread costs more than the crypto it
/// saves. A batch of `n` goes out in at most `n / MIN_SHARE` shares, so a batch is spread from
/// two shares' worth on, and a full batch (128) over at most 16 workers.
pub const MIN_SHARE: usize = 8;

/// A batch at least this big shows a backlog (four shares' worth).
pub const ENGAGE_BATCH: usize = 4 * MIN_SHARE;

/// How much of its CPU time a worker's batches must all show a backlog before it shares them. A
/// flow the worker keeps up with drains a backlog from a descheduling in a batch or two, far less
/// than this (a TUN queue of 500 packets takes ~1 ms to seal).
pub const ENGAGE_AFTER: Duration = Duration::from_millis(2);

/// A join that waited this long for a helper ends the engagement: the helper was descheduled
/// with a job (a job's crypto takes microseconds).
pub const WAIT_BACKOFF: Duration = Duration::from_micros(500);

/// 0: not read from the environment yet, 1: off, 2: on.
static ENABLED: AtomicU8 = AtomicU8::new(0);

/// Whether workers share their batches' crypto (see the module doc): on unless
/// `CVLAN_SPREAD_CRYPTO=0`.
pub fn enabled() -> bool {
    match ENABLED.load(Relaxed) {
        0 => {
            let on = std::env::var_os("CVLAN_SPREAD_CRYPTO").is_none_or(|v| v != "0");
            ENABLED.store(if on { 2 } else { 1 }, Relaxed);
            on
        }
        v => v == 2,
    }
}

/// Turns the sharing on or off for every device of the process (from the next batch on).
pub fn set_enabled(on: bool) {
    ENABLED.store(if on { 2 } else { 1 }, Relaxed);
}

const IDLE: u8 = 0;
const PENDING: u8 = 1;
const TAKEN: u8 = 2;
const DONE: u8 = 3;

/// Which transport stage a job runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stage {
    /// `tun_ingress` (seal) on packets read from the TUN.
    Seal = 0,
    /// `decapsulate` (open) on received datagrams.
    Open = 1,
}

/// The workers of one device that take shares of each other's batches.
#[derive(Default)]
pub struct Crew {
    members: ArcSwap<Vec<Arc<Member>>>,
}

/// One worker as a helper: where jobs for it wait, and how to wake it.
pub struct Member {
    control: Arc<Control>,
    jobs: Mutex<VecDeque<Arc<Job>>>,
}

/// A share of one worker's batch.
pub struct Job {
    state: AtomicU8,
    /// In a helper's queue (pushed at most once at a time, so a stopped helper's queue
    /// cannot grow).
    queued: AtomicBool,
    owner: Thread,
    work: Mutex<Work>,
}

struct Work {
    stage: Stage,
    now: Duration,
    pkts: Vec<Packet>,
    extra: Vec<Outgoing>,
}

impl Crew {
    /// Sets worker `index`'s member (a new or replaced worker, with its control).
    pub fn join(&self, index: usize, control: Arc<Control>) {
        let mut v: Vec<Arc<Member>> = self.members.load().as_ref().clone();
        let m = Arc::new(Member {
            control,
            jobs: Mutex::new(VecDeque::new()),
        });
        if index < v.len() {
            v[index] = m;
        } else {
            v.push(m);
        }
        self.members.store(Arc::new(v));
    }

    /// The pool shrinks to `n` workers.
    pub fn truncate(&self, n: usize) {
        let mut v: Vec<Arc<Member>> = self.members.load().as_ref().clone();
        v.truncate(n);
        self.members.store(Arc::new(v));
    }

    pub fn size(&self) -> usize {
        self.members.load().len()
    }

    /// Runs the jobs waiting for worker `index` (called at each of its wake-ups).
    pub fn help(&self, index: usize, transport: &dyn Transport, counters: &WorkerCounters) {
        let Some(me) = self.members.load().get(index).cloned() else {
            return;
        };
        loop {
            let job = lock(&me.jobs).pop_front();
            let Some(job) = job else { return };
            job.queued.store(false, Release);
            if job.take() {
                let n = job.run(index, transport, counters);
                WorkerCounters::add(&counters.helped_packets, n as u64);
            }
        }
    }
}

impl Job {
    fn take(&self) -> bool {
        self.state
            .compare_exchange(PENDING, TAKEN, AcqRel, Acquire)
            .is_ok()
    }

    /// Runs the transport stage on the job's packets; returns how many.
    fn run(&self, worker: usize, transport: &dyn Transport, counters: &WorkerCounters) -> usize {
        // Done even if the transport panics (the worker restarts): the owner never waits forever.
        struct Finish<'a>(&'a Job);
        impl Drop for Finish<'_> {
            fn drop(&mut self) {
                self.0.state.store(DONE, Release);
                self.0.owner.unpark();
            }
        }
        let _finish = Finish(self);
        let n = {
            let mut w = lock(&self.work);
            let w = &mut *w;
            let mut ctx = Ctx {
                worker,
                counters,
                now: w.now,
                extra: &mut w.extra,
            };
            match w.stage {
                Stage::Seal => transport.tun_ingress(&mut ctx, &mut w.pkts),
                Stage::Open => transport.decapsulate(&mut ctx, &mut w.pkts),
            }
            w.pkts.len()
        };
        WorkerCounters::add(&counters.crypto_packets, n as u64);
        n
    }
}

/// Whether a worker's batches of one stage are worth sharing: engaged once they have all shown
/// a backlog (`ENGAGE_BATCH`) for `ENGAGE_AFTER` of the worker's CPU time, until one is too
/// small to share or a join waits too long (`back_off`).
#[derive(Default, Debug)]
pub struct Engagement {
    /// Since when (the worker's CPU time) every batch has shown a backlog (None: the last one
    /// did not).
    backlog_since: Option<Duration>,
    engaged: bool,
}

impl Engagement {
    /// Sees a batch of `n` packets at `cpu` (the worker thread's CPU time, read only for a
    /// batch that may engage); whether to share it.
    pub fn batch(&mut self, n: usize, cpu: impl FnOnce() -> Duration) -> bool {
        if n < 2 * MIN_SHARE {
            // Nothing left to share: the backlog is gone.
            *self = Engagement::default();
            return false;
        }
        if self.engaged {
            return true;
        }
        if n < ENGAGE_BATCH {
            self.backlog_since = None;
            return false;
        }
        let cpu = cpu();
        let since = *self.backlog_since.get_or_insert(cpu);
        self.engaged = cpu.saturating_sub(since) >= ENGAGE_AFTER;
        self.engaged
    }

    /// A join waited for a descheduled helper: stop sharing until the backlog has lasted
    /// `ENGAGE_AFTER` again.
    pub fn back_off(&mut self, cpu: Duration) {
        self.engaged = false;
        self.backlog_since = Some(cpu);
    }

    pub fn engaged(&self) -> bool {
        self.engaged
    }
}

/// A worker's side of the crew: its jobs, reused batch after batch, and when to share.
pub struct Spreader {
    jobs: Vec<Arc<Job>>,
    /// For the seal and the open stage (a worker's two batches).
    engagement: [Engagement; 2],
}

impl Spreader {
    pub fn new() -> Spreader {
        Spreader {
            jobs: Vec::new(),
            engagement: Default::default(),
        }
    }

    /// Runs `stage` on `pkts[..n]`, shared with the crew's other workers when the worker is
    /// CPU-bound (`Engagement`) and the transport says every packet may be
    /// (`Transport::parallel`). Afterwards
    /// `pkts[..n]` holds the same packets in the same order, each through the stage; what the
    /// transport emitted is in `extra`.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &mut self,
        crew: &Crew,
        index: usize,
        transport: &dyn Transport,
        counters: &WorkerCounters,
        stage: Stage,
        now: Duration,
        pkts: &mut Vec<Packet>,
        n: usize,
        extra: &mut Vec<Outgoing>,
    ) {
        let members = crew.members.load();
        let workers = members.len();
        let parts = workers.min(n / MIN_SHARE);
        // Every batch counts towards the engagement, also those too small to share.
        let engaged = enabled() && self.engagement[stage as usize].batch(n, thread_cpu);
        let spread = engaged
            && parts > 1
            && index < workers
            && pkts[..n].iter().all(|p| transport.parallel(stage, p));
        if !spread {
            let mut ctx = Ctx {
                worker: index,
                counters,
                now,
                extra,
            };
            match stage {
                Stage::Seal => transport.tun_ingress(&mut ctx, &mut pkts[..n]),
                Stage::Open => transport.decapsulate(&mut ctx, &mut pkts[..n]),
            }
            WorkerCounters::add(&counters.crypto_packets, n as u64);
            return;
        }
        // The first share stays here; the rest goes out in jobs of `MIN_SHARE`, dealt round the
        // helpers, so a helper holds at most one small job at a time and a preempted helper
        // delays the join by one job's crypto at most.
        let share = n.div_ceil(parts);
        let count = (n - share).div_ceil(MIN_SHARE);
        while self.jobs.len() < count {
            self.jobs.push(Arc::new(Job {
                state: AtomicU8::new(IDLE),
                queued: AtomicBool::new(false),
                owner: std::thread::current(),
                work: Mutex::new(Work {
                    stage,
                    now,
                    pkts: Vec::with_capacity(MIN_SHARE),
                    extra: Vec::new(),
                }),
            }));
        }
        let mut rest = pkts.drain(share..n);
        for (k, job) in self.jobs[..count].iter().enumerate() {
            {
                let mut w = lock(&job.work);
                w.stage = stage;
                w.now = now;
                w.pkts.clear();
                w.pkts.extend(rest.by_ref().take(MIN_SHARE));
            }
            job.state.store(PENDING, Release);
            let helper = &members[(index + 1 + k % (parts - 1)) % workers];
            if !job.queued.swap(true, AcqRel) {
                lock(&helper.jobs).push_back(job.clone());
            }
        }
        drop(rest);
        for k in 0..(parts - 1).min(count) {
            members[(index + 1 + k) % workers].control.wake.notify();
        }
        let mut ctx = Ctx {
            worker: index,
            counters,
            now,
            extra: &mut *extra,
        };
        match stage {
            Stage::Seal => transport.tun_ingress(&mut ctx, &mut pkts[..share]),
            Stage::Open => transport.decapsulate(&mut ctx, &mut pkts[..share]),
        }
        WorkerCounters::add(&counters.crypto_packets, share as u64);
        // Join: first take back and run every job nobody started, then wait for those under
        // way, then put the packets back in their order.
        for job in &self.jobs[..count] {
            if job.take() {
                job.run(index, transport, counters);
            }
        }
        let mut at = share;
        let mut waited_since = None;
        for job in &self.jobs[..count] {
            while job.state.load(Acquire) != DONE {
                waited_since.get_or_insert_with(Instant::now);
                std::thread::park_timeout(Duration::from_millis(1));
            }
            job.state.store(IDLE, Release);
            let mut w = lock(&job.work);
            let k = w.pkts.len();
            pkts.splice(at..at, w.pkts.drain(..));
            extra.append(&mut w.extra);
            at += k;
        }
        debug_assert_eq!(at, n);
        if waited_since.is_some_and(|since: Instant| since.elapsed() >= WAIT_BACKOFF) {
            self.engagement[stage as usize].back_off(thread_cpu());
        }
    }
}

impl Default for Spreader {
    fn default() -> Self {
        Spreader::new()
    }
}

/// The calling thread's CPU time (one `clock_gettime`, only for batches that show a backlog).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to write; this clock exists on every Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backlog_engages_only_after_it_lasted() {
        let t0 = Duration::from_secs(1);
        let mut e = Engagement::default();
        assert!(!e.batch(128, || t0), "a first full batch is not shared");
        assert!(!e.batch(128, || t0 + ENGAGE_AFTER / 2));
        assert!(
            e.batch(ENGAGE_BATCH, || t0 + ENGAGE_AFTER),
            "backlog for ENGAGE_AFTER"
        );
        assert!(
            e.batch(2 * MIN_SHARE, || t0 + ENGAGE_AFTER * 2),
            "engaged: smaller batches too"
        );
        assert!(
            !e.batch(2 * MIN_SHARE - 1, || t0 + ENGAGE_AFTER * 3),
            "nothing to share"
        );
        assert!(
            !e.batch(128, || t0 + ENGAGE_AFTER * 3),
            "a new backlog starts over"
        );
    }

    #[test]
    fn a_catch_up_after_a_descheduling_is_not_shared() {
        // A 30 Mbit/s flow (~2700 packets/s) after 50 ms off the CPU: 135 packets waiting, drained
        // in two batches within microseconds, then the flow's usual one or two per wake-up.
        let t0 = Duration::from_secs(1);
        let mut e = Engagement::default();
        let mut at = t0;
        for n in [128, 7, 2, 1, 64, 40, 17, 3] {
            assert!(!e.batch(n, || at), "batch of {n}");
            at += Duration::from_micros(300);
        }
        // Medium batches break the backlog too.
        for (i, n) in [128, 20, 128, 20, 128].into_iter().enumerate() {
            assert!(
                !e.batch(n, || t0 + ENGAGE_AFTER * (i as u32 + 1)),
                "batch {i}"
            );
        }
    }

    #[test]
    fn only_a_batch_that_may_engage_reads_the_cpu_time() {
        let mut e = Engagement::default();
        assert!(!e.batch(MIN_SHARE, || panic!("read for a small batch")));
        assert!(!e.batch(ENGAGE_BATCH - 1, || panic!("read for a medium batch")));
        assert!(!e.batch(ENGAGE_BATCH, || Duration::ZERO));
        assert!(e.batch(ENGAGE_BATCH, || ENGAGE_AFTER));
        assert!(e.batch(ENGAGE_BATCH, || panic!("read while engaged")));
    }

    #[test]
    fn the_thread_cpu_time_grows_with_work_not_with_sleep() {
        let t0 = thread_cpu();
        std::thread::sleep(Duration::from_millis(20));
        let slept = thread_cpu() - t0;
        let t1 = thread_cpu();
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(20) {
            std::hint::spin_loop();
        }
        let worked = thread_cpu() - t1;
        assert!(slept < Duration::from_millis(5), "asleep: {slept:?}");
        assert!(worked > slept, "worked {worked:?}, slept {slept:?}");
    }

    #[test]
    fn a_long_wait_for_a_helper_backs_off() {
        let t0 = Duration::from_secs(1);
        let mut e = Engagement::default();
        e.batch(128, || t0);
        assert!(e.batch(128, || t0 + ENGAGE_AFTER));
        e.back_off(t0 + ENGAGE_AFTER);
        assert!(!e.engaged());
        assert!(!e.batch(128, || t0 + ENGAGE_AFTER + ENGAGE_AFTER / 2));
        assert!(
            e.batch(128, || t0 + ENGAGE_AFTER * 2),
            "re-engages after another ENGAGE_AFTER"
        );
    }
}
