//! How a device and its control threads talk to a running worker: a wake-up eventfd and a few
//! flags the worker reads at each wake-up. Shared by the device (start, resize, stop), the
//! transport's `Senders` (`wake`) and the worker loop, so none of them depends on another.

use crate::sys::EventFd;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct Control {
    pub wake: EventFd,
    pub stop: AtomicBool,
    /// Test hook: the worker panics at its next wake-up (exercises the restart path).
    pub inject_panic: AtomicBool,
    /// Run `Transport::tick` at the next wake-up instead of waiting for the interval.
    pub tick_now: AtomicBool,
}

impl Control {
    pub fn new() -> io::Result<Control> {
        Ok(Control {
            wake: EventFd::new()?,
            stop: AtomicBool::new(false),
            inject_panic: AtomicBool::new(false),
            tick_now: AtomicBool::new(false),
        })
    }

    /// Wakes the worker and makes it run the transport's tick now.
    pub fn wake_for_tick(&self) {
        self.tick_now.store(true, Ordering::Release);
        self.wake.notify();
    }
}
