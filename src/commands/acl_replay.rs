//! `registry-auth acl replay`: re-decides the token requests of audit logs under a config.

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal as _, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context as _, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use registry_auth::cli::ReplayFormat;
use registry_auth::policy::audit::parse_line;
use registry_auth::policy::replay::{self, Memo, Report};
use registry_auth::policy::{Offline, Verdict};

/// Counts the bytes read from the file (compressed, for a gzip file), for the progress bar.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The lines of one log: plain, or gzip (by its magic bytes, whatever the name).
fn open(path: &Path, read: Arc<AtomicU64>) -> Result<(Box<dyn BufRead>, Option<u64>)> {
    let (raw, size): (Box<dyn Read>, Option<u64>) = if path == Path::new("-") {
        (Box::new(io::stdin()), None)
    } else {
        let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let size = f.metadata().ok().map(|m| m.len());
        (Box::new(f), size)
    };
    let mut buffered = BufReader::with_capacity(1 << 20, Counting { inner: raw, read });
    let gzip = buffered
        .fill_buf()
        .with_context(|| format!("cannot read {}", path.display()))?
        .starts_with(&[0x1f, 0x8b]);
    Ok(if gzip {
        (
            Box::new(BufReader::with_capacity(
                1 << 20,
                flate2::bufread::MultiGzDecoder::new(buffered),
            )),
            size,
        )
    } else {
        (Box::new(buffered), size)
    })
}

fn progress(quiet: bool, total: Option<u64>) -> ProgressBar {
    if quiet || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left) {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

pub(crate) fn acl_replay(
    config: &Path,
    logs: &[PathBuf],
    fail_on_change: bool,
    format: ReplayFormat,
    quiet: bool,
) -> Result<ExitCode> {
    let config = match super::load_config(config)? {
        Ok(c) => Arc::new(c),
        Err(code) => return Ok(code),
    };
    let runtime = super::runtime()?;
    let offline = runtime.block_on(Offline::new(config))?;
    let mut report = Report::default();
    let mut memo = Memo::new();
    let read = Arc::new(AtomicU64::new(0));
    let total: Option<u64> = logs
        .iter()
        .map(|p| std::fs::metadata(p).ok().map(|m| m.len()))
        .sum();
    let bar = progress(quiet, total);
    let mut line_no = 0u64;
    let mut buf = Vec::with_capacity(4096);
    for path in logs {
        let (mut reader, _) = open(path, read.clone())?;
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            if line_no.is_multiple_of(65_536) {
                bar.set_position(read.load(Ordering::Relaxed));
            }
            let Ok(line) = std::str::from_utf8(&buf) else {
                if String::from_utf8_lossy(&buf).contains("token issued") {
                    report.unreadable(line_no, "not UTF-8".to_owned());
                }
                continue;
            };
            let rec = match parse_line(line) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(why) => {
                    report.unreadable(line_no, format!("{}: {why}", path.display()));
                    continue;
                }
            };
            if !memo.replay(&offline, &rec, &mut report) {
                let verdicts: Vec<Verdict> = runtime.block_on(replay::decide(&offline, &rec))?;
                report.add(&rec, &verdicts);
            }
        }
    }
    report.stats.lines = line_no;
    bar.finish_and_clear();
    let mut out = io::stdout().lock();
    match format {
        ReplayFormat::Text => out.write_all(replay::report_text(&report, &offline).as_bytes())?,
        ReplayFormat::Json => {
            for (k, n) in &report.changes {
                writeln!(out, "{}", replay::change_json(k, *n, &offline))?;
            }
            writeln!(out, "{}", replay::summary_json(&report))?;
        }
    }
    Ok(if fail_on_change && report.stats.changed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `acl generate-log` (hidden): the benchmark's input.
pub(crate) fn generate_log(config: &Path, requests: u64, output: &Path) -> Result<ExitCode> {
    let config = match super::load_config(config)? {
        Ok(c) => Arc::new(c),
        Err(code) => return Ok(code),
    };
    let offline = super::runtime()?.block_on(Offline::new(config))?;
    let file =
        File::create(output).with_context(|| format!("cannot create {}", output.display()))?;
    let mut out = io::BufWriter::with_capacity(1 << 20, file);
    let bytes = registry_auth::policy::generate::write_log(&offline, requests, 1, &mut out)?;
    out.flush()?;
    writeln!(
        io::stdout(),
        "{}: {requests} token requests, {bytes} bytes",
        output.display()
    )?;
    Ok(ExitCode::SUCCESS)
}
