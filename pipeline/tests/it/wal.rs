//! The write-ahead log on disk: replay, torn tails, segments.

use std::fs::OpenOptions;
use std::io::Write;

use pipeline::wal::{self, Wal, WalOptions, WalReader};
use proptest::prelude::*;

fn small() -> WalOptions {
    WalOptions {
        segment_bytes: 300,
        sync: true,
    }
}

fn read_all(dir: &std::path::Path, from: u64) -> Vec<(u64, Vec<u8>)> {
    let mut r = WalReader::new(dir, from);
    let mut out = Vec::new();
    while let Some((seq, body)) = r.next_record().unwrap() {
        out.push((seq, body.to_vec()));
    }
    out
}

#[test]
fn records_survive_reopen_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, rec) = Wal::open(dir.path(), small()).unwrap();
    assert_eq!(rec.records, 0);
    for i in 0..50u32 {
        let body = format!("record {i} {}", "x".repeat(i as usize));
        assert_eq!(w.append(&[body.as_bytes()]).unwrap(), u64::from(i));
    }
    drop(w);
    assert!(wal::segments(dir.path()).unwrap().len() > 3, "rotated");
    let (w, rec) = Wal::open(dir.path(), small()).unwrap();
    assert_eq!(rec.records, 50);
    assert_eq!(rec.damage, None);
    assert_eq!(w.next_seq(), 50);
    let all = read_all(dir.path(), 0);
    assert_eq!(all.len(), 50);
    assert_eq!(all[7].1, format!("record 7 {}", "x".repeat(7)).into_bytes());
    // Reading from the middle skips what came before.
    let tail = read_all(dir.path(), 45);
    assert_eq!(
        tail.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![45, 46, 47, 48, 49]
    );
}

#[test]
fn released_segments_are_deleted_and_readers_start_at_the_oldest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = Wal::open(dir.path(), small()).unwrap();
    for i in 0..40u32 {
        w.append(&[format!("r{i:0>60}")]).unwrap();
    }
    let before = wal::segments(dir.path()).unwrap().len();
    let removed = w.release_before(30).unwrap();
    assert!(removed > 0);
    assert_eq!(wal::segments(dir.path()).unwrap().len(), before - removed);
    let rest = read_all(dir.path(), 30);
    assert_eq!(rest.first().map(|r| r.0), Some(30));
    assert_eq!(rest.len(), 10);
}

#[test]
fn a_torn_last_record_is_dropped_never_misread() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    w.append(&[b"first".as_slice(), b"second".as_slice()])
        .unwrap();
    drop(w);
    let seg = wal::segments(dir.path()).unwrap()[0].1.clone();
    // A crash in the middle of writing a third record: header and half a body.
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&20u32.to_le_bytes()).unwrap();
    f.write_all(&0u32.to_le_bytes()).unwrap();
    f.write_all(&2u64.to_le_bytes()).unwrap();
    f.write_all(b"half").unwrap();
    drop(f);
    let (mut w, rec) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(rec.records, 2);
    assert_eq!(rec.truncated_bytes, 20);
    assert!(rec.damage.unwrap().contains("cut short"));
    // The next append reuses sequence 2 cleanly.
    assert_eq!(w.append(&[b"third"]).unwrap(), 2);
    let all = read_all(dir.path(), 0);
    assert_eq!(
        all.into_iter().map(|r| r.1).collect::<Vec<_>>(),
        vec![b"first".to_vec(), b"second".to_vec(), b"third".to_vec()]
    );
}

#[test]
fn a_flipped_bit_ends_the_log_at_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    w.append(&[b"aaaa", b"bbbb", b"cccc"]).unwrap();
    drop(w);
    let seg = wal::segments(dir.path()).unwrap()[0].1.clone();
    let mut bytes = std::fs::read(&seg).unwrap();
    // The second record's body starts at 16 + 4 + 16.
    bytes[36] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    let (_, rec) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(rec.records, 1);
    assert!(rec.damage.unwrap().contains("checksum"));
    assert_eq!(read_all(dir.path(), 0).len(), 1);
}

#[test]
fn a_reader_follows_a_growing_log() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = Wal::open(dir.path(), small()).unwrap();
    let mut r = WalReader::new(dir.path(), 0);
    assert!(r.next_record().unwrap().is_none());
    for i in 0..30u64 {
        w.append(&[format!("{i:0>50}")]).unwrap();
        let (seq, body) = r.next_record().unwrap().expect("the record just written");
        assert_eq!(seq, i);
        assert_eq!(body, format!("{i:0>50}").as_bytes());
        assert!(r.next_record().unwrap().is_none());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Cutting the log anywhere keeps exactly the records wholly before
    /// the cut, in order, and never anything else.
    #[test]
    fn any_cut_keeps_a_prefix(sizes in proptest::collection::vec(0usize..200, 1..20), cut_frac in 0.0f64..1.0) {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        let bodies: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, n)| vec![i as u8; *n]).collect();
        w.append(&bodies).unwrap();
        drop(w);
        let seg = wal::segments(dir.path()).unwrap()[0].1.clone();
        let len = std::fs::metadata(&seg).unwrap().len();
        let cut = (len as f64 * cut_frac) as u64;
        OpenOptions::new().write(true).open(&seg).unwrap().set_len(cut).unwrap();
        let mut whole = 0;
        let mut end = 0u64;
        for b in &bodies {
            end += 16 + b.len() as u64;
            if end <= cut { whole += 1; }
        }
        let (_, rec) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        prop_assert_eq!(rec.records, whole as u64);
        let got: Vec<Vec<u8>> = read_all(dir.path(), 0).into_iter().map(|r| r.1).collect();
        prop_assert_eq!(&got[..], &bodies[..whole]);
    }
}
