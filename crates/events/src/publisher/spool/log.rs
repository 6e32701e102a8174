//! The spool's on-disk log: an append-only, fsynced, CRC-checked record log in segment
//! files, read front to back, with an atomically replaced `acked` position. It knows nothing
//! of the publisher (the forwarder in `forward.rs` drives it).
//!
//! # Format
//! The spool directory holds numbered segment files (`0000000000000001.seg`, ...) and an
//! `acked` file. A segment is a sequence of records, each
//! `[body length: u32 LE][CRC-32 of body: u32 LE][body]`, the body being
//! `[subject length: u16 LE][subject][id length: u16 LE][id][event JSON]`. Appends go to the
//! last segment and are fsynced before they return; a segment past `segment_bytes` is
//! closed and a new one started. `acked` holds the position (segment, offset) up to which
//! records were forwarded, with its own CRC; it is replaced atomically (write a temporary
//! file, fsync, rename, fsync the directory). Fully forwarded segments are deleted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{info, warn};

/// Largest record body accepted when reading (a sanity bound against garbage lengths).
const MAX_RECORD: u32 = 64 << 20;
const HEADER: u64 = 8;
const ACKED: &str = "acked";
const LOCK: &str = "LOCK";
const REJECTED: &str = "rejected.log";
/// How long `open` waits for another publisher (e.g. a just-dropped one) to release the
/// directory lock.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// How much the log may hold, and when it starts a new segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Most bytes on disk: an append beyond is refused ([`AppendError::Full`]).
    pub(crate) max_bytes: u64,
    /// A segment past this size is closed and a new one started.
    pub(crate) segment_bytes: u64,
}

/// Why an append was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AppendError {
    /// The log holds `used` bytes of `limit`; the record (`record` bytes) does not fit.
    #[error("spool full: {used} of {limit} bytes used, record of {record}")]
    Full { used: u64, limit: u64, record: u64 },
    /// Reading or writing the files failed.
    #[error("spool I/O failed")]
    Io(#[from] io::Error),
}

/// One spooled event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SpoolRecord {
    pub(crate) subject: String,
    pub(crate) msg_id: String,
    pub(crate) payload: Bytes,
}

impl SpoolRecord {
    fn encode(&self) -> io::Result<Vec<u8>> {
        let too_long = || io::Error::new(io::ErrorKind::InvalidInput, "subject or id too long");
        let sl = u16::try_from(self.subject.len()).map_err(|_| too_long())?;
        let il = u16::try_from(self.msg_id.len()).map_err(|_| too_long())?;
        let body_len = 4 + self.subject.len() + self.msg_id.len() + self.payload.len();
        let body_len32 = u32::try_from(body_len)
            .ok()
            .filter(|l| *l <= MAX_RECORD)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "record too large"))?;
        let mut out = Vec::with_capacity(HEADER as usize + body_len);
        out.extend_from_slice(&body_len32.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&sl.to_le_bytes());
        out.extend_from_slice(self.subject.as_bytes());
        out.extend_from_slice(&il.to_le_bytes());
        out.extend_from_slice(self.msg_id.as_bytes());
        out.extend_from_slice(&self.payload);
        let crc = crc32(&out[HEADER as usize..]);
        out[4..8].copy_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    fn decode(body: &[u8]) -> Option<Self> {
        let take = |b: &[u8], at: usize| -> Option<(String, usize)> {
            let len = u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]) as usize;
            let s = b.get(at + 2..at + 2 + len)?;
            Some((String::from_utf8(s.to_vec()).ok()?, at + 2 + len))
        };
        let (subject, at) = take(body, 0)?;
        let (msg_id, at) = take(body, at)?;
        Some(Self {
            subject,
            msg_id,
            payload: Bytes::copy_from_slice(&body[at..]),
        })
    }
}

/// A position in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    seg: u64,
    off: u64,
}

/// What one read found.
enum Found {
    Record {
        body: Vec<u8>,
        next: u64,
    },
    /// A record with a plausible length whose CRC does not match: skip it.
    Corrupt {
        next: u64,
    },
    /// End of the segment.
    End,
    /// A partial record: a torn write.
    Torn,
}

