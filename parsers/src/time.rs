//! Timestamps in every shape Windows exports write, and the local zone that
//! zone-less ones are read in.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc,
};
use compact_str::CompactString;

/// The zone that local times without an offset (Event Viewer text, CSV,
/// NXLog `EventTime`, RFC 3164) are read in. A named zone follows daylight
/// saving time; a fixed offset does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalZone {
    /// A fixed offset such as `+02:00`.
    Fixed(FixedOffset),
    /// An IANA zone such as `Europe/Berlin`.
    Named(chrono_tz::Tz),
}

impl Default for LocalZone {
    fn default() -> Self {
        LocalZone::Fixed(Utc.fix())
    }
}

impl fmt::Display for LocalZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocalZone::Fixed(offset) => write!(f, "{offset}"),
            LocalZone::Named(tz) => write!(f, "{}", tz.name()),
        }
    }
}

/// A zone name or offset that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown time zone {0:?}: use an offset like +02:00 or an IANA name like Europe/Berlin")]
pub struct BadZone(pub String);

impl FromStr for LocalZone {
    type Err = BadZone;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("utc") || text == "Z" {
            return Ok(LocalZone::default());
        }
        if let Some(offset) = parse_offset(text.as_bytes()) {
            return Ok(LocalZone::Fixed(offset));
        }
        text.parse::<chrono_tz::Tz>()
            .map(LocalZone::Named)
            .map_err(|_| BadZone(text.to_owned()))
    }
}

impl LocalZone {
    /// Converts a local wall-clock time to UTC. An ambiguous time (the hour
    /// repeated when daylight saving ends) takes the earlier instant; a time
    /// that does not exist (skipped when it begins) is read with the offset
    /// in force just before the gap.
    pub fn to_utc(&self, naive: NaiveDateTime) -> DateTime<Utc> {
        match self {
            LocalZone::Fixed(offset) => resolve(offset, naive),
            LocalZone::Named(tz) => resolve(tz, naive),
        }
    }
}

fn resolve<Z: TimeZone>(zone: &Z, naive: NaiveDateTime) -> DateTime<Utc> {
    match zone.from_local_datetime(&naive) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(early, _) => early.with_timezone(&Utc),
        LocalResult::None => {
            let before = naive - chrono::Duration::hours(3);
            let offset = zone.offset_from_utc_datetime(&before).fix();
            DateTime::<Utc>::from_naive_utc_and_offset(naive - offset, Utc)
        }
    }
}

/// A parsed time: wall-clock fields plus the offset when the text had one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The wall-clock time as written.
    pub naive: NaiveDateTime,
    /// The offset the text carried, if any.
    pub offset: Option<FixedOffset>,
}

impl Stamp {
    /// UTC, and whether the local zone had to be assumed.
    pub fn resolve(self, zone: &LocalZone) -> (DateTime<Utc>, bool) {
        match self.offset {
            Some(offset) => (resolve(&offset, self.naive), false),
            None => (zone.to_utc(self.naive), true),
        }
    }

    /// UTC when the text had an offset (or a `Z`).
    pub fn to_utc_if_zoned(self) -> Option<DateTime<Utc>> {
        self.offset.map(|offset| resolve(&offset, self.naive))
    }

    /// Reads the wall-clock time as UTC (for formats documented to be UTC
    /// without saying so, such as EvtxECmd's `SystemTime`).
    pub fn assume_utc(self) -> DateTime<Utc> {
        match self.offset {
            Some(offset) => resolve(&offset, self.naive),
            None => DateTime::<Utc>::from_naive_utc_and_offset(self.naive, Utc),
        }
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Cursor {
            b: s.trim().as_bytes(),
            i: 0,
        }
    }

    fn digits(&mut self, min: usize, max: usize) -> Option<u32> {
        let start = self.i;
        let mut value: u32 = 0;
        while self.i < self.b.len() && self.i - start < max && self.b[self.i].is_ascii_digit() {
            value = value * 10 + u32::from(self.b[self.i] - b'0');
            self.i += 1;
        }
        (self.i - start >= min).then_some(value)
    }

