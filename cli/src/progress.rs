//! A deploy's phases as it goes: a spinner on a terminal, one plain line per change otherwise
//! (logs, CI, tests). Both on stderr, so stdout holds only the result.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use wasmless_api::FunctionKey;

pub struct Spinner {
    key: String,
    bar: Option<ProgressBar>,
    last: String,
}

impl Spinner {
    pub fn new(key: &FunctionKey) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {prefix}: {msg} ({elapsed})")
            {
                bar.set_style(style);
            }
            bar.set_prefix(key.to_string());
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Self {
            key: key.to_string(),
            bar,
            last: String::new(),
        }
    }

    pub fn phase(&mut self, phase: &str) {
        if phase == self.last {
            return;
        }
        self.last = phase.to_string();
        match &self.bar {
            Some(bar) => bar.set_message(phase.to_string()),
            None => eprintln!("{}: {phase}", self.key),
        }
    }

    pub fn finish(&mut self, outcome: &str) {
        match self.bar.take() {
            Some(bar) => bar.finish_with_message(outcome.to_string()),
            None => eprintln!("{}: {outcome}", self.key),
        }
    }
}