fn read_at(r: &mut BufReader<File>, len: u64, off: u64) -> io::Result<Found> {
    if off >= len {
        return Ok(Found::End);
    }
    if len - off < HEADER {
        return Ok(Found::Torn);
    }
    r.seek(SeekFrom::Start(off))?;
    let mut h = [0u8; 8];
    r.read_exact(&mut h)?;
    let body_len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if body_len == 0 || body_len > MAX_RECORD || off + HEADER + u64::from(body_len) > len {
        return Ok(Found::Torn);
    }
    let mut body = vec![0u8; body_len as usize];
    r.read_exact(&mut body)?;
    let next = off + HEADER + u64::from(body_len);
    if crc32(&body) != crc || SpoolRecord::decode(&body).is_none() {
        return Ok(Found::Corrupt { next });
    }
    Ok(Found::Record { body, next })
}

/// Records read from the front of the spool.
pub(crate) struct Batch {
    /// Each record with the position just after it and its size on disk.
    pub(crate) records: Vec<(SpoolRecord, Pos, u64)>,
    /// The position after everything scanned (skipped records and finished segments too).
    pub(crate) end: Pos,
}

struct State {
    segments: Vec<u64>,
    ack: Pos,
    writer: File,
    write_len: u64,
    used: u64,
}

/// The spool store. All methods do blocking I/O: call them from `spawn_blocking`.
pub(crate) struct Spool {
    dir: PathBuf,
    limits: Limits,
    _lock: File,
    state: Mutex<State>,
    pending: AtomicU64,
}

fn seg_path(dir: &Path, seg: u64) -> PathBuf {
    dir.join(format!("{seg:016x}.seg"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn read_acked(dir: &Path) -> Option<Pos> {
    let b = fs::read(dir.join(ACKED)).ok()?;
    if b.len() != 20 {
        warn!(dir = %dir.display(), "spool acked file has a bad length; forwarding from the oldest segment");
        return None;
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[0..8]);
    let seg = u64::from_le_bytes(a);
    a.copy_from_slice(&b[8..16]);
    let off = u64::from_le_bytes(a);
    let crc = u32::from_le_bytes([b[16], b[17], b[18], b[19]]);
    if crc32(&b[0..16]) != crc {
        warn!(dir = %dir.display(), "spool acked file is corrupt; forwarding from the oldest segment");
        return None;
    }
    Some(Pos { seg, off })
}

fn write_acked(dir: &Path, pos: Pos) -> io::Result<()> {
    let mut b = Vec::with_capacity(20);
    b.extend_from_slice(&pos.seg.to_le_bytes());
    b.extend_from_slice(&pos.off.to_le_bytes());
    let crc = crc32(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    let tmp = dir.join("acked.tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&b)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(ACKED))?;
    sync_dir(dir)
}

fn lock_dir(dir: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK))?;
    let start = Instant::now();
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "spool directory is locked by another publisher",
                ));
            }
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// The segment numbers in `dir`, oldest first.
fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut segments: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".seg")?;
            u64::from_str_radix(stem, 16).ok()
        })
        .collect();
    segments.sort_unstable();
    Ok(segments)
}

/// Where forwarding resumes: the `acked` position if it names a segment that is there,
/// else the oldest segment. With no segment at all, creates the first (after the acked
/// one, so numbers never repeat) and adds it to `segments`.
fn start_position(dir: &Path, segments: &mut Vec<u64>) -> io::Result<Pos> {
    let oldest = |seg: u64| Pos { seg, off: 0 };
    Ok(match (read_acked(dir), segments.first().copied()) {
        (Some(a), Some(first)) if a.seg < first => oldest(first),
        (Some(a), Some(_)) if segments.contains(&a.seg) => a,
        (None, Some(first)) => oldest(first),
        (Some(a), Some(first)) => {
            warn!(dir = %dir.display(), acked_segment = a.seg, "spool acked position names a missing segment; forwarding from the oldest");
            oldest(first)
        }
        (acked, None) => {
            let seg = acked.map_or(1, |a| a.seg + 1);
            File::create(seg_path(dir, seg))?.sync_all()?;
            sync_dir(dir)?;
            segments.push(seg);
            oldest(seg)
        }
    })
}

