//! Where log lines go: stderr, stdout, or a file rotated by size or by the hour or day, keeping
//! `aether.log.1` (newest) … `aether.log.N`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    None,
    Hourly,
    Daily,
    /// When the file would grow past `max_bytes`.
    Size {
        max_bytes: u64,
    },
}

impl Rotation {
    fn period(self, now: SystemTime) -> u64 {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        match self {
            Rotation::Hourly => secs / 3600,
            Rotation::Daily => secs / 86_400,
            _ => 0,
        }
    }
}

/// A log file that rotates itself as it is written.
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: Rotation,
    max_files: usize,
    period: u64,
}

impl RotatingFile {
    /// Opens (creating directories and the file) for appending; the error names the path.
    pub fn open(path: &Path, rotation: Rotation, max_files: usize) -> Result<RotatingFile, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create log directory {}: {e}", dir.display()))?;
        }
        let file = Self::append(path)?;
        let size = file.metadata().map_or(0, |m| m.len());
        Ok(RotatingFile {
            path: path.to_owned(),
            file,
            size,
            rotation,
            max_files: max_files.max(1),
            period: rotation.period(SystemTime::now()),
        })
    }

    fn append(path: &Path) -> Result<File, String> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open log file {}: {e}", path.display()))
    }

    fn numbered(&self, n: usize) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Shifts `.1` … `.N-1` up by one (dropping the oldest) and starts a fresh file.
    fn rotate(&mut self) -> io::Result<()> {
        let _ = std::fs::remove_file(self.numbered(self.max_files));
        for n in (1..self.max_files).rev() {
            let from = self.numbered(n);
            if from.exists() {
                std::fs::rename(&from, self.numbered(n + 1))?;
            }
        }
        self.file.flush()?;
        std::fs::rename(&self.path, self.numbered(1))?;
        self.file = Self::append(&self.path).map_err(io::Error::other)?;
        self.size = 0;
        Ok(())
    }

    fn due(&self, incoming: usize) -> bool {
        match self.rotation {
            Rotation::None => false,
            Rotation::Size { max_bytes } => {
                self.size > 0 && self.size + incoming as u64 > max_bytes
            }
            r => r.period(SystemTime::now()) != self.period,
        }
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.due(buf.len()) {
            self.rotate()?;
            self.period = self.rotation.period(SystemTime::now());
        }
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The destination every formatted line is written to, shared by all threads.
#[derive(Clone)]
pub enum Sink {
    Stderr,
    Stdout,
    File(Arc<Mutex<RotatingFile>>),
}

impl Sink {
    /// Writes one whole line; a failing destination drops the line rather than the process.
    pub fn write_line(&self, line: &[u8]) {
        let _ = match self {
            Sink::Stderr => io::stderr().lock().write_all(line),
            Sink::Stdout => io::stdout().lock().write_all(line),
            Sink::File(f) => f.lock().unwrap_or_else(|p| p.into_inner()).write_all(line),
        };
    }
}
