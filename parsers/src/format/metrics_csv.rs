//! perfmon / `relog -f csv` output of the Hyper-V live-migration counter
//! set (`\\HOST\Hyper-V VM Live Migration(VM)\TCP Transport: Bytes Sent`).
//! The first header cell, `(PDH-CSV 4.0) (<zone name>)(<bias minutes>)`,
//! gives the zone of the sample times (UTC = local + bias). Each row
//! becomes one [`Metric`] per VM instance: bytes sent (summed over the
//! transports) and throughput from the `Bytes Sent/sec` counters.

use std::cell::Cell;
use std::io::Read;
use std::rc::Rc;

use chrono::Duration;

use crate::error::Reason;
use crate::format::ps_csv::Guard;
use crate::metric::{Metric, Phase};
use crate::read::{TextEncoding, Utf8Reader};
use crate::time::parse_local;
use crate::Ctx;

/// One counter column: host, VM instance and what it measures.
#[derive(Debug, Clone, PartialEq)]
struct Column {
    host: String,
    vm: String,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    BytesSent,
    BytesSentPerSec,
    Other,
}

/// `\\NODE-B\Hyper-V VM Live Migration(ADFS1)\TCP Transport: Bytes Sent`
fn column(header: &str) -> Option<Column> {
    let rest = header.strip_prefix("\\\\")?;
    let (host, rest) = rest.split_once('\\')?;
    let open = rest.find('(')?;
    let close = rest.rfind(")\\")?;
    // See: fuzz crash, `\\H\Live Migration)\(x` put `)\` before `(`.
    if close <= open {
        return None;
    }
    let object = &rest[..open];
    if !object.contains("Live Migration") {
        return None;
    }
    let vm = &rest[open + 1..close];
    let counter = &rest[close + 2..];
    let kind = if counter.ends_with("Bytes Sent/sec") {
        Kind::BytesSentPerSec
    } else if counter.ends_with("Bytes Sent") {
        Kind::BytesSent
    } else {
        Kind::Other
    };
    Some(Column {
        host: host.to_owned(),
        vm: vm.to_owned(),
        kind,
    })
}

/// `(PDH-CSV 4.0) (W. Europe Daylight Time)(-120)` → bias in minutes.
fn bias_minutes(first: &str) -> Option<i64> {
    let open = first.rfind('(')?;
    first[open + 1..].trim_end_matches(')').trim().parse().ok()
}

#[derive(Default)]
struct Sample {
    bytes_sent: Option<f64>,
    per_sec: Option<f64>,
}

/// Parses a perfmon CSV.
pub(crate) fn parse<R: Read>(reader: R, base: u64, encoding: TextEncoding, ctx: &mut Ctx<'_>) {
    let read = Rc::new(Cell::new(0u64));
    let mark = Rc::new(Cell::new(0u64));
    let guard = Guard {
        inner: Utf8Reader::new(reader, encoding),
        read: read.clone(),
        mark: mark.clone(),
        limit: ctx.opts.max_record_bytes as u64,
    };
    let mut csv = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(guard);
    let headers = match csv.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            ctx.fatal(base, Some(1), Reason::Csv(e.to_string()));
            return;
        }
    };
    let bias = headers.get(0).and_then(bias_minutes);
    let columns: Vec<Option<Column>> = headers.iter().skip(1).map(column).collect();
    // VM instances in first-seen order.
    let mut instances: Vec<(String, String)> = Vec::new();
    for c in columns.iter().flatten() {
        let key = (c.host.clone(), c.vm.clone());
        if !instances.contains(&key) {
            instances.push(key);
        }
    }
    if instances.is_empty() {
        ctx.error(
            base,
            Some(1),
            Reason::Malformed("no `Hyper-V VM Live Migration` counters in this perfmon CSV".into()),
        );
        return;
    }
    let mut record = csv::StringRecord::new();
    loop {
        let offset = base + csv.position().byte();
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                mark.set(csv.position().byte());
                let line = record.position().map(|p| p.line());
                let time = record.get(0).unwrap_or("");
                let Some(stamp) = parse_local(time, false) else {
                    ctx.error(
                        offset,
                        line,
                        Reason::Malformed(format!("bad sample time {time:?}")),
                    );
                    continue;
                };
                let (timestamp, zone_assumed) = match bias {
                    Some(minutes) => (stamp.assume_utc() + Duration::minutes(minutes), false),
                    None => ctx.resolve(stamp),
                };
                let _ = zone_assumed;
                let mut samples: Vec<Sample> =
                    instances.iter().map(|_| Sample::default()).collect();
                for (i, c) in columns.iter().enumerate() {
                    let Some(c) = c else { continue };
                    let Some(value) = record.get(i + 1).and_then(|v| v.trim().parse::<f64>().ok())
                    else {
                        continue;
                    };
                    let Some(slot) = instances.iter().position(|k| k.0 == c.host && k.1 == c.vm)
                    else {
                        continue;
                    };
                    let s = &mut samples[slot];
                    match c.kind {
                        Kind::BytesSent => *s.bytes_sent.get_or_insert(0.0) += value,
                        Kind::BytesSentPerSec => *s.per_sec.get_or_insert(0.0) += value,
                        Kind::Other => {}
                    }
                }
                for ((host, vm), s) in instances.iter().zip(samples) {
                    if s.bytes_sent.is_none() && s.per_sec.is_none() {
                        continue;
                    }
                    let metric = Metric {
                        timestamp,
                        migration_id: format!("perfmon:{host}:{vm}"),
                        vm_name: Some(vm.clone()),
                        vm_id: None,
                        source_host: Some(host.clone()),
                        destination_host: None,
                        phase: Phase::Sample,
                        pass: None,
                        bytes_sent: s.bytes_sent.map(|b| b as u64),
                        dirty_pages: None,
                        throughput_mbps: s.per_sec.map(|b| b * 8.0 / 1_000_000.0),
                        blackout_ms: None,
                        total_ms: None,
                        transport: None,
                        outcome: None,
                        origin: Default::default(),
                    };
                    ctx.metric(metric, offset);
                }
            }
            Err(e) => {
                let line = e.position().map(|p| p.line());
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    ctx.fatal(offset, line, Reason::Csv(e.to_string()));
                    break;
                }
                mark.set(read.get());
                ctx.error(offset, line, Reason::Csv(e.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_columns() {
        assert_eq!(
            column("\\\\NODE-B\\Hyper-V VM Live Migration(ADFS1)\\TCP Transport: Bytes Sent"),
            Some(Column {
                host: "NODE-B".into(),
                vm: "ADFS1".into(),
                kind: Kind::BytesSent
            })
        );
        assert_eq!(column("\\\\NODE-B\\Memory\\Available MBytes"), None);
        // See: fuzz crash (perfmon_csv): `)\` before `(` used to panic.
        assert_eq!(column("\\\\N\\Hyper-V VM Live Migration)\\(x"), None);
        assert_eq!(
            bias_minutes("(PDH-CSV 4.0) (W. Europe Daylight Time)(-120)"),
            Some(-120)
        );
    }
}