/// Records not yet forwarded, and their bytes on disk.
#[derive(Debug, Default)]
struct Backlog {
    records: u64,
    bytes: u64,
}

/// Scans every segment from `ack` on: counts the backlog, skips corrupt records and cuts a
/// torn tail off the `last` segment. Clamps `ack.off` to its segment's length.
fn scan_backlog(dir: &Path, segments: &[u64], ack: &mut Pos, last: u64) -> io::Result<Backlog> {
    let mut backlog = Backlog::default();
    for &seg in segments.iter().filter(|s| **s >= ack.seg) {
        let path = seg_path(dir, seg);
        let len = fs::metadata(&path)?.len();
        let mut off = 0;
        if seg == ack.seg {
            ack.off = ack.off.min(len);
            off = ack.off;
        }
        scan_segment(&path, len, off, seg == last, &mut backlog)?;
    }
    Ok(backlog)
}

/// Counts the records of one segment from `off` into `backlog`; a torn end is cut off
/// when `is_last` (an older segment's is only logged).
fn scan_segment(
    path: &Path,
    len: u64,
    mut off: u64,
    is_last: bool,
    backlog: &mut Backlog,
) -> io::Result<()> {
    let mut r = BufReader::new(File::open(path)?);
    loop {
        match read_at(&mut r, len, off)? {
            Found::Record { next, .. } => {
                backlog.bytes += next - off;
                backlog.records += 1;
                off = next;
            }
            Found::Corrupt { next } => {
                warn!(segment = %path.display(), offset = off, "corrupt spool record (CRC mismatch) skipped");
                off = next;
            }
            Found::End => return Ok(()),
            Found::Torn => {
                warn!(segment = %path.display(), offset = off, bytes = len - off, "torn record at the end of a spool segment (crash during append) cut off");
                if is_last {
                    let f = OpenOptions::new().write(true).open(path)?;
                    f.set_len(off)?;
                    f.sync_all()?;
                }
                return Ok(());
            }
        }
    }
}

/// Deletes the segments before `ack` (forwarded before a crash) and forgets them.
fn drop_forwarded_segments(dir: &Path, segments: &mut Vec<u64>, ack: Pos) {
    for &seg in segments.iter().filter(|s| **s < ack.seg) {
        let _ = fs::remove_file(seg_path(dir, seg));
    }
    segments.retain(|s| *s >= ack.seg);
}