    fn byte(&mut self, c: u8) -> bool {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn one_of(&mut self, set: &[u8]) -> Option<u8> {
        let c = *self.b.get(self.i)?;
        if set.contains(&c) {
            self.i += 1;
            Some(c)
        } else {
            None
        }
    }

    fn spaces(&mut self) -> usize {
        let start = self.i;
        while self.i < self.b.len() && self.b[self.i] == b' ' {
            self.i += 1;
        }
        self.i - start
    }

    fn rest(&self) -> &'a [u8] {
        &self.b[self.i.min(self.b.len())..]
    }

    fn at_end(&self) -> bool {
        self.i >= self.b.len()
    }

    /// Fractional seconds after a `.` or `,`: 1 to 9 digits (more are read and dropped).
    fn fraction(&mut self) -> u32 {
        if self.one_of(b".,").is_none() {
            return 0;
        }
        let mut nanos: u32 = 0;
        let mut n = 0;
        while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
            if n < 9 {
                nanos = nanos * 10 + u32::from(self.b[self.i] - b'0');
                n += 1;
            }
            self.i += 1;
        }
        while n < 9 {
            nanos *= 10;
            n += 1;
        }
        nanos
    }

    fn time(&mut self) -> Option<NaiveTime> {
        let h = self.digits(1, 2)?;
        if !self.byte(b':') {
            return None;
        }
        let m = self.digits(2, 2)?;
        let s = if self.byte(b':') {
            self.digits(2, 2)?
        } else {
            0
        };
        let nanos = self.fraction();
        NaiveTime::from_hms_nano_opt(h, m, s.min(59), nanos)
    }
}

fn parse_offset(b: &[u8]) -> Option<FixedOffset> {
    let sign = match b.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let rest = &b[1..];
    let (h, m) = match rest.len() {
        2 => (num(&rest[0..2])?, 0),
        4 => (num(&rest[0..2])?, num(&rest[2..4])?),
        5 if rest[2] == b':' => (num(&rest[0..2])?, num(&rest[3..5])?),
        _ => return None,
    };
    FixedOffset::east_opt(sign * (h as i32 * 3600 + m as i32 * 60))
}

fn num(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |acc, d| acc * 10 + u32::from(d - b'0')))
}

fn zone_suffix(c: &mut Cursor<'_>) -> Option<Option<FixedOffset>> {
    c.spaces();
    let rest = c.rest();
    if rest.is_empty() {
        return Some(None);
    }
    if rest == b"Z" || rest == b"z" || rest.eq_ignore_ascii_case(b"UTC") || rest == b"GMT" {
        return Some(Some(Utc.fix()));
    }
    parse_offset(rest).map(Some)
}

/// ISO 8601 / RFC 3339: `2018-09-27T13:36:44.1234567Z`, with a space instead
/// of `T`, 0 to 9 fraction digits, `Z`, `+02:00`, `+0200` or no zone.
pub fn parse_iso(text: &str) -> Option<Stamp> {
    let b = text.as_bytes();
    // Fast path for the fixed-width `YYYY-MM-DDTHH:MM:SS` head most lines carry.
    if b.len() >= 19
        && b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't' | b' ')
        && b[13] == b':'
        && b[16] == b':'
    {
        let year = i64::from(two(b, 0)? * 100 + two(b, 2)?);
        let mut c = Cursor { b, i: 19 };
        let nanos = c.fraction();
        let offset = zone_suffix(&mut c)?;
        let naive = naive_from_fields(
            year,
            two(b, 5)?,
            two(b, 8)?,
            two(b, 11)?,
            two(b, 14)?,
            two(b, 17)?,
            nanos,
        )?;
        return Some(Stamp { naive, offset });
    }
    let mut c = Cursor::new(text);
    let y = c.digits(4, 4)?;
    c.byte(b'-').then_some(())?;
    let mo = c.digits(2, 2)?;
    c.byte(b'-').then_some(())?;
    let d = c.digits(2, 2)?;
    let date = NaiveDate::from_ymd_opt(y as i32, mo, d)?;
    if c.one_of(b"Tt ").is_none() {
        return if c.at_end() {
            Some(Stamp {
                naive: date.and_time(NaiveTime::MIN),
                offset: None,
            })
        } else {
            None
        };
    }
    let time = c.time()?;
    let offset = zone_suffix(&mut c)?;
    Some(Stamp {
        naive: date.and_time(time),
        offset,
    })
}

