//! Cost-aware fairness between clients: per [`ClientKey`], a cap on runs in
//! flight and a token bucket of execution-seconds. A run is charged up front
//! what it may cost (its wall-clock limit) and given back what it did not use
//! when it ends, so a client asking for long runs gets fewer of them.
//!
//! The state knows nothing of HTTP: [`Fairness::admit`] hands out a
//! [`Ticket`] or a [`Refusal`]; the door's layer reads the request and the
//! answer. Time is tokio's clock, so tests run on paused time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::HOUSEKEEPING_INTERVAL;
use super::client::ClientKey;

/// Slack in comparisons of execution-seconds, against float rounding.
const EPSILON: f64 = 1e-9;

/// The per-client limits (see `config::Config::fairness` for the defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct FairnessConfig {
    /// Runs in flight per client; `0` for no cap.
    pub max_inflight: usize,
    /// The budget's burst, in execution-seconds; `0` for no budget.
    pub budget_seconds: f64,
    /// Execution-seconds the budget refills per second; `0` for no budget.
    pub budget_rate: f64,
    /// Charged for a run that names no `timeout_ms`: the executors' default.
    pub default_charge: Duration,
    /// The most one run is charged: the longest it can take (the executors'
    /// maximum wall-clock limit, or the gateway's request timeout).
    pub max_charge: Duration,
}

impl FairnessConfig {
    /// No cap and no budget.
    pub fn off() -> FairnessConfig {
        FairnessConfig {
            max_inflight: 0,
            budget_seconds: 0.0,
            budget_rate: 0.0,
            default_charge: Duration::ZERO,
            max_charge: Duration::ZERO,
        }
    }

    pub fn budget_on(&self) -> bool {
        self.budget_seconds > 0.0 && self.budget_rate > 0.0
    }

    pub fn is_off(&self) -> bool {
        self.max_inflight == 0 && !self.budget_on()
    }

    /// What a run asking for `timeout_ms` (or nothing) may cost.
    pub fn charge(&self, timeout_ms: Option<u64>) -> Duration {
        timeout_ms
            .map_or(self.default_charge, Duration::from_millis)
            .min(self.max_charge)
    }
}

/// Why a client's run was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// It has `limit` runs in flight already.
    InFlight { limit: usize },
    /// Its budget does not hold the charge; it will in `retry_after_secs`
    /// whole seconds (at least 1) if nothing else is spent.
    Budget { retry_after_secs: u64 },
}

/// Every client's runs in flight and budget; memory is bounded by dropping
/// clients with nothing in flight and a full budget, at once when their last
/// run ends and every [`HOUSEKEEPING_INTERVAL`] otherwise.
#[derive(Debug)]
pub struct Fairness {
    shared: Arc<Shared>,
    housekeeping: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    config: FairnessConfig,
    clients: Mutex<HashMap<ClientKey, Client>>,
}

#[derive(Debug)]
struct Client {
    inflight: usize,
    /// Execution-seconds in the bucket as of `at`.
    level: f64,
    at: Instant,
}

impl Client {
    fn refill(&mut self, now: Instant, c: &FairnessConfig) {
        if c.budget_on() {
            let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
            self.level = (self.level + elapsed * c.budget_rate).min(c.budget_seconds);
        }
        self.at = now;
    }

    fn idle(&self, c: &FairnessConfig) -> bool {
        self.inflight == 0 && (!c.budget_on() || self.level + EPSILON >= c.budget_seconds)
    }
}