impl Spool {
    /// Opens (or creates) the spool, cutting off a torn tail and counting the backlog.
    pub(crate) fn open(dir: &Path, limits: Limits) -> io::Result<Spool> {
        let dir = dir.to_path_buf();
        fs::create_dir_all(&dir)?;
        let lock = lock_dir(&dir)?;
        let mut segments = list_segments(&dir)?;
        let mut ack = start_position(&dir, &mut segments)?;
        let last = *segments.last().unwrap_or(&ack.seg);
        let backlog = scan_backlog(&dir, &segments, &mut ack, last)?;
        drop_forwarded_segments(&dir, &mut segments, ack);
        let writer = OpenOptions::new().append(true).open(seg_path(&dir, last))?;
        let write_len = writer.metadata()?.len();
        if backlog.records > 0 {
            info!(dir = %dir.display(), pending = backlog.records, bytes = backlog.bytes, "spool holds events to forward");
        }
        Ok(Spool {
            dir,
            limits,
            _lock: lock,
            state: Mutex::new(State {
                segments,
                ack,
                writer,
                write_len,
                used: backlog.bytes,
            }),
            pending: AtomicU64::new(backlog.records),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is only changed after the I/O it reflects succeeded; a panic elsewhere
        // while holding the lock leaves it consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records not yet forwarded.
    pub(crate) fn pending(&self) -> u64 {
        self.pending.load(Ordering::Acquire)
    }

    fn roll(&self, st: &mut State) -> io::Result<()> {
        let next = st.segments.last().copied().unwrap_or(st.ack.seg) + 1;
        let path = seg_path(&self.dir, next);
        let f = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        f.sync_all()?;
        sync_dir(&self.dir)?;
        st.writer = f;
        st.write_len = 0;
        st.segments.push(next);
        Ok(())
    }

    /// Appends one record and fsyncs it.
    pub(crate) fn append(&self, rec: &SpoolRecord) -> Result<(), AppendError> {
        let bytes = rec.encode()?;
        let size = bytes.len() as u64;
        let mut st = self.state();
        if st.used + size > self.limits.max_bytes {
            return Err(AppendError::Full {
                used: st.used,
                limit: self.limits.max_bytes,
                record: size,
            });
        }
        if st.write_len >= self.limits.segment_bytes {
            self.roll(&mut st)?;
        }
        let res = st
            .writer
            .write_all(&bytes)
            .and_then(|()| st.writer.sync_data());
        if let Err(e) = res {
            // Cut whatever part was written so the next append starts on a boundary.
            let _ = st.writer.set_len(st.write_len);
            return Err(AppendError::Io(e));
        }
        st.write_len += size;
        st.used += size;
        self.pending.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Reads up to `max` records from the acked position on.
    pub(crate) fn peek(&self, max: usize) -> io::Result<Batch> {
        let st = self.state();
        let mut pos = st.ack;
        let mut records = Vec::new();
        let last = st.segments.last().copied().unwrap_or(pos.seg);
        'segments: while records.len() < max {
            let path = seg_path(&self.dir, pos.seg);
            let len = if pos.seg == last {
                st.write_len
            } else {
                fs::metadata(&path)?.len()
            };
            let mut r = BufReader::new(File::open(&path)?);
            while records.len() < max {
                match read_at(&mut r, len, pos.off)? {
                    Found::Record { body, next } => {
                        let size = next - pos.off;
                        pos.off = next;
                        if let Some(rec) = SpoolRecord::decode(&body) {
                            records.push((rec, pos, size));
                        }
                    }
                    Found::Corrupt { next } => {
                        warn!(segment = %path.display(), offset = pos.off, "corrupt spool record (CRC mismatch) skipped");
                        pos.off = next;
                    }
                    Found::End | Found::Torn => {
                        if pos.seg == last {
                            break 'segments;
                        }
                        // Next segment (a torn end of an older one was logged at open).
                        match st.segments.iter().find(|s| **s > pos.seg) {
                            Some(&s) => pos = Pos { seg: s, off: 0 },
                            None => break 'segments,
                        }
                        continue 'segments;
                    }
                }
            }
        }
        Ok(Batch { records, end: pos })
    }

    /// Marks everything before `pos` forwarded (`records` records, `bytes` bytes), persists
    /// the position and deletes finished segments.
    pub(crate) fn ack(&self, pos: Pos, records: u64, bytes: u64) -> io::Result<()> {
        let mut st = self.state();
        let last = st.segments.last().copied().unwrap_or(pos.seg);
        let mut new_pos = pos;
        // Everything forwarded and the segment not empty: start a fresh one so the old can go.
        if pos.seg == last && pos.off == st.write_len && st.write_len > 0 {
            self.roll(&mut st)?;
            new_pos = Pos {
                seg: last + 1,
                off: 0,
            };
        }
        write_acked(&self.dir, new_pos)?;
        st.ack = new_pos;
        st.used = st.used.saturating_sub(bytes);
        let _ = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                Some(p.saturating_sub(records))
            });
        let done: Vec<u64> = st
            .segments
            .iter()
            .copied()
            .filter(|s| *s < new_pos.seg)
            .collect();
        for seg in done {
            if let Err(e) = fs::remove_file(seg_path(&self.dir, seg)) {
                warn!(error = %e, segment = seg, "could not delete a forwarded spool segment");
            }
        }
        st.segments.retain(|s| *s >= new_pos.seg);
        Ok(())
    }

    /// Keeps a record the stream refused permanently in `rejected.log`.
    pub(crate) fn reject(&self, rec: &SpoolRecord) -> io::Result<()> {
        let bytes = rec.encode()?;
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(REJECTED))?;
        f.write_all(&bytes)?;
        f.sync_data()
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's `crc32`).
pub(crate) fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !0u32;
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_bytes: 1 << 30,
            segment_bytes: 300,
        }
    }

    fn rec(i: usize) -> SpoolRecord {
        SpoolRecord {
            subject: "auth.user.created".into(),
            msg_id: format!("id-{i}"),
            payload: Bytes::from(format!("{{\"n\":{i}}}")),
        }
    }

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn append_peek_ack_reopen_keeps_order_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Spool::open(dir.path(), limits()).unwrap();
            for i in 0..10 {
                s.append(&rec(i)).unwrap();
            }
            assert_eq!(s.pending(), 10);
            let b = s.peek(4).unwrap();
            let ids: Vec<_> = b.records.iter().map(|r| r.0.msg_id.clone()).collect();
            assert_eq!(ids, ["id-0", "id-1", "id-2", "id-3"]);
            let (_, pos, _) = b.records[3];
            let bytes: u64 = b.records.iter().map(|r| r.2).sum();
            s.ack(pos, 4, bytes).unwrap();
            assert_eq!(s.pending(), 6);
        }
        let s = Spool::open(dir.path(), limits()).unwrap();
        assert_eq!(s.pending(), 6);
        let b = s.peek(100).unwrap();
        let ids: Vec<_> = b.records.iter().map(|r| r.0.msg_id.clone()).collect();
        assert_eq!(ids, (4..10).map(|i| format!("id-{i}")).collect::<Vec<_>>());
        let bytes: u64 = b.records.iter().map(|r| r.2).sum();
        s.ack(b.end, 6, bytes).unwrap();
        assert_eq!(s.pending(), 0);
        // Forwarded segments are gone: only the fresh one is left.
        let segs = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".seg")
            })
            .count();
        assert_eq!(segs, 1);
        s.append(&rec(10)).unwrap();
        assert_eq!(s.peek(10).unwrap().records[0].0, rec(10));
    }

    #[test]
    fn torn_tail_is_cut_and_corrupt_record_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let c = Limits {
            segment_bytes: 1 << 20,
            ..limits()
        };
        {
            let s = Spool::open(dir.path(), c).unwrap();
            for i in 0..3 {
                s.append(&rec(i)).unwrap();
            }
        }
        let seg = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "seg"))
            .unwrap();
        let mut data = fs::read(&seg).unwrap();
        let first_len = rec(0).encode().unwrap().len();
        // Flip a byte in the body of record 0, and append half a record.
        data[first_len - 1] ^= 0xFF;
        let torn = rec(3).encode().unwrap();
        data.extend_from_slice(&torn[..torn.len() / 2]);
        fs::write(&seg, &data).unwrap();

        let s = Spool::open(dir.path(), c).unwrap();
        assert_eq!(s.pending(), 2);
        let b = s.peek(10).unwrap();
        let ids: Vec<_> = b.records.iter().map(|r| r.0.msg_id.clone()).collect();
        assert_eq!(ids, ["id-1", "id-2"]);
        // The torn tail was cut, so a new append is readable.
        s.append(&rec(4)).unwrap();
        assert_eq!(s.peek(10).unwrap().records.len(), 3);
    }

    #[test]
    fn full_spool_refuses_with_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(
            dir.path(),
            Limits {
                max_bytes: 100,
                ..limits()
            },
        )
        .unwrap();
        s.append(&rec(0)).unwrap();
        let mut refused = false;
        for i in 1..10 {
            if let Err(AppendError::Full { limit, .. }) = s.append(&rec(i)) {
                assert_eq!(limit, 100);
                refused = true;
                break;
            }
        }
        assert!(refused);
    }

    #[test]
    fn second_open_of_a_locked_dir_fails() {
        let dir = tempfile::tempdir().unwrap();
        let _s = Spool::open(dir.path(), limits()).unwrap();
        let t = Instant::now();
        assert!(Spool::open(dir.path(), limits()).is_err());
        assert!(t.elapsed() >= LOCK_WAIT);
    }
}
