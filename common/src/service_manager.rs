//! Talks to systemd when it runs a daemon as `Type=notify`: READY once serving, STOPPING
//! on the way out, and WATCHDOG pings at half the unit's `WatchdogSec`, from the async
//! runtime, so a wedged runtime gets the daemon restarted. Outside systemd (no
//! `NOTIFY_SOCKET`) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

/// The daemon serves.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// The daemon is on its way out.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Feeds systemd's watchdog while the tokio runtime runs, when the unit set one.
pub fn spawn_watchdog() {
    if let Some(timeout) = sd_notify::watchdog_enabled() {
        let period = (timeout / 2).max(Duration::from_millis(100));
        tokio::spawn(async move {
            loop {
                send(&[NotifyState::Watchdog]);
                tokio::time::sleep(period).await;
            }
        });
    }
}

fn send(state: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(state) {
        tracing::warn!(message = "Cannot notify systemd.", %error);
    }
}