fn two(b: &[u8], i: usize) -> Option<u32> {
    let (a, c) = (b[i].wrapping_sub(b'0'), b[i + 1].wrapping_sub(b'0'));
    (a < 10 && c < 10).then(|| u32::from(a) * 10 + u32::from(c))
}

/// A wall-clock time from fields, without going through chrono's
/// validating constructors (this is the hot path of line formats).
fn naive_from_fields(
    y: i64,
    mo: u32,
    d: u32,
    h: u32,
    mi: u32,
    s: u32,
    nanos: u32,
) -> Option<NaiveDateTime> {
    if h > 23 || mi > 59 || s > 60 || nanos >= 1_000_000_000 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, mo, d)?;
    let time = NaiveTime::from_hms_nano_opt(h, mi, s.min(59), nanos)?;
    Some(date.and_time(time))
}

/// Failover cluster log: `2018/09/27-15:36:44.123` (no zone).
pub fn parse_cluster(text: &str) -> Option<Stamp> {
    let b = text.as_bytes();
    if b.len() == 23
        && b[4] == b'/'
        && b[7] == b'/'
        && b[10] == b'-'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
    {
        let year = i64::from(two(b, 0)? * 100 + two(b, 2)?);
        let last = b[22].wrapping_sub(b'0');
        if last > 9 {
            return None;
        }
        let millis = two(b, 20)? * 10 + u32::from(last);
        let naive = naive_from_fields(
            year,
            two(b, 5)?,
            two(b, 8)?,
            two(b, 11)?,
            two(b, 14)?,
            two(b, 17)?,
            millis * 1_000_000,
        )?;
        return Some(Stamp {
            naive,
            offset: None,
        });
    }
    parse_cluster_slow(text)
}

fn parse_cluster_slow(text: &str) -> Option<Stamp> {
    let mut c = Cursor::new(text);
    let y = c.digits(4, 4)?;
    c.byte(b'/').then_some(())?;
    let mo = c.digits(2, 2)?;
    c.byte(b'/').then_some(())?;
    let d = c.digits(2, 2)?;
    c.byte(b'-').then_some(())?;
    let time = c.time()?;
    c.at_end().then_some(())?;
    Some(Stamp {
        naive: NaiveDate::from_ymd_opt(y as i32, mo, d)?.and_time(time),
        offset: None,
    })
}

/// Locale-formatted local dates as Event Viewer, Export-Csv and perfmon
/// write them: `9/27/2018 15:36:44`, `11/21/2017 4:57:53 AM`,
/// `27.09.2018 15:36:44`, `09/27/2018 13:36:44.123`, and ISO forms.
/// Month comes first unless `day_first` or the first number is above 12.
pub fn parse_local(text: &str, day_first: bool) -> Option<Stamp> {
    if let Some(stamp) = parse_iso(text) {
        return Some(stamp);
    }
    let mut c = Cursor::new(text);
    let a = c.digits(1, 2)?;
    let sep = c.one_of(b"/.-")?;
    let b = c.digits(1, 2)?;
    c.byte(sep).then_some(())?;
    let y = c.digits(4, 4)?;
    let (month, day) = if sep == b'.' || day_first || a > 12 {
        (b, a)
    } else {
        (a, b)
    };
    let date = NaiveDate::from_ymd_opt(y as i32, month, day)?;
    if c.spaces() == 0 && !c.byte(b'T') {
        return c.at_end().then(|| Stamp {
            naive: date.and_time(NaiveTime::MIN),
            offset: None,
        });
    }
    let mut time = c.time()?;
    c.spaces();
    let rest = c.rest();
    let pm = rest.len() >= 2 && rest[..2].eq_ignore_ascii_case(b"PM");
    let am = rest.len() >= 2 && rest[..2].eq_ignore_ascii_case(b"AM");
    if pm || am {
        c.i += 2;
        let hour = chrono::Timelike::hour(&time);
        let hour24 = match (hour, pm) {
            (12, false) => 0,
            (12, true) => 12,
            (h, true) => h + 12,
            (h, false) => h,
        };
        time = chrono::Timelike::with_hour(&time, hour24)?;
    }
    let offset = zone_suffix(&mut c)?;
    Some(Stamp {
        naive: date.and_time(time),
        offset,
    })
}