impl Shared {
    fn clients(&self) -> MutexGuard<'_, HashMap<ClientKey, Client>> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Fairness {
    /// Fairness under `config` whose housekeeping runs as a task (call inside
    /// a tokio runtime). Refuses a budget that is not a finite number ≥ 0.
    pub fn new(config: FairnessConfig) -> Result<Fairness, String> {
        let mut fairness = Fairness::manual(config)?;
        if fairness.shared.config.budget_on() {
            let shared = Arc::clone(&fairness.shared);
            fairness.housekeeping = Some(tokio::spawn(async move {
                let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    housekeep(&shared);
                }
            }));
        }
        Ok(fairness)
    }

    /// Fairness without the housekeeping task (see [`Fairness::housekeep`]).
    pub fn manual(config: FairnessConfig) -> Result<Fairness, String> {
        for (name, v) in [
            ("budget (execution-seconds)", config.budget_seconds),
            ("budget rate (execution-seconds per second)", config.budget_rate),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("the per-client {name} must be a number ≥ 0, not {v}"));
            }
        }
        Ok(Fairness {
            shared: Arc::new(Shared {
                config,
                clients: Mutex::new(HashMap::new()),
            }),
            housekeeping: None,
        })
    }

    /// Nothing limited.
    pub fn off() -> Fairness {
        Fairness::manual(FairnessConfig::off()).expect("no budget is a valid budget")
    }

    pub fn config(&self) -> &FairnessConfig {
        &self.shared.config
    }

    /// Starts a run of `key` that may cost `charge` (cut to the budget's
    /// burst, so a run the budget can ever pay for is admissible once it is
    /// full), or says why not. The [`Ticket`] holds the in-flight slot.
    pub fn admit(&self, key: ClientKey, charge: Duration) -> Result<Ticket, Refusal> {
        let c = &self.shared.config;
        if c.is_off() {
            return Ok(Ticket::untracked(key));
        }
        let charge = if c.budget_on() {
            charge.as_secs_f64().min(c.budget_seconds)
        } else {
            0.0
        };
        let now = Instant::now();
        let mut clients = self.shared.clients();
        let client = clients.entry(key).or_insert_with(|| Client {
            inflight: 0,
            level: c.budget_seconds,
            at: now,
        });
        client.refill(now, c);
        if c.max_inflight > 0 && client.inflight >= c.max_inflight {
            return Err(Refusal::InFlight {
                limit: c.max_inflight,
            });
        }
        if c.budget_on() && client.level + EPSILON < charge {
            let wait = (charge - client.level) / c.budget_rate;
            return Err(Refusal::Budget {
                retry_after_secs: whole_seconds(wait),
            });
        }
        client.inflight += 1;
        client.level = (client.level - charge).max(0.0);
        Ok(Ticket {
            shared: Some(Arc::clone(&self.shared)),
            key,
            charged: charge,
            refund: 0.0,
        })
    }

    /// Forgets the clients with nothing in flight and a full budget.
    pub fn housekeep(&self) {
        housekeep(&self.shared);
    }

    /// Clients held in memory now.
    pub fn tracked(&self) -> usize {
        self.shared.clients().len()
    }

    /// `key`'s runs in flight now.
    pub fn inflight(&self, key: ClientKey) -> usize {
        self.shared.clients().get(&key).map_or(0, |c| c.inflight)
    }

    /// Execution-seconds in `key`'s budget now (a client not held has a full one).
    pub fn available(&self, key: ClientKey) -> f64 {
        let c = &self.shared.config;
        let mut clients = self.shared.clients();
        match clients.get_mut(&key) {
            Some(client) => {
                client.refill(Instant::now(), c);
                client.level
            }
            None => c.budget_seconds,
        }
    }
}

impl Drop for Fairness {
    fn drop(&mut self) {
        if let Some(task) = &self.housekeeping {
            task.abort();
        }
    }
}

fn housekeep(shared: &Shared) {
    let now = Instant::now();
    let c = &shared.config;
    let mut clients = shared.clients();
    clients.retain(|_, client| {
        client.refill(now, c);
        !client.idle(c)
    });
    if clients.capacity() > 2 * clients.len() + 16 {
        clients.shrink_to_fit();
    }
}

/// `secs` rounded up to whole seconds, at least 1.
fn whole_seconds(secs: f64) -> u64 {
    let s = (secs - EPSILON).ceil();
    // `as` saturates: a wait too long to count is u64::MAX seconds.
    if s.is_nan() { 1 } else { (s as u64).max(1) }
}

/// One admitted run: its in-flight slot and its charge. Dropped as it is,
/// the slot is freed and the whole charge kept (the client went away, or
/// the answer does not say what the run used); [`Ticket::used`] and
/// [`Ticket::nothing_ran`] give back what was not used.
#[derive(Debug)]
#[must_use = "dropping the ticket ends the run"]
pub struct Ticket {
    shared: Option<Arc<Shared>>,
    key: ClientKey,
    charged: f64,
    refund: f64,
}

impl Ticket {
    fn untracked(key: ClientKey) -> Ticket {
        Ticket {
            shared: None,
            key,
            charged: 0.0,
            refund: 0.0,
        }
    }

    /// What was taken from the budget.
    pub fn charged(&self) -> Duration {
        Duration::from_secs_f64(self.charged)
    }

