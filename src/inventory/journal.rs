//! The audit journal: every acknowledged change's audit record, appended and synced before the
//! change is answered, so the git history can always be completed after a crash
//! (see `DESIGN.md`). One JSON object per line; a torn last line (a crash mid-append) is
//! ignored, as that change was never acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One change to record in git.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// increases by one per record, across restarts.
    pub seq: u64,
    /// unix seconds when the change was made.
    pub time: i64,
    pub id: String,
    /// the file name inside the repository.
    pub file: String,
    /// the file's new content; `None` when the file was deleted.
    pub content: Option<String>,
    pub what: String,
    pub author: String,
}

pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Opens (or creates) the journal. A torn last line is cut off first, so the next append
    /// starts on a line of its own.
    pub fn open(path: &Path) -> io::Result<Journal> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .open(path)?;
        let bytes = std::fs::read(path)?;
        if bytes.last().is_some_and(|b| *b != b'\n') {
            let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            file.set_len(keep as u64)?;
            file.sync_all()?;
        }
        Ok(Journal {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends `records` and waits until they are on disk.
    pub fn append(&mut self, records: &[Record]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(records.len() * 512);
        for r in records {
            serde_json::to_writer(&mut buf, r).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()
    }

    /// Empties the journal once git holds everything in it.
    pub fn truncate(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_all()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Every whole record in the journal at `path` (none if it does not exist).
pub fn read(path: &Path) -> io::Result<Vec<Record>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for line in BufReader::new(file).split(b'\n') {
        let line = line?;
        // A torn line is the tail of an append that never finished: not acknowledged.
        if let Ok(r) = serde_json::from_slice::<Record>(&line) {
            out.push(r);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64) -> Record {
        Record {
            seq,
            time: 0,
            id: format!("m{seq}"),
            file: format!("m{seq}.json"),
            content: Some("{}\n".into()),
            what: "registered".into(),
            author: "m".into(),
        }
    }

    #[test]
    fn appended_records_read_back_and_a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("journal");
        let mut j = Journal::open(&path).expect("open");
        j.append(&[record(1), record(2)]).expect("append");
        j.append(&[record(3)]).expect("append");
        // A crash mid-append leaves half a line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"{\"seq\":4,\"ti"))
            .expect("torn");
        let got = read(&path).expect("read");
        assert_eq!(got, vec![record(1), record(2), record(3)]);
        // Reopened after the crash, the next append is whole.
        drop(j);
        let mut j = Journal::open(&path).expect("reopen");
        j.append(&[record(5)]).expect("append");
        let got = read(&path).expect("read");
        assert_eq!(got, vec![record(1), record(2), record(3), record(5)]);
        j.truncate().expect("truncate");
        assert!(read(&path).expect("read").is_empty());
    }
}
