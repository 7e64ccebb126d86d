//! `redops test FILE...`: rule and playbook unit tests in virtual time,
//! without Redis (docs/testing.md).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::ruletest::{Case, Summary};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people: each test's name, and what failed.
    Text,
    /// One JSON object: the counts and every test with its failures.
    Json,
    /// JUnit XML, which CI systems (GitLab, Jenkins, GitHub Actions
    /// reporters) show as test results: one suite a file.
    Junit,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Test files (`*.toml`); a directory stands for every `*.toml` in it.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Run only the tests whose name contains this text.
    #[arg(long)]
    pub filter: Option<String>,
    /// Show the log lines of the evaluator and the playbooks.
    #[arg(long, short)]
    pub verbose: bool,
    /// How the results are printed on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn main(args: Args) -> ExitCode {
    let run = || {
        let mut text = std::io::stdout().lock();
        let mut none = std::io::sink();
        let out: &mut dyn std::io::Write = if args.format == Format::Text {
            &mut text
        } else {
            &mut none
        };
        crate::ruletest::run_files(&args.files, args.filter.as_deref(), out, &mut std::io::stderr().lock())
    };
    // Alerts firing and playbooks logging are what tests are made of: their
    // log lines would drown the report.
    let summary = if args.verbose {
        run()
    } else {
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), run)
    };
    match args.format {
        Format::Text => {}
        Format::Json => println!("{}", json(&summary)),
        Format::Junit => print!("{}", junit(&summary)),
    }
    ExitCode::from(summary.exit_code())
}

fn json(summary: &Summary) -> String {
    let report = serde_json::json!({
        "passed": summary.passed,
        "failed": summary.failed,
        "broken_files": summary.broken_files,
        "tests": summary.cases,
    });
    serde_json::to_string_pretty(&report).unwrap_or_default()
}

/// JUnit XML: a `<testsuite>` per file, a `<testcase>` per test with a
/// `<failure>` holding what failed; a file that does not load is one
/// `<testcase>` with an `<error>`.
pub fn junit(summary: &Summary) -> String {
    let mut files: Vec<&str> = Vec::new();
    for c in &summary.cases {
        if !files.contains(&c.file.as_str()) {
            files.push(&c.file);
        }
    }
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"redops test\" tests=\"{}\" failures=\"{}\" errors=\"{}\">",
        summary.cases.len(),
        summary.failed,
        summary.broken_files
    );
    for file in files {
        let cases: Vec<&Case> = summary.cases.iter().filter(|c| c.file == file).collect();
        let failures = cases
            .iter()
            .filter(|c| c.name.is_some() && !c.failures.is_empty())
            .count();
        let errors = cases.iter().filter(|c| c.name.is_none()).count();
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\">",
            escape(file),
            cases.len()
        );
        for c in cases {
            let name = c.name.as_deref().unwrap_or("(the file does not load)");
            let _ = write!(
                xml,
                "    <testcase classname=\"{}\" name=\"{}\" file=\"{}\" line=\"{}\"",
                escape(file),
                escape(name),
                escape(file),
                c.line
            );
            if c.failures.is_empty() {
                xml.push_str("/>\n");
                continue;
            }
            let element = if c.name.is_some() { "failure" } else { "error" };
            let _ = writeln!(
                xml,
                ">\n      <{element} message=\"{}\">{}</{element}>\n    </testcase>",
                escape(c.failures.first().map(String::as_str).unwrap_or_default().trim()),
                escape(&c.failures.join("\n"))
            );
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 has no way to write other control characters.
            c if c.is_control() && !matches!(c, '\n' | '\t' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}