/// PowerShell 5.1 `ConvertTo-Json` dates: `/Date(1595374458918)/`, optionally
/// with a `+0200` suffix that does not change the instant.
pub fn parse_ms_date(text: &str) -> Option<DateTime<Utc>> {
    let inner = text
        .trim()
        .trim_start_matches('\\')
        .strip_prefix("/Date(")?
        .trim_end_matches('/')
        .trim_end_matches('\\')
        .strip_suffix(")")?;
    let digits_end = inner
        .char_indices()
        .skip(1)
        .find(|(_, ch)| *ch == '+' || *ch == '-')
        .map_or(inner.len(), |(i, _)| i);
    let millis: i64 = inner[..digits_end].parse().ok()?;
    DateTime::<Utc>::from_timestamp_millis(millis)
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

fn month(b: &[u8]) -> Option<u32> {
    let b = b.get(..3)?;
    MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(b))
        .map(|i| i as u32 + 1)
}

/// Snare's `Fri Nov 27 09:58:51 2015` (local, no zone).
pub fn parse_snare(text: &str) -> Option<Stamp> {
    let mut c = Cursor::new(text);
    // Weekday is optional.
    if c.rest().len() > 4 && c.rest()[3] == b' ' && month(c.rest()).is_none() {
        c.i += 4;
    }
    let mo = month(c.rest())?;
    c.i += 3;
    c.spaces();
    let d = c.digits(1, 2)?;
    c.spaces();
    let time = c.time()?;
    c.spaces();
    let y = c.digits(4, 4)?;
    Some(Stamp {
        naive: NaiveDate::from_ymd_opt(y as i32, mo, d)?.and_time(time),
        offset: None,
    })
}

