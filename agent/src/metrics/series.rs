//! From samples to CloudWatch datums: the samples of one flush interval become one datum
//! per series with Values/Counts (equal values merged, at most 150 values a datum), so
//! minimum, maximum, average, sum and sample count all survive in CloudWatch; aggregation
//! dimension sets add fleet-wide series.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::sample::{Sample, Unit};

/// PutMetricData's limit on values in one datum.
pub const MAX_VALUES_PER_DATUM: usize = 150;

/// One CloudWatch datum, independent of the SDK (the spool stores these).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Datum {
    pub name: String,
    pub unit: Unit,
    /// Sorted by name.
    pub dimensions: Vec<(String, String)>,
    pub timestamp_ms: i64,
    pub values: Vec<f64>,
    pub counts: Vec<f64>,
}

/// What identifies a series: a billed custom metric.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeriesKey {
    pub name: String,
    pub unit: Unit,
    pub dimensions: Vec<(String, String)>,
}

/// The samples gathered since the last flush.
#[derive(Debug, Default)]
pub struct FlushWindow {
    series: BTreeMap<SeriesKey, Vec<f64>>,
}

impl FlushWindow {
    /// Adds one sample of the host, under the host's own dimensions.
    pub fn add(&mut self, samples: &[Sample], host: &[(String, String)]) {
        for sample in samples {
            let mut dimensions: Vec<(String, String)> = host.to_vec();
            dimensions.extend(sample.dimensions.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
            dimensions.sort();
            let key = SeriesKey { name: sample.name.to_owned(), unit: sample.unit, dimensions };
            self.series.entry(key).or_default().push(sample.value);
        }
    }

    /// Adds a single value for one series (heartbeat, the agent's own counters).
    pub fn add_value(&mut self, key: SeriesKey, value: f64) {
        self.series.entry(key).or_default().push(value);
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// The datums of this window, stamped `timestamp_ms`, and the window emptied. Each
    /// aggregation set (dimension names) adds series reduced to those dimensions, for
    /// the series that have them all.
    pub fn take_datums(&mut self, timestamp_ms: i64, aggregations: &[Vec<String>]) -> Vec<Datum> {
        let series = std::mem::take(&mut self.series);
        let mut merged: BTreeMap<SeriesKey, Vec<f64>> = BTreeMap::new();
        for (key, values) in series {
            for names in aggregations {
                let reduced: Vec<(String, String)> =
                    key.dimensions.iter().filter(|(k, _)| names.contains(k)).cloned().collect();
                if reduced.len() == names.len() {
                    let aggregated = SeriesKey { dimensions: reduced, ..key.clone() };
                    merged.entry(aggregated).or_default().extend(&values);
                }
            }
            merged.entry(key).or_default().extend(values);
        }
        merged.into_iter().flat_map(|(key, values)| datums_of(key, &values, timestamp_ms)).collect()
    }

    /// The series the window would publish, aggregations included: the billed metrics.
    pub fn series_count(&self, aggregations: &[Vec<String>]) -> BTreeMap<String, usize> {
        let mut copy = FlushWindow { series: self.series.clone() };
        let mut per_name: BTreeMap<String, usize> = BTreeMap::new();
        let datums = copy.take_datums(0, aggregations);
        let mut seen = std::collections::BTreeSet::new();
        for datum in datums {
            if seen.insert((datum.name.clone(), datum.dimensions.clone())) {
                *per_name.entry(datum.name).or_default() += 1;
            }
        }
        per_name
    }
}

/// Values with their counts, equal values merged, cut into datums of at most 150 values.
fn datums_of(key: SeriesKey, values: &[f64], timestamp_ms: i64) -> Vec<Datum> {
    let mut counted: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for value in values.iter().filter(|v| v.is_finite()) {
        counted.entry(value.to_bits()).or_insert((*value, 0.0)).1 += 1.0;
    }
    let pairs: Vec<(f64, f64)> = counted.into_values().collect();
    pairs
        .chunks(MAX_VALUES_PER_DATUM)
        .map(|chunk| Datum {
            name: key.name.clone(),
            unit: key.unit,
            dimensions: key.dimensions.clone(),
            timestamp_ms,
            values: chunk.iter().map(|(value, _)| *value).collect(),
            counts: chunk.iter().map(|(_, count)| *count).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &'static str, value: f64, mount: &str) -> Sample {
        Sample { name, unit: Unit::Percent, dimensions: vec![("path", mount.to_owned())], value }
    }

    fn host(instance: &str) -> Vec<(String, String)> {
        vec![
            ("InstanceId".to_owned(), instance.to_owned()),
            ("AutoScalingGroupName".to_owned(), "web".to_owned()),
        ]
    }

    #[test]
    fn samples_of_a_window_become_one_datum_with_merged_counts() {
        let mut window = FlushWindow::default();
        for value in [10.0, 90.0, 10.0, 10.0] {
            window.add(&[sample("disk_used_percent", value, "/")], &host("i-1"));
        }
        let datums = window.take_datums(1_000, &[]);
        assert_eq!(datums.len(), 1);
        assert_eq!(datums[0].values, [10.0, 90.0]);
        assert_eq!(datums[0].counts, [3.0, 1.0]);
        assert_eq!(
            datums[0].dimensions,
            [
                ("AutoScalingGroupName".to_owned(), "web".to_owned()),
                ("InstanceId".to_owned(), "i-1".to_owned()),
                ("path".to_owned(), "/".to_owned())
            ]
        );
        assert!(window.is_empty());
    }

    #[test]
    fn more_than_150_distinct_values_are_split_into_datums() {
        let mut window = FlushWindow::default();
        for value in 0..400 {
            window.add(&[sample("m", f64::from(value), "/")], &host("i-1"));
        }
        let datums = window.take_datums(0, &[]);
        let sizes: Vec<_> = datums.iter().map(|d| d.values.len()).collect();
        assert_eq!(sizes, [150, 150, 100]);
    }

    #[test]
    fn aggregation_sets_add_reduced_series() {
        let mut window = FlushWindow::default();
        window.add(&[sample("m", 1.0, "/"), sample("m", 3.0, "/data")], &host("i-1"));
        let aggregations = vec![vec!["AutoScalingGroupName".to_owned()], vec![]];
        let counts = window.series_count(&aggregations);
        assert_eq!(counts["m"], 4, "two mounts, one per group, one fleet-wide");
        let datums = window.take_datums(0, &aggregations);
        let fleet = datums.iter().find(|d| d.dimensions.is_empty()).expect("fleet-wide");
        assert_eq!((fleet.values.clone(), fleet.counts.clone()), (vec![1.0, 3.0], vec![1.0, 1.0]));
    }
}