    /// The run ended having used `used` (wall clock): the rest comes back.
    pub fn used(mut self, used: Duration) {
        self.refund = (self.charged - used.as_secs_f64()).max(0.0);
    }

    /// The request never ran (refused, malformed): all of it comes back.
    pub fn nothing_ran(mut self) {
        self.refund = self.charged;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let Some(shared) = &self.shared else { return };
        let c = &shared.config;
        let mut clients = shared.clients();
        if let Some(client) = clients.get_mut(&self.key) {
            client.refill(Instant::now(), c);
            client.inflight = client.inflight.saturating_sub(1);
            if c.budget_on() {
                client.level = (client.level + self.refund).min(c.budget_seconds);
            }
            if client.idle(c) {
                clients.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_inflight: usize, budget_seconds: f64, budget_rate: f64) -> FairnessConfig {
        FairnessConfig {
            max_inflight,
            budget_seconds,
            budget_rate,
            default_charge: Duration::from_secs(5),
            max_charge: Duration::from_secs(30),
        }
    }

    fn key(last: u8) -> ClientKey {
        ClientKey::of(std::net::IpAddr::from([192, 0, 2, last]))
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[tokio::test(start_paused = true)]
    async fn the_inflight_cap_is_per_client_and_a_slot_comes_back_when_its_run_ends() {
        let f = Fairness::manual(config(2, 0.0, 0.0)).unwrap();
        let (a, b) = (key(1), key(2));
        let one = f.admit(a, secs(1.0)).unwrap();
        let two = f.admit(a, secs(1.0)).unwrap();
        assert_eq!(f.admit(a, secs(1.0)).unwrap_err(), Refusal::InFlight { limit: 2 });
        assert_eq!(f.inflight(a), 2);
        let other = f.admit(b, secs(1.0)).expect("another client has its own cap");
        drop(one);
        let three = f.admit(a, secs(1.0)).expect("a slot came back");
        drop((two, three, other));
        assert_eq!(
            (f.inflight(a), f.tracked()),
            (0, 0),
            "idle clients are forgotten at once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_charges_up_front_refills_and_says_when_to_retry() {
        let f = Fairness::manual(config(0, 10.0, 1.0)).unwrap();
        let a = key(1);
        let t1 = f.admit(a, secs(4.0)).unwrap();
        let t2 = f.admit(a, secs(4.0)).unwrap();
        assert_eq!(t1.charged(), secs(4.0));
        assert_eq!(
            f.admit(a, secs(4.0)).unwrap_err(),
            Refusal::Budget { retry_after_secs: 2 },
            "2 s in the bucket, 4 s wanted, 1 s/s"
        );
        assert!(f.admit(key(2), secs(4.0)).is_ok(), "budgets are per client");
        tokio::time::advance(secs(1.5)).await;
        assert_eq!(
            f.admit(a, secs(4.0)).unwrap_err(),
            Refusal::Budget { retry_after_secs: 1 },
            "0.5 s short rounds up to 1"
        );
        tokio::time::advance(secs(0.5)).await;
        let t3 = f.admit(a, secs(4.0)).expect("refilled to 4 s");
        assert!(f.available(a).abs() < 1e-6);
        drop((t1, t2, t3));
        assert!(
            f.available(a).abs() < 1e-6,
            "dropped tickets keep their whole charge"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn what_a_run_did_not_use_comes_back() {
        let f = Fairness::manual(config(0, 10.0, 1.0)).unwrap();
        let a = key(1);
        f.admit(a, secs(8.0)).unwrap().used(secs(0.25));
        assert!((f.available(a) - 9.75).abs() < 1e-6, "{}", f.available(a));
        f.admit(a, secs(8.0)).unwrap().used(secs(100.0));
        assert!(
            (f.available(a) - 1.75).abs() < 1e-6,
            "a run is never charged past its charge"
        );
        f.admit(a, secs(1.0)).unwrap().nothing_ran();
        assert!((f.available(a) - 1.75).abs() < 1e-6, "nothing ran, nothing spent");
        tokio::time::advance(secs(100.0)).await;
        assert_eq!(f.available(a), 10.0, "never above the burst");
    }

    #[tokio::test(start_paused = true)]
    async fn a_charge_past_the_burst_is_admitted_when_the_budget_is_full() {
        let f = Fairness::manual(config(0, 10.0, 2.0)).unwrap();
        let a = key(1);
        let t = f.admit(a, secs(30.0)).expect("cut to the burst");
        assert_eq!(t.charged(), secs(10.0));
        assert_eq!(
            f.admit(a, secs(30.0)).unwrap_err(),
            Refusal::Budget { retry_after_secs: 5 },
            "until the bucket is full again"
        );
        drop(t);
        tokio::time::advance(secs(5.0)).await;
        assert!(f.admit(a, secs(1000.0)).is_ok(), "never refused forever");
    }

    #[tokio::test(start_paused = true)]
    async fn the_cap_is_checked_before_the_budget_and_a_refusal_costs_nothing() {
        let f = Fairness::manual(config(1, 10.0, 1.0)).unwrap();
        let a = key(1);
        let t = f.admit(a, secs(3.0)).unwrap();
        for _ in 0..100 {
            assert_eq!(f.admit(a, secs(3.0)).unwrap_err(), Refusal::InFlight { limit: 1 });
        }
        assert!((f.available(a) - 7.0).abs() < 1e-6);
        t.used(secs(1.0));
        assert!((f.available(a) - 9.0).abs() < 1e-6);
        assert_eq!(f.inflight(a), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn housekeeping_forgets_clients_whose_budget_refilled() {
        let f = Fairness::manual(config(4, 10.0, 1.0)).unwrap();
        for i in 0..100 {
            f.admit(key(i), secs(2.0)).unwrap().used(secs(1.0));
        }
        let busy = f.admit(key(200), secs(1.0)).unwrap();
        let spent = key(201);
        f.admit(spent, secs(10.0)).unwrap().used(secs(10.0));
        assert_eq!(f.tracked(), 102);
        tokio::time::advance(secs(1.0)).await;
        f.housekeep();
        assert_eq!(
            f.tracked(),
            2,
            "the refilled ones go; in flight and still short stay"
        );
        assert_eq!(f.inflight(key(200)), 1);
        tokio::time::advance(secs(9.0)).await;
        drop(busy);
        f.housekeep();
        assert_eq!(f.tracked(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_turns_each_limit_off() {
        let off = Fairness::manual(config(0, 0.0, 0.0)).unwrap();
        assert!(off.config().is_off());
        let held: Vec<Ticket> = (0..1000)
            .map(|_| off.admit(key(1), secs(30.0)).unwrap())
            .collect();
        assert_eq!(off.tracked(), 0, "nothing is tracked when nothing is limited");
        drop(held);
        // A budget with no rate (or no burst) is off; the cap alone still holds.
        let cap_only = Fairness::manual(config(1, 60.0, 0.0)).unwrap();
        let t = cap_only.admit(key(1), secs(1000.0)).unwrap();
        assert!(cap_only.admit(key(1), secs(0.0)).is_err());
        drop(t);
        let budget_only = Fairness::manual(config(0, 10.0, 1.0)).unwrap();
        let held: Vec<Ticket> = (0..100)
            .map(|_| budget_only.admit(key(1), secs(0.1)).unwrap())
            .collect();
        assert_eq!(budget_only.inflight(key(1)), 100, "no cap on runs in flight");
        drop(held);
    }

    #[test]
    fn charges_default_and_are_cut_to_the_longest_run() {
        let c = config(1, 60.0, 1.0);
        assert_eq!(c.charge(None), secs(5.0));
        assert_eq!(c.charge(Some(1500)), secs(1.5));
        assert_eq!(c.charge(Some(u64::MAX)), secs(30.0));
    }

    #[test]
    fn nonsense_budgets_are_refused() {
        for (burst, rate) in [(f64::NAN, 1.0), (1.0, f64::INFINITY), (-1.0, 1.0), (1.0, -0.5)] {
            assert!(
                Fairness::manual(config(1, burst, rate)).is_err(),
                "{burst} {rate}"
            );
        }
        assert!(Fairness::manual(config(1, 0.0, 0.0)).is_ok());
    }

    #[test]
    fn retry_after_is_whole_seconds_at_least_one() {
        assert_eq!(whole_seconds(0.0), 1);
        assert_eq!(whole_seconds(0.2), 1);
        assert_eq!(whole_seconds(1.0), 1);
        assert_eq!(whole_seconds(1.0001), 2);
        assert_eq!(whole_seconds(f64::INFINITY), u64::MAX);
        assert_eq!(whole_seconds(f64::NAN), 1);
    }
}