/// RFC 3164 `Nov 22 19:15:26` (no year, no zone); returns the stamp and the
/// number of bytes it took.
pub fn parse_bsd(text: &str, year: i32) -> Option<(Stamp, usize)> {
    let b = text.as_bytes();
    let mut c = Cursor { b, i: 0 };
    let mo = month(b)?;
    c.i = 3;
    c.spaces();
    let d = c.digits(1, 2)?;
    c.spaces();
    let time = c.time()?;
    Some((
        Stamp {
            naive: NaiveDate::from_ymd_opt(year, mo, d)?.and_time(time),
            offset: None,
        },
        c.i,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(stamp: Stamp) -> String {
        stamp.assume_utc().to_rfc3339()
    }

    #[test]
    fn iso_forms() {
        let check = |text: &str, want: &str| {
            assert_eq!(utc(parse_iso(text).expect(text)), want, "{text}");
        };
        check(
            "2017-11-21T10:57:53.874847300Z",
            "2017-11-21T10:57:53.874847300+00:00",
        );
        check(
            "2023-08-02 05:47:11.0063997",
            "2023-08-02T05:47:11.006399700+00:00",
        );
        check(
            "2026-11-22T19:15:25.630737+02:00",
            "2026-11-22T17:15:25.630737+00:00",
        );
        check("2026-11-22T19:15:25+0200", "2026-11-22T17:15:25+00:00");
        assert!(parse_iso("2026-13-22T19:15:25Z").is_none());
        assert!(parse_iso("garbage").is_none());
    }

    #[test]
    fn local_forms() {
        let check = |text: &str, want: &str| {
            let stamp = parse_local(text, false).expect(text);
            assert_eq!(stamp.naive.to_string(), want, "{text}");
        };
        check("9/27/2018 15:36:44", "2018-09-27 15:36:44");
        check("11/21/2017 4:57:53 AM", "2017-11-21 04:57:53");
        check("11/21/2017 12:07:53 AM", "2017-11-21 00:07:53");
        check("5/31/2026 4:36:21 PM", "2026-05-31 16:36:21");
        check("27.09.2018 15:36:44", "2018-09-27 15:36:44");
        check("27/09/2018 15:36:44", "2018-09-27 15:36:44");
        check("09/27/2018 13:36:44.123", "2018-09-27 13:36:44.123");
        check("01-07-2025 17:53:27", "2025-01-07 17:53:27");
    }

    #[test]
    fn zones_and_dst() {
        let berlin: LocalZone = "Europe/Berlin".parse().unwrap();
        let summer = parse_local("9/27/2018 15:36:44", false).unwrap();
        assert_eq!(
            summer.resolve(&berlin).0.to_rfc3339(),
            "2018-09-27T13:36:44+00:00"
        );
        let winter = parse_local("1/10/2018 15:36:44", false).unwrap();
        assert_eq!(
            winter.resolve(&berlin).0.to_rfc3339(),
            "2018-01-10T14:36:44+00:00"
        );
        let fixed: LocalZone = "-06:00".parse().unwrap();
        let (t, assumed) = parse_local("11/21/2017 4:57:53 AM", false)
            .unwrap()
            .resolve(&fixed);
        assert!(assumed);
        assert_eq!(t.to_rfc3339(), "2017-11-21T10:57:53+00:00");
        assert!("Mars/Olympus".parse::<LocalZone>().is_err());
    }

    #[test]
    fn other_forms() {
        assert_eq!(
            parse_ms_date("/Date(1595374458918)/").unwrap().to_rfc3339(),
            "2020-07-21T23:34:18.918+00:00"
        );
        assert_eq!(
            utc(parse_cluster("2018/09/27-15:36:44.123").unwrap()),
            "2018-09-27T15:36:44.123+00:00"
        );
        assert_eq!(
            utc(parse_snare("Fri Nov 27 09:58:51 2015").unwrap()),
            "2015-11-27T09:58:51+00:00"
        );
        let (stamp, used) = parse_bsd("Nov  2 19:15:26 vm vmms: x", 2026).unwrap();
        assert_eq!(utc(stamp), "2026-11-02T19:15:26+00:00");
        assert_eq!(used, 15);
    }
}

/// Learns each host's real UTC offset from records that reach relive twice:
/// once in a format that keeps UTC (EVTX, event XML, Winlogbeat, RFC 5424,
/// an Event Viewer copy with its `Event Xml:` tail) and once in one that
/// writes naive local time (Event Viewer text, Export-Csv, NXLog, Snare,
/// RFC 3164). The same host + channel + record id gives the offset, in
/// whichever order the two copies arrive; [`OffsetLearner::correct`] then
/// shifts that host's zone-assumed events.
#[derive(Debug, Default)]
pub struct OffsetLearner {
    exact: HashMap<RecordKey, DateTime<Utc>>,
    assumed: HashMap<RecordKey, DateTime<Utc>>,
    offsets: HashMap<CompactString, chrono::TimeDelta>,
}

type RecordKey = (CompactString, CompactString, u64);

/// Records kept per side, so memory stays bounded on huge inputs.
const LEARN_CAP: usize = 2_000_000;

impl OffsetLearner {
    /// Notes an event's time; learns its host's offset when the other copy
    /// of the same record has been seen.
    pub fn learn(&mut self, event: &crate::Event) {
        let Some(record) = event.record_id else {
            return;
        };
        let host = CompactString::from(event.short_host().to_ascii_lowercase());
        if self.offsets.contains_key(&host) {
            return;
        }
        let channel = CompactString::from(event.channel.to_ascii_lowercase().replace('/', "-"));
        let key = (host, channel, record);
        let (mine, other) = if event.zone_assumed {
            (&mut self.assumed, &self.exact)
        } else {
            (&mut self.exact, &self.assumed)
        };
        let Some(&other_ts) = other.get(&key) else {
            if mine.len() < LEARN_CAP {
                mine.insert(key, event.timestamp);
            }
            return;
        };
        let delta = if event.zone_assumed {
            event.timestamp - other_ts
        } else {
            other_ts - event.timestamp
        };
        // Whole quarter hours within ±14 h: a zone, not a different record.
        let quarters = (delta.num_seconds() as f64 / 900.0).round() as i64;
        let rounded = chrono::TimeDelta::seconds(quarters * 900);
        if quarters != 0 && quarters.abs() <= 56 && (delta - rounded).num_seconds().abs() <= 2 {
            self.offsets.insert(key.0, rounded);
        }
    }

    /// Shifts a zone-assumed event by its host's learned offset.
    pub fn correct(&self, event: &mut crate::Event) -> Option<chrono::TimeDelta> {
        if !event.zone_assumed {
            return None;
        }
        let host = event.short_host().to_ascii_lowercase();
        let shift = *self.offsets.get(host.as_str())?;
        event.timestamp -= shift;
        Some(shift)
    }

    /// Sets a host's offset learned earlier (a collector restoring what it
    /// learned before a restart).
    pub fn restore(&mut self, host: &str, offset: chrono::TimeDelta) {
        self.offsets
            .insert(CompactString::from(host.to_ascii_lowercase()), offset);
    }

    /// How many hosts' offsets are known.
    pub fn known(&self) -> usize {
        self.offsets.len()
    }

    /// The offsets learned so far, by short host name (local time − UTC).
    pub fn offsets(&self) -> impl Iterator<Item = (&str, chrono::TimeDelta)> {
        self.offsets.iter().map(|(h, d)| (h.as_str(), *d))
    }
}

/// A span of time or a point in time that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpanError {
    /// Not a duration relive reads.
    #[error("cannot read duration {0:?}: use 90s, 15m, 2h, 7d, 2w or 1h30m")]
    Duration(String),
    /// Zero or negative.
    #[error("duration {0:?} must be more than zero")]
    Zero(String),
    /// Neither a duration nor a time.
    #[error(
        "cannot read time {0:?}: use a duration like 2h or 7d, or a time like 2026-11-01T00:00Z"
    )]
    When(String),
}

