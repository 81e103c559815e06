//! Bench: one evaluation cycle of the engine in memory, on one core: 1,000 metric rules
//! over 10,000 series (10 series a rule, 5 datapoints each, values around the
//! threshold so series move between states), after the rules are loaded from TOML.
//!
//! `cargo bench -p klaxon-aggregator --bench engine` prints the median cycle time of 20.

use std::collections::BTreeMap;
use std::time::Instant;

use klaxon_aggregator::engine::evaluate::{Engine, Observation};
use klaxon_aggregator::rules::check::load_rules;

const RULES: usize = 1000;
const SERIES_PER_RULE: usize = 10;
const CYCLES: usize = 20;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut text = String::new();
    for rule in 0..RULES {
        text.push_str(&format!(
            "[[rule]]\nname = \"Rule{rule}\"\nkind = \"metric\"\nseverity = \"warning\"\nsummary = \"{{{{value}}}} on {{{{InstanceId}}}}\"\nnamespace = \"Klaxon\"\nmetric = \"m{rule}\"\nstat = \"Average\"\ngroup_by = [\"InstanceId\"]\nwhen = \"> 50\"\ndatapoints = \"3/5\"\nfor = \"2m\"\nclear_when = \"< 40\"\n\n"
        ));
    }
    let path = dir.path().join("rules.toml");
    std::fs::write(&path, text).expect("write");
    let rules = load_rules(&[path]).expect("valid rules");

    let mut engine = Engine::default();
    let mut seed = 7u64;
    let mut times = Vec::new();
    let mut changes = 0;
    for cycle in 0..CYCLES {
        let observations: Vec<Observation> = (0..RULES)
            .map(|_| {
                Observation::Datapoints(
                    (0..SERIES_PER_RULE)
                        .map(|series| {
                            let labels: BTreeMap<String, String> =
                                [("InstanceId".to_owned(), format!("i-{series:05}"))].into();
                            let values = (0..5)
                                .map(|_| {
                                    seed = seed
                                        .wrapping_mul(6_364_136_223_846_793_005)
                                        .wrapping_add(1);
                                    Some((seed >> 33) as f64 % 100.0)
                                })
                                .collect();
                            (labels, values)
                        })
                        .collect(),
                )
            })
            .collect();
        let now = cycle as i64 * 60;
        let started = Instant::now();
        for (rule, observation) in rules.iter().zip(&observations) {
            changes += engine.evaluate(rule, observation, now).len();
        }
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "engine: {RULES} rules over {} series: {:?} per cycle median ({:?} min, {:?} max), {changes} alert changes in {CYCLES} cycles",
        RULES * SERIES_PER_RULE,
        times[CYCLES / 2],
        times[0],
        times[CYCLES - 1]
    );
}
