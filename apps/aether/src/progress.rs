//! Progress of long commands: a spinner with a message on a terminal, and a plain line on
//! stderr whenever the message changes otherwise (logs and CI keep a readable record).

use std::io::IsTerminal;
use std::time::Duration;

pub(crate) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
    last: String,
}

impl Progress {
    /// `quiet` (for `--json` and `--quiet`) shows nothing at all.
    pub(crate) fn new(quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress {
            bar,
            quiet,
            last: String::new(),
        }
    }

    pub(crate) fn update(&mut self, line: String) {
        match &self.bar {
            Some(b) => b.set_message(line.clone()),
            None if !self.quiet && line != self.last => eprintln!("{line}"),
            None => {}
        }
        self.last = line;
    }

    pub(crate) fn finish(self, line: String) {
        match self.bar {
            Some(b) => b.finish_with_message(line),
            None if !self.quiet && line != self.last => eprintln!("{line}"),
            None => {}
        }
    }
}