/// The one duration syntax of relive (`relive search --since`, a rule's
/// `timespan`, `[correlate]` settings): `90s`, `15m`, `2h`, `7d`, `2w`,
/// `1h30m`, `500ms` (humantime's units: `m` is minutes, `M` months).
pub fn parse_span(text: &str) -> Result<std::time::Duration, SpanError> {
    let text = text.trim();
    let span = humantime::parse_duration(text).map_err(|_| SpanError::Duration(text.into()))?;
    if span.is_zero() {
        return Err(SpanError::Zero(text.into()));
    }
    Ok(span)
}

/// A duration before `now` (`2h`: two hours ago) or an RFC 3339 time
/// (`2026-11-01T00:00Z`, `2026-11-01`), as `--since` and `--until` take it.
pub fn parse_when(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, SpanError> {
    let text = text.trim();
    if let Ok(ago) = parse_span(text) {
        let ago = chrono::TimeDelta::from_std(ago).map_err(|_| SpanError::When(text.into()))?;
        return now
            .checked_sub_signed(ago)
            .ok_or_else(|| SpanError::When(text.into()));
    }
    let with_seconds = if text.len() == 17 && text.ends_with('Z') {
        // `2026-11-01T00:00Z` has no seconds.
        format!("{}:00Z", &text[..16])
    } else {
        text.to_owned()
    };
    parse_iso(&with_seconds)
        .map(|s| s.assume_utc())
        .ok_or_else(|| SpanError::When(text.into()))
}

#[cfg(test)]
mod span_tests {
    use super::*;

    #[test]
    fn one_syntax_for_every_duration() {
        let s = |t: &str| parse_span(t).map(|d| d.as_secs());
        assert_eq!(s("90s"), Ok(90));
        assert_eq!(s("15m"), Ok(900));
        assert_eq!(s(" 2h "), Ok(7200));
        assert_eq!(s("7d"), Ok(7 * 86_400));
        assert_eq!(s("2w"), Ok(14 * 86_400));
        assert_eq!(s("1h30m"), Ok(5400));
        assert!(matches!(s("0s"), Err(SpanError::Zero(_))));
        assert!(matches!(s("2x"), Err(SpanError::Duration(_))));
        assert!(matches!(s("12"), Err(SpanError::Duration(_))));
        assert!(matches!(s(""), Err(SpanError::Duration(_))));
    }

    #[test]
    fn when_is_a_duration_ago_or_a_time() {
        let now = Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap();
        assert_eq!(
            parse_when("2h", now),
            Ok(Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0).unwrap())
        );
        assert_eq!(
            parse_when("2026-11-01T00:00Z", now),
            Ok(Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap())
        );
        assert!(matches!(parse_when("soon", now), Err(SpanError::When(_))));
    }
}
